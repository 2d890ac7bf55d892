"""Escalation timers as pure functions of a record and the routing file's `escalation`
section: not acknowledged in time -> next tier; reminders while open; disposition overdue.
The service's `tick(now_ms)` asks `due()` what to do; nothing here reads a clock, so a
restart that reloads the records from SQLite resumes every timer where it was.
"""

from __future__ import annotations

from enum import StrEnum

from alerts.lifecycle import AlarmRecord, Phase, WarningRecord
from alerts.routing import Escalation, colour_at_tier, max_tier


class Timer(StrEnum):
    ESCALATE = "escalate"
    REMIND = "remind"
    OVERDUE = "disposition_overdue"


def ack_deadline(rec: AlarmRecord | WarningRecord, esc: Escalation) -> int | None:
    """When an unacknowledged, unsuppressed, firing subject escalates one tier (None when it
    cannot: acknowledged, cleared, closed, suppressed, or already at the top of the ladder)."""
    if rec.phase is not Phase.FIRING or rec.acknowledged or rec.suppressed:
        return None
    if rec.tier >= max_tier(rec.colour):
        return None
    timeout_s = esc.ack_timeout_s[colour_at_tier(rec.colour, rec.tier)]
    return rec.tier_since_ms + int(timeout_s * 1000)


def reminder_at(rec: AlarmRecord | WarningRecord, esc: Escalation) -> int | None:
    """Next reminder while the subject is open and still present or unacknowledged."""
    if esc.reminder_interval_s <= 0 or rec.suppressed or not rec.notified:
        return None
    if rec.phase not in (Phase.FIRING, Phase.ACKNOWLEDGED):
        return None
    since = max(rec.last_reminder_ms, rec.tier_since_ms)
    return since + int(esc.reminder_interval_s * 1000)


def overdue_at(rec: AlarmRecord | WarningRecord, esc: Escalation) -> int | None:
    """When a subject without a disposition becomes overdue (listed in the daily report)."""
    if not rec.is_open or rec.overdue:
        return None
    return rec.raised_ms + int(esc.disposition_overdue_s * 1000)


def due(rec: AlarmRecord | WarningRecord, esc: Escalation, now_ms: int) -> list[Timer]:
    """The timers that have expired at `now_ms`, escalation first."""
    out = []
    for timer, at in (
        (Timer.ESCALATE, ack_deadline(rec, esc)),
        (Timer.REMIND, reminder_at(rec, esc)),
        (Timer.OVERDUE, overdue_at(rec, esc)),
    ):
        if at is not None and at <= now_ms:
            out.append(timer)
    return out


def next_due_ms(rec: AlarmRecord | WarningRecord, esc: Escalation) -> int | None:
    """The earliest pending timer of a record (the runner may sleep until then)."""
    times = [
        t
        for t in (ack_deadline(rec, esc), reminder_at(rec, esc), overdue_at(rec, esc))
        if t is not None
    ]
    return min(times) if times else None
