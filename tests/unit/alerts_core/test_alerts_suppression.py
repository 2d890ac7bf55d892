"""Inhibition, filings and shelving with a fixed clock: suppressed alarms are recorded and
shown but nobody is texted, and lifting the suppression tells people about what is still
present."""

from __future__ import annotations

import pytest

from alerts.channels.testing import RecordingChannel
from alerts.lifecycle import Phase
from alerts.model import EventType, FilingKind
from alerts.service import InvalidAction, NotFound
from tests.unit.alerts_core.conftest import MIN, T0, alarm, recipients

OPERATOR_H01 = "+8613900000004"


def channels():
    return {
        name: RecordingChannel(name) for name in ("platform", "aliyun_sms", "wecom", "tencent_sms")
    }


def delivered_about(chans, subject_id):
    return [n for ch in chans.values() for n in ch.delivered if n.subject_id == subject_id]


def gateway(state="firing", ts=T0, alarm_id="G1"):
    return alarm(
        alarm_id,
        kind="gateway",
        tag="GW1",
        level=None,
        state=state,
        ts=ts,
        parameter="gateway",
        value=None,
        rule="gateway.offline",
    )


def offline(alarm_id="O1", tag="AT-1", state="firing", ts=T0):
    return alarm(
        alarm_id,
        kind="offline",
        tag=tag,
        level=None,
        state=state,
        ts=ts,
        value=None,
        rule="offline",
    )


# -- inhibition -------------------------------------------------------------------------------


def test_gateway_outage_inhibits_its_points_offline_alarms(service, store):
    service.on_alarm(gateway(), T0)
    notes = service.on_alarm(offline(), T0 + 1_000)
    assert notes == []
    rec = store.get_alarm("O1")
    assert rec.suppressed == "inhibited:G1" and rec.phase is Phase.FIRING  # recorded, shown
    assert store.list_alarms(enterprise="E001", open_only=True, kind="offline")[0].alarm_id == "O1"
    later = service.tick(T0 + 120 * MIN)
    assert [n for n in later if n.subject_id == "O1"] == []  # never escalated
    assert any(n.subject_id == "G1" and n.event_type is EventType.ESCALATED for n in later)


def test_offline_alarm_before_its_gateway_alarm_is_withdrawn_within_the_hold(service, store):
    chans = channels()
    service.on_alarm(offline("O1", "AT-1"), T0)
    service.on_alarm(offline("O2", "AT-2"), T0)
    service.outbox.deliver_due(T0 + 30_000, chans)  # inside the 60 s hold: nothing sent yet
    service.on_alarm(gateway(ts=T0 + 40_000), T0 + 40_000)
    service.outbox.deliver_due(T0 + 120_000, chans)
    assert delivered_about(chans, "O1") == [] and delivered_about(chans, "O2") == []
    assert {i.state for i in store.list_outbox(subject_id="O1")} == {"withdrawn"}
    assert len(delivered_about(chans, "G1")) >= 2  # the one gateway alarm is what people get


def test_offline_alarm_of_another_gateway_is_not_inhibited(service, store):
    service.on_alarm(gateway(), T0)
    notes = service.on_alarm(offline("O3", "LT-1"), T0)  # LT-1 is on GW2
    assert store.get_alarm("O3").suppressed == "" and notes


