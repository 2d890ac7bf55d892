"""A deterministic simulated day for tests and demos of the dashboards and the daily report:
readings, alarm transitions, warnings, handling, risk, online rate, pipeline health and
notifications for a registry, as `Row`s in the documented InfluxDB schema.

Pure (seeded RNG, no clock, no I/O). The alarms come from a deliberately small limit
detector over the rule set's thresholds, and the day is scripted to contain what the panels
must show: excursions at every enterprise, a chattering point, a flood, a gateway outage,
acknowledged, disposed, open and overdue warnings.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from dashboards.series import (
    HandlingEvent,
    PipelineStats,
    RiskSnapshot,
    Row,
    alarm_rows,
    disposition_rows,
    notification_row,
    online_rows,
    pipeline_rows,
    risk_rows,
    warning_rows,
)
from ingest.lineprotocol import reading_tags
from ingest.model import Point, Registry, RejectReason
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState
from rules.risk import OpenWarning, RiskInputs, RiskWeights, enterprise_risk

MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
LOW = {"LL", "L"}
SECOND = {"L2", "HH", "LL"}
#: Offline after this many expected intervals without data (the test's choice).
OFFLINE_AFTER = 3.0


def day_bounds(day: date) -> tuple[int, int]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    s = int(start.timestamp() * 1000)
    return s, s + DAY_MS


@dataclass
class SimulatedDay:
    registry: Registry
    start_ms: int
    end_ms: int
    readings: list[Row] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)
    warnings: list[WarningEvent] = field(default_factory=list)
    handling: list[HandlingEvent] = field(default_factory=list)
    other: list[Row] = field(default_factory=list)  # risk, online, pipeline, notifications

    def rows(self) -> list[Row]:
        return [
            *self.readings,
            *alarm_rows(self.alarms, self.registry),
            *warning_rows(self.warnings, self.registry),
            *disposition_rows(self.handling, self.registry),
            *self.other,
        ]


def _id(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]


class _Detector:
    """Highest limit exceeded per point; one event per change (the contract's shape)."""

    def __init__(self, thresholds: Sequence) -> None:
        self.th = sorted(thresholds, key=lambda t: t.value)
        self.level: str | None = None
        self.alarm_id = ""

    def level_for(self, v: float) -> tuple[str | None, float | None]:
        hit = None
        for t in self.th:
            lv = str(t.level)
            if (lv in LOW and v < t.value) or (lv not in LOW and v >= t.value):
                # Prefer second level over first; among lows the lowest value hit is worst.
                if hit is None or (lv in SECOND and str(hit.level) not in SECOND):
                    hit = t
                elif lv not in LOW and t.value >= hit.value and str(hit.level) not in LOW:
                    hit = t
        return (str(hit.level), hit.value) if hit else (None, None)


def _reading_row(p: Point, ts: int, v: float) -> Row:
    """As the ingest writer stores it (`ingest.lineprotocol`: empty tags left out)."""
    tags = {k: val for k, val in reading_tags(p).items() if val}
    return Row("reading", tags, {"value": float(v), "quality": 0, "backfill": False}, ts)


def _normal(p: Point, th: Sequence) -> tuple[float, float]:
    """A normal operating value and noise amplitude, between the point's limits."""
    highs = [t.value for t in th if str(t.level) not in LOW]
    lows = [t.value for t in th if str(t.level) in LOW]
    hi = min(highs) if highs else (p.range_high if p.range_high is not None else 100.0)
    lo = max(lows) if lows else (p.range_low if p.range_low is not None else 0.0)
    if hi <= lo:
        hi = lo + 1.0
    return lo + (hi - lo) * 0.45, (hi - lo) * 0.05


def simulated_day(
    registry: Registry,
    thresholds,
    day: date,
    *,
    risk_weights: RiskWeights,
    seed: int = 7,
    step_s: int = 120,
) -> SimulatedDay:
    """The scripted day. `thresholds` has `thresholds_for(point_key)` (a rules RuleSet)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test day, not security
    start, end = day_bounds(day)
    out = SimulatedDay(registry, start, end)
    ents = sorted(registry.enterprises())
    pts = [p for p in registry if p.parameter != "event"]
    th = {p.key: tuple(thresholds.thresholds_for(p.key)) for p in pts}
    highs = {k: [t for t in v if str(t.level) not in LOW] for k, v in th.items()}

    # Excursions: (point, start, end, factor over its highest limit). One per enterprise
    # (first point with an upper limit), plus the chattering and flood scripts.
    excursions: list[tuple[Point, int, int, float]] = []
    chatter: Point | None = None
    for i, ent in enumerate(ents):
        cand = [p for p in registry.enterprise(ent) if highs.get(p.key)]
        if not cand:
            continue
        p = cand[0]
        t0 = start + (2 + 3 * (i % 7)) * HOUR_MS + 7 * MIN_MS
        top = max(t.value for t in highs[p.key])
        first = min(t.value for t in highs[p.key])
        # Even enterprises reach the top (second) level, odd ones stay at the first level.
        target = top * 1.1 if i % 2 == 0 else (first + min(top, first * 1.5)) / 2 * 1.01
        if top == first:
            target = top * 1.05
        excursions.append((p, t0, t0 + 40 * MIN_MS, target))
        if chatter is None and len(cand) > 1:
            chatter = cand[1]
    gateway_down = ents[-1] if ents else None  # a 1-hour gateway outage, 14:00-15:00

    # Extra readings that make the chattering point cycle (03:00) and flood (10:00).
    cycles: dict[str, list[tuple[int, float]]] = defaultdict(list)
    if chatter is not None:
        above = max(t.value for t in highs[chatter.key]) * 1.05
        base, _ = _normal(chatter, th[chatter.key])
        for k in range(4):
            t = start + 3 * HOUR_MS + k * 12_000
            cycles[chatter.key] += [(t + 1000, above), (t + 7000, base)]
        for k in range(13):
            t = start + 10 * HOUR_MS + 5_000 + k * 40_000
            cycles[chatter.key] += [(t, above), (t + 20_000, base)]

    # The day reports every `step_s` (lighter than real rates); judge "online" on that cadence.
    cadence = Registry(
        [replace(p, expected_interval_s=max(p.expected_interval_s, step_s)) for p in registry]
    )
    last_seen: dict[str, int] = {}
    det = {p.key: _Detector(th[p.key]) for p in pts}
    outage = (start + 14 * HOUR_MS, start + 15 * HOUR_MS)
    readings_per_min: dict[int, int] = defaultdict(int)
    online_every = 5 * MIN_MS
    events_by_time: list[tuple[int, Point, float]] = []
    for p in pts:
        base, noise = _normal(p, th[p.key])
        for ts in range(start, end, step_s * 1000):
            if p.enterprise_code == gateway_down and outage[0] <= ts < outage[1]:
                continue
            v = base + rng.uniform(-noise, noise)
            for xp, a, b, target in excursions:
                if xp.key == p.key and a <= ts < b:
                    v = target
            events_by_time.append((ts, p, v))
        for ts, v in cycles.get(p.key, ()):
            events_by_time.append((ts, p, v))
    events_by_time.sort(key=lambda e: (e[0], e[1].key))

    next_online = start + online_every
    for ts, p, v in events_by_time:
        while ts >= next_online:
            out.other += online_rows(cadence, last_seen, next_online, offline_after=OFFLINE_AFTER)
            next_online += online_every
        out.readings.append(_reading_row(p, ts, v))
        last_seen[p.key] = ts
        readings_per_min[(ts - start) // MIN_MS] += 1
        d = det[p.key]
        level, value = d.level_for(v)
        if level != d.level:
            if level is not None:
                if d.level is None:
                    d.alarm_id = _id(p.key, ts)
                out.alarms.append(
                    _alarm(p, ts, Kind.LIMIT, level, AlarmState.FIRING, v, value, d.alarm_id)
                )
            else:
                out.alarms.append(
                    _alarm(p, ts, Kind.LIMIT, d.level, AlarmState.CLEARED, v, None, d.alarm_id)
                )
            d.level = level
    while next_online <= end:
        out.other += online_rows(cadence, last_seen, next_online, offline_after=OFFLINE_AFTER)
        next_online += online_every
    if gateway_down is not None:
        gw = registry.enterprise(gateway_down)[0]
        aid = _id("gw", gw.gateway_code, outage[0])
        t_fire = outage[0] + int(OFFLINE_AFTER * gw.expected_interval_s * 1000)
        for ts, state in ((t_fire, AlarmState.FIRING), (outage[1], AlarmState.CLEARED)):
            out.alarms.append(
                AlarmEvent(
                    ts_ms=ts,
                    enterprise_code=gw.enterprise_code,
                    hazard_code=gw.hazard_code,
                    zone=gw.zone,
                    tag=gw.gateway_code,
                    parameter="gateway",
                    kind=Kind.GATEWAY,
                    level=None,
                    state=state,
                    value=None,
                    threshold=None,
                    unit="",
                    rule="builtin.gateway_offline",
                    alarm_id=aid,
                )
            )
    out.alarms.sort(key=lambda e: (e.ts_ms, e.enterprise_code, e.tag))

    _warnings_and_handling(out, excursions, rng)
    _risk(out, risk_weights)
    for minute in range(0, DAY_MS // MIN_MS):
        ts = start + (minute + 1) * MIN_MS
        rejects = {RejectReason.UNKNOWN_TAG: rng.randint(0, 2)}
        if minute % 37 == 0:
            rejects[RejectReason.MALFORMED_JSON] = 1
        fired = sum(1 for a in out.alarms if ts - MIN_MS <= a.ts_ms < ts)
        out.other += pipeline_rows(
            PipelineStats(
                process="embedded",
                interval_s=60.0,
                readings_in=readings_per_min.get(minute, 0),
                rejects=rejects,
                alarms=fired,
                eval_lag_ms=round(rng.uniform(2, 40), 2),
                outbox_depth=rng.randint(0, 3) + fired,
                influx_errors=1 if minute % 240 == 5 else 0,
            ),
            ts,
        )
    return out


def _alarm(
    p: Point,
    ts: int,
    kind: Kind,
    level: str | None,
    state: AlarmState,
    v: float,
    threshold: float | None,
    alarm_id: str,
) -> AlarmEvent:
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code=p.enterprise_code,
        hazard_code=p.hazard_code,
        zone=p.zone,
        tag=p.tag,
        parameter=p.parameter,
        kind=kind,
        level=Level(level) if level else None,
        state=state,
        value=round(v, 3),
        threshold=threshold,
        unit=p.unit,
        rule=f"limit.{p.parameter}",
        alarm_id=alarm_id,
    )


def _warnings_and_handling(out: SimulatedDay, excursions, rng: random.Random) -> None:
    """A warning per excursion: every third stays open, the others are acknowledged and
    disposed; one warning from the day before goes overdue at 20:00."""
    for i, (p, a, _b, _target) in enumerate(excursions):
        second = any(
            e.level is not None and str(e.level) in SECOND
            for e in out.alarms
            if e.enterprise_code == p.enterprise_code and e.tag == p.tag
        )
        colour = Colour.ORANGE if second else Colour.BLUE
        wid = _id("w", p.key, a)
        out.warnings.append(
            WarningEvent(
                ts_ms=a + 30_000,
                warning_id=wid,
                enterprise_code=p.enterprise_code,
                hazard_code=p.hazard_code,
                colour=colour,
                previous=None,
                state=WarningState.RAISED,
                reason=f"{p.tag} in alarm",
            )
        )
        for ch in ("wecom", "aliyun_sms"):
            out.other.append(
                notification_row(
                    notification_id=_id("n", wid, ch),
                    enterprise_code=p.enterprise_code,
                    channel=ch,
                    event_type="raised",
                    result="delivered" if ch == "wecom" or i % 4 else "retrying",
                    attempts=1 if ch == "wecom" else 2,
                    latency_ms=rng.uniform(20, 900),
                    ts_ms=a + 31_000,
                )
            )
        if i % 3 == 2:
            continue  # stays open at the end of the day
        ack = rng.randint(3, 25) * MIN_MS
        out.handling.append(
            HandlingEvent(
                wid,
                p.enterprise_code,
                p.hazard_code,
                colour,
                "acknowledged",
                ack / 1000,
                a + 30_000 + ack,
            )
        )
        dispose = ack + rng.randint(40, 180) * MIN_MS
        t_disp = min(a + 30_000 + dispose, out.end_ms - MIN_MS)
        out.handling.append(
            HandlingEvent(
                wid,
                p.enterprise_code,
                p.hazard_code,
                colour,
                "disposed",
                (t_disp - a - 30_000) / 1000,
                t_disp,
                result="process_fluctuation",
            )
        )
        out.warnings.append(
            WarningEvent(
                ts_ms=t_disp,
                warning_id=wid,
                enterprise_code=p.enterprise_code,
                hazard_code=p.hazard_code,
                colour=colour,
                previous=colour,
                state=WarningState.CLOSED,
                reason="disposition filed: process_fluctuation",
            )
        )
    if excursions:
        p = excursions[0][0]
        raised = out.start_ms - 4 * HOUR_MS  # 20:00 the day before
        wid = _id("w-overdue", p.key, raised)
        out.warnings.append(
            WarningEvent(
                ts_ms=raised,
                warning_id=wid,
                enterprise_code=p.enterprise_code,
                hazard_code=p.hazard_code,
                colour=Colour.YELLOW,
                previous=None,
                state=WarningState.RAISED,
                reason=f"{p.tag} repeated alarms",
            )
        )
        out.handling.append(
            HandlingEvent(
                wid,
                p.enterprise_code,
                p.hazard_code,
                Colour.YELLOW,
                "overdue",
                24 * 3600.0,
                raised + DAY_MS,
            )
        )
    out.warnings.sort(key=lambda w: (w.ts_ms, w.warning_id))
    out.handling.sort(key=lambda h: (h.ts_ms, h.warning_id))


def _risk(out: SimulatedDay, weights: RiskWeights) -> None:
    """Every 15 minutes, each enterprise's risk from its open warnings (rules.risk)."""
    grades: dict[str, set[int | None]] = defaultdict(set)
    for p in out.registry:
        grades[p.enterprise_code].add(p.hazard_level)
    for ts in range(out.start_ms + 15 * MIN_MS, out.end_ms + 1, 15 * MIN_MS):
        open_w: dict[str, OpenWarning] = {}
        for w in out.warnings:
            if w.ts_ms > ts:
                break
            if w.state == WarningState.CLOSED:
                open_w.pop(w.warning_id, None)
            else:
                open_w[w.warning_id] = OpenWarning(
                    w.warning_id, w.enterprise_code, w.hazard_code, w.colour, w.ts_ms
                )
        snaps = []
        for ent in sorted(out.registry.enterprises()):
            mine = [w for w in open_w.values() if w.enterprise_code == ent]
            lvl = enterprise_risk(
                RiskInputs(ent, ts, installation_grades=tuple(grades[ent]), open_warnings=mine),
                weights,
            )
            snaps.append(RiskSnapshot.of(lvl, [w.colour for w in mine]))
        out.other += risk_rows(snaps, out.registry, ts)
