"""Ingest commands: `registry check` (validate a point registry, every problem at once),
`ingest decode` (what the normaliser makes of a payload: readings or dead letters, the same
code the service runs) and `ingest deadletters` (watch the MQTT dead-letter topic). The
MQTT -> Kafka bridge runs as `hazardwatch bridge` (commands/run.py, wiring.py)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from hazardwatch.cli import fail, settings

registry_app = typer.Typer(help="Validate the point registry.", no_args_is_help=True)
ingest_app = typer.Typer(
    help="MQTT ingest: decode payloads, watch dead letters.",
    no_args_is_help=True,
)


def _load_registry(path: Path | None) -> Any:
    from ingest.registry import RegistryError, load_registry

    path = path or settings().rules.registry
    if path is None:
        raise fail(
            "no point registry given",
            hint="pass --registry FILE or set rules.registry in hazardwatch.toml",
        )
    try:
        return load_registry(path)
    except RegistryError as exc:  # names the file and every bad line
        raise fail(str(exc), code=1) from None


RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", "-r", help="Point registry CSV/YAML (default: rules.registry)."),
]


@registry_app.command("check")
def registry_check(
    file: Annotated[Path, typer.Argument(help="Point registry, .csv or .yaml/.yml.")],
    set_points: Annotated[
        bool,
        typer.Option(
            "--set-points", help="Also show the gas set points the standard packs fill in."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate a point registry: a summary of points per enterprise and parameter, or every
    problem with its line (exit 1)."""
    from rich.console import Console
    from rich.table import Table

    from ingest.registry import RegistryError, load_registry, summary

    try:
        reg = load_registry(file)
    except RegistryError as exc:
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "file": str(file),
                        "problems": [
                            {"line": p.line, "column": p.column, "message": p.message}
                            for p in exc.problems
                        ],
                    },
                    ensure_ascii=False,
                    indent=2,
                )
            )
            raise typer.Exit(1) from None
        raise fail(
            str(exc), hint="fix every listed line, then run the check again", code=1
        ) from None
    per = summary(reg)
    filled = _pack_set_points(reg) if set_points else {}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "file": str(file),
                    "version": reg.version,
                    "points": len(reg),
                    "enterprises": per,
                    "set_points": filled,
                },
                ensure_ascii=False,
                indent=2,
                sort_keys=True,
            )
        )
        return
    console = Console()
    typer.echo(f"{file}: {len(reg)} points in {len(per)} enterprises (version {reg.version})")
    table = Table("enterprise", "parameter", "points")
    for ent in sorted(per):
        for param in sorted(per[ent]):
            table.add_row(ent, param, str(per[ent][param]))
    console.print(table)
    if set_points:
        t2 = Table("point", "unit", "set points (from the standard packs)")
        for key in sorted(filled):
            t2.add_row(
                key,
                filled[key]["unit"],
                ", ".join(f"{lv}={v:g}" for lv, v in filled[key]["levels"].items()),
            )
        console.print(t2)
    typer.echo("ok: no problems")


def _pack_set_points(reg: Any) -> dict[str, dict[str, Any]]:
    """Gas points registered without limits -> the set points the rules' packs give them."""
    try:
        from rules.loader import RuleFileError, load_ruleset
    except ImportError:
        return {}
    s = settings()
    try:
        rs = load_ruleset(None, reg, pack_versions=s.rules.standard_pack_versions or None)
    except RuleFileError as exc:
        raise fail(str(exc)) from None
    out: dict[str, dict[str, Any]] = {}
    for p in reg:
        if p.is_gas and all(x is None for x in (p.ll, p.l, p.h, p.hh)):
            ths = rs.thresholds_for(p.key)
            if ths:
                out[p.key] = {
                    "unit": p.unit,
                    "levels": {str(t.level): t.value for t in ths},
                    "pack": ", ".join(sorted({f"{t.pack}@{t.pack_version}" for t in ths})),
                }
    return out


