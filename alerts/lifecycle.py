"""Lifecycle of alarms and warnings as pure state transitions over frozen records:
firing -> acknowledged -> cleared (消警) -> closed with a disposition. Each function takes the
current record, the event or human action and `now_ms`, and returns the new record plus the
list of changes the service turns into journal entries and notifications. No I/O, no clock.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from alerts.model import Disposition
from rules.model import SECOND_LEVEL, AlarmEvent, AlarmState, Colour, Level, WarningEvent


class Phase(StrEnum):
    """Where an alarm or warning is in its life (the `state` filter of the API)."""

    FIRING = "firing"  # raised, nobody has acknowledged it yet
    ACKNOWLEDGED = "acknowledged"  # someone took it on; the condition may still be present
    CLEARED = "cleared"  # back to normal (消警); awaits its disposition
    CLOSED = "closed"  # disposition filed (处置)


OPEN_PHASES = frozenset({Phase.FIRING, Phase.ACKNOWLEDGED, Phase.CLEARED})


class Change(StrEnum):
    """What one transition did; the service journals each and notifies for some."""

    RAISED = "raised"
    LEVEL_UP = "level_up"  # a more severe level: needs acknowledging again
    LEVEL_DOWN = "level_down"
    CLEARED = "cleared"
    LATCHED = "latched"  # back to normal but latched: stays annunciated until acknowledged
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"
    REOPENED = "reopened"  # still present after a manual close: fires again
    EVENT_AFTER_CLOSE = "event_after_close"  # e.g. the clear of an alarm already closed
    COLOUR_UP = "colour_up"  # a warning upgraded


class LifecycleError(ValueError):
    """A human action that the subject's current phase does not allow (says which and why)."""


def _level_rank(level: Level | str | None) -> int:
    if level is None:
        return 0
    return 2 if level in SECOND_LEVEL else 1


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm as the alerts stage keeps it: the latest event's facts plus its lifecycle."""

    alarm_id: str
    enterprise_code: str
    district: str
    hazard_code: str
    zone: str
    tag: str
    parameter: str
    kind: str
    level: str | None
    rule: str
    unit: str
    value: float | None
    threshold: float | None
    message: str
    pack: str
    pack_version: str
    ruleset: str
    colour: Colour  # routing colour (from level and kind, routing config)
    phase: Phase
    active: bool  # the condition is present (last event was `firing`)
    latched: bool  # alerts-side latch: a clear does not end it before it is acknowledged
    raised_ms: int
    updated_ms: int
    event_ts_ms: int  # ts of the latest applied event
    backfill: bool = False
    tier: int = 0  # escalation tier (0 = the colour's own ladder step)
    tier_since_ms: int = 0
    reminders: int = 0
    last_reminder_ms: int = 0
    overdue: bool = False  # no disposition within the configured time
    reopened: int = 0
    suppressed: str = ""  # why pushes are held back now ("" = not suppressed)
    notified: bool = False  # people were told of the current episode
    acked_ms: int | None = None
    acked_by: str = ""
    cleared_ms: int | None = None
    closed_ms: int | None = None
    closed_by: str = ""
    disposition: Disposition | None = None
    disposition_note: str = ""
    # Closed while present and the source (rules engine) was asked to reset it: if no clear
    # comes back within the grace time, the source did not hold a latch and we re-fire here.
    reset_requested_ms: int | None = None

    @property
    def subject_id(self) -> str:
        return self.alarm_id

    @property
    def point_key(self) -> str:
        return f"{self.enterprise_code}/{self.tag}"

    @property
    def is_open(self) -> bool:
        return self.phase in OPEN_PHASES

    @property
    def acknowledged(self) -> bool:
        return self.acked_ms is not None

    def to_dict(self) -> dict[str, Any]:
        # Flat fields only: cheaper than dataclasses.asdict's deep copy on the alarm path.
        d = {f: getattr(self, f) for f in _ALARM_FIELDS}
        d["colour"] = str(self.colour)
        d["phase"] = str(self.phase)
        d["disposition"] = None if self.disposition is None else str(self.disposition)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlarmRecord:
        d = dict(d)
        d["colour"] = Colour(d["colour"])
        d["phase"] = Phase(d["phase"])
        d["disposition"] = None if d.get("disposition") is None else Disposition(d["disposition"])
        return cls(**d)


