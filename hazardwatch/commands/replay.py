"""CLI for replay and backtests: `hazardwatch replay` (history in, alarm events and an
ISA-18.2 summary out), `hazardwatch rules diff` (two rule sets on the same history, non-zero
exit on regressions) and `hazardwatch rules test` (sidecar rule tests).

Heavy imports stay inside the commands. Errors are one line plus a hint (exit 2); a diff with
regressions or a failing rule test exits 1.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from hazardwatch.cli import fail, settings

# rules-engine's group: `rules test` and `rules diff` join its `check` and `schema`.
from hazardwatch.commands.rules import rules_app

DEFAULTS_ONLY = "@defaults"

RegistryOpt = Annotated[
    Path | None,
    typer.Option(
        "--registry", "-r", help="Point registry (CSV/YAML); default: rules.registry from settings."
    ),
]
PackOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--pack",
        help="Standard pack version, NAME=VERSION (e.g. gbt50493=2019-amend1); repeatable.",
    ),
]


# --------------------------------------------------------------------------- shared helpers


def _registry(path: Path | None):
    from ingest.registry import RegistryError, load_registry

    if path is None:
        path = settings().rules.registry
        if path is None:
            raise fail(
                "no point registry given",
                hint="pass --registry FILE or set rules.registry in hazardwatch.toml",
            )
    try:
        return load_registry(path)
    except RegistryError as exc:
        typer.echo(str(exc), err=True)
        raise fail(
            f"the point registry {path} has {len(exc.problems)} problem(s)",
            hint="`hazardwatch registry check FILE` lists them",
        ) from None


def _packs(specs: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for s in specs or []:
        name, sep, version = s.partition("=")
        if not sep or not name.strip() or not version.strip():
            raise fail(
                f"--pack {s!r}: expected NAME=VERSION", hint="e.g. --pack gbt50493=2019-amend1"
            )
        out[name.strip()] = version.strip()
    return out


def _ruleset(rules: str | Path | None, registry, packs: dict[str, str], what: str = "rules"):
    """Load a rule set from a directory, a single rule file, or `@defaults` (packs only)."""
    from rules.loader import RuleFileError, load_ruleset

    rules_dir: Path | None = None
    tmp: tempfile.TemporaryDirectory | None = None
    if rules is not None and str(rules) != DEFAULTS_ONLY:
        p = Path(rules)
        if p.is_file():
            # One rule file: load it alone, as the only file of a directory.
            tmp = tempfile.TemporaryDirectory(prefix="hw-rules-")
            rules_dir = Path(tmp.name)
            (rules_dir / p.name).write_bytes(p.read_bytes())
        elif p.is_dir():
            rules_dir = p
        else:
            raise fail(
                f"{what}: {p} is neither a rules directory nor a rule file",
                hint=f"give a directory of *.rules.yaml files, a file, or {DEFAULTS_ONLY}",
            )
    try:
        return load_ruleset(rules_dir, registry, pack_versions=packs or None)
    except RuleFileError as exc:
        for prob in exc.problems:
            # Name the user's file, not the temporary copy that was loaded.
            text = str(prob)
            if tmp is not None and rules_dir is not None:
                text = text.replace(str(rules_dir / Path(str(rules)).name), str(rules))
            typer.echo(text, err=True)
        raise fail(
            f"{what} {rules}: {len(exc.problems)} problem(s) in rule files",
            hint="`hazardwatch rules check` explains each",
        ) from None
    finally:
        if tmp is not None:
            tmp.cleanup()


def _parse_time(s: str, opt: str) -> int:
    from rules.replay import ReplayInputError, _RowError, parse_ts

    try:
        return parse_ts(s)
    except (_RowError, ReplayInputError) as exc:
        raise fail(
            f"{opt}: {str(exc).removeprefix('ts: ')}",
            hint="e.g. 2026-11-29T08:00:00+08:00 or epoch milliseconds",
        ) from None


def _read_input(
    readings: Path | None,
    registry,
    from_influx: bool,
    start: str | None,
    stop: str | None,
    enterprise: str | None,
):
    """The history and the replay window (--start/--stop; None = the data's own span)."""
    from rules.replay import ReplayInputError, read_influx, read_readings

    if (readings is None) == (not from_influx):
        raise fail(
            "give exactly one input: --readings FILE or --from-influx",
            hint="--from-influx reads the `reading` measurement between --start and "
            "--stop from the InfluxDB in settings",
        )
    t0 = _parse_time(start, "--start") if start else None
    t1 = _parse_time(stop, "--stop") if stop else None
    if t0 is not None and t1 is not None and t1 <= t0:
        raise fail(f"--stop ({stop}) must be after --start ({start})")
    try:
        if readings is not None:
            return read_readings(readings, registry), t0, t1
        if t0 is None or t1 is None:
            raise fail("--from-influx needs --start and --stop")
        s = settings()
        if not s.influx.url:
            raise fail(
                "no InfluxDB configured",
                hint="set influx.url and influx.token (HW_INFLUX__URL, HW_INFLUX__TOKEN)",
            )
        token = s.influx.token.get_secret_value() if s.influx.token else ""
        inp = read_influx(
            url=s.influx.url,
            token=token,
            org=s.influx.org,
            bucket=s.influx.bucket,
            registry=registry,
            start_ms=t0,
            stop_ms=t1,
            enterprise=enterprise,
        )
        return inp, t0, t1
    except ReplayInputError as exc:
        raise fail(str(exc)) from None


def _report_bad_rows(inp, show: int) -> None:
    if not inp.bad_row_count:
        return
    typer.secho(
        f"warning: {inp.bad_row_count} bad row(s) in {inp.source} were skipped:",
        err=True,
        fg=typer.colors.YELLOW,
    )
    for b in inp.bad_rows[:show]:
        typer.echo(f"  {inp.source}:{b}", err=True)
    if inp.bad_row_count > show:
        typer.echo(f"  ... and {inp.bad_row_count - show} more", err=True)


def _run(registry, ruleset, inp, warning_cfg, quiet: bool, t0=None, t1=None):
    from rules.replay import run_replay
    from rules.warnings import WarningModel

    wm = WarningModel(warning_cfg, registry) if warning_cfg is not None else None
    n = len(inp.readings)
    if quiet or n < 200_000 or not sys.stderr.isatty():
        return run_replay(registry, ruleset, inp.readings, warning_model=wm, start_ms=t0, end_ms=t1)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as prog:
        task = prog.add_task("replaying", total=n)
        return run_replay(
            registry,
            ruleset,
            inp.readings,
            warning_model=wm,
            start_ms=t0,
            end_ms=t1,
            progress=lambda k: prog.advance(task, k),
        )


def _dur(ms: float) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


# --------------------------------------------------------------------------- replay


def summary_dict(result, inp) -> dict[str, Any]:
    """The replay summary as plain data (`--json-summary`)."""
    from ingest.model import iso_ms

    k = result.summary
    return {
        "input": {
            "source": inp.source,
            "readings": result.readings,
            "bad_rows": inp.bad_row_count,
            "start": iso_ms(result.start_ms),
            "end": iso_ms(result.end_ms),
        },
        "alarms": {
            "events": len(result.alarms),
            "firing": k.annunciations,
            "episodes": len(k.episodes),
            "by_rule": k.by_rule,
            "by_point": k.by_point,
            "by_level": k.by_level,
            "by_kind": k.by_kind,
        },
        "time_in_alarm_s": {p: ms / 1000 for p, ms in k.time_in_alarm_by_point.items()},
        "isa18": {
            "rates": [
                {
                    "enterprise": r.enterprise_code,
                    "alarms": r.alarms,
                    "avg_per_10min": round(r.average_per_10min, 3),
                    "peak_per_10min": r.peak_per_10min,
                    "pct_intervals_over_flood": round(r.pct_intervals_over_flood, 2),
                }
                for r in k.rates
            ],
            "flood_episodes": [
                {
                    "enterprise": f.enterprise_code,
                    "start": iso_ms(f.start_ms),
                    "end": iso_ms(f.end_ms),
                    "alarms": f.alarms,
                    "peak_in_window": f.peak_in_window,
                }
                for f in k.floods
            ],
            "chattering": [
                {
                    "source": str(c.source),
                    "max_in_60s": c.max_in_window,
                    "annunciations": c.annunciations,
                }
                for c in k.chattering
            ],
            "fleeting": len(k.fleeting),
            "stale": len(k.stale),
            "bad_actors": [
                {
                    "source": str(b.source),
                    "annunciations": b.annunciations,
                    "share_pct": round(b.share_pct, 2),
                    "time_in_alarm_s": b.time_in_alarm_ms / 1000,
                }
                for b in k.bad_actors
            ],
        },
        "risk": [
            {
                "enterprise": r.enterprise_code,
                "colour": r.colour.value if r.colour else None,
                "score": r.score,
                "reasons": list(r.reasons),
            }
            for r in result.risk
        ],
        "warnings": {
            "events": len(result.warnings),
            "raised": sum(1 for w in result.warnings if w.state == "raised"),
            # the highest colour each warning reached
            "by_colour": _count(_final_colours(result.warnings).values()),
        },
    }


def _final_colours(warnings) -> dict[str, str]:
    """warning_id -> the highest colour it reached (colours only rise while open)."""
    out: dict[str, str] = {}
    for w in warnings:
        if w.state != "closed":
            out[w.warning_id] = str(w.colour)
    return out


def _count(it) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in it:
        out[x] = out.get(x, 0) + 1
    return out


def _print_summary(result, inp, top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from ingest.model import iso_ms
    from rules.model import Colour

    con = Console(width=120)
    k = result.summary
    con.print(
        f"[bold]Replay[/] {inp.source}: {result.readings} readings "
        f"({inp.bad_row_count} bad rows skipped) from {iso_ms(result.start_ms)} to "
        f"{iso_ms(result.end_ms)} ({_dur(result.end_ms - result.start_ms)})"
    )
    con.print(
        f"alarm events: {len(result.alarms)} ({k.annunciations} firing, "
        f"{len(k.episodes)} episodes); warning events: {len(result.warnings)}"
    )
    if not result.alarms:
        con.print("[green]no alarms[/]")
        return

    def table(title: str, *cols: str) -> Table:
        t = Table(title=title, title_justify="left", show_edge=False)
        for i, c in enumerate(cols):
            t.add_column(c, justify="right" if i else "left")
        return t

    t = table("Alarms per rule", "rule", "firing")
    for rule, n in list(k.by_rule.items())[:top]:
        t.add_row(rule, str(n))
    con.print(t)
    t = table("Alarms per level", "level", "firing")
    for lv, n in k.by_level.items():
        t.add_row(lv, str(n))
    con.print(t)
    t = table("Alarms per point (time in alarm)", "point", "firing", "time in alarm")
    for p, n in list(k.by_point.items())[:top]:
        t.add_row(p, str(n), _dur(k.time_in_alarm_by_point.get(p, 0)))
    con.print(t)
    t = table(
        "ISA-18.2 per operator area",
        "enterprise",
        "alarms",
        "avg/10 min",
        "peak/10 min",
        "% intervals > 10",
        "floods",
        "chattering",
    )
    for r in k.rates:
        floods = sum(1 for f in k.floods if f.enterprise_code == r.enterprise_code)
        chat = sum(1 for c in k.chattering if c.source.enterprise_code == r.enterprise_code)
        t.add_row(
            r.enterprise_code,
            str(r.alarms),
            f"{r.average_per_10min:.2f}",
            str(r.peak_per_10min),
            f"{r.pct_intervals_over_flood:.1f}",
            str(floods),
            str(chat),
        )
    con.print(t)
    if k.floods:
        t = table("Flood episodes", "enterprise", "start", "end", "alarms", "peak/10 min")
        for f in k.floods[:top]:
            t.add_row(
                f.enterprise_code,
                iso_ms(f.start_ms),
                iso_ms(f.end_ms),
                str(f.alarms),
                str(f.peak_in_window),
            )
        con.print(t)
    if k.chattering:
        t = table("Chattering (>= 3 in 60 s)", "alarm", "max in 60 s", "annunciations")
        for c in k.chattering[:top]:
            t.add_row(str(c.source), str(c.max_in_window), str(c.annunciations))
        con.print(t)
    t = table("Top bad actors", "alarm", "annunciations", "share", "time in alarm")
    for b in k.bad_actors[:top]:
        t.add_row(
            str(b.source), str(b.annunciations), f"{b.share_pct:.1f} %", _dur(b.time_in_alarm_ms)
        )
    con.print(t)
    con.print(
        f"fleeting (< 5 s): {len(k.fleeting)}; stale (> 24 h): {len(k.stale)}; "
        f"total time in alarm: {_dur(k.time_in_alarm_ms)}"
    )
    if result.warnings:
        finals = _final_colours(result.warnings)
        by = _count(f"{Colour(c).zh}/{c}" for c in finals.values())
        con.print(
            f"warnings: {len(finals)} raised, highest colour reached: "
            + ", ".join(f"{c} {n}" for c, n in by.items())
        )
    if result.risk:
        t = Table(title="Enterprise dynamic risk at the end", title_justify="left", show_edge=False)
        t.add_column("enterprise")
        t.add_column("risk")
        t.add_column("score", justify="right")
        t.add_column("why")
        for r in result.risk[:top]:
            colour = f"{r.colour.zh}/{r.colour.value}" if r.colour else "-"
            t.add_row(r.enterprise_code, colour, f"{r.score:.1f}", "; ".join(r.reasons))
        con.print(t)


def replay(
    out: Annotated[Path, typer.Option("--out", "-o", help="Alarm events as JSON lines.")],
    registry: RegistryOpt = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="Rules directory (default: the standard packs only)."),
    ] = None,
    readings: Annotated[
        Path | None,
        typer.Option(
            "--readings",
            help="History: CSV (ts,enterprise_code,tag,value[,unit,quality]) or JSON lines.",
        ),
    ] = None,
    from_influx: Annotated[
        bool,
        typer.Option(
            "--from-influx",
            help="Read the history from the `reading` measurement of the configured InfluxDB.",
        ),
    ] = False,
    start: Annotated[
        str | None,
        typer.Option(
            help="First instant of the replay (offline "
            "timers start here); needed with --from-influx."
        ),
    ] = None,
    stop: Annotated[
        str | None,
        typer.Option(help="Last instant (timers run to here); needed with --from-influx."),
    ] = None,
    enterprise: Annotated[
        str | None, typer.Option(help="With --from-influx: only this enterprise.")
    ] = None,
    warnings_out: Annotated[
        Path | None, typer.Option("--warnings-out", help="Warning events as JSON lines.")
    ] = None,
    json_summary: Annotated[
        bool, typer.Option("--json-summary", help="Print the summary as JSON instead of tables.")
    ] = False,
    pack: PackOpt = None,
    top: Annotated[int, typer.Option(help="Rows in the per-rule/point/bad-actor tables.")] = 10,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when the input has bad rows.")
    ] = False,
) -> None:
    """Replay history through the rules: alarm events out, with an ISA-18.2 summary."""
    from rules.replay import write_jsonl
    from rules.warnings import WarningConfigError, load_warning_config

    reg = _registry(registry)
    rs = _ruleset(rules, reg, _packs(pack))
    try:
        wcfg = load_warning_config(rules if rules is not None and Path(rules).is_dir() else None)
    except WarningConfigError as exc:
        raise fail(str(exc)) from None
    inp, t0, t1 = _read_input(readings, reg, from_influx, start, stop, enterprise)
    _report_bad_rows(inp, 20)
    if not inp.readings:
        raise fail(f"{inp.source}: no usable readings", hint="check the bad rows above")
    result = _run(reg, rs, inp, wcfg, quiet=json_summary, t0=t0, t1=t1)
    try:
        write_jsonl(out, (a.to_record() for a in result.alarms))
        if warnings_out is not None:
            write_jsonl(warnings_out, (w.to_record() for w in result.warnings))
    except OSError as exc:
        raise fail(f"cannot write {exc.filename}: {exc.strerror}") from None
    if json_summary:
        typer.echo(json.dumps(summary_dict(result, inp), indent=2, ensure_ascii=False))
    else:
        _print_summary(result, inp, top)
        typer.echo(
            f"wrote {len(result.alarms)} alarm events to {out}"
            + (
                f" and {len(result.warnings)} warning events to {warnings_out}"
                if warnings_out is not None
                else ""
            )
        )
    if strict and inp.bad_row_count:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- rules diff


