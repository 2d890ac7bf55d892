"""Each channel against its local receiver over real loopback HTTP: the receiver checks the
real request shape (signatures included) and answers like the provider; the tests assert what
the provider would have got and the verdict the outbox would act on. Signing functions are
also checked against the providers' own published examples."""

from __future__ import annotations

import json

import httpx
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.channels import aliyun_sms
from alerts.channels.aliyun_sms import AliyunSmsChannel, rpc_signature
from alerts.channels.receivers import (
    AliyunSmsReceiver,
    PlatformReceiver,
    TencentSmsReceiver,
    WebhookReceiver,
    WechatReceiver,
    WecomReceiver,
)
from alerts.channels.tencent_sms import e164_cn, tc3_authorization
from alerts.channels.wecom import MARKDOWN_MAX_BYTES, WecomChannel, truncate_utf8
from alerts.model import EventType

from .conftest import (
    ALIYUN_SECRET,
    NOW,
    PLATFORM_SECRET,
    ROBOT_KEY,
    TENCENT_SECRET,
    WEBHOOK_SECRET,
    WEBHOOK_TOKEN,
    WECHAT_SECRET,
    build,
    note,
)


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def replace(n, **kw):
    return msgspec.structs.replace(n, **kw)


# -- published signature examples -----------------------------------------------------------


