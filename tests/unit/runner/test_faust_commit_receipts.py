"""Commit receipts of the distributed alerts agent: who committed a transitions offset, and
what a worker killed with a commit in flight concludes at its next start. The rule decides
whether held WeCom/SMS messages are released (sent by this worker) or left to the worker
that read the transitions again: a wrong "refused" loses alarms' messages, a wrong "landed"
sends them twice."""

from __future__ import annotations

import pytest

from alerts.model import EventType, Notification
from alerts.outbox import Outbox
from alerts.store import AlertStore
from hazardwatch.faust_app import handover_resolve, intent_outcome, parse_receipt, receipt


def test_a_receipt_round_trips_and_foreign_metadata_is_no_receipt():
    md = receipt("w 1", "a1b2c3.7", 120)
    assert parse_receipt(md) == ("w_1", "a1b2c3.7", 120)
    for foreign in ("", None, "hw1 w1 tok", "hw1 w1 tok x", "hw2 w1 tok 3", "faust"):
        assert parse_receipt(foreign) is None


@pytest.mark.parametrize(
    ("committed", "metadata", "expected", "why"),
    [
        (None, "", "refused", "nothing ever committed"),
        (90, receipt("w1", "old.3", 40), "refused", "our own earlier commit is the newest"),
        (100, receipt("w1", "inc.4", 60), "landed", "our receipt is the newest commit"),
        (130, receipt("w2", "x.1", 100), "landed", "w2 began reading where our commit left it"),
        (130, receipt("w2", "x.1", 120), "landed", "w2 began after our offset"),
        (130, receipt("w2", "x.1", 95), "refused", "w2 began before it: it read ours again"),
        (130, "", "unknown", "a commit without a receipt"),
        (99, receipt("w2", "x.1", 95), "refused", "not committed past our offset"),
    ],
)
def test_outcome_of_a_commit_a_kill_hid(committed, metadata, expected, why):
    assert intent_outcome(100, "inc.4", committed, metadata) == expected, why


def note(i: int) -> Notification:
    return Notification(
        id=f"n{i}",
        channel="wecom",
        recipient="robot",
        event_type=EventType.RAISED,
        subject_kind="alarm",
        subject_id=f"A{i}",
        enterprise_code="E001",
        title="t",
        body="b",
        created_ms=1,
    )


def test_intents_survive_reopening_and_a_landed_commit_releases_its_rows_only(tmp_path):
    path = tmp_path / "alerts.db"
    store = AlertStore(path)
    ob = Outbox(store)
    for off in (10, 11, 12):
        with store.holding(2, off):
            ob.enqueue([note(off)])
    with store.holding(3, 10):
        ob.enqueue([note(99)])
    store.record_commit_intents({2: (12, "inc.1"), 3: (11, "inc.1")})
    store.close()  # the kill: the intents and the held rows are what the next start finds

    store = AlertStore(path)
    assert store.commit_intents() == {2: (12, "inc.1"), 3: (11, "inc.1")}
    assert store.commit_landed(2, 12) == 2  # offsets 10 and 11; 12 was not committed
    store.forget_commit_intents([3])
    assert store.commit_intents() == {}
    assert store.held_count() == 2  # partition 2 offset 12, partition 3 offset 10
    store.record_commit_intents({2: (13, "inc.2")})
    store.record_commit_intents({2: (14, "inc.3")})  # the newest replaces the older
    assert store.commit_intents() == {2: (14, "inc.3")}


# -- the alert-records hand-over: records pending on a commit ------------------------------

BEFORE = {"record": {"phase": "raised", "notified": False}, "applied": ["a"]}
AFTER = {"record": {"phase": "raised", "notified": True}, "applied": ["a", "b"]}


def pending_doc(final=BEFORE, pending=AFTER, p=2, upto=40):
    return {"v": 2, "final": final, "pending": pending, "p": p, "upto": upto}


def test_a_pending_record_counts_once_the_group_committed_its_offset():
    # the writer was killed after its commit landed, before rewriting the record as final:
    # the next owner must know people were told, or a re-sent transition notifies again
    assert handover_resolve(pending_doc(), {2: 40}.get) == AFTER
    assert handover_resolve(pending_doc(), {2: 55}.get) == AFTER


def test_a_pending_record_whose_commit_never_landed_gives_the_record_before_it():
    # the commit was refused (or never sent): the next owner reads those transitions again
    # and must apply them to the record as it was, not take them for replays
    assert handover_resolve(pending_doc(), {2: 39}.get) == BEFORE
    assert handover_resolve(pending_doc(), {}.get) == BEFORE  # nothing committed yet
    assert handover_resolve(pending_doc(final=None), {2: 10}.get) is None  # a new subject


def test_a_closing_record_pending_is_gone_once_committed():
    assert handover_resolve(pending_doc(pending=None), {2: 40}.get) is None
    assert handover_resolve(pending_doc(pending=None), {2: 39}.get) == BEFORE


def test_final_and_older_values_read_as_the_record():
    assert handover_resolve({"v": 2, "final": AFTER}, {}.get) == AFTER
    assert handover_resolve(AFTER, {}.get) == AFTER  # written by an older worker
    assert handover_resolve(None, {}.get) is None


def test_the_partition_asked_is_the_one_the_record_is_pending_on():
    asked = []

    def committed(p: int) -> int | None:
        asked.append(p)
        return 100

    handover_resolve(pending_doc(p=5), committed)
    assert asked == [5]
