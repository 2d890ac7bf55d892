"""Distributed workers each keep their own alerts store; an alarm raised through one worker
can clear through another after a failover. The hand-over (a Faust table in the worker)
carries the record across, so the second worker tells the people who heard of the raise that
it cleared. Found by the fault suite: without it the clear reached only the platform."""

from __future__ import annotations

from typing import Any

from alerts.lifecycle import Phase
from alerts.model import EventType
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts_core.conftest import T0, alarm

MIN = 60_000


class DictHandover:
    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, enterprise: str, subject_id: str) -> dict[str, Any] | None:
        return self.docs.get((enterprise, subject_id))

    def put(self, enterprise: str, subject_id: str, data: dict[str, Any] | None) -> None:
        if data is None:
            self.docs.pop((enterprise, subject_id), None)
        else:
            self.docs[(enterprise, subject_id)] = data


def worker(tmp_path, name, routing, registry, handover) -> AlertService:
    store = AlertStore(tmp_path / f"{name}.db")
    return AlertService(
        store, routing, registry, public_url="https://hw.example/", handover=handover
    )


def people(notes):
    return {(n.channel, n.recipient) for n in notes if n.channel != "platform"}


def test_a_clear_read_by_the_next_worker_reaches_the_people_told_of_the_raise(
    tmp_path, routing, registry
):
    shared = DictHandover()
    w1 = worker(tmp_path, "w1", routing, registry, shared)
    w2 = worker(tmp_path, "w2", routing, registry, shared)
    raised = w1.on_alarm(alarm(), T0)
    told = people(raised)
    assert told, "the raise goes to people"
    assert shared.get("E001", "A1")["record"]["notified"] is True

    cleared = w2.on_alarm(alarm(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    assert {n.event_type for n in cleared} == {EventType.CLEARED}
    assert people(cleared) == told
    assert w2.store.get_alarm("A1").phase is Phase.CLEARED
    assert [e.kind for e in w2.journal.entries(subject_id="A1")][:1] == ["alarm.handed_over"]


def test_transitions_sent_again_after_a_failover_are_recognised_by_the_next_worker(
    tmp_path, routing, registry
):
    """After a failover the rules stage evaluates again what the last state flush did not
    hold and sends the same transitions again (same ids, same keys): the worker that reads
    them must not notify anyone a second time."""
    shared = DictHandover()
    w1 = worker(tmp_path, "w1", routing, registry, shared)
    w2 = worker(tmp_path, "w2", routing, registry, shared)
    raise_, clear = alarm(), alarm(state="cleared", ts=T0 + 5 * MIN)
    assert people(w1.on_alarm(raise_, T0))
    assert w1.on_alarm(clear, T0 + 5 * MIN)
    assert w2.on_alarm(raise_, T0 + 6 * MIN) == []
    assert w2.on_alarm(clear, T0 + 6 * MIN) == []
    # and a new episode of the same alarm is news again
    assert people(w2.on_alarm(alarm(ts=T0 + 9 * MIN), T0 + 9 * MIN))


def test_a_worker_with_an_older_record_takes_the_newer_one(tmp_path, routing, registry):
    """w1 raised the alarm, w2 (after a failover) cleared it, and w1, owner again, reads the
    clear once more: its own record is stale, the hand-over's says people heard already."""
    shared = DictHandover()
    w1 = worker(tmp_path, "w1", routing, registry, shared)
    w2 = worker(tmp_path, "w2", routing, registry, shared)
    clear = alarm(state="cleared", ts=T0 + 5 * MIN)
    assert people(w1.on_alarm(alarm(), T0))
    assert people(w2.on_alarm(clear, T0 + 5 * MIN))
    assert w1.on_alarm(clear, T0 + 6 * MIN) == []
    assert w1.store.get_alarm("A1").phase is Phase.CLEARED


def test_without_a_hand_over_the_next_worker_knows_nothing_and_tells_only_the_platform(
    tmp_path, routing, registry
):
    # what the hand-over fixes: the second store never saw the raise
    w1 = worker(tmp_path, "w1", routing, registry, None)
    w2 = worker(tmp_path, "w2", routing, registry, None)
    assert people(w1.on_alarm(alarm(), T0))
    cleared = w2.on_alarm(alarm(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    assert people(cleared) == set()


def test_a_closed_record_leaves_the_hand_over(tmp_path, routing, registry):
    from alerts.model import Disposition

    shared = DictHandover()
    w1 = worker(tmp_path, "w1", routing, registry, shared)
    w1.on_alarm(alarm(), T0)
    w1.acknowledge("A1", "王操作", T0 + MIN)
    w1.on_alarm(alarm(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    assert shared.get("E001", "A1") is not None
    w1.dispose("A1", "王操作", Disposition.PROCESS_FLUCTUATION, "valve drift", T0 + 10 * MIN)
    assert shared.get("E001", "A1") is None
