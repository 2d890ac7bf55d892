"""Replay: history in (CSV, JSON lines, or the `reading` measurement of InfluxDB), the rule
engine's fast path over it in event time, alarm events, warnings and ISA-18.2 figures out.

The readers are pure functions of text plus the registry (bad rows are collected with their
line numbers, never fatal); `read_influx` is the one adapter here that does I/O.
`run_replay` is deterministic: the same input gives the same alarms and ids as live running.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from ingest.model import Point, Reading, Registry, datetime_to_ms
from ingest.units import UnitError, linear
from rules import kpi
from rules.model import AlarmEvent, WarningEvent
from rules.risk import RiskLevel, enterprise_risk, risk_inputs

REQUIRED_COLUMNS = ("ts", "enterprise_code", "tag", "value")
OPTIONAL_COLUMNS = ("unit", "quality", "event_type", "text")
MAX_BAD_ROWS = 10_000  # a wholly wrong file should not fill memory with messages
DEFAULT_WARNINGS: Any = object()  # run_replay's default: the default warning model
DEFAULT_BATCH = 65_536  # readings per engine call: big enough to amortise numpy overhead


class ReplayInputError(ValueError):
    """The input as a whole cannot be read (missing file, no header, missing columns, an
    unreachable InfluxDB). Single bad rows are not errors: they are `BadRow`s."""


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int  # 1-based; a CSV header is line 1
    message: str  # what was wrong, where, and what was expected

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(slots=True)
class ReplayInput:
    """Readings in event-time order (normalised to each point's registered unit)."""

    source: str
    readings: list[Reading]
    bad_rows: list[BadRow] = field(default_factory=list)
    bad_row_count: int = 0  # all bad rows, also those beyond MAX_BAD_ROWS

    @property
    def start_ms(self) -> int | None:
        return self.readings[0].ts_ms if self.readings else None

    @property
    def end_ms(self) -> int | None:
        return self.readings[-1].ts_ms if self.readings else None


# --------------------------------------------------------------------------- row parsing


class _RowError(Exception):
    pass


_MISSING: Any = object()


def parse_ts(raw: Any) -> int:
    """Epoch milliseconds (an integer) or ISO 8601 with an offset -> epoch ms."""
    if isinstance(raw, bool):
        raise _RowError(f"ts: expected epoch milliseconds or ISO 8601 with offset, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float):
        if raw.is_integer():
            return int(raw)
        raise _RowError(f"ts: expected whole epoch milliseconds, got {raw!r}")
    if isinstance(raw, str):
        s = raw.strip()
        if s.isdigit():
            return int(s)
        try:
            dt = datetime.fromisoformat(s)
        except ValueError:
            raise _RowError(
                f"ts: expected epoch milliseconds or ISO 8601 with offset, got {raw!r}"
            ) from None
        if dt.tzinfo is None:
            raise _RowError(f"ts: ISO time {raw!r} has no UTC offset; add one (e.g. +08:00 or Z)")
        return datetime_to_ms(dt)
    raise _RowError(f"ts: expected epoch milliseconds or ISO 8601 with offset, got {raw!r}")


class _Normaliser:
    """Row fields -> Reading, with per-(point, unit) conversion factors cached."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._conv: dict[tuple[str, str], tuple[float, float]] = {}

    def reading(
        self,
        ts: Any,
        enterprise: Any,
        tag: Any,
        value: Any,
        unit: Any = None,
        quality: Any = None,
        event_type: Any = None,
        text: Any = None,
    ) -> Reading:
        ts_ms = parse_ts(ts)
        if not isinstance(enterprise, str) or not enterprise:
            raise _RowError(f"enterprise_code: expected a non-empty string, got {enterprise!r}")
        if not isinstance(tag, str) or not tag:
            raise _RowError(f"tag: expected a non-empty string, got {tag!r}")
        p = self.registry.get(enterprise, tag)
        if p is None:
            raise _RowError(
                f"point {enterprise}/{tag} is not in the registry; expected a registered "
                "enterprise_code and tag"
            )
        q = _quality(quality)
        is_event = p.parameter == "event"
        v = _value(value, allow_empty=is_event)
        if not is_event:
            v = self._convert(p, v, unit)
        et = event_type if isinstance(event_type, str) and event_type else None
        if is_event and et is None:
            raise _RowError(
                f"event_type: point {p.key} is an event point; expected the "
                "event type (e.g. vehicle_in_zone)"
            )
        tx = text if isinstance(text, str) and text else None
        return Reading(enterprise, tag, ts_ms, v, q, p.unit, ts_ms, False, et, tx)

    def _convert(self, p: Point, v: float, unit: Any) -> float:
        if unit is None or unit == "":
            return v
        if not isinstance(unit, str):
            raise _RowError(f"unit: expected a unit name, got {unit!r}")
        key = (p.key, unit)
        lin = self._conv.get(key)
        if lin is None:
            try:
                lin = linear(unit, p.unit, p.parameter)
            except UnitError as exc:
                raise _RowError(f"unit: {exc} (point {p.key} is registered in {p.unit})") from None
            self._conv[key] = lin
        return v * lin[0] + lin[1]


def _value(raw: Any, *, allow_empty: bool) -> float:
    if raw is None or raw == "":
        if allow_empty:
            return math.nan
        raise _RowError("value: expected a number, got an empty value")
    if isinstance(raw, bool):
        raise _RowError(f"value: expected a number, got {raw!r}")
    try:
        v = float(raw)
    except (TypeError, ValueError):
        raise _RowError(f"value: expected a number, got {raw!r}") from None
    if math.isnan(v) or math.isinf(v):
        raise _RowError(f"value: expected a finite number, got {raw!r}")
    return v


def _quality(raw: Any) -> int:
    if raw is None or raw == "":
        return 0
    try:
        q = int(raw) if not isinstance(raw, bool) else -1
    except (TypeError, ValueError):
        q = -1
    if q not in (0, 1, 2, 3) or (isinstance(raw, float) and not raw.is_integer()):
        raise _RowError(
            f"quality: expected 0 (good), 1 (uncertain), 2 (fault) or 3 (maintenance), got {raw!r}"
        )
    return q


def _finish(source: str, readings: list[Reading], bad: list[BadRow], n_bad: int) -> ReplayInput:
    readings.sort(key=lambda r: r.ts_ms)  # stable: equal times keep file order
    return ReplayInput(source, readings, bad, n_bad)


def _add_bad(bad: list[BadRow], line: int, message: str) -> None:
    if len(bad) < MAX_BAD_ROWS:
        bad.append(BadRow(line, message))


# --------------------------------------------------------------------------- readers


def parse_csv(text: str, registry: Registry, source: str = "<csv>") -> ReplayInput:
    """CSV with header `ts,enterprise_code,tag,value[,unit,quality]` (any column order;
    `event_type,text` for event points)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ReplayInputError(
            f"{source}: empty file; expected a header line "
            f"{','.join(REQUIRED_COLUMNS)}[,unit,quality]"
        ) from None
    cols = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise ReplayInputError(
            f"{source}: line 1: header lacks column(s) {', '.join(missing)}; expected "
            f"{','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}], got {','.join(cols)}"
        )
    unknown = [c for c in cols if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if unknown:
        raise ReplayInputError(
            f"{source}: line 1: unknown column(s) {', '.join(unknown)}; expected "
            f"{','.join(REQUIRED_COLUMNS)}[,{','.join(OPTIONAL_COLUMNS)}]"
        )
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ReplayInputError(f"{source}: line 1: column(s) {', '.join(dup)} appear twice")
    idx = {c: cols.index(c) for c in cols}
    order = [idx.get(c) for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    norm = _Normaliser(registry)
    out: list[Reading] = []
    bad: list[BadRow] = []
    n_bad = 0
    line = reader.line_num
    ncols = len(cols)
    i_ts, i_ent, i_tag, i_val = (idx[c] for c in REQUIRED_COLUMNS)
    i_unit, i_q = idx.get("unit"), idx.get("quality")
    # Fast path for the common row (a registered numeric point, epoch-ms or ISO time, no unit
    # or the point's own unit, empty or good quality); anything else takes the checked path.
    plain: dict[tuple[str, str], Point | None] = {}
    for row in reader:
        start_line, line = line + 1, reader.line_num
        if len(row) == ncols:
            try:
                ent, tag = row[i_ent], row[i_tag]
                p = plain.get((ent, tag), _MISSING)
                if p is _MISSING:
                    p = registry.get(ent, tag)
                    p = p if p is not None and p.parameter != "event" else None
                    plain[(ent, tag)] = p
                if (
                    p is not None
                    and (i_unit is None or not row[i_unit] or row[i_unit] == p.unit)
                    and (i_q is None or not row[i_q] or row[i_q] == "0")
                ):
                    t = row[i_ts]
                    ts = int(t) if t.isdigit() else parse_ts(t)
                    v = float(row[i_val])
                    if v - v == 0.0:  # finite: NaN and inf fail this
                        # the point's own strings: one copy per point, not per row
                        out.append(Reading(p.enterprise_code, p.tag, ts, v, 0, p.unit, ts))
                        continue
            except (ValueError, _RowError):
                pass  # the checked path below names the problem
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != ncols:
            n_bad += 1
            _add_bad(
                bad, start_line, f"expected {len(cols)} fields like the header, got {len(row)}"
            )
            continue
        try:
            args = [row[i].strip() if i is not None else None for i in order]
            out.append(norm.reading(*args))
        except _RowError as exc:
            n_bad += 1
            _add_bad(bad, start_line, str(exc))
    return _finish(source, out, bad, n_bad)


_JSON_FIELDS = {
    "ts",
    "enterprise_code",
    "tag",
    "value",
    "unit",
    "quality",
    "event_type",
    "type",
    "text",
    "v",
    "q",
}


class _JsonRow(msgspec.Struct, forbid_unknown_fields=True):
    """The shape of a plain JSON-lines reading (the fast path of `parse_jsonl`)."""

    ts: int | str
    enterprise_code: str
    tag: str
    value: float | None = None
    v: float | None = None
    unit: str | None = None
    quality: int | None = None
    q: int | None = None
    event_type: str | None = None
    type: str | None = None
    text: str | None = None


def parse_jsonl(text: str, registry: Registry, source: str = "<jsonl>") -> ReplayInput:
    """JSON lines with the CSV's fields (`v`/`q`/`type` accepted as in MQTT payloads)."""
    decoder = msgspec.json.Decoder()
    typed = msgspec.json.Decoder(_JsonRow)
    norm = _Normaliser(registry)
    out: list[Reading] = []
    bad: list[BadRow] = []
    n_bad = 0
    plain: dict[tuple[str, str], Point | None] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        # Fast path for the common line (as in parse_csv); anything else is checked below.
        try:
            row = typed.decode(raw)
        except msgspec.DecodeError:
            row = None
        if row is not None:
            key = (row.enterprise_code, row.tag)
            p = plain.get(key, _MISSING)
            if p is _MISSING:
                p = registry.get(*key)
                p = p if p is not None and p.parameter != "event" else None
                plain[key] = p
            v = row.value if row.value is not None else row.v
            q = row.quality if row.quality is not None else row.q
            if (
                p is not None
                and v is not None
                and v - v == 0.0
                and not q
                and (not row.unit or row.unit == p.unit)
                and row.event_type is None
                and row.type is None
            ):
                try:
                    ts = row.ts if isinstance(row.ts, int) else parse_ts(row.ts)
                except _RowError:
                    pass
                else:
                    out.append(Reading(p.enterprise_code, p.tag, ts, v, 0, p.unit, ts))
                    continue
        if not raw.strip():
            continue
        try:
            obj = decoder.decode(raw)
        except msgspec.DecodeError as exc:
            n_bad += 1
            _add_bad(bad, n, f"not valid JSON ({exc})")
            continue
        if not isinstance(obj, dict):
            n_bad += 1
            _add_bad(bad, n, f"expected a JSON object, got {type(obj).__name__}")
            continue
        unknown = sorted(set(obj) - _JSON_FIELDS)
        try:
            if unknown:
                raise _RowError(
                    f"unknown field(s) {', '.join(unknown)}; expected "
                    f"{', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"
                )
            for need in ("ts", "enterprise_code", "tag"):
                if need not in obj:
                    raise _RowError(f"{need}: missing")
            out.append(
                norm.reading(
                    obj["ts"],
                    obj["enterprise_code"],
                    obj["tag"],
                    obj.get("value", obj.get("v")),
                    obj.get("unit"),
                    obj.get("quality", obj.get("q")),
                    obj.get("event_type", obj.get("type")),
                    obj.get("text"),
                )
            )
        except _RowError as exc:
            n_bad += 1
            _add_bad(bad, n, str(exc))
    return _finish(source, out, bad, n_bad)


def read_readings(path: Path | str, registry: Registry) -> ReplayInput:
    """Read a replay file; the format follows the suffix (`.csv`, `.jsonl`/`.ndjson`/`.json`)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson", ".json"):
        raise ReplayInputError(
            f"{p}: unknown readings format {suffix or '(no suffix)'!r}; expected .csv or "
            ".jsonl (JSON lines)"
        )
    try:
        text = p.read_text("utf-8")
    except FileNotFoundError:
        raise ReplayInputError(f"{p}: no such file") from None
    except UnicodeDecodeError as exc:
        raise ReplayInputError(f"{p}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ReplayInputError(f"{p}: cannot read ({exc.strerror})") from None
    if suffix == ".csv":
        return parse_csv(text, registry, str(p))
    return parse_jsonl(text, registry, str(p))


def flux_history_query(bucket: str, start: str, stop: str, enterprise: str | None) -> str:
    """The Flux query for replay history: the `reading` measurement, `value` and `quality`
    pivoted into one row per point and instant (docs/influx-schema.md)."""
    ent = f' and r.enterprise == "{_flux_str(enterprise)}"' if enterprise else ""
    return (
        f'from(bucket: "{_flux_str(bucket)}")\n'
        f"  |> range(start: {start}, stop: {stop})\n"
        f'  |> filter(fn: (r) => r._measurement == "reading"{ent})\n'
        '  |> filter(fn: (r) => r._field == "value" or r._field == "quality")\n'
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")\n'
        '  |> keep(columns: ["_time", "enterprise", "tag", "unit", "value", "quality"])\n'
    )


def _flux_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _flux_time(ms: int) -> str:
    return f"time(v: {ms * 1_000_000})"


def read_influx(
    *,
    url: str,
    token: str,
    org: str,
    bucket: str,
    registry: Registry,
    start_ms: int,
    stop_ms: int,
    enterprise: str | None = None,
    timeout_s: float = 60.0,
) -> ReplayInput:
    """History from InfluxDB (2.x API, or 1.8 with Flux) as replay input. Rows of points
    that are no longer registered are reported as bad rows, not dropped silently."""
    from influxdb_client import InfluxDBClient  # heavy import, only for this input

    query = flux_history_query(bucket, _flux_time(start_ms), _flux_time(stop_ms), enterprise)
    source = f"influxdb {url} bucket {bucket}"
    norm = _Normaliser(registry)
    out: list[Reading] = []
    bad: list[BadRow] = []
    n_bad = 0
    try:
        with InfluxDBClient(url=url, token=token, org=org, timeout=int(timeout_s * 1000)) as c:
            records = c.query_api().query_stream(query, org=org)
            for n, rec in enumerate(records, start=1):
                vals = rec.values
                try:
                    out.append(
                        norm.reading(
                            datetime_to_ms(rec.get_time()),
                            vals.get("enterprise"),
                            vals.get("tag"),
                            vals.get("value"),
                            vals.get("unit"),
                            vals.get("quality"),
                        )
                    )
                except _RowError as exc:
                    n_bad += 1
                    _add_bad(
                        bad, n, f"record {n} ({vals.get('enterprise')}/{vals.get('tag')}): {exc}"
                    )
    except Exception as exc:  # translate the client's many exception types at the edge
        if isinstance(exc, ReplayInputError):
            raise
        raise ReplayInputError(f"{source}: history query failed: {_short(exc)}") from exc
    return _finish(source, out, bad, n_bad)


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    text = msg[0] if msg else type(exc).__name__
    return text[:300]


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class ReplayResult:
    alarms: list[AlarmEvent]
    warnings: list[WarningEvent]
    summary: kpi.Kpis
    readings: int
    start_ms: int
    end_ms: int
    # Enterprise dynamic risk at the end of the replay (with a warning model), worst first.
    risk: tuple[RiskLevel, ...] = ()


def _columns(engine: Any, readings: Sequence[Reading]) -> tuple[np.ndarray, ...]:
    """Readings -> the engine's column arrays (point index, ts, value, quality)."""
    index: dict[str, int] = {}
    n = len(readings)

    def idx(key: str) -> int:
        j = index.get(key)
        if j is None:
            j = index[key] = engine.point_index(key)
        return j

    pi = np.fromiter((idx(r.key) for r in readings), dtype=np.int64, count=n)
    ts = np.fromiter((r.ts_ms for r in readings), dtype=np.int64, count=n)
    val = np.fromiter((r.value for r in readings), dtype=np.float64, count=n)
    q = np.fromiter((r.quality for r in readings), dtype=np.int8, count=n)
    return pi, ts, val, q


def run_replay(
    registry: Registry,
    ruleset: Any,
    readings: Sequence[Reading],
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    batch_size: int = DEFAULT_BATCH,
    warning_model: Any | None = DEFAULT_WARNINGS,
    kpi_config: kpi.KpiConfig | None = None,
    engine: Any | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run the engine over `readings` (event-time order) from `start_ms` (default: the first
    reading; offline timers start there) to `end_ms` (default: the last reading).

    Readings go in batches through the vectorised `process_columns`, each with `now` = its
    last reading's time;
    a final `tick` at `end_ms` fires the timers due by then (offline, on-delays, interlock
    deadlines). The engine fires every timer at its due instant, so the batching changes no
    event, and the output equals the live runner's.

    Warnings come from `warning_model` (default: the default warning model; None: no
    warnings, e.g. for `rules diff`).
    """
    if engine is None:
        from rules.engine import Engine

        engine = Engine(ruleset, registry)
    eng = engine
    if not readings and (start_ms is None or end_ms is None):
        empty = kpi.compute([], start_ms=start_ms or 0, end_ms=end_ms or 0, config=kpi_config)
        return ReplayResult([], [], empty, 0, start_ms or 0, end_ms or 0)
    t0 = readings[0].ts_ms if start_ms is None else start_ms
    t1 = readings[-1].ts_ms if end_ms is None else end_ms
    state = eng.initial_state(t0)
    wm = warning_model
    if wm is DEFAULT_WARNINGS:
        from rules.warnings import WarningModel, load_warning_config

        wm = WarningModel(load_warning_config(), registry)
    wstate = wm.initial_state() if wm is not None else None
    alarms: list[AlarmEvent] = []
    warnings: list[WarningEvent] = []

    # Event-time order (stable, and linear for input that is already sorted).
    rs = sorted((r for r in readings if t0 <= r.ts_ms <= t1), key=lambda r: r.ts_ms)
    columnar = hasattr(eng, "process_columns")
    if columnar:
        pi, ts, val, q = _columns(eng, rs)
        event_rows = [k for k, r in enumerate(rs) if r.event_type is not None]
        backfill = np.fromiter((r.backfill for r in rs), dtype=bool, count=len(rs))
        any_backfill = bool(backfill.any())
    step = max(1, batch_size)
    ev_pos = 0
    for lo in range(0, len(rs), step):
        hi = min(lo + step, len(rs))
        now = rs[hi - 1].ts_ms
        if not columnar:
            state, evs = eng.process(state, rs[lo:hi], now)
        else:
            events = None
            # Event messages carry a type and text besides the (NaN) value.
            while ev_pos < len(event_rows) and event_rows[ev_pos] < hi:
                k = event_rows[ev_pos]
                events = events or {}
                events[k - lo] = (rs[k].event_type, rs[k].text)
                ev_pos += 1
            state, evs = eng.process_columns(
                state,
                pi[lo:hi],
                ts[lo:hi],
                val[lo:hi],
                q[lo:hi],
                now,
                backfill=backfill[lo:hi] if any_backfill else None,
                events=events,
            )
        alarms.extend(evs)
        if wm is not None and evs:
            wstate, wevs = wm.on_alarms(wstate, evs, now)
            warnings.extend(wevs)
        if progress is not None:
            progress(hi - lo)
    state, evs = eng.tick(state, t1)
    alarms.extend(evs)
    if wm is not None:
        wstate, wevs = wm.on_alarms(wstate, evs, t1)
        warnings.extend(wevs)
    summary = kpi.compute(alarms, start_ms=t0, end_ms=t1, config=kpi_config)
    risk: tuple[RiskLevel, ...] = ()
    if wm is not None:
        risk = _risk_at_end(registry, ruleset, wm, wstate, alarms, rs, t0, t1)
    return ReplayResult(alarms, warnings, summary, len(rs), t0, t1, risk)


def _risk_at_end(
    registry: Registry,
    ruleset: Any,
    wm: Any,
    wstate: Any,
    alarms: Sequence[AlarmEvent],
    readings: Sequence[Reading],
    t0: int,
    t1: int,
) -> tuple[RiskLevel, ...]:
    """Each enterprise's dynamic risk at `t1`: its open and overdue warnings, repeated
    alarms, and the share of its points that reported within their offline rule's timeout
    (no filings are known to a replay)."""
    open_ = wm.open_warnings(wstate)
    overdue = wm.overdue(wstate, t1)
    last: dict[str, int] = {}
    for r in readings:
        last[r.key] = r.ts_ms
    out = []
    for ent in registry.enterprises():
        watched = []
        for p in registry.enterprise(ent):
            pr = ruleset.rules_for(p.key) if ruleset is not None else None
            if pr is not None and pr.offline is not None:
                watched.append((p.key, pr.offline.timeout_ms))
        online = None
        if watched and t1 > t0:
            ok = sum(1 for k, timeout in watched if t1 - last.get(k, t0) <= timeout)
            online = ok / len(watched)
        inputs = risk_inputs(
            registry,
            ent,
            t1,
            open_warnings=open_,
            alarms=alarms,
            overdue_dispositions=sum(1 for w in overdue if w.enterprise_code == ent),
            online_rate=online,
        )
        out.append(enterprise_risk(inputs, wm.config.risk))
    out.sort(key=lambda r: (-r.rank, -r.score, r.enterprise_code))
    return tuple(out)


def write_jsonl(path: Path | str, records: Iterable[Mapping[str, Any]]) -> int:
    """Write records as JSON lines (UTF-8, one object per line); returns the count."""
    enc = msgspec.json.Encoder()
    n = 0
    with open(path, "wb") as f:
        for rec in records:
            f.write(enc.encode(rec))
            f.write(b"\n")
            n += 1
    return n
