"""What holds a notification back, as pure decisions: inhibition (a gateway outage hides its
points' offline alarms, an instrument fault hides that point's process alarms), filings
(maintenance, start-up/shutdown, decommission) scoped to an enterprise, installation or
point, and shelving with reason, person and expiry. Suppressed subjects are still recorded,
journaled and shown; only pushes and escalation stop.

Race between an inhibited alarm and its inhibitor: the rules stage usually emits the gateway
or fault alarm first, but nothing guarantees the order (one batch, two partitions, a restart).
Our choice: notifications of *inhibitable* alarms wait in the outbox for a short hold window
(`inhibit.gateway_offline_hold_s`, default 60 s, which costs nothing because offline
detection already waits several reading intervals); when the inhibitor arrives inside the
window, the held notifications are withdrawn before anyone is told. The same hold applies
when the gateway recovers and releases its points' offline alarms: those that clear within
the hold (the usual case) are never texted. Process alarms are held
only if `inhibit.fault_process_hold_s` > 0 (default 0): a real excursion is never delayed for
the sake of a tidier inbox, so a process alarm that fires before its point's fault is pushed,
and only its later reminders and escalations stop. Gas alarms at the second level are never
inhibited by a fault: an over-range reading may be a very rich cloud (DOMAIN.md §2).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from alerts.lifecycle import AlarmRecord, WarningRecord
from alerts.model import FilingKind

#: Alarm kinds an instrument fault of the same point hides (the process reading is not
#: trustworthy). Interlock failures, votes and events are never hidden.
PROCESS_KINDS = frozenset({"limit", "rate", "occupancy"})
#: Levels of a gas point that a fault must never hide (over-range latches the highest level).
NEVER_INHIBITED_GAS_LEVELS = frozenset({"L2"})


class SuppressionKind(StrEnum):
    INHIBITED = "inhibited"
    MAINTENANCE = "maintenance"
    SHUTDOWN = "startup_shutdown"
    DECOMMISSIONED = "decommissioned"
    SHELVED = "shelved"


@dataclass(frozen=True, slots=True)
class Suppression:
    kind: SuppressionKind
    by: str  # the inhibiting alarm id, filing id or shelf id

    def __str__(self) -> str:
        return f"{self.kind}:{self.by}"


@dataclass(frozen=True, slots=True)
class Filing:
    """A maintenance (大检修), start-up/shutdown (开停车) or decommission (停用) filing.

    Scope: the whole enterprise (`hazard_code` and `tag` empty), one installation
    (`hazard_code`), or one point (`tag`).
    """

    filing_id: str
    kind: FilingKind
    enterprise_code: str
    hazard_code: str
    tag: str
    start_ms: int
    planned_end_ms: int | None
    actual_end_ms: int | None
    interlock_bypassed: bool
    filed_by: str
    note: str
    created_ms: int
    ended_by: str = ""
    overdue_notified_ms: int | None = None

    @property
    def scope(self) -> str:
        if self.tag:
            return f"point {self.enterprise_code}/{self.tag}"
        if self.hazard_code:
            return f"installation {self.enterprise_code}/{self.hazard_code}"
        return f"enterprise {self.enterprise_code}"

    def covers(self, enterprise_code: str, hazard_code: str, tag: str | None) -> bool:
        """Whether a subject of this enterprise/installation/point is inside the scope. A
        warning has no tag: a point filing never covers it."""
        if enterprise_code != self.enterprise_code:
            return False
        if self.tag:
            return tag == self.tag
        if self.hazard_code:
            return hazard_code == self.hazard_code
        return True

    def open_at(self, now_ms: int) -> bool:
        return self.start_ms <= now_ms and self.actual_end_ms is None

    def overdue_at(self, now_ms: int) -> bool:
        """Planned end passed without an actual end (maintenance and start-up/shutdown)."""
        return (
            self.kind is not FilingKind.DECOMMISSION
            and self.actual_end_ms is None
            and self.planned_end_ms is not None
            and now_ms >= self.planned_end_ms
        )

    def suppresses_at(self, now_ms: int) -> bool:
        """Maintenance and a start-up/shutdown with interlocks in service hold pushes while
        open and not overdue; a start-up/shutdown with interlocks bypassed suppresses nothing
        (it raises an informational 黄 instead); a decommissioned point is silent until ended."""
        if not self.open_at(now_ms):
            return False
        if self.kind is FilingKind.DECOMMISSION:
            return True
        if self.kind is FilingKind.STARTUP_SHUTDOWN and self.interlock_bypassed:
            return False
        return not self.overdue_at(now_ms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "filing_id": self.filing_id,
            "kind": str(self.kind),
            "enterprise_code": self.enterprise_code,
            "hazard_code": self.hazard_code,
            "tag": self.tag,
            "start_ms": self.start_ms,
            "planned_end_ms": self.planned_end_ms,
            "actual_end_ms": self.actual_end_ms,
            "interlock_bypassed": self.interlock_bypassed,
            "filed_by": self.filed_by,
            "note": self.note,
            "created_ms": self.created_ms,
            "ended_by": self.ended_by,
            "overdue_notified_ms": self.overdue_notified_ms,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Filing:
        d = dict(d)
        d["kind"] = FilingKind(d["kind"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Shelf:
    """A shelved alarm (ISA-18.2 shelving): the same rule on the same point stays silent
    until `expires_ms` or until someone unshelves it."""

    shelf_id: str
    subject_id: str  # the alarm it was shelved from
    enterprise_code: str
    tag: str
    rule: str
    reason: str
    shelved_by: str
    start_ms: int
    expires_ms: int
    ended_ms: int | None = None
    ended_by: str = ""

    def active_at(self, now_ms: int) -> bool:
        return self.ended_ms is None and self.start_ms <= now_ms < self.expires_ms

    def covers(self, rec: AlarmRecord) -> bool:
        return rec.alarm_id == self.subject_id or (rec.enterprise_code, rec.tag, rec.rule) == (
            self.enterprise_code,
            self.tag,
            self.rule,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "shelf_id": self.shelf_id,
            "subject_id": self.subject_id,
            "enterprise_code": self.enterprise_code,
            "tag": self.tag,
            "rule": self.rule,
            "reason": self.reason,
            "shelved_by": self.shelved_by,
            "start_ms": self.start_ms,
            "expires_ms": self.expires_ms,
            "ended_ms": self.ended_ms,
            "ended_by": self.ended_by,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Shelf:
        return cls(**dict(d))


@dataclass(frozen=True)
class SuppressionView:
    """What suppression decisions look at, loaded by the service for one decision.

    `inhibitors` maps ("gateway", enterprise, gateway_code) and ("fault", enterprise, tag) to
    the id of the active alarm doing the inhibiting; `gateway_of` maps a point key to its
    gateway code (from the registry).
    """

    inhibitors: Mapping[tuple[str, str, str], str] = field(
        default_factory=lambda: MappingProxyType({})
    )
    filings: tuple[Filing, ...] = ()
    shelves: tuple[Shelf, ...] = ()
    gateway_of: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def inhibitor_key(rec: AlarmRecord) -> tuple[str, str, str] | None:
    """The key under which an active alarm inhibits others (gateway and fault alarms)."""
    if rec.kind == "gateway":
        return ("gateway", rec.enterprise_code, rec.tag)
    if rec.kind == "fault":
        return ("fault", rec.enterprise_code, rec.tag)
    return None


def inhibited_by_key(
    rec: AlarmRecord, gateway_of: Mapping[str, str]
) -> tuple[str, str, str] | None:
    """The inhibitor key that would hide this alarm, if its kind can be inhibited at all."""
    if rec.kind == "offline":
        gw = gateway_of.get(rec.point_key)
        return None if gw is None else ("gateway", rec.enterprise_code, gw)
    if rec.kind in PROCESS_KINDS:
        if rec.parameter.startswith("gas.") and rec.level in NEVER_INHIBITED_GAS_LEVELS:
            return None
        return ("fault", rec.enterprise_code, rec.tag)
    return None


def inhibition(rec: AlarmRecord | WarningRecord, view: SuppressionView) -> Suppression | None:
    if not isinstance(rec, AlarmRecord):
        return None
    key = inhibited_by_key(rec, view.gateway_of)
    if key is None:
        return None
    by = view.inhibitors.get(key)
    return None if by is None or by == rec.alarm_id else Suppression(SuppressionKind.INHIBITED, by)


def filing_suppression(
    rec: AlarmRecord | WarningRecord, filings: Iterable[Filing], now_ms: int
) -> Suppression | None:
    tag = rec.tag if isinstance(rec, AlarmRecord) else None
    for f in filings:
        if f.covers(rec.enterprise_code, rec.hazard_code, tag) and f.suppresses_at(now_ms):
            kind = {
                FilingKind.MAINTENANCE: SuppressionKind.MAINTENANCE,
                FilingKind.STARTUP_SHUTDOWN: SuppressionKind.SHUTDOWN,
                FilingKind.DECOMMISSION: SuppressionKind.DECOMMISSIONED,
            }[f.kind]
            return Suppression(kind, f.filing_id)
    return None


def shelf_suppression(
    rec: AlarmRecord | WarningRecord, shelves: Iterable[Shelf], now_ms: int
) -> Suppression | None:
    if not isinstance(rec, AlarmRecord):
        return None
    for s in shelves:
        if s.active_at(now_ms) and s.covers(rec):
            return Suppression(SuppressionKind.SHELVED, s.shelf_id)
    return None


def decide(
    rec: AlarmRecord | WarningRecord, view: SuppressionView, now_ms: int
) -> Suppression | None:
    """The first suppression that applies, in pipeline order: inhibit, filings, shelve."""
    return (
        inhibition(rec, view)
        or filing_suppression(rec, view.filings, now_ms)
        or shelf_suppression(rec, view.shelves, now_ms)
    )


def hold_ms(
    rec: AlarmRecord, hold_offline_s: float, hold_process_s: float, gateway_of: Mapping[str, str]
) -> int:
    """How long this alarm's notifications wait for a late inhibitor (see module docstring)."""
    key = inhibited_by_key(rec, gateway_of)
    if key is None:
        return 0
    return int((hold_offline_s if key[0] == "gateway" else hold_process_s) * 1000)


def matches_glob(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
