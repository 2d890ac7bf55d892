"""A simulated day's InfluxDB rows for tests and demos of the dashboards and the daily report:
from readings and the alarms and warnings the rules engine raised on them (a replay), it
derives what the other stages would have written: handling of the warnings (acknowledged,
disposed, one overdue), enterprise risk, online rate, pipeline health and notifications.

Pure (seeded RNG, no clock, no I/O). The readings stored are thinned (one per point per
`store_every_s`, plus every reading near an alarm of its point) to keep test writes small.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from ingest.model import Point, Reading, Registry, RejectReason
from rules.model import AlarmEvent, Colour, WarningEvent, WarningState
from rules.risk import OpenWarning, RiskInputs, RiskWeights, enterprise_risk

MIN_MS = 60_000
HOUR_MS = 60 * MIN_MS
DAY_MS = 24 * HOUR_MS
#: Offline after this many expected intervals without data (the test day's choice).
OFFLINE_AFTER = 3.0
#: Readings this close to an alarm of their point are always stored (excursions show).
NEAR_ALARM_MS = 5 * MIN_MS


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


def _reading_row(p: Point, r: Reading) -> Row:
    """As the ingest writer stores it (`ingest.lineprotocol`: empty tags left out)."""
    tags = {k: val for k, val in reading_tags(p).items() if val}
    return Row(
        "reading",
        tags,
        {"value": float(r.value), "quality": int(r.quality), "backfill": bool(r.backfill)},
        r.ts_ms,
    )


def day_from_replay(
    registry: Registry,
    readings: Sequence[Reading],
    alarms: Sequence[AlarmEvent],
    warnings: Sequence[WarningEvent],
    *,
    start_ms: int,
    end_ms: int,
    risk_weights: RiskWeights,
    seed: int = 7,
    store_every_s: int = 120,
) -> SimulatedDay:
    """The day's rows from its readings (event-time order) and the replay's output."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible test day, not security
    out = SimulatedDay(registry, start_ms, end_ms, alarms=list(alarms), warnings=list(warnings))
    alarm_times: dict[str, list[int]] = defaultdict(list)
    for a in alarms:
        alarm_times[f"{a.enterprise_code}/{a.tag}"].append(a.ts_ms)
    last_kept: dict[str, int] = {}
    last_seen: dict[str, int] = {}
    per_min: dict[int, int] = defaultdict(int)
    next_online = start_ms + 5 * MIN_MS
    for r in readings:
        if not start_ms <= r.ts_ms < end_ms:
            continue
        while r.ts_ms >= next_online:
            out.other += online_rows(registry, last_seen, next_online, offline_after=OFFLINE_AFTER)
            next_online += 5 * MIN_MS
        key = r.key
        p = registry.by_key(key)
        if p is None:
            continue
        last_seen[key] = r.ts_ms
        per_min[(r.ts_ms - start_ms) // MIN_MS] += 1
        times = alarm_times.get(key, ())
        i = bisect.bisect_left(times, r.ts_ms - NEAR_ALARM_MS)
        near = i < len(times) and times[i] <= r.ts_ms + NEAR_ALARM_MS
        if near or r.ts_ms - last_kept.get(key, -(10**15)) >= store_every_s * 1000:
            out.readings.append(_reading_row(p, r))
            last_kept[key] = r.ts_ms
    while next_online <= end_ms:
        out.other += online_rows(registry, last_seen, next_online, offline_after=OFFLINE_AFTER)
        next_online += 5 * MIN_MS

    _handling(out, rng)
    _risk(out, risk_weights)
    for minute in range(DAY_MS // MIN_MS):
        ts = start_ms + (minute + 1) * MIN_MS
        rejects = {RejectReason.UNKNOWN_TAG: rng.randint(0, 2)}
        if minute % 37 == 0:
            rejects[RejectReason.MALFORMED_JSON] = 1
        fired = sum(1 for a in out.alarms if ts - MIN_MS <= a.ts_ms < ts)
        out.other += pipeline_rows(
            PipelineStats(
                process="embedded",
                interval_s=60.0,
                readings_in=per_min.get(minute, 0),
                rejects=rejects,
                alarms=fired,
                eval_lag_ms=round(rng.uniform(2, 40), 2),
                outbox_depth=rng.randint(0, 3) + fired,
                influx_errors=1 if minute % 240 == 5 else 0,
            ),
            ts,
        )
    return out


def _handling(out: SimulatedDay, rng: random.Random) -> None:
    """What people did with the warnings: each raised warning is notified; two of three are
    acknowledged and then disposed (closing them), the third stays open. A warning raised
    the evening before, still without a disposition, goes overdue at 20:00."""
    raised = [w for w in out.warnings if w.state == WarningState.RAISED]
    colour_at: dict[str, Colour] = {}
    for w in sorted(out.warnings, key=lambda w: w.ts_ms):
        colour_at[w.warning_id] = w.colour
    for i, w in enumerate(raised):
        for ch in ("wecom", "aliyun_sms"):
            out.other.append(
                notification_row(
                    notification_id=_id("n", w.warning_id, ch),
                    enterprise_code=w.enterprise_code,
                    channel=ch,
                    event_type="raised",
                    result="delivered" if ch == "wecom" or i % 4 else "retrying",
                    attempts=1 if ch == "wecom" else 2,
                    latency_ms=round(rng.uniform(20, 900), 1),
                    ts_ms=w.ts_ms + 1000,
                )
            )
        if i % 3 == 2:
            continue  # stays open at the end of the day
        colour = colour_at[w.warning_id]
        ack = rng.randint(3, 25) * MIN_MS
        out.handling.append(
            HandlingEvent(
                w.warning_id,
                w.enterprise_code,
                w.hazard_code,
                colour,
                "acknowledged",
                ack / 1000,
                w.ts_ms + ack,
            )
        )
        t_disp = min(w.ts_ms + ack + rng.randint(40, 180) * MIN_MS, out.end_ms - MIN_MS)
        out.handling.append(
            HandlingEvent(
                w.warning_id,
                w.enterprise_code,
                w.hazard_code,
                colour,
                "disposed",
                (t_disp - w.ts_ms) / 1000,
                t_disp,
                result="process_fluctuation",
            )
        )
        out.warnings.append(
            WarningEvent(
                ts_ms=t_disp,
                warning_id=w.warning_id,
                enterprise_code=w.enterprise_code,
                hazard_code=w.hazard_code,
                colour=colour,
                previous=colour,
                state=WarningState.CLOSED,
                reason="disposition filed: process_fluctuation",
            )
        )
    p = out.registry.points[0]
    t_raised = out.start_ms - 4 * HOUR_MS  # 20:00 the day before
    wid = _id("w-overdue", p.key, t_raised)
    out.warnings.append(
        WarningEvent(
            ts_ms=t_raised,
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
            t_raised + DAY_MS,
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