def test_when_the_gateway_returns_a_point_still_offline_is_raised(service, store):
    service.on_alarm(gateway(), T0)
    service.on_alarm(offline("O1", "AT-1"), T0)
    service.on_alarm(offline("O2", "AT-2"), T0)
    service.on_alarm(offline("O2", "AT-2", state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    notes = service.on_alarm(gateway(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    raised = [n for n in notes if n.event_type is EventType.RAISED]
    assert {n.subject_id for n in raised} == {"O1"}  # O2 recovered with its gateway
    assert OPERATOR_H01 in recipients(raised)
    assert store.get_alarm("O1").suppressed == ""


def test_gateway_recovery_then_its_offline_alarms_clearing_texts_nobody(service, store):
    chans = channels()
    service.on_alarm(gateway(), T0)
    service.on_alarm(offline("O1", "AT-1"), T0)
    service.outbox.deliver_due(T0 + 2 * MIN, chans)
    service.on_alarm(gateway(state="cleared", ts=T0 + 5 * MIN), T0 + 5 * MIN)
    service.on_alarm(
        offline("O1", "AT-1", state="cleared", ts=T0 + 5 * MIN + 900), T0 + 5 * MIN + 900
    )
    service.outbox.deliver_due(T0 + 10 * MIN, chans)
    sms = [
        n for n in chans["aliyun_sms"].delivered + chans["wecom"].delivered if n.subject_id == "O1"
    ]
    assert sms == []
    assert store.get_alarm("O1").phase is Phase.CLEARED  # recorded all the same


def test_instrument_fault_inhibits_that_points_process_alarms(service, store):
    service.on_alarm(
        alarm("F1", kind="fault", level=None, tag="LT-1", parameter="level", hazard="H02"), T0
    )
    notes = service.on_alarm(
        alarm("P1", kind="limit", level="HH", tag="LT-1", parameter="level", hazard="H02"), T0
    )
    assert notes == [] and store.get_alarm("P1").suppressed == "inhibited:F1"
    other = service.on_alarm(alarm("P2", tag="AT-2"), T0)  # another point: not inhibited
    assert other


def test_a_fault_never_hides_a_second_level_gas_alarm(service, store):
    service.on_alarm(alarm("F1", kind="fault", level=None, tag="AT-1"), T0)
    notes = service.on_alarm(alarm("P1", level="L2", tag="AT-1"), T0)  # over-range: real?
    assert store.get_alarm("P1").suppressed == ""
    assert recipients([n for n in notes if n.channel == "aliyun_sms"])


def test_process_alarm_pushed_before_its_fault_stops_escalating(service, store):
    service.on_alarm(alarm("P1", level="H", tag="LT-1", parameter="level", hazard="H02"), T0)
    service.on_alarm(
        alarm(
            "F1", kind="fault", level=None, tag="LT-1", parameter="level", hazard="H02", ts=T0 + MIN
        ),
        T0 + MIN,
    )
    assert store.get_alarm("P1").suppressed == "inhibited:F1"
    assert [n for n in service.tick(T0 + 120 * MIN) if n.subject_id == "P1"] == []


# -- filings ----------------------------------------------------------------------------------


def test_maintenance_records_but_does_not_push_or_escalate(service, store):
    f = service.file(
        FilingKind.MAINTENANCE,
        "E001",
        "安全员",
        T0,
        hazard_code="H01",
        planned_end_ms=T0 + 120 * MIN,
        note="大检修",
    )
    assert f.filing_id.startswith("F-")
    assert service.on_alarm(alarm("A1"), T0 + MIN) == []
    rec = store.get_alarm("A1")
    assert rec.suppressed == f"maintenance:{f.filing_id}" and rec.phase is Phase.FIRING
    assert service.tick(T0 + 60 * MIN) == []  # no escalation during maintenance
    # another installation of the same enterprise is not covered
    assert service.on_alarm(
        alarm("A2", tag="LT-1", hazard="H02", parameter="level", level="H"), T0 + MIN
    )


def test_maintenance_overdue_notifies_and_stops_suppressing(service, store):
    f = service.file(
        "maintenance", "E001", "u", T0, hazard_code="H01", planned_end_ms=T0 + 60 * MIN
    )
    service.on_alarm(alarm("A1"), T0 + MIN)
    notes = service.tick(T0 + 60 * MIN)
    overdue = [n for n in notes if n.event_type is EventType.MAINTENANCE_OVERDUE]
    assert {n.recipient for n in overdue} >= {"e001-duty", "+8613900000001", "+8613900000008"}
    assert all(n.subject_id == f.filing_id for n in overdue)
    raised = [n for n in notes if n.subject_id == "A1" and n.event_type is EventType.RAISED]
    assert OPERATOR_H01 in recipients(raised)  # the alarm still present is now pushed
    assert store.get_alarm("A1").suppressed == ""
    assert [
        n for n in service.tick(T0 + 61 * MIN) if n.event_type is EventType.MAINTENANCE_OVERDUE
    ] == []  # told once


def test_ending_maintenance_releases_what_is_still_present(service, store):
    f = service.file("maintenance", "E001", "u", T0, tag="AT-1", planned_end_ms=T0 + 600 * MIN)
    service.on_alarm(alarm("A1"), T0 + MIN)
    service.on_alarm(alarm("A2", tag="AT-2"), T0 + MIN)  # a point filing covers one point only
    assert store.get_alarm("A2").suppressed == ""
    service.end_filing(f.filing_id, "u", T0 + 5 * MIN)
    assert store.get_alarm("A1").suppressed == ""
    raised = [
        i
        for i in store.list_outbox(subject_id="A1")
        if i.notification.event_type is EventType.RAISED
    ]
    assert raised and all(i.created_ms == T0 + 5 * MIN for i in raised)
    with pytest.raises(InvalidAction, match="already ended"):
        service.end_filing(f.filing_id, "u", T0 + 6 * MIN)


def test_startup_with_interlocks_bypassed_tells_the_district_and_suppresses_nothing(service, store):
    f = service.file(
        "startup_shutdown",
        "E001",
        "u",
        T0,
        hazard_code="H01",
        planned_end_ms=T0 + 240 * MIN,
        interlock_bypassed=True,
    )
    info = [i.notification for i in store.list_outbox(subject_id=f.filing_id)]
    assert {n.recipient for n in info if n.channel != "platform"} == {
        "+8613900000008",
        "+8613900000007",
    }  # district and park duty officers
    assert all(n.colour == "yellow" for n in info)
    assert service.on_alarm(alarm("A1"), T0 + MIN)  # still pushed


def test_startup_shutdown_with_interlocks_in_service_records_without_pushing(service, store):
    service.file("startup_shutdown", "E001", "u", T0, planned_end_ms=T0 + 240 * MIN)
    assert service.on_alarm(alarm("A1"), T0 + MIN) == []


def test_decommissioned_point_is_silent_until_the_filing_ends(service, store):
    f = service.file("decommission", "E001", "u", T0, tag="AT-1")
    assert service.on_alarm(alarm("A1"), T0 + MIN) == []
    assert [n for n in service.tick(T0 + MIN + 60 * MIN) if n.subject_id == "A1"] == []
    service.end_filing(f.filing_id, "u", T0 + 2 * 60 * MIN)
    assert store.get_alarm("A1").suppressed == ""
    assert any(n.subject_id == "A1" for n in service.tick(T0 + 2 * 60 * MIN + 30 * MIN))


def test_filing_input_errors_are_specific(service):
    with pytest.raises(InvalidAction, match="unknown enterprise 'E999'"):
        service.file("maintenance", "E999", "u", T0, planned_end_ms=T0 + 1)
    with pytest.raises(InvalidAction, match="no point E001/NOPE"):
        service.file("maintenance", "E001", "u", T0, tag="NOPE", planned_end_ms=T0 + 1)
    with pytest.raises(InvalidAction, match="needs a planned end"):
        service.file("maintenance", "E001", "u", T0)
    with pytest.raises(InvalidAction, match="unknown filing kind 'holiday'"):
        service.file("holiday", "E001", "u", T0)
    with pytest.raises(InvalidAction, match="planned end must be after the start"):
        service.file("maintenance", "E001", "u", T0, planned_end_ms=T0)
    with pytest.raises(NotFound):
        service.end_filing("F-nope", "u", T0)


# -- shelving ---------------------------------------------------------------------------------


def test_shelving_silences_the_rule_on_the_point_until_expiry(service, store):
    service.on_alarm(alarm("A1"), T0)
    shelf = service.shelve(
        "A1", "值班员", "chattering detector, calibration booked", T0 + 60 * MIN, T0 + MIN
    )
    assert (shelf.reason, shelf.shelved_by, shelf.expires_ms) == (
        "chattering detector, calibration booked",
        "值班员",
        T0 + 60 * MIN,
    )
    assert store.get_alarm("A1").suppressed == f"shelved:{shelf.shelf_id}"
    assert service.tick(T0 + 40 * MIN) == []  # not escalated while shelved
    # a new episode of the same rule on the same point is shelved too
    service.on_alarm(alarm("A1", state="cleared", ts=T0 + 41 * MIN), T0 + 41 * MIN)
    assert service.on_alarm(alarm("A1b", ts=T0 + 42 * MIN), T0 + 42 * MIN) == []
    # expiry: the alarm still present is pushed again
    notes = service.tick(T0 + 60 * MIN)
    assert any(n.subject_id == "A1b" and n.event_type is EventType.RAISED for n in notes)
    assert store.get_shelf(shelf.shelf_id).ended_by == "system:expired"


def test_unshelve_by_hand(service, store):
    service.on_alarm(alarm("A1"), T0)
    shelf = service.shelve("A1", "u", "noisy", T0 + 60 * MIN, T0)
    service.unshelve("A1", "u2", T0 + 5 * MIN)
    assert store.get_shelf(shelf.shelf_id).ended_by == "u2"
    assert store.get_alarm("A1").suppressed == ""
    assert [a.action for a in store.list_actions(subject_id="A1")] == ["shelve", "unshelve"]
    with pytest.raises(NotFound):
        service.unshelve("A1", "u2", T0 + 6 * MIN)


def test_shelve_needs_a_reason_and_a_bounded_expiry(service):
    service.on_alarm(alarm("A1"), T0)
    with pytest.raises(InvalidAction, match="reason"):
        service.shelve("A1", "u", " ", T0 + MIN, T0)
    with pytest.raises(InvalidAction, match="in the future"):
        service.shelve("A1", "u", "r", T0, T0)
    with pytest.raises(InvalidAction, match="at most"):
        service.shelve("A1", "u", "r", T0 + 8 * 24 * 60 * MIN, T0)


def test_maintenance_of_an_installation_also_holds_its_warnings(service, store):
    from tests.unit.alerts_core.conftest import warning

    f = service.file(
        "maintenance", "E001", "u", T0, hazard_code="H01", planned_end_ms=T0 + 60 * MIN
    )
    assert service.on_warning(warning("W1", colour="orange"), T0 + MIN) == []
    assert store.get_warning("W1").suppressed == f"maintenance:{f.filing_id}"
    assert service.on_warning(warning("W2", hazard="H02"), T0 + MIN)  # other installation
    assert [n for n in service.tick(T0 + 30 * MIN) if n.subject_id == "W1"] == []
    service.end_filing(f.filing_id, "u", T0 + 40 * MIN)
    rows = [
        i
        for i in store.list_outbox(subject_id="W1")
        if i.notification.event_type is EventType.RAISED
    ]
    assert "+8613900000001" in {i.notification.recipient for i in rows}  # 橙 reaches 主要负责人


def test_an_offline_alarm_storm_builds_the_suppression_view_once(service, store, monkeypatch):
    """Each event used to drop the cached view, so N offline alarms in a batch rebuilt it N
    times from every active gateway/fault alarm: O(N^2), minutes for a large outage. The view
    changes only with gateway/fault alarms, filings, shelves, the registry or a rollback."""
    service.on_alarm(gateway(), T0)  # one inhibitor in the view
    builds = []
    real = store.list_alarms

    def counting(*args, **kwargs):
        if kwargs.get("kind") == ("gateway", "fault"):
            builds.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "list_alarms", counting)
    tags = ["AT-1", "AT-2", *(f"AT-{i}" for i in range(10, 45))]
    with service.batch():
        for i, tag in enumerate(tags):
            service.on_alarm(offline(f"O{i}", tag), T0 + 1_000)
    assert len(builds) <= 1, f"the view was rebuilt {len(builds)} times for {len(tags)} alarms"
    # ...and it is still right: AT-1 and AT-2 (O0, O1) are on the outaged GW1 and inhibited;
    # AT-10..AT-44 are on GW3 and are not
    open_offline = store.list_alarms(enterprise="E001", open_only=True, kind="offline", limit=None)
    assert {a.alarm_id for a in open_offline} == {f"O{i}" for i in range(len(tags))}
    inhibited = {a.alarm_id for a in open_offline if a.suppressed}
    assert inhibited == {"O0", "O1"}


def test_a_rolled_back_batch_does_not_leave_its_gateway_alarm_in_the_view(service, store):
    import pytest as _pytest

    with _pytest.raises(RuntimeError), service.batch():
        service.on_alarm(gateway(), T0)
        raise RuntimeError("crash inside the batch")
    assert store.get_alarm("G1") is None
    notes = service.on_alarm(offline("O1", "AT-1"), T0 + 1_000)
    assert store.get_alarm("O1").suppressed == ""  # no phantom inhibitor
    assert notes is not None
