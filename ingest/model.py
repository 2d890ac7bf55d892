"""Domain values of the ingest stage: measuring points, the registry that indexes them, and
validated readings. Pure data; every other package builds on these shapes.

Times inside the pipeline are integer epoch milliseconds (UTC): cheap to compare, exact, and
what MQTT gateways send. Convert to aware datetimes only at the edges (`ms_to_datetime`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from types import MappingProxyType

import msgspec


class Industry(StrEnum):
    HAZCHEM = "hazchem"
    FIREWORKS = "fireworks"


class Quality(IntEnum):
    """Quality code carried by every reading (the `q` of the MQTT contract)."""

    GOOD = 0
    UNCERTAIN = 1
    FAULT = 2  # instrument reports a fault
    MAINTENANCE = 3  # point under maintenance / calibration


@dataclass(frozen=True, slots=True)
class Point:
    """One registered measuring point (位号), as the provincial platforms register it.

    Limits are in the point's own `unit`. `None` means "not set". For gas points with no
    limits, the active standard pack supplies them (see `rules`). For `occupancy` points `h`
    is the approved head-count quota (定员).
    """

    enterprise_code: str
    enterprise_name: str
    industry: Industry
    district: str
    hazard_code: str  # major hazard installation (重大危险源) code; "" when not part of one
    hazard_level: int | None  # GB 18218 grade 1-4
    zone: str  # detectors watching the same area (voting, warnings)
    gateway_code: str  # points reaching us through one gateway (one outage alarm)
    tag: str  # 位号
    parameter: str  # gas.NH3, level, temperature, pressure, flow, humidity, occupancy, valve, event
    unit: str
    range_low: float | None = None
    range_high: float | None = None
    ll: float | None = None
    l: float | None = None  # noqa: E741 - the platforms' own name for the low limit
    h: float | None = None
    hh: float | None = None
    expected_interval_s: float = 60.0
    lat: float | None = None
    lon: float | None = None
    attrs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> str:
        """Unique identity of the point: `<enterprise_code>/<tag>`."""
        return f"{self.enterprise_code}/{self.tag}"

    @property
    def is_gas(self) -> bool:
        return self.parameter.startswith("gas.")

    @property
    def gas(self) -> str | None:
        """The gas formula of a gas point (`NH3` for `gas.NH3`), else None."""
        return self.parameter[4:] if self.is_gas else None


class Registry:
    """An immutable, indexed set of points. Build it with `Registry(points)`; the loader in
    `ingest.registry` validates rows first and names every bad line."""

    __slots__ = ("_by_enterprise", "_by_gateway", "_by_key", "_by_zone", "_points", "version")

    def __init__(self, points: Iterable[Point], version: str = "") -> None:
        pts = tuple(points)
        by_key: dict[str, Point] = {}
        for p in pts:
            if p.key in by_key:
                raise ValueError(f"duplicate point {p.key!r}")
            by_key[p.key] = p
        self._points = pts
        self._by_key = by_key
        by_gw: dict[tuple[str, str], list[Point]] = {}
        by_zone: dict[tuple[str, str], list[Point]] = {}
        by_ent: dict[str, list[Point]] = {}
        for p in pts:
            by_gw.setdefault((p.enterprise_code, p.gateway_code), []).append(p)
            by_zone.setdefault((p.enterprise_code, p.zone), []).append(p)
            by_ent.setdefault(p.enterprise_code, []).append(p)
        self._by_gateway = {k: tuple(v) for k, v in by_gw.items()}
        self._by_zone = {k: tuple(v) for k, v in by_zone.items()}
        self._by_enterprise = {k: tuple(v) for k, v in by_ent.items()}
        self.version = version

    def __len__(self) -> int:
        return len(self._points)

    def __iter__(self) -> Iterator[Point]:
        return iter(self._points)

    def __contains__(self, key: object) -> bool:
        return key in self._by_key

    @property
    def points(self) -> tuple[Point, ...]:
        return self._points

    def get(self, enterprise_code: str, tag: str) -> Point | None:
        return self._by_key.get(f"{enterprise_code}/{tag}")

    def by_key(self, key: str) -> Point | None:
        return self._by_key.get(key)

    def gateway(self, enterprise_code: str, gateway_code: str) -> tuple[Point, ...]:
        return self._by_gateway.get((enterprise_code, gateway_code), ())

    def gateways(self) -> Mapping[tuple[str, str], tuple[Point, ...]]:
        return MappingProxyType(self._by_gateway)

    def zone(self, enterprise_code: str, zone: str) -> tuple[Point, ...]:
        return self._by_zone.get((enterprise_code, zone), ())

    def zones(self) -> Mapping[tuple[str, str], tuple[Point, ...]]:
        return MappingProxyType(self._by_zone)

    def enterprise(self, enterprise_code: str) -> tuple[Point, ...]:
        return self._by_enterprise.get(enterprise_code, ())

    def enterprises(self) -> tuple[str, ...]:
        return tuple(self._by_enterprise)


class Reading(msgspec.Struct, frozen=True, gc=False):
    """A validated reading, normalised to its point's registered unit.

    `ts_ms` is the measurement time (event time), `received_ms` when hazardwatch got it;
    `backfill` marks data that arrived later than the configured skew bound (stored and
    evaluated, but never the cause of a real-time SMS for an alarm that already cleared).
    Event points (`parameter == "event"`) carry `event_type`/`text` and a NaN value.
    """

    enterprise_code: str
    tag: str
    ts_ms: int
    value: float
    quality: int = 0
    unit: str = ""
    received_ms: int = 0
    backfill: bool = False
    event_type: str | None = None
    text: str | None = None

    @property
    def key(self) -> str:
        return f"{self.enterprise_code}/{self.tag}"


class RejectReason(StrEnum):
    """Why a message or reading was dead-lettered. Metrics count per reason."""

    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"  # JSON is valid but not of the expected shape
    WRONG_TYPE = "wrong_type"
    NOT_FINITE = "not_finite"
    OVERSIZE = "oversize"
    BAD_TIME = "bad_time"
    CLOCK_SKEW = "clock_skew"
    BAD_QUALITY = "bad_quality"
    BAD_TOPIC = "bad_topic"
    UNKNOWN_ENTERPRISE = "unknown_enterprise"
    UNKNOWN_TAG = "unknown_tag"
    GATEWAY_MISMATCH = "gateway_mismatch"
    UNKNOWN_UNIT = "unknown_unit"
    UNCONVERTIBLE_UNIT = "unconvertible_unit"
    DUPLICATE = "duplicate"
    UNKNOWN_FORMAT = "unknown_format"


class DeadLetter(msgspec.Struct, frozen=True):
    """A rejected message or reading, with what was wrong and where it came from."""

    reason: RejectReason
    detail: str  # what, where, what was expected
    topic: str
    received_ms: int
    payload: bytes = b""  # the original bytes (truncated by the caller if huge)
    index: int | None = None  # position inside a batch payload, when one reading of many


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds -> aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def datetime_to_ms(dt: datetime) -> int:
    if dt.tzinfo is None:
        raise ValueError("naive datetime: hazardwatch times must carry a UTC offset")
    return round(dt.timestamp() * 1000)


def iso_ms(ms: int) -> str:
    """Epoch ms -> ISO 8601 UTC with milliseconds, e.g. 2026-11-29T08:00:00.000Z."""
    dt = ms_to_datetime(ms)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))