@ingest_app.command("decode")
def ingest_decode(
    payload: Annotated[str, typer.Argument(help="Payload file, or - for stdin.")],
    topic: Annotated[
        str, typer.Option("--topic", "-t", help="MQTT topic it came on, e.g. hw/QJ001/GW01/data.")
    ],
    registry: RegistryOpt = None,
    fmt: Annotated[
        str, typer.Option("--format", help="Payload format (auto, canonical, provincial, ...).")
    ] = "auto",
    received: Annotated[
        str | None,
        typer.Option("--received", help="Receive time (ISO 8601 or epoch ms; default now)."),
    ] = None,
) -> None:
    """Show what ingest makes of one payload: the readings (in the points' units) and every
    dead letter with its reason. Exit 1 if anything was rejected."""
    from ingest.decode import decoder_names
    from ingest.model import iso_ms
    from ingest.normalize import NormalizeConfig, Normalizer

    reg = _load_registry(registry)
    data = sys.stdin.buffer.read() if payload == "-" else _read(Path(payload))
    if fmt not in decoder_names():
        raise fail(f"unknown --format {fmt!r}", hint=f"one of {', '.join(decoder_names())}")
    prefix = topic.split("/", 1)[0] if "/" in topic else settings().mqtt.topic_prefix
    cfg = NormalizeConfig(
        topic_prefix=prefix, decoder=fmt, max_payload_bytes=settings().mqtt.max_payload_bytes
    )
    now = _parse_ms(received) if received else time.time_ns() // 1_000_000
    res = Normalizer(reg, cfg).normalize(topic, data, now)
    for r in res.readings:
        row = {
            "ts": iso_ms(r.ts_ms),
            "enterprise_code": r.enterprise_code,
            "tag": r.tag,
            "value": None if r.value != r.value else r.value,
            "unit": r.unit,
            "quality": r.quality,
            "backfill": r.backfill,
        }
        if r.event_type is not None:
            row |= {"event_type": r.event_type, "text": r.text}
        typer.echo(json.dumps(row, ensure_ascii=False))
    for dl in res.rejects:
        where = f" [{dl.index}]" if dl.index is not None else ""
        typer.secho(f"rejected{where}: {dl.reason}: {dl.detail}", err=True, fg=typer.colors.RED)
    typer.echo(
        f"{len(res.readings)} reading(s), {len(res.rejects)} rejected, "
        f"{res.duplicates} duplicate(s)",
        err=True,
    )
    if res.rejects:
        raise typer.Exit(1)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None


def _parse_ms(s: str) -> int:
    if s.isdigit():
        return int(s)
    from ingest.decode import parse_iso_ms

    try:
        return parse_iso_ms(s)
    except ValueError as exc:
        raise fail(f"--received: {exc}") from None


@ingest_app.command("deadletters")
def ingest_deadletters(
    count: Annotated[
        int, typer.Option("--count", "-n", help="Stop after this many (0 = until Ctrl-C).")
    ] = 0,
    timeout: Annotated[
        float, typer.Option(help="Give up after this many seconds (0 = never).")
    ] = 0.0,
) -> None:
    """Print dead letters from the MQTT dead-letter topic as they come, one JSON per line."""
    import threading

    from hazardwatch.wiring import mqtt_config
    from ingest.codec import CodecError, decode_dead_letter
    from ingest.model import iso_ms
    from ingest.mqtt import MqttSource

    s = settings()
    # Its own client id: a watcher must not take over the ingest session.
    cfg = mqtt_config(s, client_id=f"{s.mqtt.client_id}-deadletters-{time.time_ns() % 10**6}")
    done = threading.Event()
    seen = [0]

    def show(topic: str, payload: bytes, received_ms: int) -> None:
        try:
            dl = decode_dead_letter(payload)
        except CodecError as exc:
            typer.echo(json.dumps({"error": str(exc)}))
        else:
            typer.echo(
                json.dumps(
                    {
                        "received": iso_ms(dl.received_ms),
                        "reason": str(dl.reason),
                        "detail": dl.detail,
                        "topic": dl.topic,
                        "index": dl.index,
                        "payload": dl.payload.decode("utf-8", "replace")[:500],
                    },
                    ensure_ascii=False,
                )
            )
        seen[0] += 1
        if count and seen[0] >= count:
            done.set()

    src = MqttSource(cfg, show, filters=[cfg.dead_letter_topic])
    src.start()
    try:
        done.wait(timeout or None)
    except KeyboardInterrupt:
        pass
    finally:
        src.stop()
    if count and seen[0] < count:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
    app.add_typer(ingest_app, name="ingest")
