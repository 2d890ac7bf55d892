"""The durable outbox: stored before sent, retried with backoff, rate limits folded into
digests, dead letters with an operator alarm, fallback, and nothing lost or sent twice across
restarts (including `kill -9` in the middle of a delivery)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from alerts.channels.testing import RecordingChannel
from alerts.model import EventType, Notification, Verdict
from alerts.outbox import Outbox, OutboxConfig, backoff_ms
from alerts.routing import Recipient
from alerts.store import AlertStore
from tests.unit.alerts_core.conftest import MIN, T0, alarm

REPO = Path(__file__).resolve().parents[3]


def note(
    i: int,
    *,
    channel="platform",
    recipient="platform",
    subject="S1",
    created=T0,
    event=EventType.RAISED,
) -> Notification:
    return Notification(
        id=f"n{i:04d}",
        channel=channel,
        recipient=recipient,
        event_type=event,
        subject_kind="alarm",
        subject_id=subject,
        enterprise_code="E001",
        title=f"title {i}",
        body=f"body {i}",
        created_ms=created,
    )


def test_stored_before_any_send_and_enqueued_once(store):
    seen_in_store = []

    class Checking(RecordingChannel):
        def send(self, n):
            seen_in_store.append(store.get_notification(n.id) is not None)
            return super().send(n)

    ob = Outbox(store)
    assert len(ob.enqueue([note(1), note(1), note(2)])) == 2
    assert ob.enqueue([note(1)]) == []
    ch = Checking("platform")
    ob.deliver_due(T0, {"platform": ch})
    assert seen_in_store == [True, True]
    assert ch.delivered_ids() == ["n0001", "n0002"]
    ob.deliver_due(T0 + 1, {"platform": ch})
    assert ch.duplicates == 0 and len(ch.attempts) == 2


def test_backoff_is_exponential_capped_jittered_deterministically_and_honours_retry_after():
    cfg = OutboxConfig(base_backoff_s=5, max_backoff_s=300)
    steps = [backoff_ms("abc", k, cfg) for k in range(1, 10)]
    assert steps == [backoff_ms("abc", k, cfg) for k in range(1, 10)]  # reproducible
    for k, ms in enumerate(steps, 1):
        step = min(300, 5 * 2 ** (k - 1)) * 1000
        assert step / 2 <= ms <= step
    assert backoff_ms("abc", 1, cfg) != backoff_ms("abd", 1, cfg)  # jitter differs per id
    assert backoff_ms("abc", 1, cfg, retry_after_s=120) == 120_000


def test_retry_waits_for_the_backoff_then_delivers_with_the_same_key(store):
    ob = Outbox(store)
    ob.enqueue([note(1)])
    ch = RecordingChannel("platform").then(Verdict.retry("HTTP 503", status=503, retry_after_s=30))
    ob.deliver_due(T0, {"platform": ch})
    item = store.get_notification("n0001")
    assert item.state == "pending" and item.next_attempt_ms == T0 + 30_000
    assert item.last_error == "HTTP 503"
    ob.deliver_due(T0 + 29_999, {"platform": ch})
    assert len(ch.attempts) == 1
    ob.deliver_due(T0 + 30_000, {"platform": ch})
    assert [n.id for n in ch.attempts] == ["n0001", "n0001"]
    assert store.get_notification("n0001").state == "delivered"
    assert [a.ok for a in store.list_attempts("n0001")] == [False, True]


def test_each_outcome_is_reported_for_the_notification_measurement(store):
    ob = Outbox(store)
    ob.enqueue([note(1)])
    ch = RecordingChannel("platform").then(Verdict.retry("HTTP 503", status=503))
    first = ob.deliver_due(T0 + 500, {"platform": ch})
    second = ob.deliver_due(T0 + 600_000, {"platform": ch})
    assert [(o.result, o.attempts, o.latency_ms) for o in first.outcomes + second.outcomes] == [
        ("retrying", 1, 500.0),
        ("delivered", 2, 600_000.0),
    ]
    o = second.outcomes[0]
    assert (o.notification_id, o.enterprise_code, o.channel, o.event_type, o.ts_ms) == (
        "n0001",
        "E001",
        "platform",
        "raised",
        T0 + 600_000,
    )


def test_outbox_survives_a_restart(tmp_path):
    path = tmp_path / "o.sqlite"
    s1 = AlertStore(path)
    Outbox(s1).enqueue([note(1), note(2, subject="S2")])
    s1.close()
    s2 = AlertStore(path)
    ch = RecordingChannel("platform")
    Outbox(s2).deliver_due(T0, {"platform": ch})
    assert ch.delivered_ids() == ["n0001", "n0002"]
    s2.close()


def test_platform_down_for_an_hour_sms_timing_out_wecom_45009_then_all_delivered_once_in_order(
    service, store
):
    up_at = T0 + 60 * MIN

    def down_until_up(reason, **kw):
        def script(n, attempt):
            return Verdict.delivered(200) if clock[0] >= up_at else Verdict.retry(reason, **kw)

        return script

    clock = [T0]
    chans = {
        "platform": RecordingChannel("platform", down_until_up("HTTP 503", status=503)),
        "aliyun_sms": RecordingChannel("aliyun_sms", down_until_up("timed out (ReadTimeout)")),
        "wecom": RecordingChannel(
            "wecom", down_until_up("errcode 45009", retry_after_s=60), rate_limit=(20, 60.0)
        ),
    }
    # Five alarms, each raised, acknowledged, cleared and disposed during the outage.
    for i in range(5):
        aid = f"A{i}"
        t = T0 + i * MIN
        service.on_alarm(alarm(aid, tag=f"AT-{10 + i}", ts=t), t)
        service.acknowledge(aid, "u", t + 2 * MIN)
        service.on_alarm(
            alarm(aid, tag=f"AT-{10 + i}", state="cleared", ts=t + 5 * MIN), t + 5 * MIN
        )
        service.dispose(aid, "u", "process_fluctuation", "", t + 6 * MIN)
    expected = {i.notification.id: i.notification for i in store.list_outbox()}
    while clock[0] <= T0 + 120 * MIN:
        service.outbox.deliver_due(clock[0], chans)
        clock[0] += 10_000
    delivered = [n for ch in chans.values() for n in ch.delivered]
    assert Counter(n.id for n in delivered) == Counter(set(expected))  # all, once each
    assert store.outbox_depth() == 0
    assert {i.state for i in store.list_outbox()} == {"delivered"}
    platform = chans["platform"].delivered
    for i in range(5):
        events = [n.event_type for n in platform if n.subject_id == f"A{i}"]
        assert events == [
            EventType.RAISED,
            EventType.ACKNOWLEDGED,
            EventType.CLEARED,
            EventType.DISPOSED,
        ]
    assert all(n.created_ms < up_at for n in delivered)
    for ch in chans.values():  # every channel really failed during the outage
        assert len(ch.attempts) > len(ch.delivered)
    assert min(a.ts_ms for a in store.list_attempts() if a.ok) >= up_at


def test_thirty_alarms_in_a_minute_at_most_twenty_wecom_messages_and_none_missing(service, store):
    wecom = RecordingChannel("wecom", rate_limit=(20, 60.0))
    sent_at: list[int] = []
    clock = [T0]
    orig = wecom.send

    def timed(n):
        sent_at.append(clock[0])
        return orig(n)

    wecom.send = timed
    chans = {
        "wecom": wecom,
        "platform": RecordingChannel("platform"),
        "aliyun_sms": RecordingChannel("aliyun_sms"),
    }
    for i in range(30):  # one every 2 s, all for E001 -> one duty robot
        clock[0] = T0 + i * 2_000
        service.on_alarm(alarm(f"A{i:02d}", tag=f"AT-{10 + i}", ts=clock[0]), clock[0])
        service.outbox.deliver_due(clock[0], chans)
    while clock[0] < T0 + 5 * MIN:
        clock[0] += 1_000
        service.outbox.deliver_due(clock[0], chans)
    # never more than 20 messages to the robot in any 60 s window
    for t in sent_at:
        assert sum(1 for u in sent_at if t <= u < t + 60_000) <= 20
    assert sum(1 for u in sent_at if u < T0 + 60_000) <= 20
    covered: list[str] = []
    digests = 0
    for n in wecom.delivered:
        if n.event_type is EventType.DIGEST:
            digests += 1
            covered += n.payload["subjects"]
            for sid in n.payload["subjects"]:
                assert sid in n.body  # the digest lists every merged alarm
        else:
            covered.append(n.subject_id)
    assert sorted(covered) == [f"A{i:02d}" for i in range(30)]
    assert digests >= 1
    assert {i.state for i in store.list_outbox(channel="wecom")} <= {"delivered", "digested"}


def test_dead_letter_after_the_max_age_tells_the_operators(store):
    ops = (Recipient("operators", "运维", "aliyun_sms", "+8613900000000"),)
    ob = Outbox(store, OutboxConfig(dead_after_s=3600, operators=ops))
    ob.enqueue([note(1)])
    platform = RecordingChannel("platform", lambda n, k: Verdict.retry("HTTP 500", status=500))
    sms = RecordingChannel("aliyun_sms")
    t = T0
    while t < T0 + 2 * 3600_000:
        ob.deliver_due(t, {"platform": platform, "aliyun_sms": sms})
        t += 30_000
    item = store.get_notification("n0001")
    assert item.state == "dead" and "undelivered after 3600 s" in item.last_error
    assert [(n.event_type, n.recipient) for n in sms.delivered] == [
        (EventType.OPERATOR, "+8613900000000")
    ]
    assert "n0001" in sms.delivered[0].title or sms.delivered[0].subject_id == "n0001"
    kinds = [r[2] for r in store.journal_rows()]
    assert "notify.dead" in kinds


def test_a_refused_message_is_dead_at_once_and_an_operator_dead_letter_tells_nobody(store):
    ops = (Recipient("operators", "运维", "aliyun_sms", "+8613900000000"),)
    ob = Outbox(store, OutboxConfig(operators=ops))
    ob.enqueue([note(1)])
    refuse = RecordingChannel("platform", lambda n, k: Verdict.give_up("HTTP 400", status=400))
    sms_refuse = RecordingChannel("aliyun_sms", lambda n, k: Verdict.give_up("bad template"))
    ob.deliver_due(T0, {"platform": refuse, "aliyun_sms": sms_refuse})
    states = {i.notification.id: (i.notification.event_type, i.state) for i in store.list_outbox()}
    assert states["n0001"] == (EventType.RAISED, "dead")
    op = [v for k, v in states.items() if k != "n0001"]
    assert op == [(EventType.OPERATOR, "dead")]  # and no third notification about it


def test_fallback_channel_after_the_primary_keeps_failing(store):
    ob = Outbox(
        store,
        OutboxConfig(
            fallbacks={"aliyun_sms": "tencent_sms"}, fallback_after_s=600, max_backoff_s=60
        ),
    )
    ob.enqueue(
        [
            note(i, channel="aliyun_sms", recipient="+8613900000001", subject=f"S{i}")
            for i in range(3)
        ]
    )
    aliyun = RecordingChannel("aliyun_sms", lambda n, k: Verdict.retry("timed out"))
    tencent = RecordingChannel("tencent_sms")
    t = T0
    while t <= T0 + 15 * MIN:
        ob.deliver_due(t, {"aliyun_sms": aliyun, "tencent_sms": tencent})
        t += 10_000
    assert sorted(tencent.delivered_ids()) == ["n0000", "n0001", "n0002"]  # same keys
    assert all(n.channel == "tencent_sms" for n in tencent.delivered)
    first_fallback = min(a.ts_ms for a in store.list_attempts() if a.channel == "tencent_sms")
    assert first_fallback >= T0 + 600_000
    assert {i.via_channel for i in store.list_outbox()} == {"tencent_sms"}


def test_missing_channel_is_dead_lettered_with_the_reason(store):
    ob = Outbox(store)
    ob.enqueue([note(1, channel="carrier_pigeon")])
    ob.deliver_due(T0, {})
    assert store.get_notification("n0001").last_error == "no channel 'carrier_pigeon' is configured"


def test_a_channel_that_raises_is_retried_without_leaking_the_message(store):
    ob = Outbox(store)
    ob.enqueue([note(1)])

    class Boom:
        name = "platform"
        rate_limit = None

        def send(self, n):
            raise RuntimeError("https://x/?key=SECRET-KEY-123 exploded")

    ob.deliver_due(T0, {"platform": Boom()})
    item = store.get_notification("n0001")
    assert item.state == "pending" and item.last_error == "channel raised RuntimeError"
    assert "SECRET" not in "".join(r[5] for r in store.journal_rows())


_CHILD = r"""
import os, sys, time
from alerts.outbox import Outbox
from alerts.store import AlertStore
from alerts.model import Verdict

