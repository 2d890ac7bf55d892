"""Pure rows for InfluxDB: alarms, warnings, enterprise risk, online rate, pipeline health,
rejects, notifications and dispositions, in the schema of docs/influx-schema.md.

No I/O and no clock: callers pass events, snapshots and `ts_ms`. Each function returns
`Row`s; `Row.line()` renders InfluxDB line protocol with `ingest.lineprotocol.encode`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ingest.model import Registry, RejectReason
from rules.model import AlarmEvent, Colour, WarningEvent
from rules.risk import RiskLevel

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Row:
    """One InfluxDB point: measurement, tags, fields and event time in epoch ms."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ms: int

    def line(self) -> str:
        from ingest.lineprotocol import encode

        return encode(self.measurement, dict(self.tags), dict(self.fields), self.ts_ms)


def _fields(**kv: FieldValue | None) -> dict[str, FieldValue]:
    """Fields without the unset ones (InfluxDB has no null)."""
    return {k: v for k, v in kv.items() if v is not None}


def enterprise_districts(registry: Registry) -> dict[str, str]:
    """Enterprise code -> district, from its points (the first point's district)."""
    out: dict[str, str] = {}
    for p in registry:
        out.setdefault(p.enterprise_code, p.district)
    return out


def _district(registry: Registry, enterprise_code: str, cache: dict[str, str]) -> str:
    if not cache:
        cache.update(enterprise_districts(registry))
    return cache.get(enterprise_code, "unknown")


# -- alarms and warnings ---------------------------------------------------------------------


def alarm_rows(events: Iterable[AlarmEvent], registry: Registry) -> list[Row]:
    """One row per alarm transition (`firing` 1 when raised or re-levelled, 0 when cleared)."""
    cache: dict[str, str] = {}
    rows = []
    for e in events:
        tags = {
            "enterprise": e.enterprise_code,
            "district": _district(registry, e.enterprise_code, cache),
            "hazard": e.hazard_code or "none",
            "zone": e.zone or "none",
            "tag": e.tag,
            "parameter": e.parameter,
            "kind": str(e.kind),
            "level": str(e.level) if e.level is not None else "none",
            "state": str(e.state),
            "rule": e.rule,
        }
        flds = _fields(
            alarm_id=e.alarm_id,
            value=float(e.value) if e.value is not None else None,
            threshold=float(e.threshold) if e.threshold is not None else None,
            firing=1 if e.state == "firing" else 0,
            pack=e.pack,
            backfill=e.backfill,
        )
        rows.append(Row("alarm", tags, flds, e.ts_ms))
    return rows


def warning_rows(events: Iterable[WarningEvent], registry: Registry) -> list[Row]:
    cache: dict[str, str] = {}
    return [
        Row(
            "warning",
            {
                "enterprise": w.enterprise_code,
                "district": _district(registry, w.enterprise_code, cache),
                "hazard": w.hazard_code or "none",
                "colour": str(w.colour),
                "state": str(w.state),
            },
            _fields(warning_id=w.warning_id, rank=w.colour.rank, reason=w.reason),
            w.ts_ms,
        )
        for w in events
    ]


# -- enterprise risk and online rate ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """An enterprise's dynamic risk colour (None = no notable risk) and its highest open
    warning at one instant, as the risk model computed them."""

    enterprise_code: str
    level: Colour | None
    score: float
    warning: Colour | None = None
    open_warnings: int = 0

    @classmethod
    def of(cls, risk: RiskLevel, open_colours: Sequence[Colour]) -> RiskSnapshot:
        """From the risk model's result and the colours of the enterprise's open warnings."""
        top = max(open_colours, key=lambda c: c.rank, default=None)
        return cls(risk.enterprise_code, risk.colour, risk.score, top, len(open_colours))


def enterprise_locations(registry: Registry) -> dict[str, tuple[float, float]]:
    """Enterprise -> (lat, lon): the mean of its located points (a site is small)."""
    acc: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for p in registry:
        if p.lat is not None and p.lon is not None:
            acc[p.enterprise_code].append((p.lat, p.lon))
    return {
        ent: (sum(a for a, _ in pts) / len(pts), sum(b for _, b in pts) / len(pts))
        for ent, pts in acc.items()
    }


def risk_rows(snapshots: Iterable[RiskSnapshot], registry: Registry, ts_ms: int) -> list[Row]:
    """Risk rows carry the enterprise's name and location so the geomap needs no join."""
    cache: dict[str, str] = {}
    locs = enterprise_locations(registry)
    names = {p.enterprise_code: p.enterprise_name for p in registry}
    rows = []
    for s in snapshots:
        lat, lon = locs.get(s.enterprise_code, (None, None))
        rows.append(
            Row(
                "risk",
                {
                    "enterprise": s.enterprise_code,
                    "district": _district(registry, s.enterprise_code, cache),
                },
                _fields(
                    level=str(s.level) if s.level else "none",
                    rank=s.level.rank if s.level else 0,
                    score=float(s.score),
                    warning=str(s.warning) if s.warning else "none",
                    warning_rank=s.warning.rank if s.warning else 0,
                    open_warnings=int(s.open_warnings),
                    name=names.get(s.enterprise_code, s.enterprise_code),
                    lat=lat,
                    lon=lon,
                ),
                ts_ms,
            )
        )
    return rows


