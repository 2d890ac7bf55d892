"""Message texts: what recipients read, in Beijing time, with the same SMS parameters on
every kind of message."""

from __future__ import annotations

from alerts.model import EventType
from alerts.render import PARAM_NAMES, render_digest, render_filing, render_operator
from tests.unit.alerts_core.conftest import T0, alarm, warning


def test_alarm_text_names_the_point_level_value_time_and_link(service, store):
    notes = service.on_alarm(alarm(level="L2", value=31.5), T0)
    sms = next(n for n in notes if n.channel == "aliyun_sms")
    assert sms.title == "【橙】报警: E001 AT-1 gas.Cl2 二级报警"
    assert "数值: 31.5 mg/m3 (设定值 10)" in sms.body
    assert "时间: 11-18 19:06:40" in sms.body  # T0 is 11:06:40 UTC = 19:06:40 in Beijing
    assert sms.body.endswith("确认/处置: https://hw.example/a/A1")
    assert sms.params["link"] == "https://hw.example/a/A1" and sms.params["value"] == "31.5"
    platform = next(n for n in notes if n.channel == "platform")
    assert platform.payload["alarm_id"] == "A1" and platform.payload["level"] == "L2"
    assert platform.payload["event_type"] == "raised" and platform.payload["colour"] == "orange"
    assert platform.payload["raised_at"] == "2026-11-18T11:06:40.000Z"


def test_warning_text(service):
    notes = service.on_warning(warning(colour="red"), T0)
    sms = next(n for n in notes if n.channel == "aliyun_sms")
    assert sms.title == "【红】发布: E001/H01 红色预警" and "原因: test" in sms.body


def test_every_message_kind_has_the_same_sms_parameters(service):
    notes = service.on_alarm(alarm(), T0) + service.on_warning(warning(), T0)
    msgs = [n.params for n in notes if n.channel != "platform"]
    msgs += [
        render_digest([("A1", "t")], "r", T0, T0).params,
        render_operator("x", T0).params,
        render_filing("maintenance", "s", "t", T0).params,
    ]
    for p in msgs:
        assert set(PARAM_NAMES) <= set(p)
    assert EventType.DIGEST  # digests list every merged subject (tested in the outbox tests)
