"""The rule-file language: strict pydantic models for `*.rules.yaml` files and standard packs,
and the JSON Schema generated from them (`rules/schema/rules.schema.json`, published so
editors complete and check rule files). Pure data definitions; loading lives in `loader`.

A rule selects points with `match` and sets the fields it names; fields it does not name
keep the value an earlier rule (a standard pack, or an earlier file) gave that point.
"""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rules.model import Level

SCHEMA_VERSION = 1

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_MAX_DURATION_MS = 366 * 86_400_000
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$"


def parse_duration_ms(value: Any) -> int:
    """`"10s"`, `"5m"`, `"1h"`, `"250ms"` or a number of seconds -> milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a duration like 10s, 5m, 1h or 250ms")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError("a finite duration")
        if value < 0:
            raise ValueError("a duration >= 0")
        ms = round(value * 1000)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        ms = round(float(m.group(1)) * _UNIT_MS[m.group(2) or "s"])
    else:
        raise ValueError("a duration like 10s, 5m, 1h or 250ms")
    if ms > _MAX_DURATION_MS:
        raise ValueError("a duration of at most 366 days")
    return int(ms)


class _Strict(BaseModel):
    # NaN/inf are refused: a NaN set point could never fire
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


StrOrList = str | list[str]


class Match(_Strict):
    """Which registered points a rule applies to. Every given field must match (AND); a list
    matches any of its entries (OR); entries may use shell globs (`LT-*`, `gas.*`)."""

    enterprise: StrOrList | None = None
    tag: StrOrList | None = None
    parameter: StrOrList | None = None
    zone: StrOrList | None = None
    gateway: StrOrList | None = None
    hazard: StrOrList | None = None
    industry: StrOrList | None = None


class _Rule(_Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Unique rule name; shown on every alarm.")
    description: str = ""
    match: Match = Field(default_factory=Match)
    enabled: bool = Field(
        default=True, description="false removes this kind of rule from the matched points."
    )


def _duration_field(default: Any, description: str, alias: str | None = None) -> Any:
    return Field(
        default=default,
        alias=alias,
        description=description + " Duration: 10s, 5m, 1h, 250ms or seconds as a number.",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "pattern": _DURATION.pattern},
                {"type": "number", "minimum": 0},
            ]
        },
    )


class LimitRule(_Rule):
    """Gas first/second level (L1/L2) or process LL/L/H/HH limits with delays and deadband."""

    kind: Literal["limit"]
    levels: dict[Level, float] | None = Field(
        default=None,
        description="Set points by level in `unit` (default: the point's unit). Gas points use "
        "L1/L2 (oxygen L/H); other points LL/L/H/HH.",
    )
    unit: str | None = None
    for_: Any = _duration_field(0, "On-delay: the condition must hold this long to fire.", "for")
    off_delay: Any = _duration_field(0, "Off-delay: the value must be back this long to clear.")
    deadband: float | None = Field(
        default=None, ge=0, description="Clear only beyond the set point by this much (point unit)."
    )
    deadband_pct: float | None = Field(
        default=None,
        ge=0,
        le=50,
        description="Deadband as a percentage of the measuring range span.",
    )
    latch: bool = Field(default=False, description="Keep the alarm until a manual reset.")

    @field_validator("for_", "off_delay")
    @classmethod
    def _dur(cls, v: Any) -> int:
        return parse_duration_ms(v)

    @field_validator("levels")
    @classmethod
    def _ordered(cls, lv: dict[Level, float] | None) -> dict[Level, float] | None:
        order = [Level.LL, Level.L, Level.H, Level.HH]
        for seq in (order, [Level.L1, Level.L2]):
            got = [(x, lv[x]) for x in seq if lv and x in lv]
            for (a, va), (b, vb) in pairwise(got):
                if not va < vb:
                    raise ValueError(
                        f"set points rising in the order {' < '.join(x for x, _ in got)} "
                        f"(here {a}={va:g} is not below {b}={vb:g})"
                    )
        return lv


class OccupancyRule(_Rule):
    """Head-count over the approved quota (定员) of a workshop: `H` at once (DOMAIN.md §5)."""

    kind: Literal["occupancy"]
    quota: int | None = Field(default=None, ge=0, description="Default: the registry's `h`.")


class OfflineRule(_Rule):
    """No data for `multiple` x the point's expected interval (also points never heard from).
    A gateway silent for `gateway_multiple` x its shortest interval gives one `gateway` alarm
    that inhibits its points' offline alarms."""

    kind: Literal["offline"]
    multiple: float | None = Field(default=None, gt=1, le=1000)
    gateway_multiple: float | None = Field(default=None, gt=1, le=1000)
    gateway_window: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="A gateway counts as alive when anything came through it within this "
        "many of its shortest intervals; otherwise a silent point is left to the gateway alarm.",
    )