def test_aliyun_signature_matches_the_sms_documentation_example():
    # help.aliyun.com/document_detail/56189 (SendSms signature example).
    params = {
        "AccessKeyId": "testId",
        "Action": "SendSms",
        "Format": "XML",
        "OutId": "123",
        "PhoneNumbers": "15300000001",
        "RegionId": "cn-hangzhou",
        "SignName": "阿里云短信测试专用",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
        "SignatureVersion": "1.0",
        "TemplateCode": "SMS_71390007",
        "TemplateParam": '{"customer":"test"}',
        "Timestamp": "2017-07-12T02:42:19Z",
        "Version": "2017-05-25",
    }
    assert rpc_signature("GET", params, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="


def test_aliyun_signature_matches_the_rpc_documentation_example():
    params = {
        "Format": "XML",
        "AccessKeyId": "testid",
        "Action": "DescribeRegions",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
        "SignatureVersion": "1.0",
        "Version": "2014-05-26",
        "Timestamp": "2016-02-23T12:46:24Z",
    }
    assert rpc_signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_aliyun_percent_encoding_follows_the_pop_rules():
    enc = aliyun_sms.percent_encode
    assert enc("a b") == "a%20b" and enc("*") == "%2A" and enc("~-_.") == "~-_."
    assert enc("/=&+") == "%2F%3D%26%2B" and enc("派") == "%E6%B4%BE"


def test_tc3_matches_tencents_documented_example():
    # cloud.tencent.com/document/api/213/30654 (DescribeInstances example, masked key as given).
    auth = tc3_authorization(
        secret_id="AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
        secret_key="Gu5t9xGARNpq86cd98joQYCN3*******",
        host="cvm.tencentcloudapi.com",
        action="DescribeInstances",
        payload=b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
        b'"Name": "instance-name"}]}',
        timestamp=1551113065,
        service="cvm",
        sign_action=False,
    )
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, "
        "Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


# -- platform --------------------------------------------------------------------------------


def test_platform_push_is_signed_keyed_and_carries_the_alarm():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        v = w.channel.send(w.notification)
        assert v.ok and v.status == 200
        assert rx.rejected == [] and rx.delivered == 1
        doc = rx.accepted[0].doc
        n = w.notification
        assert rx.accepted[0].key == n.id
        assert doc["event_type"] == "raised" and doc["subject_id"] == n.subject_id
        assert (doc["enterprise_code"], doc["hazard_code"], doc["point"]) == (
            "QJ001",
            "HZ-01",
            "AT-1101",
        )
        assert (doc["level"], doc["colour"], doc["value"], doc["threshold"]) == (
            "L2",
            "orange",
            62.0,
            40.0,
        )
        assert doc["event_time"] == "2026-11-19T08:26:40.000Z" and doc["created"].startswith(
            "2026-11-19"
        )
        assert doc["alarm"]["parameter"] == "gas.NH3"

        # At least once: a retry of the same notification is a duplicate the platform
        # recognises by its key, and still counts as delivered for us.
        assert w.channel.send(w.notification).ok
        assert rx.delivered == 1 and rx.duplicates == 1


def test_platform_with_the_wrong_secret_is_refused_and_not_retried():
    with PlatformReceiver("another-secret-entirely", clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        v = w.channel.send(w.notification)
    assert not v.ok and not v.retryable and v.status == 401
    assert "does not match" in v.reason and rx.delivered == 0


def test_platform_rejects_a_stale_timestamp():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock(NOW + 3600)) as rx:
        w = build("platform", rx.base_url)
        v = w.channel.send(w.notification)
    assert v.status == 401 and "tolerance" in v.reason and rx.delivered == 0


def test_platform_down_then_up_retries_with_retry_after_then_delivers():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        rx.go_down(503, retry_after=30)
        v = w.channel.send(w.notification)
        assert (v.ok, v.retryable, v.status, v.retry_after_s) == (False, True, 503, 30.0)
        rx.come_up()
        assert w.channel.send(w.notification).ok
        assert rx.delivered == 1 and rx.duplicates == 0


def test_platform_timeout_is_retryable():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        w.channel._client.timeout = httpx.Timeout(0.3)
        rx.hang_next(1, seconds=5)
        v = w.channel.send(w.notification)
        assert not v.ok and v.retryable and "timed out" in v.reason
        assert w.channel.send(w.notification).ok and rx.delivered == 1


def test_platform_409_means_it_already_has_the_message():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        rx.fail_next(1, status=409)
        assert w.channel.send(w.notification).ok


# -- WeCom -----------------------------------------------------------------------------------


def test_wecom_markdown_reaches_the_robot_with_link_and_reference():
    with WecomReceiver([ROBOT_KEY], clock=Clock()) as rx:
        w = build("wecom", rx.base_url)
        assert w.channel.rate_limit == (20, 60.0)
        assert w.channel.send(w.notification).ok
        content = rx.contents()[0]
        assert "氨气二级报警 AT-1101" in content and '<font color="warning">' in content
        assert "> 潜江某化工 液氨罐区" in content
        assert "[确认 / 处置](https://hw.example/a/alarm-x?t=abc)" in content
        assert rx.keys() == [w.notification.id]


def test_wecom_long_message_is_cut_by_bytes_keeping_the_link():
    with WecomReceiver([ROBOT_KEY], clock=Clock()) as rx:
        w = build("wecom", rx.base_url)
        n = replace(w.notification, body="液氨泄漏" * 2000)
        assert w.channel.send(n).ok, rx.rejected
        content = rx.contents()[0]
        assert len(content.encode()) <= MARKDOWN_MAX_BYTES
        assert "…" in content and content.endswith(f"编号 {n.id}</font>")
        assert "(https://hw.example/a/alarm-x?t=abc)" in content


def test_wecom_text_mode_mentions_mobiles():
    with WecomReceiver([ROBOT_KEY], clock=Clock()) as rx:
        ch = WecomChannel(
            {"duty": ROBOT_KEY},
            base_url=rx.url,
            msgtype="text",
            mentioned_mobiles={"duty": ["13800000000"]},
            clock=Clock(),
        )
        assert ch.send(note(channel="wecom", recipient="duty", body="x" * 3000)).ok
        doc = rx.accepted[0].doc
        assert doc["msgtype"] == "text"
        assert doc["text"]["mentioned_mobile_list"] == ["13800000000"]
        assert len(doc["text"]["content"].encode()) <= 2048


def test_wecom_robot_limit_is_a_retry_after_a_minute_never_a_drop():
    clock = Clock()
    with WecomReceiver([ROBOT_KEY], clock=clock) as rx:
        w = build("wecom", rx.base_url, clock=clock)
        sent = [w.channel.send(note(channel="wecom", recipient="qj001-duty")) for _ in range(20)]
        assert all(v.ok for v in sent)
        late = note(channel="wecom", recipient="qj001-duty")
        v = w.channel.send(late)
        assert (v.ok, v.retryable, v.retry_after_s) == (False, True, 60.0)
        assert "45009" in v.reason
        clock.t += 60.0
        assert w.channel.send(late).ok
        assert rx.max_per_minute(ROBOT_KEY) == 20 and rx.delivered == 21


def test_wecom_45009_for_n_calls_then_recovers():
    with WecomReceiver([ROBOT_KEY], clock=Clock()) as rx:
        w = build("wecom", rx.base_url)
        rx.rate_limit_next(2)
        verdicts = [w.channel.send(w.notification) for _ in range(3)]
        assert [v.ok for v in verdicts] == [False, False, True]
        assert all(v.retryable for v in verdicts[:2]) and rx.rate_limited == 2


def test_wecom_wrong_key_gives_up():
    with WecomReceiver(["some-other-key"], clock=Clock()) as rx:
        w = build("wecom", rx.base_url)
        v = w.channel.send(w.notification)
    assert not v.ok and not v.retryable and "93000" in v.reason


@settings(max_examples=150, deadline=None)
@given(st.text(), st.integers(min_value=4, max_value=300))
def test_truncate_utf8_never_splits_a_character_or_overflows(text, limit):
    out = truncate_utf8(text, limit)
    assert len(out.encode("utf-8")) <= limit
    if len(text.encode("utf-8")) <= limit:
        assert out == text
    else:
        assert out.endswith("…") and text.startswith(out[:-1])


# -- Aliyun SMS ------------------------------------------------------------------------------


def test_aliyun_sendsms_is_signed_and_carries_template_and_outid():
    with AliyunSmsReceiver({"LTAI-test-id": ALIYUN_SECRET}, clock=Clock()) as rx:
        w = build("aliyun_sms", rx.base_url)
        v = w.channel.send(w.notification)
        assert v.ok, rx.rejected
        doc = rx.accepted[0].doc
        assert doc["Action"] == "SendSms" and doc["Version"] == "2017-05-25"
        assert doc["PhoneNumbers"] == "13800000000" and doc["SignName"] == "潜江应急"
        assert doc["TemplateCode"] == "SMS_71390007" and doc["OutId"] == w.notification.id
        assert doc["TemplateParam"] == w.notification.params
        # Not idempotent at Aliyun: an accepted notification is not sent a second time.
        assert w.channel.send(w.notification).ok
        assert rx.requests == 1 and rx.duplicates == 0


def test_aliyun_daily_cap_is_respected_and_resumes_after_beijing_midnight():
    clock = Clock()
    with AliyunSmsReceiver({"LTAI-test-id": ALIYUN_SECRET}, clock=clock) as rx:
        ch = AliyunSmsChannel(
            "LTAI-test-id",
            ALIYUN_SECRET,
            "潜江应急",
            "SMS_1",
            endpoint=rx.url,
            daily_cap=3,
            clock=clock,
        )
        assert all(ch.send(note(channel="aliyun_sms")).ok for _ in range(3))
        capped = note(channel="aliyun_sms")
        v = ch.send(capped)
        assert not v.ok and v.retryable and "daily cap of 3" in v.reason
        assert v.retry_after_s == pytest.approx(86400 - (16 * 3600 + 26 * 60 + 40))
        assert rx.requests == 3  # refused locally, not by spending a request
        # Another number is not affected.
        assert ch.send(note(channel="aliyun_sms", recipient="13900000000")).ok
        clock.t += v.retry_after_s
        assert ch.send(capped).ok and rx.delivered == 5


def test_aliyun_provider_side_daily_limit_retries_at_midnight():
    clock = Clock()
    with AliyunSmsReceiver({"LTAI-test-id": ALIYUN_SECRET}, daily_cap=1, clock=clock) as rx:
        w = build("aliyun_sms", rx.base_url, clock=clock)
        assert w.channel.send(note(channel="aliyun_sms")).ok
        v = w.channel.send(note(channel="aliyun_sms"))
        assert v.retryable and "BUSINESS_LIMIT_CONTROL" in v.reason
        assert v.retry_after_s == pytest.approx(86400 - (16 * 3600 + 26 * 60 + 40))
        rx.limit_next(1)
        v = w.channel.send(note(channel="aliyun_sms", recipient="13900000000"))
        assert v.retryable and v.retry_after_s == 60.0  # minute flow control


def test_aliyun_wrong_secret_and_bad_number_give_up():
    with AliyunSmsReceiver({"LTAI-test-id": "not-the-secret"}, clock=Clock()) as rx:
        w = build("aliyun_sms", rx.base_url)
        v = w.channel.send(w.notification)
        assert not v.retryable and "SignatureDoesNotMatch" in v.reason
    with AliyunSmsReceiver({"LTAI-test-id": ALIYUN_SECRET}, clock=Clock()) as rx:
        w = build("aliyun_sms", rx.base_url)
        v = w.channel.send(replace(w.notification, recipient="12345"))
        assert not v.retryable and "MOBILE_NUMBER_ILLEGAL" in v.reason


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("isv.BUSINESS_LIMIT_CONTROL", True),
        ("isp.SYSTEM_ERROR", True),
        ("Throttling.User", True),
        ("isv.AMOUNT_NOT_ENOUGH", True),
        ("isp.NEW_THING", True),
        ("isv.MOBILE_NUMBER_ILLEGAL", False),
        ("isv.SMS_TEMPLATE_ILLEGAL", False),
        ("isv.SMS_SIGNATURE_ILLEGAL", False),
        ("isv.TEMPLATE_MISSING_PARAMETERS", False),
        ("SignatureDoesNotMatch", False),
        ("InvalidAccessKeyId.NotFound", False),
        ("isv.SOMETHING_NEW", False),
    ],
)
def test_aliyun_error_codes_map_to_verdicts(code, retryable):
    mock = httpx.MockTransport(lambda r: httpx.Response(200, json={"Code": code, "Message": "m"}))
    w = build("aliyun_sms", "https://dysmsapi.example", transport=mock)
    v = w.channel.send(w.notification)
    assert not v.ok and v.retryable is retryable and code in v.reason