def _diff_dict(d, regs: list[str]) -> dict[str, Any]:
    from ingest.model import iso_ms
    from rules.diff import key_of

    def t(ms):
        return None if ms is None else iso_ms(ms)

    return {
        "identical": d.identical,
        "unchanged": d.unchanged,
        "added": [{"alarm": str(key_of(e)), "ts": t(e.ts_ms), "rule": e.rule} for e in d.added],
        "removed": [{"alarm": str(key_of(e)), "ts": t(e.ts_ms), "rule": e.rule} for e in d.removed],
        "shifted": [
            {
                "alarm": str(s.key),
                "old": t(s.old_ms),
                "new": t(s.new_ms),
                "delta_s": s.delta_ms / 1000,
            }
            for s in d.shifted
        ],
        "first_alarm": [
            {
                "alarm": str(s.key),
                "old": t(s.old_ms),
                "new": t(s.new_ms),
                "delta_s": None if s.delta_ms is None else s.delta_ms / 1000,
            }
            for s in d.first_alarm
        ],
        "kpi": {"old": d.kpi_old.figures(), "new": d.kpi_new.figures()},
        "regressions": regs,
    }


def _print_diff(d, old: str, new: str, regs: list[str], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from ingest.model import iso_ms
    from rules.diff import key_of

    con = Console(width=120)
    con.print(
        f"[bold]rules diff[/] {old} -> {new}: {len(d.added)} added, {len(d.removed)} "
        f"removed, {len(d.shifted)} shifted, {d.unchanged} unchanged alarm firings"
    )

    def table(title: str, *cols: str) -> Table:
        t = Table(title=title, title_justify="left", show_edge=False)
        for c in cols:
            t.add_column(c)
        return t

    if d.added:
        t = table("Added (only NEW fires them)", "alarm", "at", "rule")
        for e in d.added[:top]:
            t.add_row(str(key_of(e)), iso_ms(e.ts_ms), e.rule)
        if len(d.added) > top:
            t.add_row(f"... {len(d.added) - top} more", "", "")
        con.print(t)
    if d.removed:
        t = table("Removed (only OLD fires them)", "alarm", "at", "rule")
        for e in d.removed[:top]:
            t.add_row(str(key_of(e)), iso_ms(e.ts_ms), e.rule)
        if len(d.removed) > top:
            t.add_row(f"... {len(d.removed) - top} more", "", "")
        con.print(t)
    if d.shifted:
        t = table("Shifted firings", "alarm", "old", "new", "shift")
        for s in d.shifted[:top]:
            t.add_row(str(s.key), iso_ms(s.old_ms), iso_ms(s.new_ms), f"{s.delta_ms / 1000:+g} s")
        if len(d.shifted) > top:
            t.add_row(f"... {len(d.shifted) - top} more", "", "", "")
        con.print(t)
    if d.first_alarm:
        t = table("First alarm per point", "alarm", "old", "new", "shift")
        for s in d.first_alarm[:top]:
            shift = (
                "only old"
                if s.new_ms is None
                else "only new"
                if s.old_ms is None
                else (f"{s.delta_ms / 1000:+g} s")
            )
            t.add_row(
                str(s.key),
                iso_ms(s.old_ms) if s.old_ms else "-",
                iso_ms(s.new_ms) if s.new_ms else "-",
                shift,
            )
        con.print(t)
    t = table("ISA-18.2 figures", "figure", "old", "new", "change")
    fo, fn = d.kpi_old.figures(), d.kpi_new.figures()
    for name in fo:
        a, b = float(fo[name]), float(fn[name])
        t.add_row(name, f"{a:g}", f"{b:g}", "" if a == b else f"{b - a:+g}")
    con.print(t)
    if regs:
        con.print(f"[bold red]{len(regs)} regression(s):[/]")
        for r in regs:
            con.print(f"  {r}")
    else:
        con.print("[green]no regressions[/]")


def rules_diff(
    old: Annotated[str, typer.Argument(help=f"Old rules: a directory, a file or {DEFAULTS_ONLY}.")],
    new: Annotated[str, typer.Argument(help=f"New rules: a directory, a file or {DEFAULTS_ONLY}.")],
    readings: Annotated[
        Path | None,
        typer.Option("--readings", help="History to run both on (CSV or JSON lines)."),
    ] = None,
    registry: RegistryOpt = None,
    from_influx: Annotated[
        bool,
        typer.Option(
            "--from-influx",
            help="Take the history from the configured "
            "InfluxDB (`reading` measurement) instead of a file.",
        ),
    ] = False,
    start: Annotated[
        str | None, typer.Option(help="First instant (needed with --from-influx).")
    ] = None,
    stop: Annotated[
        str | None, typer.Option(help="Last instant (needed with --from-influx).")
    ] = None,
    enterprise: Annotated[
        str | None, typer.Option(help="With --from-influx: only this enterprise.")
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help="Regressions that "
            "exit 1: removed, added, later:<s>, earlier:<s>, more:<figure>, none. "
            "Default: removed,later:60.",
        ),
    ] = None,
    match_window: Annotated[
        float,
        typer.Option(
            help="Seconds within which a firing of the "
            "same alarm in both runs counts as the same firing."
        ),
    ] = 600.0,
    old_pack: Annotated[
        list[str] | None, typer.Option("--old-pack", help="Pack version for OLD, NAME=VERSION.")
    ] = None,
    new_pack: Annotated[
        list[str] | None, typer.Option("--new-pack", help="Pack version for NEW, NAME=VERSION.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    top: Annotated[int, typer.Option(help="Rows per table.")] = 20,
) -> None:
    """Backtest OLD against NEW rules on the same history; exit 1 on regressions.

    Shows alarms added and removed, shifted firings, first-alarm shifts and ISA-18.2 figure
    changes. Use it in CI when a rule file changes.
    """
    from rules.diff import DEFAULT_FAIL_ON, FailOnError, diff_alarms, parse_fail_on, regressions
    from rules.replay import run_replay

    try:
        fo = parse_fail_on(fail_on or list(DEFAULT_FAIL_ON))
    except FailOnError as exc:
        raise fail(str(exc)) from None
    reg = _registry(registry)
    rs_old = _ruleset(old, reg, _packs(old_pack), "OLD")
    rs_new = _ruleset(new, reg, _packs(new_pack), "NEW")
    inp, t0, t1 = _read_input(readings, reg, from_influx, start, stop, enterprise)
    _report_bad_rows(inp, 20)
    if not inp.readings:
        raise fail(f"{inp.source}: no usable readings", hint="check the bad rows above")
    r_old = run_replay(reg, rs_old, inp.readings, warning_model=None, start_ms=t0, end_ms=t1)
    r_new = run_replay(reg, rs_new, inp.readings, warning_model=None, start_ms=t0, end_ms=t1)
    d = diff_alarms(
        r_old.alarms,
        r_new.alarms,
        match_window_s=match_window,
        start_ms=r_old.start_ms,
        end_ms=r_old.end_ms,
    )
    regs = regressions(d, fo)
    if as_json:
        typer.echo(json.dumps(_diff_dict(d, regs), indent=2, ensure_ascii=False))
    else:
        _print_diff(d, old, new, regs, top)
    if regs:
        raise typer.Exit(1)


# --------------------------------------------------------------------------- rules test


def rules_test(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Sidecar files or directories "
            "to search for *.rules_test.yaml (default: the current directory)."
        ),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry", "-r", help="Registry for every test (default: each file's `registry:`)."
        ),
    ] = None,
) -> None:
    """Run sidecar rule tests (readings in, expected alarms out), like promtool test rules."""
    from rules.ruletest import discover, format_result, run_sidecar

    try:
        files = discover(paths or [Path(".")])
    except FileNotFoundError as exc:
        raise fail(str(exc)) from None
    if not files:
        where = ", ".join(str(p) for p in (paths or [Path(".")]))
        raise fail(
            f"no *.rules_test.yaml files under {where}",
            hint="put a <name>.rules_test.yaml beside your rule files",
        )
    reg = _registry(registry) if registry is not None else None
    n_cases = n_failed = n_bad_files = 0
    for f in files:
        res = run_sidecar(f, reg)
        for line in format_result(res):
            typer.echo(line)
        n_cases += len(res.cases)
        n_failed += sum(1 for c in res.cases if not c.passed)
        n_bad_files += bool(res.errors)
    verdict = "FAILED" if (n_failed or n_bad_files) else "SUCCESS"
    typer.echo(
        f"{verdict}: {n_cases - n_failed}/{n_cases} tests passed in {len(files)} "
        f"file(s)" + (f"; {n_bad_files} file(s) could not run" if n_bad_files else "")
    )
    if n_failed or n_bad_files:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replay", epilog=_REPLAY_EPILOG)(replay)
    rules_app.command("diff", epilog=_DIFF_EPILOG)(rules_diff)
    rules_app.command("test", epilog=_TEST_EPILOG)(rules_test)


