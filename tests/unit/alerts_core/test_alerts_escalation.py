"""Escalation timers with a fixed clock: not acknowledged in time -> the next tier is told;
reminders while open; disposition overdue; timers survive a restart."""

from __future__ import annotations

import pytest

from alerts.escalation import Timer, due
from alerts.model import Disposition, EventType
from alerts.routing import Escalation
from alerts.service import AlertService
from alerts.store import AlertStore
from tests.unit.alerts_core.conftest import MIN, T0, alarm, recipients, warning

TECH, MAIN, DISTRICT, PARK, CITY = (
    "+8613900000002",
    "+8613900000001",
    "+8613900000008",
    "+8613900000007",
    "+8613900000009",
)


def people(notes, event_type=None):
    return [
        n
        for n in notes
        if n.channel != "platform" and (event_type is None or n.event_type is event_type)
    ]


@pytest.mark.parametrize(
    ("level", "timeout_min", "added"),
    [
        ("L1", 30, {TECH}),  # 蓝 -> 黄 after 30 min: + 技术负责人
        ("L2", 10, {CITY}),  # 橙 -> 红 after 10 min: + the city duty officer
    ],
)
def test_not_acknowledged_in_time_escalates_one_tier(service, store, level, timeout_min, added):
    service.on_alarm(alarm(level=level), T0)
    assert service.tick(T0 + timeout_min * MIN - 1) == []
    esc = service.tick(T0 + timeout_min * MIN)
    assert recipients(people(esc, EventType.ESCALATED)) == added
    assert store.get_alarm("A1").tier == 1
    assert any(n.channel == "platform" and n.event_type is EventType.ESCALATED for n in esc)
    assert service.tick(T0 + timeout_min * MIN + 1) == []  # once per tier


def test_blue_climbs_the_whole_ladder_then_stops(service, store):
    service.on_alarm(alarm(level="L1"), T0)
    told = set()
    t = T0
    for step_min in (30, 30, 10):  # 蓝->黄 30 min, 黄->橙 30 min, 橙->红 10 min
        t += step_min * MIN
        told |= recipients(people(service.tick(t), EventType.ESCALATED))
    assert told == {TECH, MAIN, DISTRICT, PARK, CITY}
    assert store.get_alarm("A1").tier == 3
    assert people(service.tick(t + 24 * 60 * MIN), EventType.ESCALATED) == []


def test_acknowledging_stops_escalation(service, store):
    service.on_alarm(alarm(level="L2"), T0)
    service.acknowledge("A1", "u", T0 + 9 * MIN)
    assert people(service.tick(T0 + 11 * MIN), EventType.ESCALATED) == []
    assert store.get_alarm("A1").tier == 0


def test_a_cleared_alarm_no_longer_escalates(service, store):
    service.on_alarm(alarm(level="L2"), T0)
    service.on_alarm(alarm(level="L2", state="cleared", ts=T0 + MIN), T0 + MIN)
    assert people(service.tick(T0 + 60 * MIN), EventType.ESCALATED) == []


def test_reminders_while_open_at_the_configured_interval(service, store):
    service.on_alarm(alarm(level="L1"), T0)
    service.acknowledge("A1", "u", T0 + MIN)  # acknowledged but still present
    assert people(service.tick(T0 + 29 * MIN), EventType.REMINDER) == []
    first = people(service.tick(T0 + 30 * MIN), EventType.REMINDER)
    assert recipients(first) == {"+8613900000004", "e001-duty"}
    assert people(service.tick(T0 + 31 * MIN), EventType.REMINDER) == []
    assert len(people(service.tick(T0 + 60 * MIN), EventType.REMINDER)) == 2
    assert store.get_alarm("A1").reminders == 2
    service.on_alarm(alarm(state="cleared", ts=T0 + 61 * MIN), T0 + 61 * MIN)
    assert people(service.tick(T0 + 200 * MIN), EventType.REMINDER) == []


def test_no_disposition_within_24_hours_is_overdue(service, store):
    service.on_alarm(alarm(), T0)
    service.acknowledge("A1", "u", T0 + MIN)
    service.on_alarm(alarm(state="cleared", ts=T0 + 2 * MIN), T0 + 2 * MIN)
    service.tick(T0 + 24 * 60 * MIN - 1)
    assert not store.get_alarm("A1").overdue
    overdue = service.tick(T0 + 24 * 60 * MIN)
    assert store.get_alarm("A1").overdue
    assert recipients(people(overdue, EventType.REMINDER)) == {MAIN, DISTRICT, PARK}
    assert all("处置超期" in n.body for n in people(overdue))
    kinds = [r[2] for r in store.journal_rows(subject_id="A1")]
    assert kinds.count("alarm.disposition_overdue") == 1
    service.tick(T0 + 25 * 60 * MIN)
    assert [r[2] for r in store.journal_rows(subject_id="A1")].count(
        "alarm.disposition_overdue"
    ) == 1
    service.dispose("A1", "u", Disposition.PROCESS_FLUCTUATION, "", T0 + 26 * 60 * MIN)


def test_warnings_escalate_like_alarms(service, store):
    service.on_warning(warning(colour="orange"), T0)
    esc = service.tick(T0 + 10 * MIN)
    assert recipients(people(esc, EventType.ESCALATED)) == {CITY}


def test_timers_survive_a_restart_and_catch_up(tmp_path, routing, registry):
    path = tmp_path / "a.sqlite"
    store = AlertStore(path)
    AlertService(store, routing, registry, public_url="http://x").on_alarm(alarm(level="L1"), T0)
    store.close()  # the process dies; 65 minutes pass
    store2 = AlertStore(path)
    svc = AlertService(store2, routing, registry, public_url="http://x")
    esc = svc.tick(T0 + 65 * MIN)
    # 蓝 deadline at 30 min (-> 黄), 黄 deadline at 60 min (-> 橙): both tiers, each once
    rec = store2.get_alarm("A1")
    assert rec.tier == 2 and rec.tier_since_ms == T0 + 60 * MIN
    assert {TECH, MAIN, DISTRICT, PARK} <= recipients(people(esc, EventType.ESCALATED))
    store2.close()


def test_due_is_a_pure_function_of_the_record():
    from alerts.lifecycle import AlarmRecord, Phase
    from rules.model import Colour

    rec = AlarmRecord(
        alarm_id="A",
        enterprise_code="E",
        district="D",
        hazard_code="H",
        zone="Z",
        tag="T",
        parameter="level",
        kind="limit",
        level="HH",
        rule="r",
        unit="m",
        value=1.0,
        threshold=1.0,
        message="",
        pack="",
        pack_version="",
        ruleset="",
        colour=Colour.ORANGE,
        phase=Phase.FIRING,
        active=True,
        latched=False,
        raised_ms=0,
        updated_ms=0,
        event_ts_ms=0,
        notified=True,
    )
    esc = Escalation()
    assert due(rec, esc, 600_000 - 1) == []
    assert due(rec, esc, 600_000) == [Timer.ESCALATE]
    assert Timer.ESCALATE not in due(
        rec.__class__(
            **{**rec.to_dict(), "suppressed": "x", "colour": Colour.ORANGE, "phase": Phase.FIRING}
        ),
        esc,
        10**9,
    )