# -- Tencent SMS -----------------------------------------------------------------------------


def test_tencent_sendsms_is_tc3_signed_with_positional_params():
    with TencentSmsReceiver(
        {"AKID-test-id": TENCENT_SECRET}, sdk_app_ids=["1400000001"], clock=Clock()
    ) as rx:
        w = build("tencent_sms", rx.base_url)
        assert w.channel.send(w.notification).ok, rx.rejected
        doc = rx.accepted[0].doc
        assert doc["PhoneNumberSet"] == ["+8613800000000"]
        assert doc["TemplateParamSet"] == ["潜江某化工", "AT-1101", "二级", "62"]
        assert doc["SessionContext"] == w.notification.id
        assert (doc["SmsSdkAppId"], doc["TemplateId"], doc["SignName"]) == (
            "1400000001",
            "449739",
            "潜江应急",
        )
        assert w.channel.send(w.notification).ok and rx.requests == 1


def test_tencent_same_message_within_30s_waits_30s():
    clock = Clock()
    with TencentSmsReceiver({"AKID-test-id": TENCENT_SECRET}, clock=clock) as rx:
        w = build("tencent_sms", rx.base_url, clock=clock)
        assert w.channel.send(note(channel="tencent_sms")).ok
        v = w.channel.send(note(channel="tencent_sms"))  # same text, new id
        assert v.retryable and v.retry_after_s == 30.0 and "ThirtySecond" in v.reason
        clock.t += 30
        assert w.channel.send(note(channel="tencent_sms")).ok