class FileChannel:
    name = "platform"
    rate_limit = None
    def __init__(self, path):
        self.path = path
    def send(self, n):
        with open(self.path, "a") as f:
            f.write(n.id + "\n"); f.flush(); os.fsync(f.fileno())
        if n.id == "n0003":
            time.sleep(60)  # killed here: sent, but the result is never committed
        return Verdict.delivered(200)

store = AlertStore(sys.argv[1])
Outbox(store).deliver_due(int(sys.argv[3]), {"platform": FileChannel(sys.argv[2])})
"""


def _lines(p: Path) -> list[str]:
    return p.read_text().split() if p.exists() else []


def test_kill_9_mid_delivery_loses_nothing_and_reuses_the_idempotency_key(tmp_path):
    db, sent = tmp_path / "o.sqlite", tmp_path / "sent.txt"
    store = AlertStore(db)
    Outbox(store).enqueue([note(i, subject=f"S{i}") for i in range(6)])
    store.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), str(sent), str(T0)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        deadline = time.monotonic() + 60
        while "n0003" not in _lines(sent):
            assert child.poll() is None, "the child ended before the kill"
            assert time.monotonic() < deadline, "the child never reached n0003"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    before = _lines(sent)
    assert before == ["n0000", "n0001", "n0002", "n0003"]
    store = AlertStore(db)
    ch = RecordingChannel("platform")
    Outbox(store).deliver_due(T0 + 1_000, {"platform": ch})
    # the in-flight message is sent again with the same key; the committed ones are not
    assert ch.delivered_ids() == ["n0003", "n0004", "n0005"]
    assert set(before) | set(ch.delivered_ids()) == {f"n{i:04d}" for i in range(6)}
    assert {i.state for i in store.list_outbox()} == {"delivered"}
    from alerts.journal import Journal

    assert Journal(store).verify().ok
    store.close()


@pytest.mark.parametrize("hold", [0, 60_000])
def test_order_per_subject_is_kept_behind_a_failing_head(store, hold):
    ob = Outbox(store)
    ob.enqueue([note(1, subject="S"), note(2, subject="S", event=EventType.CLEARED)], hold_ms=hold)
    ch = RecordingChannel("platform").then(Verdict.retry("HTTP 502", status=502))
    t = T0
    while t < T0 + 10 * MIN:
        ob.deliver_due(t, {"platform": ch})
        t += 1_000
    assert [n.id for n in ch.attempts] == ["n0001", "n0001", "n0002"]


def test_service_thread_and_delivery_thread_share_the_store_safely(service, store):
    """The runner applies events on its evaluation thread while a delivery thread drains the
    outbox: nothing is lost, nothing is sent twice, the journal stays a chain."""
    import threading

    from alerts.journal import Journal

    chans = {c: RecordingChannel(c) for c in ("platform", "aliyun_sms", "wecom")}
    stop = threading.Event()
    errors: list[BaseException] = []

    def deliver():
        t = T0
        try:
            while not stop.is_set():
                t += 1_000
                service.outbox.deliver_due(t + 120_000, chans)
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assert below
            errors.append(exc)

    worker = threading.Thread(target=deliver)
    worker.start()
    try:
        for i in range(25):
            t = T0 + i * 1_000
            service.on_alarm(alarm(f"A{i}", tag=f"AT-{10 + i}", ts=t), t)
            service.acknowledge(f"A{i}", "u", t + 1)
    finally:
        stop.set()
        worker.join(timeout=60)
    assert errors == []
    service.outbox.deliver_due(T0 + 10 * MIN, chans)
    expected = {i.notification.id for i in store.list_outbox()}
    got = [n.id for ch in chans.values() for n in ch.delivered]
    assert sorted(got) == sorted(expected)
    assert Journal(store).verify().ok
