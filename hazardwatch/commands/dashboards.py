"""Dashboards and report commands: `dashboards build` (deterministic JSON from the registry
and the rules), `dashboards push` (to Grafana, idempotent) and `report daily` (the duty
officers' HTML + PDF report from InfluxDB and the alert store)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch.cli import fail, settings

dashboards_app = typer.Typer(help="Grafana dashboards as code.", no_args_is_help=True)
report_app = typer.Typer(help="Reports for duty officers.", no_args_is_help=True)

RegistryOpt = Annotated[
    Path | None,
    typer.Option("--registry", "-r", help="Point registry CSV/YAML (default: rules.registry)."),
]
RulesOpt = Annotated[
    Path | None,
    typer.Option(
        "--rules",
        help="Directory of rule files (default: rules.rules_dir; the standard packs always apply).",
    ),
]


def _registry(path: Path | None):
    from ingest.registry import RegistryError, load_registry

    path = path or settings().rules.registry
    if path is None:
        raise fail(
            "no point registry given",
            hint="pass --registry FILE or set rules.registry in hazardwatch.toml",
        )
    try:
        return load_registry(path)
    except RegistryError as exc:
        raise fail(str(exc)) from None


def _ruleset(rules_dir: Path | None, registry):
    from rules.loader import RuleFileError, load_ruleset

    s = settings()
    try:
        return load_ruleset(
            rules_dir or s.rules.rules_dir,
            registry,
            pack_versions=s.rules.standard_pack_versions or None,
        )
    except RuleFileError as exc:
        raise fail(str(exc), hint="`hazardwatch rules check` lists the same problems") from None


def _build(registry_path: Path | None, rules_dir: Path | None):
    from dashboards.generate import GenerateError, build_all
    from dashboards.validate import validate

    registry = _registry(registry_path)
    try:
        generated = build_all(registry, _ruleset(rules_dir, registry))
    except GenerateError as exc:
        raise fail(str(exc)) from None
    problems = [p for g in generated for p in validate(g.model)]
    if problems:
        raise fail(
            "generated dashboards do not match the Grafana 11 schema:\n  " + "\n  ".join(problems),
            code=1,
        )
    return generated


@dashboards_app.command("build")
def build(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Directory for the JSON files (one sub-directory per folder)."
        ),
    ],
    registry: RegistryOpt = None,
    rules: RulesOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if any file in --out differs.")
    ] = False,
) -> None:
    """Generate every dashboard (deterministic, sorted JSON)."""
    from dashboards.generate import dumps

    generated = _build(registry, rules)
    differ = []
    for g in generated:
        path = out / g.path
        text = dumps(g.model)
        old = path.read_text(encoding="utf-8") if path.is_file() else None
        if old == text:
            continue
        differ.append(g.path)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check:
        if differ:
            typer.echo("differs: " + ", ".join(differ))
            raise typer.Exit(1)
        typer.echo(f"{len(generated)} dashboards up to date in {out}")
        return
    typer.echo(
        f"{len(generated)} dashboards in {out} ({len(differ)} written, "
        f"{len(generated) - len(differ)} unchanged)"
    )


@dashboards_app.command("push")
def push_cmd(
    registry: RegistryOpt = None,
    rules: RulesOpt = None,
    url: Annotated[
        str | None, typer.Option("--url", help="Grafana URL (default: grafana.url).")
    ] = None,
) -> None:
    """Create or update the datasource, a folder per area and every dashboard in Grafana
    (token from grafana.token, never printed; a second run changes nothing)."""
    from dashboards.push import InfluxSource, PushError, connect, push

    s = settings()
    generated = _build(registry, rules)
    token = s.grafana.token.get_secret_value() if s.grafana.token else ""
    influx_token = s.influx.token.get_secret_value() if s.influx.token else ""
    source = InfluxSource(s.influx.url, s.influx.org, s.influx.bucket, influx_token)
    try:
        report = push(connect(url or s.grafana.url, token), generated, source)
    except PushError as exc:
        msg = str(exc)
        for secret in (token, influx_token):
            if secret:
                msg = msg.replace(secret, "********")
        raise fail(
            msg,
            hint="check grafana.url and grafana.token (a service-account token "
            "with the Editor role)",
        ) from None
    for action, kind, name in report.actions:
        if action != "unchanged":
            typer.echo(f"{action} {kind} {name}")
    typer.echo(f"{report.changed} change(s), {len(report.actions) - report.changed} unchanged")


@report_app.command("daily")
def report_daily(
    day: Annotated[str, typer.Option("--date", "-d", help="Day to report (YYYY-MM-DD).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for the HTML and PDF.")],
    registry: RegistryOpt = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="Alert store (SQLite) for overdue dispositions and handling times."
        ),
    ] = None,
    district: Annotated[
        str | None, typer.Option("--district", help="Only this district (default: city-wide).")
    ] = None,
    utc_offset: Annotated[
        float,
        typer.Option(
            "--utc-offset",
            help="Hours from UTC of the day's midnight (default 8: Beijing time, the duty "
            "officers' day).",
        ),
    ] = 8.0,
) -> None:
    """The district duty officers' daily report as HTML and PDF, with charts."""
    from dashboards.influx import Influx, InfluxConfig, InfluxError
    from dashboards.report import collect
    from dashboards.report_render import ReportError, render

    try:
        the_day = date.fromisoformat(day)
    except ValueError:
        raise fail(
            f"--date: {day!r} is not a date", hint="use YYYY-MM-DD, e.g. 2026-11-28"
        ) from None
    s = settings()
    if not s.influx.url:
        raise fail(
            "no InfluxDB configured (influx.url)",
            hint="the report reads alarms, warnings and online rates from InfluxDB",
        )
    reg = _registry(registry)
    if district and district not in {p.district for p in reg}:
        raise fail(
            f"--district: {district!r} is not a district of the registry",
            hint="districts: " + ", ".join(sorted({p.district for p in reg})),
        )
    store = None
    if db is not None:
        if not db.is_file():
            raise fail(f"--db: alert store not found: {db}")
        from alerts.store import AlertStore

        store = AlertStore(db)
    cfg = InfluxConfig(
        s.influx.url,
        s.influx.token.get_secret_value() if s.influx.token else "",
        s.influx.org,
        s.influx.bucket,
    )
    try:
        with Influx(cfg) as influx:
            rep = collect(
                influx, reg, the_day, district=district, store=store, utc_offset_h=utc_offset
            )
        html_path, pdf_path = render(rep, out)
    except (InfluxError, ReportError) as exc:
        raise fail(str(exc)) from None
    finally:
        if store is not None:
            store.close()
    typer.echo(f"wrote {html_path}")
    typer.echo(f"wrote {pdf_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(dashboards_app, name="dashboards")
    app.add_typer(report_app, name="report")