def test_tencent_wrong_key_and_missing_parameter_give_up():
    with TencentSmsReceiver({"AKID-test-id": "wrong"}, clock=Clock()) as rx:
        w = build("tencent_sms", rx.base_url)
        v = w.channel.send(w.notification)
        assert not v.retryable and "AuthFailure.SignatureFailure" in v.reason
        v = w.channel.send(replace(w.notification, id="n-x", params={"enterprise": "x"}))
        assert not v.retryable and "lacks template parameter(s)" in v.reason


@pytest.mark.parametrize(
    ("code", "retryable", "wait"),
    [
        ("LimitExceeded.PhoneNumberDailyLimit", True, 86400 - (16 * 3600 + 26 * 60 + 40)),
        ("LimitExceeded.PhoneNumberOneHourLimit", True, 3600.0),
        ("RequestLimitExceeded", True, None),
        ("InternalError.Timeout", True, None),
        ("FailedOperation.InsufficientBalanceInSmsPackage", True, None),
        ("InvalidParameterValue.IncorrectPhoneNumber", False, None),
        ("FailedOperation.TemplateIncorrectOrUnapproved", False, None),
        ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", False, None),
    ],
)
def test_tencent_codes_map_to_verdicts(code, retryable, wait):
    status = {"SerialNo": "", "PhoneNumber": "+8613800000000", "Code": code, "Message": "m"}
    mock = httpx.MockTransport(
        lambda r: httpx.Response(
            200, json={"Response": {"SendStatusSet": [status], "RequestId": "r"}}
        )
    )
    w = build("tencent_sms", "https://sms.example", transport=mock)
    v = w.channel.send(w.notification)
    assert not v.ok and v.retryable is retryable and code in v.reason
    assert v.retry_after_s == (pytest.approx(wait) if wait else None)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800000000", "+8613800000000"),
        ("+8613800000000", "+8613800000000"),
        ("008613800000000", "+8613800000000"),
        ("138 0000 0000", "+8613800000000"),
    ],
)
def test_tencent_numbers_are_e164(raw, e164):
    assert e164_cn(raw) == e164