def online_rows(
    registry: Registry,
    last_seen_ms: Mapping[str, int],
    now_ms: int,
    *,
    offline_after: float,
    timeouts_ms: Mapping[str, int] | None = None,
) -> list[Row]:
    """Per enterprise: registered points, points online (a reading within `offline_after`
    times the point's expected interval, or within `timeouts_ms[key]`) and their ratio.
    Event points (video AI, static discharge) report only when something happens, so they
    are not counted."""
    cache: dict[str, str] = {}
    points: dict[str, int] = defaultdict(int)
    online: dict[str, int] = defaultdict(int)
    for p in registry:
        if p.parameter == "event":
            continue
        points[p.enterprise_code] += 1
        seen = last_seen_ms.get(p.key)
        # The point's own offline rule timeout when the caller has the rule set.
        timeout = (timeouts_ms or {}).get(p.key, offline_after * p.expected_interval_s * 1000)
        if seen is not None and now_ms - seen <= timeout:
            online[p.enterprise_code] += 1
    return [
        Row(
            "online",
            {"enterprise": ent, "district": _district(registry, ent, cache)},
            {"points": n, "online": online[ent], "rate": online[ent] / n},
            now_ms,
        )
        for ent, n in sorted(points.items())
    ]


# -- pipeline health -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """What one process did during one reporting interval (counts are per interval, gauges
    are the value at its end)."""

    process: str
    interval_s: float
    readings_in: int
    rejects: Mapping[RejectReason | str, int] = field(default_factory=dict)
    alarms: int = 0
    eval_lag_ms: float = 0.0
    outbox_depth: int = 0
    influx_errors: int = 0
    influx_dropped: int = 0


def pipeline_rows(stats: PipelineStats, ts_ms: int) -> list[Row]:
    """One `pipeline` row plus one `reject` row per reason seen in the interval."""
    rate = stats.readings_in / stats.interval_s if stats.interval_s > 0 else 0.0
    rows = [
        Row(
            "pipeline",
            {"process": stats.process},
            {
                "readings_in": int(stats.readings_in),
                "readings_per_s": float(rate),
                "rejects": int(sum(stats.rejects.values())),
                "alarms": int(stats.alarms),
                "eval_lag_ms": float(stats.eval_lag_ms),
                "outbox_depth": int(stats.outbox_depth),
                "influx_errors": int(stats.influx_errors),
                "influx_dropped": int(stats.influx_dropped),
                "interval_s": float(stats.interval_s),
            },
            ts_ms,
        )
    ]
    for reason in sorted(stats.rejects, key=str):
        n = stats.rejects[reason]
        if n:
            rows.append(
                Row(
                    "reject", {"process": stats.process, "reason": str(reason)}, {"count": n}, ts_ms
                )
            )
    return rows


# -- alert handling --------------------------------------------------------------------------


def notification_row(
    *,
    notification_id: str,
    enterprise_code: str,
    channel: str,
    event_type: str,
    result: str,
    attempts: int,
    latency_ms: float,
    ts_ms: int,
) -> Row:
    """One delivery outcome (`result`: delivered | retrying | dead)."""
    return Row(
        "notification",
        {
            "enterprise": enterprise_code,
            "channel": channel,
            "event_type": str(event_type),
            "result": result,
        },
        {
            "notification_id": notification_id,
            "attempts": int(attempts),
            "latency_ms": float(latency_ms),
        },
        ts_ms,
    )


@dataclass(frozen=True, slots=True)
class HandlingEvent:
    """A warning acknowledged, disposed, or found overdue (no disposition in time);
    `elapsed_s` counts from the warning being raised."""

    warning_id: str
    enterprise_code: str
    hazard_code: str
    colour: Colour
    event: str  # acknowledged | disposed | overdue
    elapsed_s: float
    ts_ms: int
    result: str = "none"  # the Disposition for `disposed`


def disposition_rows(events: Iterable[HandlingEvent], registry: Registry) -> list[Row]:
    cache: dict[str, str] = {}
    return [
        Row(
            "disposition",
            {
                "enterprise": h.enterprise_code,
                "district": _district(registry, h.enterprise_code, cache),
                "hazard": h.hazard_code or "none",
                "colour": str(h.colour),
                "event": h.event,
                "disposition": h.result,
            },
            {"warning_id": h.warning_id, "elapsed_s": float(h.elapsed_s)},
            h.ts_ms,
        )
        for h in events
    ]
