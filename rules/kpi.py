"""ISA-18.2 / IEC 62682 alarm-management figures computed from a list of alarm events.

Pure functions over `AlarmEvent`s (no clock, no I/O) returning frozen dataclasses, so replay,
`rules diff`, the dashboards and the daily report all measure alarms the same way. Each
enterprise is one "operator area": an enterprise's control room is where its alarms are
annunciated, so rates and floods are computed per enterprise.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rules.model import AlarmEvent, AlarmState

MINUTE_MS = 60_000
TEN_MIN_MS = 10 * MINUTE_MS


@dataclass(frozen=True, slots=True)
class KpiConfig:
    """Thresholds of the alarm-management figures. The defaults are the ISA-18.2 figures
    quoted in DOMAIN.md §4; `fleeting_s` has no published number, so it is ours."""

    rate_window_s: float = 600.0  # "alarms per operator per 10 minutes"
    flood_start: int = 10  # a flood starts at MORE than this many alarms in the window
    flood_end: int = 5  # ... and ends when FEWER than this many remain in the window
    chatter_count: int = 3  # >= 3 annunciations of one source ...
    chatter_window_s: float = 60.0  # ... within 60 s is chattering
    fleeting_s: float = 5.0  # cleared sooner than this: fleeting
    stale_s: float = 24 * 3600.0  # open longer than this: stale
    top_n: int = 10  # bad actors listed


@dataclass(frozen=True, slots=True, order=True)
class Source:
    """What ISA-18.2 calls an alarm (a tag's alarm of one kind from one rule), as opposed to
    one annunciation of it. Episodes of a source have different alarm ids."""

    enterprise_code: str
    tag: str
    kind: str
    rule: str

    def __str__(self) -> str:
        return f"{self.enterprise_code}/{self.tag} {self.kind} ({self.rule})"


@dataclass(frozen=True, slots=True)
class Episode:
    """One alarm from its first firing to its clear (or the end of the period)."""

    alarm_id: str
    source: Source
    start_ms: int
    end_ms: int  # clear time, or the period end when still open
    cleared: bool
    highest_level: str | None
    annunciations: int  # firing events (a level change re-annunciates)

    @property
    def duration_ms(self) -> int:
        return self.end_ms - self.start_ms


@dataclass(frozen=True, slots=True)
class AreaRate:
    """Alarm rate of one operator area (enterprise) over the period."""

    enterprise_code: str
    alarms: int
    intervals: int  # 10-minute intervals in the period
    average_per_10min: float
    peak_per_10min: int  # most alarms in any fixed 10-minute interval
    pct_intervals_over_flood: float  # share of intervals with > flood_start alarms


@dataclass(frozen=True, slots=True)
class FloodEpisode:
    enterprise_code: str
    start_ms: int
    end_ms: int  # when the rolling count fell below flood_end (or the period end)
    alarms: int  # annunciations from the window that started it to its end
    peak_in_window: int


@dataclass(frozen=True, slots=True)
class Chattering:
    source: Source
    max_in_window: int  # most annunciations inside any chatter window
    annunciations: int  # over the whole period


@dataclass(frozen=True, slots=True)
class BadActor:
    source: Source
    annunciations: int
    share_pct: float
    time_in_alarm_ms: int


@dataclass(frozen=True, slots=True)
class Kpis:
    """Every figure for one list of alarm events over one period."""

    start_ms: int
    end_ms: int
    annunciations: int  # firing events
    episodes: tuple[Episode, ...]
    by_rule: dict[str, int]
    by_point: dict[str, int]  # "<enterprise>/<tag>"
    by_level: dict[str, int]  # "none" when the alarm has no level (offline, fault)
    by_kind: dict[str, int]
    rates: tuple[AreaRate, ...]
    floods: tuple[FloodEpisode, ...]
    chattering: tuple[Chattering, ...]
    fleeting: tuple[Episode, ...]
    stale: tuple[Episode, ...]
    bad_actors: tuple[BadActor, ...]
    time_in_alarm_ms: int  # summed over episodes
    time_in_alarm_by_point: dict[str, int] = field(default_factory=dict)

    def figures(self) -> dict[str, float]:
        """The headline numbers, flat, for comparisons (`rules diff`) and JSON summaries."""
        return {
            "annunciations": self.annunciations,
            "episodes": len(self.episodes),
            "avg_per_10min": max((r.average_per_10min for r in self.rates), default=0.0),
            "peak_per_10min": max((r.peak_per_10min for r in self.rates), default=0),
            "flood_episodes": len(self.floods),
            "chattering_sources": len(self.chattering),
            "fleeting": len(self.fleeting),
            "stale": len(self.stale),
            "time_in_alarm_s": self.time_in_alarm_ms / 1000.0,
        }


def source_of(ev: AlarmEvent) -> Source:
    return Source(ev.enterprise_code, ev.tag, str(ev.kind), ev.rule)


def episodes(events: Iterable[AlarmEvent], end_ms: int) -> list[Episode]:
    """Pair firing and cleared events by `alarm_id` into episodes, sorted by start."""
    open_: dict[str, dict] = {}
    done: list[Episode] = []
    for ev in sorted(events, key=lambda e: e.ts_ms):
        if ev.state == AlarmState.FIRING:
            cur = open_.get(ev.alarm_id)
            if cur is None:
                open_[ev.alarm_id] = {
                    "source": source_of(ev),
                    "start": ev.ts_ms,
                    "level": ev.level,
                    "n": 1,
                }
            else:
                cur["n"] += 1
                cur["level"] = _higher(cur["level"], ev.level)
        else:
            cur = open_.pop(ev.alarm_id, None)
            if cur is None:  # a clear whose firing is before the period: nothing to measure
                continue
            done.append(
                Episode(
                    ev.alarm_id,
                    cur["source"],
                    cur["start"],
                    ev.ts_ms,
                    True,
                    _level_str(cur["level"]),
                    cur["n"],
                )
            )
    for aid, cur in open_.items():
        done.append(
            Episode(
                aid,
                cur["source"],
                cur["start"],
                max(end_ms, cur["start"]),
                False,
                _level_str(cur["level"]),
                cur["n"],
            )
        )
    done.sort(key=lambda e: (e.start_ms, e.alarm_id))
    return done


# Rank used only to keep the highest level an episode reached (second level above first).
_LEVEL_RANK = {None: 0, "L": 1, "H": 1, "L1": 1, "LL": 2, "HH": 2, "L2": 2}


def _higher(a, b):
    return b if _LEVEL_RANK.get(_level_str(b), 0) > _LEVEL_RANK.get(_level_str(a), 0) else a


def _level_str(level) -> str | None:
    return None if level is None else str(level)


def rolling_max(times: Sequence[int], window_ms: int) -> int:
    """Most timestamps inside any half-open window (t - window, t] of the sorted `times`."""
    best = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_ms:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def flood_episodes(
    enterprise_code: str, times: Sequence[int], end_ms: int, cfg: KpiConfig
) -> list[FloodEpisode]:
    """ISA-18.2 floods over sorted annunciation `times`: a flood starts when the count in the
    trailing window exceeds `flood_start` and ends when it drops below `flood_end`."""
    w = int(cfg.rate_window_s * 1000)
    # The rolling count only changes when an alarm enters (t) or leaves (t + w) the window.
    checkpoints = sorted(set(times) | {t + w for t in times})
    out: list[FloodEpisode] = []
    start: int | None = None
    peak = 0
    for c in checkpoints:
        if c > end_ms:  # a flood still on at the period end ends there (below)
            break
        count = bisect.bisect_right(times, c) - bisect.bisect_right(times, c - w)
        if start is None:
            if count > cfg.flood_start:
                start, peak = c, count
        else:
            peak = max(peak, count)
            if count < cfg.flood_end:
                out.append(_flood(enterprise_code, times, start, c, peak, w))
                start = None
    if start is not None:
        out.append(_flood(enterprise_code, times, start, max(end_ms, start), peak, w))
    return out


def _flood(ent: str, times: Sequence[int], start: int, end: int, peak: int, w: int) -> FloodEpisode:
    # The alarms that built the flood (those in the window that tipped it over) belong to it.
    n = bisect.bisect_right(times, end) - bisect.bisect_right(times, start - w)
    return FloodEpisode(ent, start, end, n, peak)


def compute(
    events: Sequence[AlarmEvent],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    config: KpiConfig | None = None,
) -> Kpis:
    """All figures for `events` over [start_ms, end_ms] (default: first to last event).

    Replay passes the time span of its readings so that a quiet tail counts in the averages.
    """
    cfg = config or KpiConfig()
    evs = sorted(events, key=lambda e: (e.ts_ms, e.enterprise_code, e.tag, e.rule))
    if start_ms is None:
        start_ms = evs[0].ts_ms if evs else 0
    if end_ms is None:
        end_ms = evs[-1].ts_ms if evs else start_ms
    end_ms = max(end_ms, start_ms)
    firing = [e for e in evs if e.state == AlarmState.FIRING]

    by_rule = Counter(e.rule for e in firing)
    by_point = Counter(f"{e.enterprise_code}/{e.tag}" for e in firing)
    by_level = Counter(str(e.level) if e.level is not None else "none" for e in firing)
    by_kind = Counter(str(e.kind) for e in firing)

    eps = episodes(evs, end_ms)
    tia_point: dict[str, int] = defaultdict(int)
    tia_source: dict[Source, int] = defaultdict(int)
    for ep in eps:
        tia_point[f"{ep.source.enterprise_code}/{ep.source.tag}"] += ep.duration_ms
        tia_source[ep.source] += ep.duration_ms

    w = int(cfg.rate_window_s * 1000)
    n_intervals = max(1, -(-(end_ms - start_ms) // w))
    times_by_ent: dict[str, list[int]] = defaultdict(list)
    for e in firing:
        times_by_ent[e.enterprise_code].append(e.ts_ms)
    rates: list[AreaRate] = []
    floods: list[FloodEpisode] = []
    for ent in sorted(times_by_ent):
        times = times_by_ent[ent]
        buckets = Counter(min((t - start_ms) // w, n_intervals - 1) for t in times)
        peak = max(buckets.values(), default=0)
        over = sum(1 for c in buckets.values() if c > cfg.flood_start)
        rates.append(
            AreaRate(
                ent,
                len(times),
                n_intervals,
                len(times) / n_intervals,
                peak,
                100.0 * over / n_intervals,
            )
        )
        floods.extend(flood_episodes(ent, times, end_ms, cfg))

    times_by_source: dict[Source, list[int]] = defaultdict(list)
    for e in firing:
        times_by_source[source_of(e)].append(e.ts_ms)
    cw = int(cfg.chatter_window_s * 1000)
    chattering = []
    for src in sorted(times_by_source):
        m = rolling_max(times_by_source[src], cw)
        if m >= cfg.chatter_count:
            chattering.append(Chattering(src, m, len(times_by_source[src])))
    chattering.sort(key=lambda c: (-c.max_in_window, -c.annunciations, c.source))

    fleeting = tuple(e for e in eps if e.cleared and e.duration_ms < cfg.fleeting_s * 1000)
    stale = tuple(e for e in eps if e.duration_ms > cfg.stale_s * 1000)

    total = len(firing)
    ranked = sorted(times_by_source.items(), key=lambda kv: (-len(kv[1]), kv[0]))
    bad = tuple(
        BadActor(src, len(ts), 100.0 * len(ts) / total, tia_source[src])
        for src, ts in ranked[: cfg.top_n]
    )
    return Kpis(
        start_ms=start_ms,
        end_ms=end_ms,
        annunciations=total,
        episodes=tuple(eps),
        by_rule=dict(by_rule.most_common()),
        by_point=dict(by_point.most_common()),
        by_level=dict(by_level.most_common()),
        by_kind=dict(by_kind.most_common()),
        rates=tuple(rates),
        floods=tuple(floods),
        chattering=tuple(chattering),
        fleeting=fleeting,
        stale=stale,
        bad_actors=bad,
        time_in_alarm_ms=sum(ep.duration_ms for ep in eps),
        time_in_alarm_by_point=dict(sorted(tia_point.items(), key=lambda kv: -kv[1])),
    )