# -- webhook and WeChat ----------------------------------------------------------------------


def test_webhook_is_signed_with_bearer_and_key():
    with WebhookReceiver(WEBHOOK_SECRET, bearer_token=WEBHOOK_TOKEN, clock=Clock()) as rx:
        w = build("webhook", rx.base_url)
        assert w.channel.send(w.notification).ok, rx.rejected
        doc = rx.accepted[0].doc
        assert rx.accepted[0].key == w.notification.id
        assert doc["event_type"] == "raised" and doc["payload"]["tag"] == "AT-1101"
    with WebhookReceiver("other", bearer_token=WEBHOOK_TOKEN, clock=Clock()) as rx:
        w = build("webhook", rx.base_url)
        v = w.channel.send(w.notification)
        assert v.status == 401 and not v.retryable


def test_wechat_template_message_shape_and_token_reuse():
    with WechatReceiver("wx-app-id", WECHAT_SECRET, clock=Clock()) as rx:
        w = build("wechat", rx.base_url)
        for _ in range(3):
            assert w.channel.send(note(channel="wechat", recipient="oPENID-abc")).ok, rx.rejected
        assert rx.tokens_issued == 1 and rx.delivered == 3
        doc = rx.accepted[0].doc
        assert doc["touser"] == "oPENID-abc" and doc["template_id"] == "TPL-alarm"
        assert doc["url"] == "https://hw.example/a/alarm-x?t=abc"
        assert doc["data"]["point"] == {"value": "AT-1101"}
        assert doc["client_msg_id"] == rx.accepted[0].key


