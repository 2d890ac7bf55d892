"""The records the rules stage emits: alarm transitions and coloured warnings.

These are the contract of DESIGN.md ("Alarm events") and flow unchanged to the alerts stage,
to InfluxDB, and out of `hazardwatch replay` as JSON lines. One event per state change,
never one per reading; a level change of an open alarm is a new `firing` event with the new
level and the same `alarm_id`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec

from ingest.model import iso_ms


class Kind(StrEnum):
    LIMIT = "limit"
    OFFLINE = "offline"
    GATEWAY = "gateway"  # a whole gateway silent: one alarm, inhibits its points' offline alarms
    FAULT = "fault"  # out of measuring range or device-reported fault (仪表故障)
    STUCK = "stuck"  # frozen value
    RATE = "rate"
    VOTE = "vote"  # k-of-n confirmed gas alarm
    VOTE_DEGRADED = "vote_degraded"
    INTERLOCK = "interlock"
    OCCUPANCY = "occupancy"
    EVENT = "event"


class Level(StrEnum):
    L1 = "L1"  # gas first level (一级)
    L2 = "L2"  # gas second level (二级)
    LL = "LL"
    L = "L"
    H = "H"
    HH = "HH"


#: Levels that count as "second level" for warnings and ranking.
SECOND_LEVEL = frozenset({Level.L2, Level.LL, Level.HH})


class AlarmState(StrEnum):
    FIRING = "firing"
    CLEARED = "cleared"


class Colour(StrEnum):
    """Early-warning colours, lowest to highest."""

    BLUE = "blue"  # 蓝, low risk
    YELLOW = "yellow"  # 黄, general risk
    ORANGE = "orange"  # 橙, large risk
    RED = "red"  # 红, major risk

    @property
    def rank(self) -> int:
        return _COLOUR_RANK[self]

    @property
    def zh(self) -> str:
        return _COLOUR_ZH[self]


_COLOUR_RANK = {Colour.BLUE: 1, Colour.YELLOW: 2, Colour.ORANGE: 3, Colour.RED: 4}
_COLOUR_ZH = {Colour.BLUE: "蓝", Colour.YELLOW: "黄", Colour.ORANGE: "橙", Colour.RED: "红"}


class AlarmEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One alarm state change.

    `alarm_id` is deterministic (derived from the rule, the subject and the time the episode
    began), so replaying the same input or re-processing a partition gives the same ids.
    `pack`/`pack_version` name the standard pack whose threshold produced the alarm (empty
    for thresholds of the user's own rule files), `ruleset` the version of the loaded rules.
    `backfill` is true when the reading that caused it arrived late.
    """

    ts_ms: int
    enterprise_code: str
    hazard_code: str
    zone: str
    tag: str  # the point's tag; for gateway/zone alarms the gateway code or zone
    parameter: str
    kind: Kind
    level: Level | None
    state: AlarmState
    value: float | None
    threshold: float | None
    unit: str
    rule: str
    alarm_id: str
    pack: str = ""
    pack_version: str = ""
    ruleset: str = ""
    backfill: bool = False
    message: str = ""

    def to_record(self) -> dict[str, Any]:
        """The JSON-lines record of the contract (ts as ISO 8601 UTC)."""
        rec = msgspec.to_builtins(self)
        rec.pop("ts_ms")
        return {"ts": iso_ms(self.ts_ms), **rec}


class WarningState(StrEnum):
    RAISED = "raised"
    UPGRADED = "upgraded"  # colour went up (a new condition, or unresolved too long)
    CLOSED = "closed"  # disposition filed


class WarningEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A coloured early warning (红橙黄蓝) for an installation (or, with an empty
    `hazard_code`, an enterprise), raised from alarms by the warning model."""

    ts_ms: int
    warning_id: str
    enterprise_code: str
    hazard_code: str
    colour: Colour
    previous: Colour | None
    state: WarningState
    reason: str  # which condition of the warning model applied, in words
    alarm_ids: tuple[str, ...] = ()
    backfill: bool = False

    def to_record(self) -> dict[str, Any]:
        rec = msgspec.to_builtins(self)
        rec.pop("ts_ms")
        return {"ts": iso_ms(self.ts_ms), **rec}