# Shown under --help (click keeps these lines as written in a "\b" block).
_REPLAY_EPILOG = """\b
Example:
  hazardwatch replay -r registry.csv --rules rules/ --readings history.csv \\
      -o alarms.jsonl
Input CSV: ts,enterprise_code,tag,value[,unit,quality]
  ts: epoch ms or ISO 8601 with offset; no unit = the point's registered unit.
JSON lines carry the same fields.
"""
_DIFF_EPILOG = """\b
Example (CI, when a rule file changes):
  hazardwatch rules diff main-rules/ rules/ -r registry.csv \\
      --readings last-week.csv --fail-on removed,later:30
OLD/NEW: a rules directory, one rule file, or @defaults (the standard packs only).
"""
# The smallest useful sidecar, shown under `rules test --help` (a unit test runs it).
SIDECAR_EXAMPLE = """\
registry: ../registry.csv
tests:
  - name: NH3 first level
    interval: 10s
    input:
      - {tag: AT-1101, unit: ppm, values: "0 0 40x5 0"}  # 40x5 = 6 values
    expect:
      - {at: 20s, tag: AT-1101, kind: limit, level: L1, state: firing}
      - {at: 80s, tag: AT-1101, kind: limit, state: cleared}
"""
_TEST_EPILOG = "\b\nA sidecar file <name>.rules_test.yaml beside the rule files:\n" + "".join(
    f"  {line}\n" for line in SIDECAR_EXAMPLE.splitlines()
)