def test_wechat_expired_token_is_dropped_and_refetched():
    with WechatReceiver("wx-app-id", WECHAT_SECRET, clock=Clock()) as rx:
        w = build("wechat", rx.base_url)
        assert w.channel.send(w.notification).ok
        rx.expire_tokens()
        v = w.channel.send(note(channel="wechat", recipient="oPENID-abc"))
        assert v.retryable and "42001" in v.reason
        assert w.channel.send(note(channel="wechat", recipient="oPENID-abc")).ok
        assert rx.tokens_issued == 2


def test_wechat_wrong_app_secret_gives_up():
    with WechatReceiver("wx-app-id", "other-secret", clock=Clock()) as rx:
        w = build("wechat", rx.base_url)
        v = w.channel.send(w.notification)
    assert not v.ok and not v.retryable and "40125" in v.reason


def test_event_types_reach_the_platform_in_order_per_alarm():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        for i, et in enumerate(
            [
                EventType.RAISED,
                EventType.ESCALATED,
                EventType.ACKNOWLEDGED,
                EventType.CLEARED,
                EventType.DISPOSED,
            ]
        ):
            assert w.channel.send(note(id=f"a1-{i}", subject_id="a1", event_type=et)).ok
        assert rx.events_for("a1") == ["raised", "escalated", "acknowledged", "cleared", "disposed"]
        assert json.loads(json.dumps(rx.accepted[0].doc))["subject_kind"] == "alarm"


def test_aliyun_receiver_refuses_a_reused_nonce_and_a_fresh_one_passes():
    nonces = iter(["n-1", "n-1", "n-2"])
    with AliyunSmsReceiver({"LTAI-test-id": ALIYUN_SECRET}, clock=Clock()) as rx:
        ch = AliyunSmsChannel(
            "LTAI-test-id",
            ALIYUN_SECRET,
            "潜江应急",
            "SMS_1",
            endpoint=rx.url,
            clock=Clock(),
            nonce=lambda: next(nonces),
        )
        assert ch.send(note(channel="aliyun_sms")).ok
        v = ch.send(note(channel="aliyun_sms"))  # a replay of the signed request is refused
        assert v.retryable and "SignatureNonceUsed" in v.reason
        assert ch.send(note(channel="aliyun_sms")).ok
        assert rx.delivered == 2


def test_tencent_receiver_checks_the_signature_over_the_body_as_sent():
    with TencentSmsReceiver({"AKID-test-id": TENCENT_SECRET}, clock=Clock()) as rx:
        w = build("tencent_sms", rx.base_url)
        body, headers = w.channel.request(w.notification, NOW)
        tampered = body.replace(b"+8613800000000", b"+8613900000000")
        r = httpx.post(rx.url, content=tampered, headers=headers)
        assert r.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureFailure"
        r = httpx.post(rx.url, content=body, headers=headers)
        assert r.json()["Response"]["SendStatusSet"][0]["Code"] == "Ok"
        stale = {**headers, "X-TC-Timestamp": str(int(NOW) - 600)}
        r = httpx.post(rx.url, content=body, headers=stale)
        assert r.json()["Response"]["Error"]["Code"] == "AuthFailure.SignatureExpire"


@settings(max_examples=100, deadline=None)
@given(
    title=st.text(max_size=300),
    body=st.text(max_size=3000),
    link=st.sampled_from(["", "https://hw.example/a/0123456789abcdef?t=" + "x" * 60]),
)
def test_wecom_messages_always_fit_and_keep_link_and_reference(title, body, link):
    from alerts.channels.wecom import TEXT_MAX_BYTES, render_markdown, render_text

    n = note(title=title, body=body, link=link)
    md, text = render_markdown(n), render_text(n)
    assert len(md.encode()) <= MARKDOWN_MAX_BYTES and len(text.encode()) <= TEXT_MAX_BYTES
    assert md.endswith(f"编号 {n.id}</font>") and text.endswith(f"编号 {n.id}")
    if link:
        assert f"({link})" in md and link in text
