"""Alerts commands: `route check` and `route test` (who would be told, through the same
routing code the service runs), `audit verify` and `audit export` (the hash-chained journal),
and `alerts outbox` (delivery state at a glance)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch.cli import fail, settings

route_app = typer.Typer(
    help="Check the routing file and see who would be told of an alarm.", no_args_is_help=True
)
audit_app = typer.Typer(help="Verify and export the audit journal.", no_args_is_help=True)
alerts_app = typer.Typer(help="Inspect the alert store.", no_args_is_help=True)

DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="Alert store (default: <storage.data_dir>/embedded-alerts.db)."),
]


def _db_path(db: Path | None) -> Path:
    if db is not None:
        path = db
    else:
        from hazardwatch.wiring import state_paths

        path = state_paths(settings())[1]
    if not path.is_file():
        raise fail(
            f"alert store not found: {path}",
            hint="pass --db PATH (the SQLite file of a `hazardwatch run`)",
        )
    return path


def _routing(path: Path):  # -> RoutingConfig (imported lazily)
    from alerts.routing import RoutingError, load_routing

    try:
        return load_routing(path)
    except RoutingError as exc:
        raise fail(str(exc), hint="see examples/routing.yaml for every key") from None


def _registry(path: Path):  # -> Registry (imported lazily)
    from ingest.registry import RegistryError, load_registry

    try:
        return load_registry(path)
    except RegistryError as exc:  # names the file and every bad line
        raise fail(str(exc)) from None


def _parse_time(value: str | None, option: str) -> int | None:
    if value is None:
        return None
    from ingest.model import datetime_to_ms

    try:
        return datetime_to_ms(datetime.fromisoformat(value))
    except ValueError as exc:
        raise fail(
            f"{option}: {value!r} is not an ISO 8601 time with an offset ({exc})",
            hint="e.g. 2026-11-29T08:00:00+08:00",
        ) from None


def register(app: typer.Typer) -> None:
    app.add_typer(route_app, name="route")
    app.add_typer(audit_app, name="audit")
    app.add_typer(alerts_app, name="alerts")


@route_app.command("check")
def route_check(
    routing: Annotated[Path, typer.Argument(help="Routing YAML file.")],
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry", help="Point registry: also list enterprises nobody is routed for."
        ),
    ] = None,
) -> None:
    """Validate a routing file (every problem at once); exit 2 when invalid."""
    cfg = _routing(routing)
    typer.echo(
        f"{routing}: ok ({len(cfg.enterprises)} enterprises, "
        f"{len(cfg.districts)} district/park offices)"
    )
    if registry is not None:
        reg = _registry(registry)
        missing = [e for e in reg.enterprises() if e not in cfg.enterprises]
        for e in missing:
            typer.echo(f"warning: enterprise {e} is in the registry but has no routing entry")


@route_app.command("test")
def route_test(
    routing: Annotated[Path, typer.Option("--routing", help="Routing YAML file.")],
    registry: Annotated[Path, typer.Option("--registry", help="Point registry CSV/YAML.")],
    enterprise: Annotated[str, typer.Option("--enterprise", help="Enterprise code.")],
    colour: Annotated[
        str | None,
        typer.Option(
            "--colour", help="blue|yellow|orange|red (or 蓝黄橙红); default: from --kind/--level."
        ),
    ] = None,
    hazard: Annotated[str, typer.Option("--hazard", help="Installation (hazard) code.")] = "",
    tier: Annotated[int, typer.Option("--tier", min=0, help="Escalation tier.")] = 0,
    kind: Annotated[
        str, typer.Option("--kind", help="Alarm kind (to derive the colour).")
    ] = "limit",
    level: Annotated[str | None, typer.Option("--level", help="Alarm level, e.g. L2, HH.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show who would be told of an alarm or warning, through the service's own routing."""
    from alerts.routing import ROLE_ZH, colour_at_tier, missing_roles, route, subject_for
    from rules.model import Colour

    cfg = _routing(routing)
    reg = _registry(registry)
    if not reg.enterprise(enterprise) and enterprise not in cfg.enterprises:
        raise fail(f"unknown enterprise {enterprise!r}: not in {registry} nor in {routing}")
    zh = {"蓝": "blue", "黄": "yellow", "橙": "orange", "红": "red"}
    if colour is None:
        c = cfg.alarm_colours.colour_of(kind, level)
    else:
        try:
            c = Colour(zh.get(colour, colour.lower()))
        except ValueError:
            raise fail(
                f"--colour: {colour!r} is not a colour",
                hint="blue, yellow, orange, red (蓝 黄 橙 红)",
            ) from None
    subject = subject_for(cfg, reg, enterprise, hazard)
    recips = route(cfg, subject, c, tier)
    step = colour_at_tier(c, tier)
    gaps = missing_roles(cfg, subject, c, tier)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "colour": str(c),
                    "tier": tier,
                    "routes_as": str(step),
                    "district": subject.district,
                    "recipients": [
                        {"role": r.role, "name": r.name, "channel": r.channel, "address": r.address}
                        for r in recips
                    ],
                    "platform": cfg.channels.platform,
                    "missing_roles": gaps,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(
        "role",
        "name",
        "channel",
        "address",
        title=f"{enterprise}{'/' + hazard if hazard else ''} {c.zh}({c}) tier {tier}"
        f" -> routes as {step.zh}({step}), district {subject.district or '-'}",
    )
    for r in recips:
        table.add_row(f"{ROLE_ZH.get(r.role, r.role)} ({r.role})", r.name, r.channel, r.address)
    if cfg.channels.platform:
        table.add_row("platform", "安全风险隐患管理平台", "platform", "(every transition)")
    Console(width=160).print(table)
    for g in gaps:
        typer.echo(
            f"warning: nobody holds the role {g} ({ROLE_ZH.get(g, g)}) for {enterprise}"
            f"{'/' + hazard if hazard else ''}"
        )


