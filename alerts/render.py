"""Message texts: what an SMS, a WeCom markdown message and the platform record say about an
alarm, a warning, an escalation, a reminder or a digest. Pure: records and times in, strings
and dicts out. Times are shown in Beijing time (UTC+8), which is what recipients read.

Every message carries the same SMS template parameters, `PARAM_NAMES` (colour, event,
enterprise, what, value, time, link), so one SMS template serves alarms, warnings, digests,
filings and operator alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from alerts.lifecycle import AlarmRecord, WarningRecord
from alerts.model import EventType
from ingest.model import iso_ms
from rules.model import Colour

PARAM_NAMES = ("colour", "event", "enterprise", "what", "value", "time", "link")

BEIJING = timezone(timedelta(hours=8), "CST")

LEVEL_ZH = {
    "L1": "一级报警",
    "L2": "二级报警",
    "H": "高报",
    "HH": "高高报",
    "L": "低报",
    "LL": "低低报",
}
KIND_ZH = {
    "limit": "超限报警",
    "offline": "离线",
    "gateway": "网关中断",
    "fault": "仪表故障",
    "stuck": "数据冻结",
    "rate": "变化率报警",
    "vote": "多点确认报警",
    "vote_degraded": "表决降级",
    "interlock": "联锁失效",
    "occupancy": "超员",
    "event": "事件",
}
EVENT_ZH = {
    EventType.RAISED: "报警",
    EventType.ESCALATED: "升级",
    EventType.CLEARED: "消警",
    EventType.ACKNOWLEDGED: "已确认",
    EventType.DISPOSED: "已处置",
    EventType.REMINDER: "提醒",
    EventType.DIGEST: "汇总",
    EventType.MAINTENANCE_OVERDUE: "检修超期",
    EventType.OPERATOR: "系统告警",
}


def beijing(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(BEIJING).strftime("%m-%d %H:%M:%S")


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.6g}"


@dataclass(frozen=True, slots=True)
class Message:
    title: str
    body: str
    params: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


def what_of(rec: AlarmRecord | WarningRecord) -> str:
    """One phrase naming the subject: `E001 T-101 液位 高高报` or `E001/H01 橙色预警`."""
    if isinstance(rec, AlarmRecord):
        level = LEVEL_ZH.get(rec.level or "", "") if rec.level else ""
        kind = KIND_ZH.get(rec.kind, rec.kind)
        what = level if rec.kind == "limit" and level else (f"{kind} {level}".strip())
        return f"{rec.enterprise_code} {rec.tag} {rec.parameter} {what}"
    where = f"{rec.enterprise_code}/{rec.hazard_code}" if rec.hazard_code else rec.enterprise_code
    return f"{where} {Colour(rec.colour).zh}色预警"


def platform_payload(
    rec: AlarmRecord | WarningRecord,
    event_type: EventType,
    enterprise_name: str = "",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record the platform receives (DESIGN.md platform push): the alarm or warning, its
    enterprise, point, level, colour, values and times, and the event type."""
    d: dict[str, Any] = {"event_type": str(event_type), "enterprise_name": enterprise_name}
    if isinstance(rec, AlarmRecord):
        d.update(
            {
                "subject": "alarm",
                "alarm_id": rec.alarm_id,
                "enterprise_code": rec.enterprise_code,
                "district": rec.district,
                "hazard_code": rec.hazard_code,
                "zone": rec.zone,
                "tag": rec.tag,
                "parameter": rec.parameter,
                "kind": rec.kind,
                "level": rec.level,
                "colour": str(rec.colour),
                "state": str(rec.phase),
                "active": rec.active,
                "value": rec.value,
                "threshold": rec.threshold,
                "unit": rec.unit,
                "rule": rec.rule,
                "pack": rec.pack,
                "pack_version": rec.pack_version,
                "ruleset": rec.ruleset,
                "raised_at": iso_ms(rec.raised_ms),
                "event_at": iso_ms(rec.event_ts_ms),
                "backfill": rec.backfill,
                "tier": rec.tier,
            }
        )
    else:
        d.update(
            {
                "subject": "warning",
                "warning_id": rec.warning_id,
                "enterprise_code": rec.enterprise_code,
                "district": rec.district,
                "hazard_code": rec.hazard_code,
                "colour": str(rec.colour),
                "previous": None if rec.previous is None else str(rec.previous),
                "state": str(rec.phase),
                "reason": rec.reason,
                "alarm_ids": list(rec.alarm_ids),
                "raised_at": iso_ms(rec.raised_ms),
                "event_at": iso_ms(rec.event_ts_ms),
                "backfill": rec.backfill,
                "tier": rec.tier,
            }
        )
    for k in ("acked_ms", "closed_ms"):
        v = getattr(rec, k)
        d[k.replace("_ms", "_at")] = None if v is None else iso_ms(v)
    d["acked_by"] = rec.acked_by
    d["closed_by"] = rec.closed_by
    d["disposition"] = None if rec.disposition is None else str(rec.disposition)
    d["disposition_note"] = rec.disposition_note
    if extra:
        d.update(extra)
    return d


