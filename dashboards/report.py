"""The district duty officers' daily report (值班日报): what it contains and how it is gathered.

`DailyReport` is a plain value. `collect()` fills it from InfluxDB (alarms, warnings,
handling, online rate) and, when given, the alert store (overdue dispositions, times to
acknowledge and dispose, as the alerts stage recorded them); ISA-18.2 figures come from
`rules.kpi` over the day's alarm events, so the report measures exactly as replay does.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from dashboards.influx import Influx
from dashboards.queries import SOURCE, flux_string
from ingest.model import Registry
from rules import kpi
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level

DAY_MS = 86_400_000
COLOURS = ("red", "orange", "yellow", "blue")
#: Duty officers' days are Beijing days (UTC+8, no daylight saving), as alerts render times.
BEIJING_OFFSET_H = 8.0


@dataclass(frozen=True, slots=True)
class OverdueRow:
    warning_id: str
    enterprise_code: str
    enterprise_name: str
    district: str
    hazard_code: str
    colour: str
    raised_ms: int | None
    open_hours: float


@dataclass(frozen=True, slots=True)
class OnlineRow:
    enterprise_code: str
    enterprise_name: str
    district: str
    rate: float  # 0..1 over the day


@dataclass(frozen=True, slots=True)
class BadActorRow:
    point: str  # enterprise/tag
    enterprise_name: str
    kind: str
    alarms: int
    share_pct: float


@dataclass(frozen=True)
class DailyReport:
    day: date
    district: str | None  # None: the whole city
    start_ms: int
    end_ms: int
    warnings_by_district: dict[str, dict[str, int]]  # district -> highest colour -> n
    overdue: list[OverdueRow]
    online: list[OnlineRow]
    bad_actors: list[BadActorRow]
    per_10min: list[int]  # 144 counts of alarms raised
    figures: dict[str, float]
    utc_offset_h: float = BEIJING_OFFSET_H
    mean_ack_s: float | None = None
    mean_dispose_s: float | None = None
    sources: list[str] = field(default_factory=list)  # where the numbers came from

    @property
    def title(self) -> str:
        where = self.district or "全市 city-wide"
        return f"值班日报 Daily duty report — {where} — {self.day.isoformat()} ({self.tz_label})"

    @property
    def tz_label(self) -> str:
        return f"UTC{self.utc_offset_h:+g}"


def day_range(day: date, utc_offset_h: float = BEIJING_OFFSET_H) -> tuple[int, int]:
    """[start, end) epoch ms of the calendar `day` at `utc_offset_h` hours from UTC."""
    tz = timezone(timedelta(hours=utc_offset_h))
    s = int(datetime(day.year, day.month, day.day, tzinfo=tz).timestamp() * 1000)
    return s, s + DAY_MS


def _ms(t: Any) -> int:
    return int(t.timestamp() * 1000)


def _district_filter(district: str | None) -> str:
    return f" and r.district == {flux_string(district)}" if district else ""


def _alarm_events(influx: Influx, start: int, end: int, district: str | None) -> list[AlarmEvent]:
    flux = "\n".join(
        [
            SOURCE,
            f'  |> filter(fn: (r) => r._measurement == "alarm"{_district_filter(district)})',
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "  |> group()",
            '  |> sort(columns: ["_time"])',
        ]
    )
    out = []
    for r in influx.records(flux, start, end):
        level = r.get("level")
        out.append(
            AlarmEvent(
                ts_ms=_ms(r["_time"]),
                enterprise_code=r["enterprise"],
                hazard_code="" if r.get("hazard") == "none" else r.get("hazard", ""),
                zone=r.get("zone", ""),
                tag=r["tag"],
                parameter=r.get("parameter", ""),
                kind=Kind(r["kind"]),
                level=None if level in (None, "none") else Level(level),
                state=AlarmState(r["state"]),
                value=r.get("value"),
                threshold=r.get("threshold"),
                unit="",
                rule=r.get("rule", ""),
                alarm_id=r.get("alarm_id", ""),
            )
        )
    return out


def _warnings_by_colour(
    influx: Influx, start: int, end: int, district: str | None, registry: Registry
) -> dict[str, dict[str, int]]:
    """Warnings raised or upgraded during the day, each counted once at the highest colour
    it reached that day (warnings start low and are upgraded as conditions persist)."""
    flux = "\n".join(
        [
            SOURCE,
            '  |> filter(fn: (r) => r._measurement == "warning" and '
            '(r._field == "warning_id" or r._field == "rank") and r.state != "closed"'
            f"{_district_filter(district)})",
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "  |> group()",
        ]
    )
    top: dict[str, tuple[int, str, str]] = {}
    for r in influx.records(flux, start, end):
        wid = r["warning_id"]
        if wid not in top or r["rank"] > top[wid][0]:
            top[wid] = (r["rank"], r["district"], r["colour"])
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for _rank, dist, colour in top.values():
        counts[dist][colour] += 1
    districts = {p.district for p in registry if not district or p.district == district}
    return {d: {c: counts[d][c] for c in COLOURS} for d in sorted(districts)}


def _handling(influx: Influx, start: int, end: int, district: str | None) -> list[dict]:
    flux = "\n".join(
        [
            SOURCE,
            f'  |> filter(fn: (r) => r._measurement == "disposition"{_district_filter(district)})',
            '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
            "  |> group()",
            '  |> sort(columns: ["_time"])',
        ]
    )
    return influx.records(flux, start, end)


def _online(
    influx: Influx, start: int, end: int, district: str | None, registry: Registry
) -> list[OnlineRow]:
    flux = "\n".join(
        [
            SOURCE,
            '  |> filter(fn: (r) => r._measurement == "online" and '
            f'(r._field == "online" or r._field == "points"){_district_filter(district)})',
            '  |> group(columns: ["enterprise", "district", "_field"])',
            "  |> sum()",
            "  |> group()",
        ]
    )
    acc: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for r in influx.records(flux, start, end):
        acc[(r["enterprise"], r["district"])][r["_field"]] = float(r["_value"])
    names = {p.enterprise_code: p.enterprise_name for p in registry}
    rows = [
        OnlineRow(
            ent,
            names.get(ent, ent),
            dist,
            v.get("online", 0.0) / v["points"] if v.get("points") else 0.0,
        )
        for (ent, dist), v in acc.items()
    ]
    return sorted(rows, key=lambda r: (r.rate, r.enterprise_code))


def collect(
    influx: Influx,
    registry: Registry,
    day: date,
    *,
    district: str | None = None,
    store: Any | None = None,
    kpi_config: kpi.KpiConfig | None = None,
    utc_offset_h: float = BEIJING_OFFSET_H,
) -> DailyReport:
    """Gather the report for calendar `day` at `utc_offset_h` (default Beijing time) and
    `district` (None: city-wide)."""
    start, end = day_range(day, utc_offset_h)
    names = {p.enterprise_code: p.enterprise_name for p in registry}
    sources = [f"InfluxDB {influx.cfg.bucket} at {influx.cfg.url}"]

    events = _alarm_events(influx, start, end, district)
    k = kpi.compute(events, start_ms=start, end_ms=end, config=kpi_config)
    per10 = [0] * (DAY_MS // kpi.TEN_MIN_MS)
    for e in events:
        if e.state == AlarmState.FIRING:
            per10[min((e.ts_ms - start) // kpi.TEN_MIN_MS, len(per10) - 1)] += 1
    bad = [
        BadActorRow(
            f"{b.source.enterprise_code}/{b.source.tag}",
            names.get(b.source.enterprise_code, b.source.enterprise_code),
            b.source.kind,
            b.annunciations,
            round(b.share_pct, 1),
        )
        for b in k.bad_actors
    ]

    ack: list[float] = []
    dispose: list[float] = []
    overdue: list[OverdueRow] = []
    if store is not None:
        sources.append(f"alert store {getattr(store, 'path', '')}".strip())
        for w in store.list_warnings(limit=None, until_ms=end):
            if district and w.district != district:
                continue
            if w.acked_ms is not None and start <= w.acked_ms < end:
                ack.append((w.acked_ms - w.raised_ms) / 1000)
            if w.closed_ms is not None and start <= w.closed_ms < end:
                dispose.append((w.closed_ms - w.raised_ms) / 1000)
            if w.is_open and w.overdue:
                overdue.append(
                    OverdueRow(
                        w.warning_id,
                        w.enterprise_code,
                        names.get(w.enterprise_code, ""),
                        w.district,
                        w.hazard_code,
                        str(w.colour),
                        w.raised_ms,
                        round((end - w.raised_ms) / 3_600_000, 1),
                    )
                )
    else:
        last: dict[str, dict] = {}
        for h in _handling(influx, start - DAY_MS, end, district):
            last[h["warning_id"]] = h
            t = _ms(h["_time"])
            if t < start:
                continue
            if h["event"] == "acknowledged":
                ack.append(float(h["elapsed_s"]))
            elif h["event"] == "disposed":
                dispose.append(float(h["elapsed_s"]))
        for wid, h in sorted(last.items()):
            if h["event"] == "overdue":
                t = _ms(h["_time"])
                raised = t - int(float(h["elapsed_s"]) * 1000)
                overdue.append(
                    OverdueRow(
                        wid,
                        h["enterprise"],
                        names.get(h["enterprise"], ""),
                        h["district"],
                        "" if h.get("hazard") == "none" else h.get("hazard", ""),
                        h["colour"],
                        raised,
                        round((end - raised) / 3_600_000, 1),
                    )
                )
    overdue.sort(key=lambda o: (-Colour(o.colour).rank, -o.open_hours, o.warning_id))

    return DailyReport(
        day=day,
        district=district,
        start_ms=start,
        end_ms=end,
        warnings_by_district=_warnings_by_colour(influx, start, end, district, registry),
        overdue=overdue,
        online=_online(influx, start, end, district, registry),
        bad_actors=bad,
        per_10min=per10,
        figures=k.figures(),
        mean_ack_s=sum(ack) / len(ack) if ack else None,
        mean_dispose_s=sum(dispose) / len(dispose) if dispose else None,
        sources=sources,
        utc_offset_h=utc_offset_h,
    )