@dataclass(frozen=True, slots=True)
class WarningRecord:
    """A coloured warning (红橙黄蓝) and its closed loop: raised, acknowledged, disposed."""

    warning_id: str
    enterprise_code: str
    district: str
    hazard_code: str
    colour: Colour
    previous: Colour | None
    reason: str
    alarm_ids: tuple[str, ...]
    phase: Phase
    raised_ms: int
    updated_ms: int
    event_ts_ms: int
    backfill: bool = False
    tier: int = 0
    tier_since_ms: int = 0
    reminders: int = 0
    last_reminder_ms: int = 0
    overdue: bool = False
    suppressed: str = ""
    notified: bool = False
    acked_ms: int | None = None
    acked_by: str = ""
    closed_ms: int | None = None
    closed_by: str = ""
    disposition: Disposition | None = None
    disposition_note: str = ""

    @property
    def subject_id(self) -> str:
        return self.warning_id

    @property
    def is_open(self) -> bool:
        return self.phase in OPEN_PHASES

    @property
    def active(self) -> bool:
        # A warning stays "present" until its disposition closes it (DOMAIN.md §4).
        return self.phase is not Phase.CLOSED

    @property
    def acknowledged(self) -> bool:
        return self.acked_ms is not None

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in _WARNING_FIELDS}
        d["colour"] = str(self.colour)
        d["previous"] = None if self.previous is None else str(self.previous)
        d["phase"] = str(self.phase)
        d["alarm_ids"] = list(self.alarm_ids)
        d["disposition"] = None if self.disposition is None else str(self.disposition)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WarningRecord:
        d = dict(d)
        d["colour"] = Colour(d["colour"])
        d["previous"] = None if d.get("previous") is None else Colour(d["previous"])
        d["phase"] = Phase(d["phase"])
        d["alarm_ids"] = tuple(d.get("alarm_ids") or ())
        d["disposition"] = None if d.get("disposition") is None else Disposition(d["disposition"])
        return cls(**d)


Record = AlarmRecord | WarningRecord
_ALARM_FIELDS = tuple(f.name for f in dataclasses.fields(AlarmRecord))
_WARNING_FIELDS = tuple(f.name for f in dataclasses.fields(WarningRecord))


def new_alarm(
    ev: AlarmEvent, *, district: str, colour: Colour, latched: bool, now_ms: int
) -> tuple[AlarmRecord, list[Change]]:
    """The record for the first event of an alarm id (a `cleared` first event, e.g. after a
    lost firing, still gives a record so the platform and the journal see it)."""
    firing = ev.state is AlarmState.FIRING
    rec = AlarmRecord(
        alarm_id=ev.alarm_id,
        enterprise_code=ev.enterprise_code,
        district=district,
        hazard_code=ev.hazard_code,
        zone=ev.zone,
        tag=ev.tag,
        parameter=ev.parameter,
        kind=str(ev.kind),
        level=None if ev.level is None else str(ev.level),
        rule=ev.rule,
        unit=ev.unit,
        value=ev.value,
        threshold=ev.threshold,
        message=ev.message,
        pack=ev.pack,
        pack_version=ev.pack_version,
        ruleset=ev.ruleset,
        colour=colour,
        phase=Phase.FIRING if firing else Phase.CLEARED,
        active=firing,
        latched=latched,
        raised_ms=ev.ts_ms,
        updated_ms=now_ms,
        event_ts_ms=ev.ts_ms,
        backfill=ev.backfill,
        tier_since_ms=now_ms,
        cleared_ms=None if firing else ev.ts_ms,
    )
    return rec, [Change.RAISED] if firing else [Change.CLEARED]