def render(
    rec: AlarmRecord | WarningRecord,
    event_type: EventType,
    *,
    link: str,
    enterprise_name: str = "",
    colour: Colour | None = None,
    note: str = "",
) -> Message:
    """Title, body (markdown-friendly plain text) and SMS template parameters."""
    colour = colour or Colour(rec.colour)
    what = what_of(rec)
    ev = EVENT_ZH.get(event_type, str(event_type))
    if isinstance(rec, WarningRecord) and event_type is EventType.RAISED:
        ev = "发布"  # a warning is issued, not "alarmed"
    ent = enterprise_name or rec.enterprise_code
    title = f"【{colour.zh}】{ev}: {what}"
    lines = [f"**{title}**", f"企业: {ent}"]
    if isinstance(rec, AlarmRecord):
        lines.append(f"位号: {rec.tag} ({rec.parameter})")
        if rec.value is not None:
            lines.append(f"数值: {_num(rec.value)} {rec.unit} (设定值 {_num(rec.threshold)})")
        if rec.message:
            lines.append(f"说明: {rec.message}")
        when = rec.event_ts_ms
    else:
        lines.append(f"原因: {rec.reason}")
        when = rec.event_ts_ms
    lines.append(f"时间: {beijing(when)}")
    if note:
        lines.append(note)
    if link:
        lines.append(f"确认/处置: {link}")
    params = {
        "colour": colour.zh,
        "event": ev,
        "enterprise": ent[:20],
        "what": what[:30],
        "value": _num(rec.value) if isinstance(rec, AlarmRecord) else "",
        "time": beijing(when),
        "link": link,
    }
    return Message(title=title, body="\n".join(lines), params=params)


def render_digest(
    items: Sequence[tuple[str, str]], recipient: str, first_ms: int, last_ms: int
) -> Message:
    """One message for a burst: every merged notification's subject and title listed (never
    dropped), oldest first."""
    n = len(items)
    title = f"【汇总】{n} 条报警通知 ({beijing(first_ms)} - {beijing(last_ms)})"
    lines = [f"**{title}**"]
    for i, (subject_id, t) in enumerate(items, 1):
        lines.append(f"{i}. {t} [{subject_id}]")
    return Message(
        title=title,
        body="\n".join(lines),
        params={
            "event": "汇总",
            "count": str(n),
            "time": beijing(last_ms),
            "what": f"{n} 条报警",
            "colour": "",
            "enterprise": "",
            "value": "",
            "link": "",
        },
    )


def render_operator(text: str, now_ms: int) -> Message:
    title = f"【系统告警】{text}"[:120]
    return Message(
        title=title,
        body=f"**{title}**\n时间: {beijing(now_ms)}",
        params={
            "event": "系统告警",
            "what": text[:30],
            "time": beijing(now_ms),
            "colour": "",
            "enterprise": "",
            "value": "",
            "link": "",
        },
    )


def render_filing(kind: str, scope: str, text: str, now_ms: int, link: str = "") -> Message:
    title = f"【备案】{scope} {text}"
    body = f"**{title}**\n时间: {beijing(now_ms)}" + (f"\n查看: {link}" if link else "")
    return Message(
        title=title,
        body=body,
        params={
            "event": kind,
            "what": f"{scope} {text}"[:30],
            "time": beijing(now_ms),
            "colour": "黄",
            "enterprise": "",
            "value": "",
            "link": link,
        },
    )
