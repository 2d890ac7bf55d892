"""Flux text for every dashboard panel, written against the schema in docs/influx-schema.md.

Pure string building. Queries use only what Grafana's InfluxDB datasource expands
(`v.timeRangeStart`, `v.timeRangeStop`, `v.windowPeriod`, `v.defaultBucket`, `${var:regex}`)
and only Flux functions present in InfluxDB 1.8 (Flux 0.65): no `array`, `dict` or sliding
windows, so ISA-18.2 "chattering" (>= 3 in 60 s) is counted over fixed 1-minute windows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

RANGE = "range(start: v.timeRangeStart, stop: v.timeRangeStop)"
SOURCE = f"from(bucket: v.defaultBucket)\n  |> {RANGE}"


def flux_string(s: str) -> str:
    """A Flux string literal (JSON escaping is a subset of Flux's)."""
    return json.dumps(s, ensure_ascii=False)


def var_match(column: str, var: str) -> str:
    """`r.<column>` matches the (multi-value, All = .*) template variable `var`.

    Only for tags every row of the measurement has: the ingest writer leaves empty tags out
    (line protocol has no empty tag value), so `reading` rows of points outside an
    installation or zone have no `hazard`/`zone`, and Flux 0.65 cannot test a missing column
    in a filter. Our own measurements write "none" instead."""
    return f"r.{column} =~ /^${{{var}:regex}}$/"


def scope(*, district: bool = True, enterprise: bool = True, installation: bool = False) -> str:
    """The template-variable filters a dashboard applies (joined with `and`)."""
    parts = []
    if district:
        parts.append(var_match("district", "district"))
    if enterprise:
        parts.append(var_match("enterprise", "enterprise"))
    if installation:
        parts.append(var_match("hazard", "installation"))
    return " and ".join(parts)


def _filter(measurement: str, *conds: str) -> str:
    cond = " and ".join([f'r._measurement == "{measurement}"', *[c for c in conds if c]])
    return f"  |> filter(fn: (r) => {cond})"


def _q(*lines: str) -> str:
    return "\n".join([SOURCE, *lines])


# -- template variables ----------------------------------------------------------------------


def variable_values(tag: str, *conds: str, measurement: str = "reading") -> str:
    """Distinct values of a tag over the dashboard range (for a query variable); rows
    without the tag are left out."""
    return _q(
        _filter(measurement, *conds),
        f'  |> keep(columns: ["{tag}"])',
        "  |> group()",
        f'  |> distinct(column: "{tag}")',
        "  |> filter(fn: (r) => exists r._value)",
        '  |> sort(columns: ["_value"])',
    )


# -- city overview ---------------------------------------------------------------------------


def enterprise_map() -> str:
    """Latest risk snapshot per enterprise, one row each, with coordinates for the geomap."""
    return _q(
        _filter("risk", scope()),
        "  |> last()",
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        "  |> group()",
        '  |> keep(columns: ["enterprise", "name", "district", "lat", "lon", "level", "rank", '
        '"score", "warning", "warning_rank", "open_warnings"])',
        '  |> sort(columns: ["enterprise"])',
    )


def open_warnings_by_district() -> str:
    """Warnings whose latest event is not `closed`, counted per district (rows) and colour
    (columns)."""
    return _q(
        _filter("warning", scope(), '(r._field == "warning_id" or r._field == "rank")'),
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        '  |> group(columns: ["warning_id"])',
        '  |> sort(columns: ["_time"])',
        '  |> last(column: "_time")',
        '  |> filter(fn: (r) => r.state != "closed")',
        '  |> group(columns: ["district", "colour"])',
        '  |> count(column: "warning_id")',
        '  |> group(columns: ["district"])',
        '  |> pivot(rowKey: ["district"], columnKey: ["colour"], valueColumn: "warning_id")',
        "  |> group()",
        '  |> sort(columns: ["district"])',
    )


def newest_alarms(limit: int = 50) -> str:
    """The newest alarm events (firing and cleared), newest first."""
    return _q(
        _filter("alarm", scope()),
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        "  |> group()",
        '  |> sort(columns: ["_time"], desc: true)',
        f"  |> limit(n: {limit})",
        '  |> keep(columns: ["_time", "enterprise", "district", "hazard", "zone", "tag", '
        '"parameter", "kind", "level", "state", "value", "threshold", "alarm_id"])',
    )


def alarm_timeline() -> str:
    """Alarms raised per interval, one series per level."""
    return _q(
        _filter("alarm", scope(), 'r._field == "firing"', 'r.state == "firing"'),
        '  |> group(columns: ["level"])',
        "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)",
    )


def online_rate_total() -> str:
    """Online rate of the selected enterprises over the range: points reporting / points
    registered, summed over every sample (so big enterprises weigh more)."""
    return _q(
        _filter("online", scope(), '(r._field == "online" or r._field == "points")'),
        '  |> group(columns: ["_measurement", "_field"])',
        "  |> sum()",
        '  |> pivot(rowKey: ["_measurement"], columnKey: ["_field"], valueColumn: "_value")',
        "  |> map(fn: (r) => ({_value: if r.points > 0 then "
        "float(v: r.online) / float(v: r.points) else 0.0}))",
    )


def online_rate_by_enterprise() -> str:
    """Online rate per enterprise over time."""
    return _q(
        _filter("online", scope(), 'r._field == "rate"'),
        '  |> group(columns: ["enterprise"])',
        "  |> aggregateWindow(every: v.windowPeriod, fn: mean, createEmpty: false)",
    )


# -- enterprise drill-down -------------------------------------------------------------------


def point_series(enterprise: str, tag: str, fn: str) -> str:
    """One point's readings, downsampled with `fn` (max keeps peaks visible against high
    limits; min keeps dips visible against low ones)."""
    return _q(
        _filter(
            "reading",
            f"r.enterprise == {flux_string(enterprise)}",
            f"r.tag == {flux_string(tag)}",
            'r._field == "value"',
        ),
        f"  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)",
        '  |> keep(columns: ["_time", "_value", "tag"])',
    )


def zone_status(enterprise: str) -> str:
    """Per zone: alarms of the selected installations open now, 0 when all clear. Every zone
    that reported readings in the range gets a row."""
    ent = f"r.enterprise == {flux_string(enterprise)}"
    return "\n".join(
        [
            "seen = " + SOURCE,
            _filter("reading", ent, 'r._field == "value"'),
            '  |> group(columns: ["zone"])',
            "  |> last()",
            "  |> map(fn: (r) => ({r with open_alarms: 0}))",
            '  |> keep(columns: ["zone", "open_alarms"])',
            "open = " + SOURCE,
            _filter("alarm", ent, var_match("hazard", "installation"), 'r._field == "firing"'),
            '  |> group(columns: ["zone", "tag", "kind"])',
            '  |> sort(columns: ["_time"])',
            "  |> last()",
            "  |> map(fn: (r) => ({r with open_alarms: r._value}))",
            '  |> keep(columns: ["zone", "open_alarms"])',
            "union(tables: [seen, open])",
            '  |> group(columns: ["zone"])',
            '  |> sum(column: "open_alarms")',
            "  |> group()",
            '  |> sort(columns: ["zone"])',
        ]
    )


def enterprise_alarms(enterprise: str, limit: int = 100) -> str:
    """Alarm events of one enterprise (selected installations), newest first."""
    return _q(
        _filter(
            "alarm",
            f"r.enterprise == {flux_string(enterprise)}",
            var_match("hazard", "installation"),
        ),
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        "  |> group()",
        '  |> sort(columns: ["_time"], desc: true)',
        f"  |> limit(n: {limit})",
        '  |> keep(columns: ["_time", "zone", "tag", "kind", "level", "state", "value", '
        '"threshold", "alarm_id"])',
    )


def alarm_annotations(enterprise: str) -> str:
    """Alarm raises of one enterprise as annotation rows (time, text, tags)."""
    return _q(
        _filter(
            "alarm",
            f"r.enterprise == {flux_string(enterprise)}",
            '(r._field == "threshold" or r._field == "value")',
        ),
        '  |> filter(fn: (r) => r.state == "firing")',
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        "  |> group()",
        "  |> map(fn: (r) => ({_time: r._time, "
        'text: r.tag + " " + r.kind + " " + r.level + " value " + string(v: r.value), '
        "tags: r.zone}))",
    )


# -- alarm management (ISA-18.2 / IEC 62682) -------------------------------------------------


def _raised(*extra: str) -> str:
    return _filter(
        "alarm", scope(installation=True), 'r._field == "firing"', 'r.state == "firing"', *extra
    )


def alarms_per_10min() -> str:
    """Alarms raised per 10 minutes (ISA-18.2: ~1 manageable, > 10 a flood)."""
    return _q(
        _raised(),
        "  |> group()",
        "  |> aggregateWindow(every: 10m, fn: count, createEmpty: true)",
    )


def flood_windows(flood_start: int) -> str:
    """How many 10-minute windows had more than `flood_start` alarms (a flood)."""
    return _q(
        _raised(),
        "  |> group()",
        "  |> aggregateWindow(every: 10m, fn: count, createEmpty: true)",
        f"  |> map(fn: (r) => ({{r with _value: if r._value > {flood_start} then 1 else 0}}))",
        "  |> sum()",
    )


def chattering() -> str:
    """Per point, the most alarms it raised within one minute (ISA-18.2 chattering is >= 3
    in 60 s; fixed 1-minute windows, as Flux 0.65 has no sliding window), worst first."""
    return _q(
        _raised(),
        '  |> group(columns: ["enterprise", "tag"])',
        "  |> aggregateWindow(every: 1m, fn: count, createEmpty: false)",
        "  |> max()",
        "  |> group()",
        '  |> rename(columns: {_value: "max_per_minute"})',
        '  |> sort(columns: ["max_per_minute", "enterprise", "tag"], desc: true)',
        "  |> limit(n: 10)",
        '  |> keep(columns: ["enterprise", "tag", "max_per_minute"])',
    )


def bad_actors(limit: int = 10) -> str:
    """The points raising the most alarms (ISA-18.2 'top bad actors')."""
    return _q(
        _raised(),
        '  |> group(columns: ["enterprise", "tag", "parameter"])',
        "  |> count()",
        "  |> group()",
        '  |> rename(columns: {_value: "alarms"})',
        '  |> sort(columns: ["alarms"], desc: true)',
        f"  |> limit(n: {limit})",
    )


def mean_time_to(event: str) -> str:
    """Mean seconds from a warning being raised to its `event` (acknowledged|disposed)."""
    return _q(
        _filter(
            "disposition",
            scope(installation=True),
            f'r.event == "{event}"',
            'r._field == "elapsed_s"',
        ),
        "  |> group()",
        "  |> mean()",
    )


def overdue_dispositions() -> str:
    """Warnings whose latest handling event is `overdue` (no disposition within the limit)."""
    return _q(
        _filter("disposition", scope(installation=True)),
        '  |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")',
        '  |> group(columns: ["warning_id"])',
        '  |> sort(columns: ["_time"])',
        '  |> last(column: "_time")',
        "  |> group()",
        '  |> filter(fn: (r) => r.event == "overdue")',
        '  |> keep(columns: ["_time", "warning_id", "enterprise", "district", "hazard", '
        '"colour", "elapsed_s"])',
        '  |> sort(columns: ["elapsed_s"], desc: true)',
    )


# -- pipeline health -------------------------------------------------------------------------


def pipeline_field(field: str, fn: str) -> str:
    """One pipeline gauge/counter per process over time."""
    return _q(
        _filter("pipeline", f'r._field == "{field}"'),
        '  |> group(columns: ["process"])',
        f"  |> aggregateWindow(every: v.windowPeriod, fn: {fn}, createEmpty: false)",
    )


def rejects_by_reason() -> str:
    return _q(
        _filter("reject", 'r._field == "count"'),
        '  |> group(columns: ["reason"])',
        "  |> aggregateWindow(every: v.windowPeriod, fn: sum, createEmpty: false)",
    )


def notifications_by_result() -> str:
    """Delivery outcomes per channel. The `result` tag is renamed: Flux's CSV has its own
    `result` column (the yield name), and two columns of one name confuse clients."""
    return _q(
        _filter("notification", 'r._field == "attempts"'),
        '  |> rename(columns: {result: "outcome"})',
        '  |> group(columns: ["channel", "outcome"])',
        "  |> aggregateWindow(every: v.windowPeriod, fn: count, createEmpty: false)",
    )


# -- what Grafana does before running a query ------------------------------------------------

_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def interpolate(
    flux: str,
    *,
    start: str,
    stop: str,
    window: str,
    bucket: str,
    variables: Mapping[str, Sequence[str] | None] | None = None,
) -> str:
    """Expand the Flux macros and template variables as Grafana's InfluxDB datasource does:
    `v.timeRangeStart/Stop` (RFC 3339), `v.windowPeriod` (a duration), `v.defaultBucket`,
    and `${name:regex}` (regex-escaped values joined with `|`; None = All = `.*`)."""
    variables = variables or {}

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name not in variables:
            return m.group(0)
        values = variables[name]
        if values is None:
            return ".*"
        if m.group(2) == "regex" or len(values) > 1:
            return "(" + "|".join(re.escape(v) for v in values) + ")"
        return values[0]

    out = _VAR.sub(repl, flux)
    return (
        out.replace("v.timeRangeStart", start)
        .replace("v.timeRangeStop", stop)
        .replace("v.windowPeriod", window)
        .replace("v.defaultBucket", flux_string(bucket))
    )
