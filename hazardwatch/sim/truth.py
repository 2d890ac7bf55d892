"""Ground truth files: one JSON line per injected incident (kind, enterprise, points, zone,
gateway, start, end, the alarm kinds/levels it should cause, and the parameters that shaped
it). Written by `hazardwatch simulate`, read by `hazardwatch sim score` and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from hazardwatch.sim.incidents import Incident


class TruthFileError(ValueError):
    """A ground-truth file could not be read; the message names the file and line."""


def write_truth(path: Path | str, incidents: Iterable[Incident]) -> Path:
    path = Path(path)
    enc = msgspec.json.Encoder()
    with path.open("wb") as f:
        for incident in incidents:
            f.write(enc.encode(incident.to_record()))
            f.write(b"\n")
    return path


def read_truth(path: Path | str) -> list[Incident]:
    """Incidents of a ground-truth JSONL file; raises `TruthFileError` naming the bad line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TruthFileError(f"{path}: cannot read ground truth: {exc.strerror}") from None
    dec = msgspec.json.Decoder(Incident)
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(dec.decode(line))
        except msgspec.ValidationError as exc:
            raise TruthFileError(f"{path}:{n}: not a ground-truth incident: {exc}") from None
        except msgspec.DecodeError as exc:
            raise TruthFileError(f"{path}:{n}: not valid JSON: {exc}") from None
    return out
