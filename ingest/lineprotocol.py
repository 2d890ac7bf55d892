"""InfluxDB line-protocol encoder (pure), millisecond timestamps, escaping per the line
protocol reference: measurement escapes comma and space; tag keys, tag values and field keys
escape comma, equals sign and space; string field values are double-quoted with `"` and `\\`
escaped. Line protocol cannot carry a newline inside a line, so newlines in names become a
space and in string fields the two characters `\\n`.

`reading_line()` writes the `reading` measurement of docs/influx-schema.md; `encode()` is the
generic form the other stages use for alarms, warnings, risk and pipeline metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from ingest.model import Point, Reading

_MEASUREMENT = str.maketrans({",": "\\,", " ": "\\ ", "\n": " ", "\r": " "})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": " ", "\r": " "})
_STRING = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r"})


class LineProtocolError(ValueError):
    """Something cannot be written as line protocol (no fields, bad type, empty name)."""


def escape_measurement(s: str) -> str:
    return s.translate(_MEASUREMENT)


def escape_key(s: str) -> str:
    """Escape a tag key, tag value or field key."""
    return s.translate(_KEY)


def _field_value(v: object) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None  # NaN/inf cannot be stored: field omitted
    if isinstance(v, str):
        return '"' + v.translate(_STRING) + '"'
    if v is None:
        return None
    raise LineProtocolError(
        f"field value {v!r} is a {type(v).__name__}; expected float, int, bool or str"
    )


def encode(
    measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, object], ts_ms: int
) -> str:
    """One line. Empty or None tag values are left out (line protocol has no empty tag);
    None and non-finite float fields are left out; at least one field must remain."""
    if not measurement:
        raise LineProtocolError("empty measurement name")
    parts = [escape_measurement(measurement)]
    for k in sorted(tags):  # sorted tags are what InfluxDB stores; it parses them faster
        v = tags[k]
        if v:
            parts.append(f",{escape_key(k)}={escape_key(str(v))}")
    fs = []
    for k, fv in fields.items():
        s = _field_value(fv)
        if s is not None:
            fs.append(f"{escape_key(k)}={s}")
    if not fs:
        raise LineProtocolError(
            f"{measurement}: no field with a storable value in {dict(fields)!r}"
        )
    return f"{''.join(parts)} {','.join(fs)} {int(ts_ms)}"


def reading_tags(point: Point) -> dict[str, str]:
    """The bounded-cardinality tags of the `reading` measurement (one set per point)."""
    return {
        "enterprise": point.enterprise_code,
        "district": point.district,
        "hazard": point.hazard_code,
        "zone": point.zone,
        "gateway": point.gateway_code,
        "tag": point.tag,
        "parameter": point.parameter,
        "unit": point.unit,
    }


_prefix_cache: dict[str, tuple[Point, str]] = {}


def _reading_prefix(point: Point) -> str:
    hit = _prefix_cache.get(point.key)
    if hit is not None and hit[0] is point:
        return hit[1]
    tags = reading_tags(point)
    prefix = "reading" + "".join(
        f",{escape_key(k)}={escape_key(tags[k])}" for k in sorted(tags) if tags[k]
    )
    if len(_prefix_cache) > 1_000_000:
        _prefix_cache.clear()
    _prefix_cache[point.key] = (point, prefix)
    return prefix


def reading_line(reading: Reading, point: Point) -> str:
    """The `reading` line of docs/influx-schema.md: fields value (float), quality (int),
    backfill (bool); event readings have no value but `event_type` and `text` strings."""
    v = reading.value
    fields = f"quality={reading.quality}i,backfill={'true' if reading.backfill else 'false'}"
    if v == v and v not in (math.inf, -math.inf):
        fields = f"value={float(v)!r},{fields}"
    if reading.event_type is not None:
        fields += f',event_type="{reading.event_type.translate(_STRING)}"'
    if reading.text is not None:
        fields += f',text="{reading.text.translate(_STRING)}"'
    return f"{_reading_prefix(point)} {fields} {reading.ts_ms}"
