"""Lifecycle of alarms and warnings through the service, with a fixed clock: what the store
shows and who is told after each transition."""

from __future__ import annotations

import pytest

from alerts.lifecycle import Phase
from alerts.model import Disposition, EventType
from alerts.service import InvalidAction, NotFound
from tests.unit.alerts_core.conftest import MIN, T0, alarm, recipients, warning

OPERATOR_H01 = "+8613900000004"  # 赵操作, the H01 operator (installation-level contact)


def people(notes):
    return [n for n in notes if n.channel != "platform"]


def test_firing_ack_clear_dispose_closes_with_the_disposition(service, store):
    raised = service.on_alarm(alarm(), T0)
    assert {(n.channel, n.recipient) for n in raised} == {
        ("platform", "platform"),
        ("aliyun_sms", OPERATOR_H01),
        ("wecom", "e001-duty"),
    }
    assert all(n.event_type is EventType.RAISED for n in raised)
    assert raised[1].link == "https://hw.example/a/A1"
    assert store.get_alarm("A1").phase is Phase.FIRING

    rec = service.acknowledge("A1", "王操作", T0 + MIN, note="on my way")
    assert rec.phase is Phase.ACKNOWLEDGED and rec.acked_by == "王操作"

    cleared = service.on_alarm(alarm(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    assert store.get_alarm("A1").phase is Phase.CLEARED
    assert {n.event_type for n in cleared} == {EventType.CLEARED}
    assert recipients(people(cleared)) == {OPERATOR_H01, "e001-duty"}  # those told of the raise

    closed = service.dispose(
        "A1", "王操作", Disposition.PROCESS_FLUCTUATION, "valve drift", T0 + 10 * MIN
    )
    assert closed.phase is Phase.CLOSED
    assert closed.disposition is Disposition.PROCESS_FLUCTUATION
    assert (closed.closed_by, closed.closed_ms, closed.disposition_note) == (
        "王操作",
        T0 + 10 * MIN,
        "valve drift",
    )
    disposed = store.list_outbox(subject_id="A1")
    assert [
        i.notification.event_type for i in disposed if i.notification.channel == "platform"
    ] == [EventType.RAISED, EventType.ACKNOWLEDGED, EventType.CLEARED, EventType.DISPOSED]
    assert [a.action for a in store.list_actions(subject_id="A1")] == ["acknowledge", "dispose"]


def test_clear_before_acknowledge_goes_to_cleared_and_ack_keeps_it_there(service, store):
    service.on_alarm(alarm(), T0)
    service.on_alarm(alarm(state="cleared", ts=T0 + MIN), T0 + MIN)
    assert store.get_alarm("A1").phase is Phase.CLEARED
    rec = service.acknowledge("A1", "u", T0 + 2 * MIN)
    assert rec.phase is Phase.CLEARED and rec.acked_ms == T0 + 2 * MIN


def test_the_same_event_twice_changes_nothing_and_enqueues_nothing(service, store):
    first = service.on_alarm(alarm(), T0)
    before = len(service.journal.store.journal_rows())
    assert service.on_alarm(alarm(), T0 + 5_000) == []
    assert len(store.list_outbox()) == len(first)
    assert len(service.journal.store.journal_rows()) == before
    # ...also after a restart: a new service over the same file
    from alerts.service import AlertService

    again = AlertService(store, service.routing, service.registry, public_url="http://x")
    assert again.on_alarm(alarm(), T0 + 9_000) == []


def test_level_up_needs_a_new_acknowledgement_and_tells_people_again(service, store):
    service.on_alarm(alarm(level="L1"), T0)
    service.acknowledge("A1", "u", T0 + MIN)
    up = service.on_alarm(alarm(level="L2", ts=T0 + 2 * MIN), T0 + 2 * MIN)
    rec = store.get_alarm("A1")
    assert rec.level == "L2" and rec.phase is Phase.FIRING and rec.acked_ms is None
    assert str(rec.colour) == "orange"
    # 橙 reaches the main person, the district and park officers, not only the operator
    assert {"+8613900000001", "+8613900000008", "+8613900000007"} <= recipients(people(up))


def test_level_down_updates_the_open_alarm_without_texting_anyone(service, store):
    service.on_alarm(alarm(level="L2"), T0)
    down = service.on_alarm(alarm(level="L1", ts=T0 + MIN), T0 + MIN)
    assert store.get_alarm("A1").level == "L1"
    assert people(down) == [] and [n.channel for n in down] == ["platform"]


def test_an_alarm_still_present_after_a_manual_close_fires_again(service, store):
    service.on_alarm(alarm(), T0)
    rec = service.dispose("A1", "u", Disposition.REAL_ALARM_HANDLED, "", T0 + MIN)
    assert rec.phase is Phase.FIRING and rec.reopened == 1 and rec.active
    raised_again = [
        i
        for i in store.list_outbox(subject_id="A1")
        if i.notification.event_type is EventType.RAISED and i.created_ms == T0 + MIN
    ]
    assert recipients([i.notification for i in raised_again]) >= {OPERATOR_H01, "e001-duty"}
    # the disposition itself is kept in the actions and the journal
    assert store.list_actions(subject_id="A1")[-1].data["code"] == "real_alarm_handled"


def test_a_closed_alarm_that_clears_later_stays_closed(service, store):
    service.on_alarm(alarm(state="firing"), T0)
    service.on_alarm(alarm(state="cleared", ts=T0 + MIN), T0 + MIN)
    service.dispose("A1", "u", Disposition.INSTRUMENT_FAULT, "", T0 + 2 * MIN)
    assert store.get_alarm("A1").phase is Phase.CLOSED


def test_reset_hook_is_used_instead_of_refiring_when_the_runner_provides_one(
    store, routing, registry
):
    from alerts.service import AlertService

    resets = []
    svc = AlertService(
        store,
        routing,
        registry,
        public_url="http://x",
        on_alarm_reset=lambda aid, now: resets.append((aid, now)),
    )
    svc.on_alarm(alarm(), T0)
    rec = svc.dispose("A1", "u", Disposition.OTHER, "reset at the panel", T0 + MIN)
    assert rec.phase is Phase.CLOSED and resets == [("A1", T0 + MIN)]
    # a latched alarm: the engine clears the old id (and re-asserts under a new one)
    svc.on_alarm(alarm(state="cleared", ts=T0 + MIN + 100), T0 + MIN + 100)
    svc.on_alarm(alarm("A1-2", ts=T0 + MIN + 100), T0 + MIN + 100)
    svc.tick(T0 + 2 * MIN)
    assert store.get_alarm("A1").phase is Phase.CLOSED
    assert store.get_alarm("A1-2").phase is Phase.FIRING


def test_unlatched_alarm_closed_with_a_reset_hook_fires_again_after_the_grace(
    store, routing, registry
):
    from alerts.service import AlertService

    svc = AlertService(
        store, routing, registry, public_url="http://x", on_alarm_reset=lambda aid, now: None
    )  # the engine had no latch
    svc.on_alarm(alarm(), T0)
    svc.dispose("A1", "u", Disposition.PROCESS_FLUCTUATION, "", T0 + MIN)
    svc.tick(T0 + MIN + 4_999)
    assert store.get_alarm("A1").phase is Phase.CLOSED
    svc.tick(T0 + MIN + 5_000)
    rec = store.get_alarm("A1")
    assert rec.phase is Phase.FIRING and rec.reopened == 1 and rec.reset_requested_ms is None
    assert any(
        i.created_ms == T0 + MIN + 5_000 and i.notification.channel == "aliyun_sms"
        for i in store.list_outbox(subject_id="A1")
    )


def test_latching_keeps_an_alarm_annunciated_until_acknowledged(store, routing, registry):
    from alerts.service import AlertService

    latched = routing.model_copy(
        update={"lifecycle": routing.lifecycle.model_copy(update={"latch_rules": ["gas.*"]})}
    )
    svc = AlertService(store, latched, registry, public_url="http://x")
    svc.on_alarm(alarm(), T0)
    svc.on_alarm(alarm(state="cleared", ts=T0 + MIN), T0 + MIN)
    rec = store.get_alarm("A1")
    assert rec.phase is Phase.FIRING and not rec.active  # back to normal but still latched
    assert svc.acknowledge("A1", "u", T0 + 2 * MIN).phase is Phase.CLEARED


def test_human_action_errors_say_what_is_wrong(service):
    with pytest.raises(NotFound, match="no alarm or warning 'nope'"):
        service.acknowledge("nope", "u", T0)
    service.on_alarm(alarm(state="cleared"), T0)
    with pytest.raises(InvalidAction, match="note is required"):
        service.dispose("A1", "u", Disposition.OTHER, "  ", T0)
    with pytest.raises(InvalidAction, match="unknown disposition 'fixed'"):
        service.dispose("A1", "u", "fixed", "", T0)
    service.dispose("A1", "u", Disposition.COMMISSIONING, "", T0)
    with pytest.raises(InvalidAction, match="already closed"):
        service.dispose("A1", "u", Disposition.COMMISSIONING, "", T0)
    with pytest.raises(InvalidAction, match="closed; there is nothing to acknowledge"):
        service.acknowledge("A1", "u", T0)


def test_warning_raise_upgrade_and_close_calls_the_warning_model_hook(
    service, store, closed_warnings
):
    raised = service.on_warning(warning(colour="yellow"), T0)
    assert recipients(people(raised)) == {OPERATOR_H01, "e001-duty", "+8613900000002"}
    up = service.on_warning(
        warning(colour="orange", state="upgraded", previous="yellow", ts=T0 + MIN), T0 + MIN
    )
    rec = store.get_warning("W1")
    assert rec.colour == "orange" and rec.previous == "yellow"
    assert "+8613900000001" in recipients(people(up))
    service.acknowledge("W1", "u", T0 + 2 * MIN)
    assert store.get_warning("W1").phase is Phase.ACKNOWLEDGED
    closed = service.dispose("W1", "u", Disposition.REAL_ALARM_HANDLED, "leak fixed", T0 + 3 * MIN)
    assert closed.phase is Phase.CLOSED
    assert closed_warnings == [("W1", T0 + 3 * MIN)]
    # the warning model's own "closed" echo is recorded and tells nobody
    assert (
        service.on_warning(warning(colour="orange", state="closed", ts=T0 + 3 * MIN), T0 + 3 * MIN)
        == []
    )


def test_backfilled_alarm_already_cleared_sends_no_sms_but_the_platform_gets_it(service, store):
    service.on_alarm(alarm(backfill=True, ts=T0 - 3_600_000), T0)
    service.on_alarm(alarm(state="cleared", backfill=True, ts=T0 - 3_500_000), T0 + 1_000)
    rows = store.list_outbox(subject_id="A1")
    by_state = {(i.notification.channel, i.notification.event_type): i.state for i in rows}
    assert by_state[("platform", EventType.RAISED)] == "pending"
    assert by_state[("platform", EventType.CLEARED)] == "pending"
    assert by_state[("aliyun_sms", EventType.RAISED)] == "withdrawn"
    assert by_state[("wecom", EventType.RAISED)] == "withdrawn"
    assert ("aliyun_sms", EventType.CLEARED) not in by_state


def test_backfilled_alarm_still_firing_after_the_hold_is_pushed(service, store):
    from alerts.channels.testing import RecordingChannel

    service.on_alarm(alarm(backfill=True, ts=T0 - 600_000), T0)
    sms = RecordingChannel("aliyun_sms")
    chans = {
        "platform": RecordingChannel("platform"),
        "aliyun_sms": sms,
        "wecom": RecordingChannel("wecom"),
    }
    service.outbox.deliver_due(T0 + 30_000, chans)
    assert sms.delivered == []  # still inside the back-fill hold
    service.outbox.deliver_due(T0 + 61_000, chans)
    assert [n.recipient for n in sms.delivered] == [OPERATOR_H01]


def test_a_batch_commits_together_and_a_failure_inside_rolls_all_of_it_back(service, store):
    with service.batch():
        service.on_alarm(alarm("B1"), T0)
        service.on_alarm(alarm("B2", tag="AT-2"), T0)
    assert store.get_alarm("B1") and store.get_alarm("B2")
    head = store.journal_head()
    with pytest.raises(RuntimeError), service.batch():
        service.on_alarm(alarm("B3"), T0)
        raise RuntimeError("the process died half way")
    assert store.get_alarm("B3") is None and store.journal_head() == head
    assert service.on_alarm(alarm("B3"), T0)  # the re-delivered event is applied afresh