def apply_alarm_event(
    rec: AlarmRecord, ev: AlarmEvent, *, colour: Colour, now_ms: int
) -> tuple[AlarmRecord, list[Change]]:
    """A later event of the same alarm id: level change, clear, or a re-assertion."""
    facts = {
        "value": ev.value,
        "threshold": ev.threshold,
        "message": ev.message or rec.message,
        "updated_ms": now_ms,
        "event_ts_ms": max(rec.event_ts_ms, ev.ts_ms),
        "backfill": ev.backfill,
        "ruleset": ev.ruleset or rec.ruleset,
    }
    if ev.state is AlarmState.FIRING:
        new_level = None if ev.level is None else str(ev.level)
        if rec.phase is Phase.CLOSED:
            # Closed by hand but the rules say it is (again) present: it fires again.
            return _reopen(rec, now_ms, level=new_level, colour=colour, **facts), [Change.REOPENED]
        if not rec.active:
            # Present again under the same id (latched alarm re-asserting): a new raise.
            return dataclasses.replace(
                rec,
                level=new_level,
                colour=colour,
                active=True,
                phase=Phase.FIRING,
                acked_ms=None,
                acked_by="",
                cleared_ms=None,
                notified=False,
                **facts,
            ), [Change.RAISED]
        if new_level == rec.level:
            return dataclasses.replace(rec, **facts), []
        up = _level_rank(new_level) > _level_rank(rec.level) or colour.rank > rec.colour.rank
        if up:
            # A worse level must be acknowledged again (ISA-18.2: a new annunciation).
            return dataclasses.replace(
                rec,
                level=new_level,
                colour=max(colour, rec.colour, key=lambda c: c.rank),
                phase=Phase.FIRING,
                acked_ms=None,
                acked_by="",
                **facts,
            ), [Change.LEVEL_UP]
        return dataclasses.replace(rec, level=new_level, **facts), [Change.LEVEL_DOWN]
    # cleared
    if rec.phase is Phase.CLOSED or not rec.active:
        return dataclasses.replace(rec, active=False, **facts), (
            [Change.EVENT_AFTER_CLOSE] if rec.phase is Phase.CLOSED else []
        )
    if rec.latched and rec.acked_ms is None:
        return dataclasses.replace(rec, active=False, cleared_ms=ev.ts_ms, **facts), [
            Change.LATCHED
        ]
    return dataclasses.replace(
        rec, active=False, phase=Phase.CLEARED, cleared_ms=ev.ts_ms, **facts
    ), [Change.CLEARED]


def _reopen(rec: AlarmRecord, now_ms: int, **changes: Any) -> AlarmRecord:
    return dataclasses.replace(
        rec,
        phase=Phase.FIRING,
        active=True,
        reopened=rec.reopened + 1,
        raised_ms=now_ms,
        tier=0,
        tier_since_ms=now_ms,
        reminders=0,
        last_reminder_ms=0,
        overdue=False,
        notified=False,
        acked_ms=None,
        acked_by="",
        cleared_ms=None,
        closed_ms=None,
        closed_by="",
        disposition=None,
        disposition_note="",
        reset_requested_ms=None,
        **changes,
    )


def acknowledge(rec: Record, user: str, now_ms: int) -> tuple[Record, list[Change]]:
    """Someone takes the alarm or warning on. Acknowledging twice is a no-op (no changes);
    acknowledging a closed subject is an error."""
    if not user:
        raise LifecycleError("acknowledge: the person acknowledging is required")
    if rec.phase is Phase.CLOSED:
        raise LifecycleError(f"{rec.subject_id} is closed; there is nothing to acknowledge")
    if rec.acked_ms is not None:
        return rec, []
    if isinstance(rec, AlarmRecord):
        phase = Phase.ACKNOWLEDGED if rec.active else Phase.CLEARED
    else:
        phase = Phase.ACKNOWLEDGED
    return dataclasses.replace(
        rec, phase=phase, acked_ms=now_ms, acked_by=user, updated_ms=now_ms
    ), [Change.ACKNOWLEDGED]


