"""Held outbox rows (the distributed worker's notifications whose Kafka transitions are not
committed yet): never sent and holding back their subject's queue until released, dropped
without touching released rows, and files of the schema before the column are migrated with
their rows deliverable as before."""

from __future__ import annotations

import sqlite3
import threading

import msgspec
import pytest

from alerts.channels.testing import RecordingChannel
from alerts.model import EventType, Notification
from alerts.outbox import Outbox
from alerts.store import SCHEMA_VERSION, AlertStore
from tests.unit.alerts_core.conftest import T0, alarm


def note(i: int, *, subject: str = "S1", event=EventType.RAISED) -> Notification:
    return Notification(
        id=f"n{i:04d}",
        channel="platform",
        recipient="platform",
        event_type=event,
        subject_kind="alarm",
        subject_id=subject,
        enterprise_code="E001",
        title=f"title {i}",
        body=f"body {i}",
        created_ms=T0,
    )


def test_held_rows_are_not_sent_until_released_then_sent_once_with_their_key(store):
    ob, ch = Outbox(store), RecordingChannel("platform")
    with store.holding(3, 100):
        ob.enqueue([note(1)])
    with store.holding(3, 101):
        ob.enqueue([note(2, subject="S2")])
    ob.enqueue([note(3, subject="S3")])  # outside `holding`: released at once
    assert store.held_count() == 2
    assert store.outbox_depth() == 1  # held rows wait for a commit, not for a channel

    ob.deliver_due(T0 + 60_000, {"platform": ch})
    assert ch.delivered_ids() == ["n0003"]

    assert ob.release(3, 101) == 1  # offset 100 is committed, 101 not yet
    ob.deliver_due(T0 + 60_000, {"platform": ch})
    assert ch.delivered_ids() == ["n0003", "n0001"]
    assert ob.release(4, 10_000) == 0  # another partition's commit releases nothing here
    assert ob.release(3, 102) == 1
    ob.deliver_due(T0 + 60_000, {"platform": ch})
    assert ch.delivered_ids() == ["n0003", "n0001", "n0002"]
    assert ch.duplicates == 0 and store.held_count() == 0


def test_a_held_message_keeps_later_messages_about_its_subject_waiting(store):
    ob, ch = Outbox(store), RecordingChannel("platform")
    with store.holding(0, 7):
        ob.enqueue([note(1)])  # the raise, from a transition not committed yet
    ob.enqueue([note(2, event=EventType.ESCALATED)])  # e.g. the tick's escalation: released
    ob.deliver_due(T0, {"platform": ch})
    assert ch.delivered_ids() == []  # the escalation never overtakes its raise
    ob.release(0, 8)
    ob.deliver_due(T0, {"platform": ch})
    assert ch.delivered_ids() == ["n0001", "n0002"]


def test_drop_unreleased_removes_only_held_rows_of_the_given_partition_and_offsets(store):
    ob, ch = Outbox(store), RecordingChannel("platform")
    for i, (p, off) in enumerate([(1, 5), (1, 9), (2, 5)], start=1):
        with store.holding(p, off):
            ob.enqueue([note(i, subject=f"S{i}")])
    ob.enqueue([note(4, subject="S4")])
    ob.enqueue([note(5, subject="S5")])
    ob.deliver_due(T0, {"platform": ch})  # n0004, n0005 are delivered, 1-3 held

    assert ob.drop_unreleased(T0, "taken over", partition=1, below_offset=9) == ["n0001"]
    assert store.get_notification("n0001") is None
    assert ob.drop_unreleased(T0, "taken over") == ["n0002", "n0003"]
    assert store.held_count() == 0
    # released rows, delivered or not, are never dropped
    assert [r.notification.id for r in store.list_outbox()] == ["n0004", "n0005"]
    dropped = [e for e in ob.journal.entries() if e.kind == "notify.dropped"]
    assert [(e.subject_id, e.data["ids"]) for e in dropped] == [
        ("S1", ["n0001"]),
        ("S2", ["n0002"]),
        ("S3", ["n0003"]),
    ]
    assert ob.journal.verify().ok
    ob.deliver_due(T0 + 60_000, {"platform": ch})
    assert ch.delivered_ids() == ["n0004", "n0005"]


def test_service_notifications_inside_holding_are_held_and_a_replay_adds_none(service, store):
    with service.batch(), store.holding(0, 42):
        notes = service.on_alarm(alarm("A1"), T0)
    assert notes and store.held_count() == len(notes)
    assert store.outbox_depth() == 0
    # re-read after a crash (same transition): already applied, nothing new, still held
    with service.batch(), store.holding(0, 42):
        assert service.on_alarm(alarm("A1"), T0) == []
    assert store.release_held(0, 43) == len(notes)
    assert store.outbox_depth() == len(notes)


def test_holding_applies_to_the_calling_thread_only(store):
    ob = Outbox(store)
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(5)
        ob.enqueue([note(2, subject="S2")])  # e.g. the delivery thread's digest
        done.set()

    t = threading.Thread(target=other)
    t.start()
    with store.holding(0, 1):
        ob.enqueue([note(1)])
        inside.set()
        assert done.wait(5)
    t.join()
    assert store.held_count() == 1
    assert [r.notification.id for r in store.list_outbox()] == ["n0001", "n0002"]
    with pytest.raises(ValueError, match="partition and offset must be >= 0"):
        with store.holding(-1, 0):
            pass


def test_a_schema_1_file_is_migrated_and_its_rows_are_released(tmp_path):
    path = tmp_path / "alerts.db"
    AlertStore(path).close()
    # make it the file an older hazardwatch wrote: no held columns, schema 1, one pending row
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE outbox DROP COLUMN held_partition")
    db.execute("ALTER TABLE outbox DROP COLUMN held_offset")
    db.execute("UPDATE meta SET value='1' WHERE key='schema'")
    n = note(1)
    db.execute(
        "INSERT INTO outbox (id, channel, recipient, subject_id, enterprise_code, event_type,"
        " state, created_ms, not_before_ms, next_attempt_ms, data)"
        " VALUES (?,?,?,?,?,?,'pending',?,?,?,?)",
        (n.id, n.channel, n.recipient, n.subject_id, "E001", "raised", T0, T0, T0,
         msgspec.json.encode(n)),
    )  # fmt: skip
    db.commit()
    db.close()

    store = AlertStore(path)
    try:
        ch = RecordingChannel("platform")
        assert store.held_count() == 0 and store.outbox_depth() == 1
        Outbox(store).deliver_due(T0, {"platform": ch})
        assert ch.delivered_ids() == ["n0001"]
        with store.holding(0, 1):
            Outbox(store).enqueue([note(2, subject="S2")])
        assert store.held_count() == 1
    finally:
        store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (
        str(SCHEMA_VERSION),
    )
    db.close()
    AlertStore(path).close()  # a migrated file opens again as it is
