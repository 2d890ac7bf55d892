"""Rich rendering of a detection score: one row per injected incident (detected or missed, by
which alarm, after how long) and the false alarms. Shared by `hazardwatch sim score`,
`hazardwatch simulate --score` and the demo's final report."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from hazardwatch.sim.scoring import Score, subject
from ingest.model import iso_ms


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def score_table(score: Score, *, max_false: int = 20) -> Group:
    """The incidents table, the false alarms (first `max_false`) and a summary line."""
    # Six columns fit an 80-column terminal; "missing" (expected alarms that never came)
    # only appears when something is.
    absent = any(r.missing for r in score.results)
    table = Table(title="Injected incidents vs alarms", title_justify="left")
    table.add_column("incident", no_wrap=True)
    table.add_column("kind", overflow="fold")
    table.add_column("where", overflow="fold")
    table.add_column("start UTC", no_wrap=True)
    table.add_column("detected", no_wrap=True, justify="right")
    table.add_column("first alarm", overflow="fold")
    if absent:
        table.add_column("missing", overflow="fold")
    for r in score.results:
        inc = r.incident
        by = r.detected_by
        row = [
            inc.id,
            str(inc.kind),
            f"{inc.enterprise_code} {subject(inc)}",
            iso_ms(inc.start_ms)[5:16].replace("T", " "),
            f"[green]{_dur(r.time_to_detect_s)}[/]" if r.detected else "[bold red]MISSED[/]",
            "-" if by is None else f"{by.kind}{'/' + str(by.level) if by.level else ''} {by.tag}",
        ]
        if absent:
            row.append(", ".join(f"{e.kind}{'/' + e.level if e.level else ''}" for e in r.missing))
        table.add_row(*row)
    parts: list = [table]
    if score.false_alarms:
        ft = Table(
            title="False alarms (not explained by any injected incident)", title_justify="left"
        )
        for col in (
            "time (UTC)",
            "enterprise",
            "tag",
            "kind",
            "level",
            "value",
            "threshold",
            "rule",
        ):
            ft.add_column(col)
        for a in score.false_alarms[:max_false]:
            ft.add_row(
                iso_ms(a.ts_ms)[:19].replace("T", " "),
                a.enterprise_code,
                a.tag,
                str(a.kind),
                str(a.level or "-"),
                "-" if a.value is None else f"{a.value:g}",
                "-" if a.threshold is None else f"{a.threshold:g}",
                a.rule,
            )
        if len(score.false_alarms) > max_false:
            ft.caption = f"... and {len(score.false_alarms) - max_false} more"
        parts.append(ft)
    rate = score.false_per_1000_point_days
    colour = "green" if score.all_detected else "red"
    summary = Text.from_markup(
        f"[{colour}]{score.detected}/{len(score.results)} incidents detected[/], "
        f"{score.missed} missed; {len(score.false_alarms)} false alarm(s)"
        + (f" = {rate:.3g} per 1,000 point-days" if rate is not None else "")
        + (f" over {score.point_days:,.0f} point-days" if score.point_days else "")
        + f"; {score.episodes} alarm episodes in all"
    )
    ttd = [r.time_to_detect_s for r in score.results if r.time_to_detect_s is not None]
    if ttd:
        ttd.sort()
        summary.append(f"\ntime to detect: median {_dur(ttd[len(ttd) // 2])}, max {_dur(ttd[-1])}")
    parts.append(summary)
    return Group(*parts)
