"""Values shared by the alerts stage: notifications waiting in the outbox, and the verdict a
channel returns for one delivery attempt. Pure data."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import msgspec


class EventType(StrEnum):
    """What happened to the alarm or warning a notification speaks of (platform contract)."""

    RAISED = "raised"
    ESCALATED = "escalated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    DISPOSED = "disposed"
    REMINDER = "reminder"
    DIGEST = "digest"
    MAINTENANCE_OVERDUE = "maintenance_overdue"
    OPERATOR = "operator"  # an alarm to hazardwatch's own operators (e.g. dead-lettered outbox)


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One message for one recipient on one channel, as stored in the outbox before sending.

    `id` is the idempotency key: stable for the same (subject, event, recipient, channel), so
    a retry, a restart or a re-processed partition never produces a second, different message.
    Channels render `title`/`body`/`params` in their own shapes; the platform push sends
    `payload` (the alarm or warning record).
    """

    id: str
    channel: str  # platform | wecom | aliyun_sms | tencent_sms | webhook | wechat
    recipient: str  # phone (+86...), robot name, openid, or endpoint name
    event_type: EventType
    subject_kind: str  # alarm | warning | digest | operator
    subject_id: str
    enterprise_code: str
    hazard_code: str = ""
    colour: str | None = None
    level: str | None = None
    title: str
    body: str
    params: dict[str, str] = msgspec.field(default_factory=dict)  # SMS template parameters
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    link: str = ""  # acknowledge/dispose page for this subject
    created_ms: int


class Verdict(msgspec.Struct, frozen=True):
    """Outcome of one delivery attempt. `retryable` decides between retry and dead letter."""

    ok: bool
    retryable: bool = False
    reason: str = ""
    status: int | None = None
    retry_after_s: float | None = None

    @classmethod
    def delivered(cls, status: int | None = None) -> Verdict:
        return cls(ok=True, status=status)

    @classmethod
    def retry(
        cls, reason: str, status: int | None = None, retry_after_s: float | None = None
    ) -> Verdict:
        return cls(
            ok=False, retryable=True, reason=reason, status=status, retry_after_s=retry_after_s
        )

    @classmethod
    def give_up(cls, reason: str, status: int | None = None) -> Verdict:
        return cls(ok=False, retryable=False, reason=reason, status=status)


class Disposition(StrEnum):
    """The result an enterprise files to close an alarm or warning (处置结果, DOMAIN.md §4)."""

    REAL_ALARM_HANDLED = "real_alarm_handled"  # 真实报警, 已处置
    PROCESS_FLUCTUATION = "process_fluctuation"  # 工艺波动
    INSTRUMENT_FAULT = "instrument_fault"  # 仪表故障 / 误报
    MAINTENANCE_OR_SHUTDOWN = "maintenance_or_shutdown"  # 检修或停车 (已备案)
    COMMISSIONING = "commissioning"  # 调试
    OTHER = "other"  # 其他 (note required)


class FilingKind(StrEnum):
    """Structured filings (备案) that change what the alerts stage pushes (DOMAIN.md §4)."""

    MAINTENANCE = "maintenance"  # 大检修备案: record and show, do not push or escalate
    STARTUP_SHUTDOWN = "startup_shutdown"  # 开停车 (with or without interlocks bypassed)
    DECOMMISSION = "decommission"  # 停用: the point is out of service until the filing ends
