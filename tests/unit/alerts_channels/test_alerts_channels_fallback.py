"""The fallback wrapper (switch after the primary has failed for a configured time, probe it,
switch back), the scripted fake channel, and the receivers' fault injection — including the
one duplicate at-least-once delivery cannot rule out: a provider that accepted a message but
whose answer was lost."""

from __future__ import annotations

import msgspec
import pytest

from alerts.channels.base import Channel
from alerts.channels.fallback import FallbackChannel
from alerts.channels.receivers import PlatformReceiver
from alerts.channels.testing import RecordingChannel
from alerts.model import Verdict

from .conftest import NOW, PLATFORM_SECRET, build, note


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def down() -> Verdict:
    return Verdict.retry("HTTP 503", status=503)


def test_every_channel_and_the_fakes_satisfy_the_protocol():
    for kind in ("platform", "wecom", "aliyun_sms", "tencent_sms", "webhook", "wechat"):
        assert isinstance(build(kind, "http://127.0.0.1:9").channel, Channel)
    primary, backup = RecordingChannel("wecom"), RecordingChannel("aliyun_sms")
    assert isinstance(primary, Channel)
    assert isinstance(FallbackChannel(primary, backup, switch_after_s=60), Channel)


def test_stays_on_the_primary_until_it_has_failed_for_the_configured_time():
    clock = Clock()
    primary = RecordingChannel("wecom", lambda n, i: down(), rate_limit=(20, 60.0))
    backup = RecordingChannel("aliyun_sms")
    ch = FallbackChannel(primary, backup, switch_after_s=600, probe_every_s=120, clock=clock)
    assert ch.name == "wecom" and ch.rate_limit == (20, 60.0)

    v = ch.send(note(id="n1"))
    assert v.retryable and backup.attempts == []
    clock.t += 599
    assert not ch.send(note(id="n2")).ok and not ch.using_fallback
    clock.t += 1  # failing for 600 s now
    v = ch.send(note(id="n3"))
    assert v.ok and "via fallback aliyun_sms" in v.reason and "600 s" in v.reason
    assert ch.using_fallback
    assert [n.id for n in backup.delivered] == ["n3"]
    assert backup.delivered[0].channel == "aliyun_sms"  # addressed to the fallback


def test_probes_the_primary_and_switches_back_on_success():
    clock = Clock()
    healthy = {"up": False}
    primary = RecordingChannel(
        "platform", lambda n, i: Verdict.delivered(200) if healthy["up"] else down()
    )
    backup = RecordingChannel("webhook")
    ch = FallbackChannel(primary, backup, switch_after_s=0, probe_every_s=60, clock=clock)
    ch.send(note(id="a"))  # first failure: switched at once (switch_after_s=0)
    assert [n.id for n in backup.delivered] == ["a"]
    tries = len(primary.attempts)
    clock.t += 30
    ch.send(note(id="b"))  # within the probe interval: straight to the fallback
    assert len(primary.attempts) == tries
    healthy["up"] = True
    clock.t += 60
    assert ch.send(note(id="c")).reason == ""  # probed, delivered by the primary
    assert not ch.using_fallback
    assert [n.id for n in primary.delivered] == ["c"]
    assert [n.id for n in backup.delivered] == ["a", "b"]


def test_a_rejected_message_is_not_a_reason_to_switch():
    clock = Clock()
    primary = RecordingChannel("aliyun_sms", lambda n, i: Verdict.give_up("invalid number"))
    backup = RecordingChannel("tencent_sms")
    ch = FallbackChannel(primary, backup, switch_after_s=0, clock=clock)
    for i in range(3):
        clock.t += 1000
        v = ch.send(note(id=f"x{i}"))
        assert not v.ok and not v.retryable and v.reason == "invalid number"
    assert backup.attempts == [] and not ch.using_fallback


def test_reroute_maps_recipients_and_none_means_no_fallback():
    clock = Clock()
    primary = RecordingChannel("wecom", lambda n, i: down())
    backup = RecordingChannel("aliyun_sms")
    phones = {"duty-E001": "+8613800000001"}

    def reroute(n):
        phone = phones.get(n.recipient)
        return (
            None
            if phone is None
            else msgspec.structs.replace(n, channel="aliyun_sms", recipient=phone)
        )

    ch = FallbackChannel(primary, backup, switch_after_s=0, reroute=reroute, clock=clock)
    assert ch.send(note(id="m1", recipient="duty-E001")).ok
    assert backup.delivered[0].recipient == "+8613800000001"
    v = ch.send(note(id="m2", recipient="unknown-robot"))
    assert not v.ok and v.retryable and "no fallback" in v.reason


def test_fallback_failure_says_which_channel_failed():
    clock = Clock()
    ch = FallbackChannel(
        RecordingChannel("platform", lambda n, i: down()),
        RecordingChannel("webhook", lambda n, i: Verdict.retry("timed out", retry_after_s=5)),
        switch_after_s=0,
        clock=clock,
    )
    v = ch.send(note())
    assert not v.ok and v.retryable and v.reason == "fallback webhook: timed out"
    assert v.retry_after_s == 5


def test_fallback_rejects_nonsense_configuration():
    with pytest.raises(ValueError, match="probe_every_s"):
        FallbackChannel(RecordingChannel(), RecordingChannel(), switch_after_s=1, probe_every_s=0)


def test_recording_channel_follows_its_script_and_counts_duplicates():
    ch = RecordingChannel("x").fail(2).then(Verdict.give_up("no"))
    n = note()
    assert [ch.send(n).retryable for _ in range(3)] == [True, True, False]
    assert ch.send(n).ok and ch.send(n).ok
    assert ch.delivered_ids() == [n.id, n.id] and ch.duplicates == 1 and len(ch.attempts) == 5


def test_a_lost_answer_is_the_one_duplicate_and_the_receiver_counts_it():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        w.channel._client.timeout = __import__("httpx").Timeout(0.3)
        rx.hang_next(1, seconds=3, process=True)  # accepted, but the answer never comes
        v = w.channel.send(w.notification)
        assert not v.ok and v.retryable and "timed out" in v.reason
        assert w.channel.send(w.notification).ok  # the retry, same key
        assert rx.delivered == 1 and rx.duplicates == 1  # the platform deduplicates by key


def test_injected_statuses_carry_retry_after_and_down_up_switches():
    with PlatformReceiver(PLATFORM_SECRET, clock=Clock()) as rx:
        w = build("platform", rx.base_url)
        rx.fail_next(2, status=429, retry_after=42)
        vs = [w.channel.send(w.notification) for _ in range(2)]
        assert [(v.status, v.retry_after_s) for v in vs] == [(429, 42.0), (429, 42.0)]
        rx.go_down(500)
        assert w.channel.send(w.notification).status == 500
        rx.come_up()
        assert w.channel.send(w.notification).ok
        assert rx.faults_served == 3 and rx.requests == 4
