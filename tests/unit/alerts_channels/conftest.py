"""Shared builders for the channel tests: notifications, and every channel wired to a given
transport or to its local receiver, with the secrets each one holds."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from alerts.channels.aliyun_sms import AliyunSmsChannel
from alerts.channels.base import HttpChannel
from alerts.channels.platform import PlatformChannel
from alerts.channels.tencent_sms import TencentSmsChannel
from alerts.channels.webhook import WebhookChannel
from alerts.channels.wechat import WechatTemplateChannel
from alerts.channels.wecom import WecomChannel
from alerts.model import EventType, Notification

NOW = 1_795_076_800.0  # 2026-11-19T08:26:40Z, a fixed instant for signatures and caps

_ids = itertools.count(1)


def note(**kw) -> Notification:
    """A realistic alarm notification; any field can be overridden."""
    n = next(_ids)
    base = dict(
        id=f"n-{n:04d}",
        channel="platform",
        recipient="13800000000",
        event_type=EventType.RAISED,
        subject_kind="alarm",
        subject_id=f"alarm-{n:04d}",
        enterprise_code="QJ001",
        hazard_code="HZ-01",
        colour="orange",
        level="L2",
        title="氨气二级报警 AT-1101",
        body="潜江某化工 液氨罐区 AT-1101 氨 62 mg/m3 (二级 40)\n2026-11-19 16:26",
        params={"enterprise": "潜江某化工", "point": "AT-1101", "level": "二级", "value": "62"},
        payload={
            "ts": "2026-11-19T08:26:40.000Z",
            "tag": "AT-1101",
            "parameter": "gas.NH3",
            "value": 62.0,
            "threshold": 40.0,
            "unit": "mg/m3",
            "kind": "limit",
            "state": "firing",
        },
        link="https://hw.example/a/alarm-x?t=abc",
        created_ms=int(NOW * 1000),
    )
    base.update(kw)
    return Notification(**base)


@pytest.fixture
def notification() -> Callable[..., Notification]:
    return note


# Secrets are long and distinctive so a leak cannot hide behind a coincidence.
PLATFORM_SECRET = "plat-hmac-SECRET-7f3a9c1e55"
ROBOT_KEY = "693a91f6-7xx6-4bc4-97a0-0ec2sifa5aaa"
ALIYUN_SECRET = "aliyun-AK-SECRET-Q2w3E4r5T6y7"
TENCENT_SECRET = "tencent-SecretKey-Z9x8C7v6B5n4"
WEBHOOK_SECRET = "webhook-hmac-SECRET-0a1b2c3d"
WEBHOOK_TOKEN = "webhook-bearer-TOKEN-4e5f6a7b"
WEBHOOK_URL_TOKEN = "url-token-DINGTALK-8c9d0e1f"
WECHAT_SECRET = "wechat-AppSecret-1q2w3e4r5t"
WECHAT_TOKEN = "wechat-ACCESS-TOKEN-6y7u8i9o0p"


@dataclass
class Wired:
    channel: HttpChannel
    secrets: list[str]
    notification: Notification


def build(
    kind: str, base_url: str, transport: httpx.BaseTransport | None = None, clock=lambda: NOW
) -> Wired:
    """One channel of `kind` talking to `base_url` (a receiver or a mock)."""
    t = dict(transport=transport, clock=clock, timeout_s=2.0)
    if kind == "platform":
        ch = PlatformChannel(base_url + "/api/push", PLATFORM_SECRET, **t)
        return Wired(ch, [PLATFORM_SECRET], note(channel="platform", recipient="bureau"))
    if kind == "wecom":
        ch = WecomChannel(
            {"qj001-duty": ROBOT_KEY}, base_url=base_url + "/cgi-bin/webhook/send", **t
        )
        return Wired(ch, [ROBOT_KEY], note(channel="wecom", recipient="qj001-duty"))
    if kind == "aliyun_sms":
        ch = AliyunSmsChannel(
            "LTAI-test-id", ALIYUN_SECRET, "潜江应急", "SMS_71390007", endpoint=base_url + "/", **t
        )
        return Wired(ch, [ALIYUN_SECRET], note(channel="aliyun_sms"))
    if kind == "tencent_sms":
        ch = TencentSmsChannel(
            "AKID-test-id",
            TENCENT_SECRET,
            "1400000001",
            "潜江应急",
            "449739",
            param_names=("enterprise", "point", "level", "value"),
            endpoint=base_url + "/",
            **t,
        )
        return Wired(ch, [TENCENT_SECRET], note(channel="tencent_sms"))
    if kind == "webhook":
        ch = WebhookChannel(
            base_url + f"/hook?access_token={WEBHOOK_URL_TOKEN}",
            WEBHOOK_SECRET,
            bearer_token=WEBHOOK_TOKEN,
            **t,
        )
        return Wired(
            ch,
            [WEBHOOK_SECRET, WEBHOOK_TOKEN, WEBHOOK_URL_TOKEN],
            note(channel="webhook", recipient="ops"),
        )
    if kind == "wechat":
        ch = WechatTemplateChannel("wx-app-id", WECHAT_SECRET, "TPL-alarm", api_base=base_url, **t)
        return Wired(
            ch, [WECHAT_SECRET, WECHAT_TOKEN], note(channel="wechat", recipient="oPENID-abc")
        )
    raise AssertionError(kind)


KINDS = ["platform", "wecom", "aliyun_sms", "tencent_sms", "webhook", "wechat"]