class FaultRule(_Rule):
    """Device-reported fault (quality 2) or a value outside the measuring range."""

    kind: Literal["fault"]
    over_range_latch: bool | None = Field(
        default=None,
        description="Gas detectors above their range also raise their highest "
        "level, latched until reset (DOMAIN.md §2).",
    )


class StuckRule(_Rule):
    """Frozen value: unchanged (within `tolerance` of the previous reading) for `for`."""

    kind: Literal["stuck"]
    for_: Any = _duration_field(None, "How long a value may stay unchanged.", "for")
    tolerance: float | None = Field(default=None, ge=0)

    @field_validator("for_")
    @classmethod
    def _dur(cls, v: Any) -> int | None:
        return None if v is None else parse_duration_ms(v)


class RateRule(_Rule):
    """Rate of change between consecutive good readings, per minute."""

    kind: Literal["rate"]
    max_rise_per_min: float | None = Field(default=None, gt=0)
    max_fall_per_min: float | None = Field(default=None, gt=0)
    max_rise_pct_span_per_min: float | None = Field(default=None, gt=0)
    max_fall_pct_span_per_min: float | None = Field(default=None, gt=0)


class VoteRule(_Rule):
    """k-of-n confirmed gas alarm per zone and gas; faulted/offline heads degrade the vote."""

    kind: Literal["vote"]
    k: int | None = Field(default=None, ge=1, le=16)
    min_heads: int | None = Field(
        default=None, ge=2, le=64, description="Only zones with at least this many heads vote."
    )


class InterlockRule(_Rule):
    """Tank at HH and its inlet valve not closed within `within` -> interlock failure."""

    kind: Literal["interlock"]
    valve: str | None = Field(
        default=None,
        description="Tag of the inlet valve point (default: "
        "the point attribute `inlet_valve`, else the zone's only valve).",
    )
    within: Any = _duration_field(None, "Time the interlock has to close the valve.")
    closed_max: float | None = Field(
        default=None, description="A valve reading at or below this counts as closed."
    )

    @field_validator("within")
    @classmethod
    def _dur(cls, v: Any) -> int | None:
        return None if v is None else parse_duration_ms(v)


class EventRule(_Rule):
    """Event messages (vehicle in a 1.1-class zone, missed static discharge, video AI)."""

    kind: Literal["event"]
    types: list[str] | None = Field(default=None, description='Event types that alarm; "*" = any.')
    hold: Any = _duration_field(None, "How long an event alarm stays open after the last event.")

    @field_validator("hold")
    @classmethod
    def _dur(cls, v: Any) -> int | None:
        return None if v is None else parse_duration_ms(v)


AnyRule = Annotated[
    LimitRule
    | OccupancyRule
    | OfflineRule
    | FaultRule
    | StuckRule
    | RateRule
    | VoteRule
    | InterlockRule
    | EventRule,
    Field(discriminator="kind"),
]
RULE_KINDS = (
    "limit",
    "occupancy",
    "offline",
    "fault",
    "stuck",
    "rate",
    "vote",
    "interlock",
    "event",
)


class RuleFile(_Strict):
    """One `*.rules.yaml` file."""

    version: Literal[1] = Field(default=1, description="Rule-file format version.")
    packs: dict[str, str] = Field(
        default_factory=dict,
        description='Standard pack versions to use, e.g. {gbt50493: "2019-amend1"}.',
    )
    rules: list[AnyRule] = Field(default_factory=list)


class ToxicSetPoint(_Strict):
    AL: float = Field(gt=0)
    AH: float = Field(gt=0)
    unit: str = "mg/m3"
    source: str = ""


class CombustibleSetPoints(_Strict):
    L1_pct_lel: float = Field(gt=0, le=100)
    L2_pct_lel: float = Field(gt=0, le=100)
    source: str = ""


class GasSetPoints(_Strict):
    combustible: CombustibleSetPoints
    toxic: dict[str, ToxicSetPoint]


class PackFile(_Strict):
    """A standard pack shipped as data in `rules/packs/*.pack.yaml`."""

    pack: str = Field(pattern=NAME_PATTERN)
    version: str
    title: str
    source: str
    order: int = Field(description="Packs apply in this order; user files come after all.")
    default: bool = Field(default=False, description="The version used when none is chosen.")
    gas_setpoints: GasSetPoints | None = None
    rules: list[AnyRule] = Field(default_factory=list)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a rule file (draft 2020-12), as published in rules/schema/."""
    schema = RuleFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://hazardwatch.example/schema/rules.schema.json"
    schema["title"] = "hazardwatch rule file"
    _drop_nulls(schema)
    return schema


def _drop_nulls(node: Any) -> None:
    if isinstance(node, dict):
        for k in [k for k, v in node.items() if v is None and k == "pattern"]:
            del node[k]
        for v in node.values():
            _drop_nulls(v)
    elif isinstance(node, list):
        for v in node:
            _drop_nulls(v)


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"
