"""Backtest comparison of two rule sets on the same history: alarms added and removed, firing
time shifts (per episode and for the first alarm of each point), ISA-18.2 figure changes, and
the regressions a CI job should fail on. Pure functions over two lists of `AlarmEvent`s.

Alarms are matched by what an operator sees (enterprise, tag, kind, level), not by rule name
or alarm id, so renaming a rule or moving it between files is not reported as a change.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ingest.model import iso_ms
from rules import kpi
from rules.model import AlarmEvent, AlarmState

DEFAULT_MATCH_WINDOW_S = 600.0
DEFAULT_FAIL_ON = ("removed", "later:60")
KPI_NAMES = (
    "annunciations",
    "episodes",
    "avg_per_10min",
    "peak_per_10min",
    "flood_episodes",
    "chattering_sources",
    "fleeting",
    "stale",
    "time_in_alarm_s",
)


@dataclass(frozen=True, slots=True, order=True)
class AlarmKey:
    enterprise_code: str
    tag: str
    kind: str
    level: str  # "-" when the alarm has no level

    def __str__(self) -> str:
        lv = "" if self.level == "-" else f" {self.level}"
        return f"{self.enterprise_code}/{self.tag} {self.kind}{lv}"


def key_of(ev: AlarmEvent) -> AlarmKey:
    return AlarmKey(
        ev.enterprise_code, ev.tag, str(ev.kind), str(ev.level) if ev.level is not None else "-"
    )


@dataclass(frozen=True, slots=True)
class Shift:
    key: AlarmKey
    old_ms: int | None  # None: only the new rules fire it
    new_ms: int | None  # None: only the old rules fire it

    @property
    def delta_ms(self) -> int | None:
        if self.old_ms is None or self.new_ms is None:
            return None
        return self.new_ms - self.old_ms


@dataclass(frozen=True, slots=True)
class AlarmDiff:
    added: tuple[AlarmEvent, ...]  # firings only the NEW rules produce
    removed: tuple[AlarmEvent, ...]  # firings only the OLD rules produce
    shifted: tuple[Shift, ...]  # matched firings at a different time
    first_alarm: tuple[Shift, ...]  # first firing of each key that differs between the sets
    kpi_old: kpi.Kpis
    kpi_new: kpi.Kpis
    unchanged: int  # matched firings at the same instant
    kpi_changes: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.shifted)


def diff_alarms(
    old: Sequence[AlarmEvent],
    new: Sequence[AlarmEvent],
    *,
    match_window_s: float = DEFAULT_MATCH_WINDOW_S,
    start_ms: int | None = None,
    end_ms: int | None = None,
    kpi_config: kpi.KpiConfig | None = None,
) -> AlarmDiff:
    """Match the firing events of both runs per key, in time order, pairing firings no more
    than `match_window_s` apart; what is left over was added or removed."""
    w = int(match_window_s * 1000)
    by_old: dict[AlarmKey, list[AlarmEvent]] = defaultdict(list)
    by_new: dict[AlarmKey, list[AlarmEvent]] = defaultdict(list)
    for e in sorted(old, key=lambda e: e.ts_ms):
        if e.state == AlarmState.FIRING:
            by_old[key_of(e)].append(e)
    for e in sorted(new, key=lambda e: e.ts_ms):
        if e.state == AlarmState.FIRING:
            by_new[key_of(e)].append(e)
    added: list[AlarmEvent] = []
    removed: list[AlarmEvent] = []
    shifted: list[Shift] = []
    first: list[Shift] = []
    same = 0
    for k in sorted(set(by_old) | set(by_new)):
        o, n = by_old.get(k, []), by_new.get(k, [])
        i = j = 0
        while i < len(o) and j < len(n):
            d = n[j].ts_ms - o[i].ts_ms
            if abs(d) <= w:
                if d:
                    shifted.append(Shift(k, o[i].ts_ms, n[j].ts_ms))
                else:
                    same += 1
                i += 1
                j += 1
            elif d > 0:
                removed.append(o[i])
                i += 1
            else:
                added.append(n[j])
                j += 1
        removed.extend(o[i:])
        added.extend(n[j:])
        fo = o[0].ts_ms if o else None
        fn = n[0].ts_ms if n else None
        if fo != fn:
            first.append(Shift(k, fo, fn))
    t0 = start_ms
    t1 = end_ms
    ko = kpi.compute(old, start_ms=t0, end_ms=t1, config=kpi_config)
    kn = kpi.compute(new, start_ms=t0, end_ms=t1, config=kpi_config)
    fo_, fn_ = ko.figures(), kn.figures()
    changes = {
        name: (float(fo_[name]), float(fn_[name])) for name in KPI_NAMES if fo_[name] != fn_[name]
    }
    return AlarmDiff(
        added=tuple(sorted(added, key=lambda e: (e.ts_ms, key_of(e)))),
        removed=tuple(sorted(removed, key=lambda e: (e.ts_ms, key_of(e)))),
        shifted=tuple(shifted),
        first_alarm=tuple(first),
        kpi_old=ko,
        kpi_new=kn,
        unchanged=same,
        kpi_changes=changes,
    )


# --------------------------------------------------------------------------- regressions


class FailOnError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class FailOn:
    """Which differences make `rules diff` exit non-zero."""

    removed: bool = False
    added: bool = False
    later_s: float | None = None  # a matched or first alarm later by MORE than this
    earlier_s: float | None = None
    more: tuple[str, ...] = ()  # KPI figures that must not increase

    @property
    def nothing(self) -> bool:
        return not (self.removed or self.added or self.more) and (
            self.later_s is None and self.earlier_s is None
        )


_SPEC = re.compile(
    r"^(removed|added|none|later:(\d+(?:\.\d+)?)|earlier:(\d+(?:\.\d+)?)"
    r"|more:([a-z_0-9]+))$"
)


def parse_fail_on(specs: Sequence[str]) -> FailOn:
    """`removed`, `added`, `later:<s>`, `earlier:<s>`, `more:<figure>`, `none`; a spec may
    hold several separated by commas. Raises `FailOnError` naming the bad spec."""
    removed = added = False
    later = earlier = None
    more: list[str] = []
    items = [s.strip() for spec in specs for s in spec.split(",") if s.strip()]
    for s in items:
        m = _SPEC.match(s)
        if not m:
            raise FailOnError(
                f"--fail-on {s!r}: expected removed, added, later:<seconds>, "
                f"earlier:<seconds>, more:<figure> or none"
            )
        if s == "none":
            return FailOn()
        if s == "removed":
            removed = True
        elif s == "added":
            added = True
        elif m.group(2):
            later = float(m.group(2))
        elif m.group(3):
            earlier = float(m.group(3))
        else:
            fig = m.group(4)
            if fig not in KPI_NAMES:
                raise FailOnError(
                    f"--fail-on {s!r}: unknown figure {fig!r}; expected one of "
                    f"{', '.join(KPI_NAMES)}"
                )
            more.append(fig)
    return FailOn(removed, added, later, earlier, tuple(more))


def regressions(d: AlarmDiff, fail_on: FailOn) -> list[str]:
    """Each difference that `fail_on` counts as a regression, in words."""
    out: list[str] = []
    if fail_on.removed:
        out += [f"alarm removed: {key_of(e)} at {_t(e.ts_ms)}" for e in d.removed]
    if fail_on.added:
        out += [f"alarm added: {key_of(e)} at {_t(e.ts_ms)}" for e in d.added]
    shifts = list(d.shifted) + [s for s in d.first_alarm if s.delta_ms is not None]
    seen: set[tuple] = set()
    for s in shifts:
        ident = (s.key, s.old_ms, s.new_ms)
        if ident in seen:
            continue
        seen.add(ident)
        delta = s.delta_ms or 0
        if fail_on.later_s is not None and delta > fail_on.later_s * 1000:
            out.append(
                f"alarm later by {delta / 1000:g} s (> {fail_on.later_s:g} s): {s.key} "
                f"at {_t(s.new_ms)} instead of {_t(s.old_ms)}"
            )
        if fail_on.earlier_s is not None and -delta > fail_on.earlier_s * 1000:
            out.append(
                f"alarm earlier by {-delta / 1000:g} s (> {fail_on.earlier_s:g} s): "
                f"{s.key} at {_t(s.new_ms)} instead of {_t(s.old_ms)}"
            )
    for fig in fail_on.more:
        o, n = d.kpi_changes.get(fig, (0.0, 0.0))
        if n > o:
            out.append(f"{fig} increased from {o:g} to {n:g}")
    return out


def _t(ms: int | None) -> str:
    return "-" if ms is None else iso_ms(ms)