@audit_app.command("verify")
def audit_verify(db: DbOpt = None) -> None:
    """Recompute the journal's hash chain; exit 1 naming the first bad record."""
    from alerts.journal import Journal
    from alerts.store import AlertStore, StoreError

    path = _db_path(db)
    try:
        store = AlertStore(path)
    except StoreError as exc:
        raise fail(str(exc)) from None
    try:
        result = Journal(store).verify()
    finally:
        store.close()
    if not result.ok:
        typer.secho(
            f"FAILED: {path}: {result.reason} (first bad record: {result.first_bad_seq})",
            err=True,
            fg=typer.colors.RED,
        )
        raise typer.Exit(1)
    typer.echo(f"ok: {path}: {result.reason}")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", "-o", help="JSON-lines file to write.")],
    db: DbOpt = None,
    since: Annotated[str | None, typer.Option(help="From (ISO 8601 with offset).")] = None,
    until: Annotated[str | None, typer.Option(help="Until, exclusive (ISO 8601).")] = None,
) -> None:
    """Export journal records with their hashes (an inspector can re-verify the chain)."""
    from alerts.journal import Journal
    from alerts.store import AlertStore

    since_ms, until_ms = _parse_time(since, "--since"), _parse_time(until, "--until")
    store = AlertStore(_db_path(db))
    try:
        n = Journal(store).export(out, since_ms, until_ms)
    finally:
        store.close()
    typer.echo(f"wrote {n} journal records to {out}")


@alerts_app.command("outbox")
def alerts_outbox(db: DbOpt = None) -> None:
    """Count outbox notifications by channel and state (pending, delivered, dead, ...)."""
    from collections import Counter

    from rich.console import Console
    from rich.table import Table

    from alerts.store import AlertStore

    store = AlertStore(_db_path(db))
    try:
        counts = Counter((i.notification.channel, i.state) for i in store.list_outbox())
    finally:
        store.close()
    states = sorted({s for _, s in counts})
    table = Table("channel", *states)
    for ch in sorted({c for c, _ in counts}):
        table.add_row(ch, *[str(counts.get((ch, s), 0)) for s in states])
    Console().print(table)