def dispose(
    rec: Record, user: str, code: Disposition, note: str, now_ms: int
) -> tuple[Record, list[Change]]:
    """File the disposition (处置) and close. An alarm whose condition is still present fires
    again at once (DOMAIN.md: an alarm still present after reset re-asserts)."""
    if not user:
        raise LifecycleError("dispose: the person filing the disposition is required")
    if rec.phase is Phase.CLOSED:
        raise LifecycleError(
            f"{rec.subject_id} is already closed ({rec.disposition} by {rec.closed_by})"
        )
    code = Disposition(code)
    if code is Disposition.OTHER and not note.strip():
        raise LifecycleError("dispose: a note is required when the disposition is 'other'")
    closed = dataclasses.replace(
        rec,
        phase=Phase.CLOSED,
        closed_ms=now_ms,
        closed_by=user,
        disposition=code,
        disposition_note=note,
        updated_ms=now_ms,
        acked_ms=rec.acked_ms if rec.acked_ms is not None else now_ms,
        acked_by=rec.acked_by or user,
    )
    return closed, [Change.CLOSED]


def reopen_if_present(rec: AlarmRecord, now_ms: int) -> tuple[AlarmRecord, list[Change]]:
    """After a manual close: an alarm whose condition is still present fires again."""
    if rec.phase is Phase.CLOSED and rec.active:
        return _reopen(rec, now_ms, updated_ms=now_ms), [Change.REOPENED]
    return rec, []


def new_warning(
    ev: WarningEvent, *, district: str, now_ms: int
) -> tuple[WarningRecord, list[Change]]:
    rec = WarningRecord(
        warning_id=ev.warning_id,
        enterprise_code=ev.enterprise_code,
        district=district,
        hazard_code=ev.hazard_code,
        colour=Colour(ev.colour),
        previous=None if ev.previous is None else Colour(ev.previous),
        reason=ev.reason,
        alarm_ids=tuple(ev.alarm_ids),
        phase=Phase.FIRING,
        raised_ms=ev.ts_ms,
        updated_ms=now_ms,
        event_ts_ms=ev.ts_ms,
        backfill=ev.backfill,
        tier_since_ms=now_ms,
    )
    return rec, [Change.RAISED]


def apply_warning_event(
    rec: WarningRecord, ev: WarningEvent, now_ms: int
) -> tuple[WarningRecord, list[Change]]:
    """An upgrade (new colour) or the model's own `closed` echo of a disposition."""
    from rules.model import WarningState

    alarm_ids = tuple(dict.fromkeys((*rec.alarm_ids, *ev.alarm_ids)))
    base = {
        "updated_ms": now_ms,
        "event_ts_ms": max(rec.event_ts_ms, ev.ts_ms),
        "alarm_ids": alarm_ids,
    }
    if ev.state is WarningState.CLOSED:
        # The warning model confirms a close that was filed here; nothing new to tell anyone.
        return dataclasses.replace(rec, **base), []
    colour = Colour(ev.colour)
    if rec.phase is Phase.CLOSED:
        return dataclasses.replace(rec, **base), [Change.EVENT_AFTER_CLOSE]
    if colour.rank > rec.colour.rank:
        return dataclasses.replace(
            rec,
            colour=colour,
            previous=rec.colour,
            reason=ev.reason,
            phase=Phase.FIRING,
            acked_ms=None,
            acked_by="",
            tier=0,
            tier_since_ms=now_ms,
            **base,
        ), [Change.COLOUR_UP]
    return dataclasses.replace(rec, reason=ev.reason or rec.reason, **base), []
