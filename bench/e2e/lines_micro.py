"""Micro-benchmark of the embedded time-series path: `TimeseriesFeed.lines()` (readings to line
protocol) and `LineProtocolFileWriter.write_lines` (to the rotating files), in CPU µs per
reading (`time.process_time`), on the 10,000-point registry of `bench/e2e/run.py` in batches
of 100 readings (one gateway upload each, the values and timestamps its flood publishes).

The reference, measured in the same run and alternating with it: `reading_line` (the format's
definition) for every reading, the way the feed wrote before it had a fast path.

    .venv/bin/python bench/e2e/lines_micro.py [--batches 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def batches(registry_path: Path, n: int) -> tuple[object, list[list[object]]]:
    from bench.e2e.run import write_registry
    from ingest.model import Reading
    from ingest.registry import load_registry

    gws = write_registry(registry_path, 20, 5, 100)
    reg = load_registry(registry_path)
    base = 1_796_000_000_000
    out = []
    for i in range(n):
        ent, _gw, tags = gws[i % len(gws)]
        ts = base + i // len(gws) * 1000  # one upload per gateway per simulated second
        out.append(
            [
                Reading(ent, t, ts, 3.0 + (i + k) % 5 * 0.1, unit="mg/m3", received_ms=ts + 3)
                for k, t in enumerate(tags)
            ]
        )
    return reg, out


def cpu_us_per_reading(fn, work: list, readings: int) -> float:
    t0 = time.process_time()
    for item in work:
        fn(item)
    return (time.process_time() - t0) * 1e6 / readings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    from hazardwatch.metrics import Metrics
    from hazardwatch.runner import BatchOutcome
    from hazardwatch.wiring import TimeseriesFeed
    from ingest.influx import LineProtocolFileWriter
    from ingest.lineprotocol import reading_line

    class Discard:
        def write_lines(self, lines) -> None:
            pass

        def flush(self, timeout_s: float = 0) -> bool:
            return True

        def close(self) -> None:
            pass

    with tempfile.TemporaryDirectory(prefix="hw-lines-micro-") as tmp:
        reg, work = batches(Path(tmp) / "registry.csv", args.batches)
        readings = sum(len(b) for b in work)
        outcomes = [BatchOutcome(readings=b) for b in work]
        feed = TimeseriesFeed(Discard(), reg, Metrics(), pipeline_every_s=3600)
        get = reg.get

        def reference_lines(batch: list) -> list[str]:
            return [reading_line(r, get(r.enterprise_code, r.tag)) for r in batch]

        # Warm the prefix caches so both sides measure the steady state, then make sure
        # both write the same lines (a figure for wrong output would mean nothing).
        feed_lines = [feed.lines(o) for o in outcomes]
        ref_lines = [reference_lines(b) for b in work]
        assert feed_lines == ref_lines, "fast path and reading_line differ"

        figs: dict[str, list[float]] = {"feed": [], "ref": [], "file": [], "both": []}
        for r in range(args.rounds):
            # 16 MiB files: a 300,000-reading round rotates a few times, as production does.
            w = LineProtocolFileWriter(Path(tmp) / f"lp{r}", max_file_bytes=16 << 20)
            figs["ref"].append(cpu_us_per_reading(reference_lines, work, readings))
            figs["feed"].append(cpu_us_per_reading(feed.lines, outcomes, readings))
            figs["file"].append(cpu_us_per_reading(w.write_lines, feed_lines, readings))
            w2 = LineProtocolFileWriter(Path(tmp) / f"lpb{r}", max_file_bytes=16 << 20)
            figs["both"].append(
                cpu_us_per_reading(
                    lambda o, w2=w2: w2.write_lines(feed.lines(o)), outcomes, readings
                )
            )
            w.close()
            w2.close()
        feed.close()

    def show(name: str) -> float:
        med = statistics.median(figs[name])
        return med

    ref, fast, file_, both = show("ref"), show("feed"), show("file"), show("both")
    print(
        f"{readings:,} readings per round in batches of 100, 10,000 points, "
        f"{args.rounds} alternating rounds, medians of CPU us per reading:"
    )
    print(f"  reference: reading_line for every reading        {ref:6.3f} us")
    print(
        f"  TimeseriesFeed.lines()                           {fast:6.3f} us "
        f"= {fast / ref:.2f}x the reference"
    )
    print(f"  LineProtocolFileWriter.write_lines (same lines)  {file_:6.3f} us")
    print(f"  lines() then write_lines(), per batch            {both:6.3f} us")
    print("  rounds: " + ", ".join(f"{k}={min(v):.3f}-{max(v):.3f}" for k, v in figs.items()))


if __name__ == "__main__":
    main()
