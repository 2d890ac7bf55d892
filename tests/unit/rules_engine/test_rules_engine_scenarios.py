"""Written scenarios with only a registry (no rule file of the user's own): the default
standard packs raise the right alarms at the right times for every rule kind."""

from __future__ import annotations

import pytest

from ingest.model import Industry, Registry
from rules.engine import Engine
from rules.loader import load_ruleset
from rules.model import AlarmState, Kind
from rules.standards import available_packs

from .conftest import T0, at, plant_registry, point, rd

FIRING, CLEARED = AlarmState.FIRING, AlarmState.CLEARED


def run(registry, batches, *, until=None, pack_versions=None, start=T0):
    """Feed batches [(readings, now_s)]; return (engine, state, events)."""
    engine = Engine(load_ruleset(None, registry, pack_versions=pack_versions), registry)
    state = engine.initial_state(start)
    out = []
    for readings, now_s in batches:
        state, ev = engine.process(state, readings, at(now_s))
        out += ev
    if until is not None:
        state, ev = engine.tick(state, at(until))
        out += ev
    return engine, state, out


def brief(events, kinds=None):
    """(t seconds, tag, kind, level, state) for a readable comparison."""
    return [
        ((e.ts_ms - T0) / 1000, e.tag, str(e.kind), e.level and str(e.level), str(e.state))
        for e in events
        if kinds is None or e.kind in kinds
    ]


NORMAL = {"AT-O2": 20.9, "LT-101": 5.0, "PT-201": 1.0, "TT-201": 25.0}


def keepalive(tags, t0, t1, step=5.0, ent="E1"):
    """Every tag reporting its normal value (0 for gas heads, valve closed) every `step` s."""
    out, t = [], t0
    while t <= t1:
        out += [rd(tag, t, NORMAL.get(tag, 0.0), ent=ent) for tag in tags]
        t += step
    return out


# ------------------------------------------------------------------ GB/T 50493 boundaries


def test_combustible_gas_first_and_second_level_at_25_and_50_percent_lel(plant):
    r = [
        rd("AT-CH4-1", 1, 24.9),
        rd("AT-CH4-1", 2, 25.0),
        rd("AT-CH4-1", 3, 49.9),
        rd("AT-CH4-1", 4, 50.0),
    ]
    _, _, ev = run(plant, [(r, 4)])
    assert brief(ev, {Kind.LIMIT}) == [
        (2.0, "AT-CH4-1", "limit", "L1", "firing"),
        (4.0, "AT-CH4-1", "limit", "L2", "firing"),
    ]
    assert [(e.threshold, e.pack, e.pack_version) for e in ev] == [
        (25.0, "gbt50493", "2019-amend1"),
        (50.0, "gbt50493", "2019-amend1"),
    ]
    assert ev[0].alarm_id == ev[1].alarm_id  # a level change keeps the alarm id


TOXIC = sorted(available_packs()["gbt50493"]["2019"].data.gas_setpoints.toxic.items())


@pytest.mark.parametrize(("gas", "sp"), TOXIC, ids=[g for g, _ in TOXIC])
def test_toxic_gas_al_and_ah_from_the_standard(gas, sp):
    reg = Registry([point("AT-1", gas, "mg/m3", range_low=0, range_high=sp.AH * 4)])
    eps = sp.AL * 1e-3
    r = [
        rd("AT-1", 1, sp.AL - eps),
        rd("AT-1", 2, sp.AL),
        rd("AT-1", 3, sp.AH - eps),
        rd("AT-1", 4, sp.AH),
    ]
    _, _, ev = run(reg, [(r, 4)], pack_versions={"gbt50493": "2019"})
    assert brief(ev) == [
        (2.0, "AT-1", "limit", "L1", "firing"),
        (4.0, "AT-1", "limit", "L2", "firing"),
    ]
    assert [e.threshold for e in ev] == [pytest.approx(sp.AL), pytest.approx(sp.AH)]


def test_ammonia_published_in_ppm_against_mg_m3_set_points(plant):
    # AL 20 mg/m3 = 20 x 24.04 / 17.03 = 28.23 ppm; AH 40 mg/m3 = 56.47 ppm
    r = [rd("AT-NH3", 1, 28.2), rd("AT-NH3", 2, 28.3), rd("AT-NH3", 3, 56.4), rd("AT-NH3", 4, 56.5)]
    _, _, ev = run(plant, [(r, 4)])
    assert brief(ev) == [
        (2.0, "AT-NH3", "limit", "L1", "firing"),
        (4.0, "AT-NH3", "limit", "L2", "firing"),
    ]
    assert ev[0].unit == "ppm" and ev[0].threshold == pytest.approx(28.2325, abs=1e-3)


def test_benzene_amendment_changes_the_outcome(plant):
    r = [rd("AT-BZ", 1, 4.0)]  # 4 mg/m3: over the amended AL 3, under the old AL 6
    _, _, old = run(plant, [(r, 1)], pack_versions={"gbt50493": "2019"})
    _, _, new = run(plant, [(r, 1)], pack_versions={"gbt50493": "2019-amend1"})
    assert old == []
    assert brief(new) == [(1.0, "AT-BZ", "limit", "L1", "firing")]
    assert (new[0].pack, new[0].pack_version, new[0].threshold) == ("gbt50493", "2019-amend1", 3.0)


def test_oxygen_deficiency_is_l_and_enrichment_is_h(plant):
    r = [rd("AT-O2", 1, 20.9), rd("AT-O2", 2, 19.4), rd("AT-O2", 3, 20.9), rd("AT-O2", 4, 23.6)]
    _, _, ev = run(plant, [(r, 4)])
    assert brief(ev) == [
        (2.0, "AT-O2", "limit", "L", "firing"),
        (3.0, "AT-O2", "limit", "L", "cleared"),
        (4.0, "AT-O2", "limit", "H", "firing"),
    ]
    assert ev[0].alarm_id != ev[2].alarm_id  # deficiency and enrichment are two alarms


# ------------------------------------------------------------------ delays and deadband


def test_on_delay_fires_only_after_the_condition_held_for_it(plant):
    # tankfarm pack: on-delay 5 s, deadband 1 % of the 0-10 m span = 0.1 m; H = 8 m
    r = [rd("LT-101", 0, 8.0), rd("LT-101", 2, 7.0), rd("LT-101", 4, 8.2), rd("LT-101", 8, 8.3)]
    _, _, ev = run(plant, [(r, 8)], until=9.5)
    limit = [e for e in ev if e.kind == Kind.LIMIT]
    assert brief(limit) == [(9.0, "LT-101", "limit", "H", "firing")]
    assert limit[0].value == 8.3  # the value known when the delay completed


def test_deadband_holds_the_alarm_until_beyond_it(plant):
    r = [rd("LT-101", 0, 8.5), rd("LT-101", 6, 7.95), rd("LT-101", 7, 7.91), rd("LT-101", 8, 7.89)]
    _, _, ev = run(plant, [(r, 8)])
    assert brief(ev, {Kind.LIMIT}) == [
        (5.0, "LT-101", "limit", "H", "firing"),
        (8.0, "LT-101", "limit", "H", "cleared"),
    ]


def test_quality_3_maintenance_readings_do_not_alarm(plant):
    r = [rd("LT-101", 0, 9.9, q=3), rd("LT-101", 10, 9.9, q=3), rd("AT-NH3", 1, 99, q=3)]
    _, _, ev = run(plant, [(r, 20)])
    assert ev == []


# ------------------------------------------------------------------ offline and gateways

G1 = ["AT-NH3", "AT-CH4-1", "AT-CH4-2", "AT-CH4-3", "AT-O2", "AT-BZ", "LT-101", "XV-101"]
G2 = ["PT-201", "TT-201"]


def test_gateway_outage_gives_one_alarm_and_no_point_offline_alarms(plant):
    live = keepalive(G1 + G2, 0, 60)
    later = keepalive(G2, 65, 200) + keepalive(G1, 150, 200)
    _, _, ev = run(plant, [(live, 60), (later, 200)], until=200)
    # G1 silent from 60 s: 3 x 10 s later one gateway alarm; its points stay quiet.
    assert brief(ev) == [
        (90.0, "G1", "gateway", None, "firing"),
        (150.0, "G1", "gateway", None, "cleared"),
    ]


def test_one_dead_point_on_a_live_gateway_is_offline(plant):
    live = keepalive(G1 + G2, 0, 20) + keepalive([t for t in G1 + G2 if t != "AT-O2"], 25, 80)
    _, _, ev = run(plant, [(live, 80)])
    assert brief(ev) == [(50.0, "AT-O2", "offline", None, "firing")]
    _, _, ev = run(plant, [(live, 80), ([rd("AT-O2", 85, 20.9)], 85)])
    assert brief(ev)[-1] == (85.0, "AT-O2", "offline", None, "cleared")


def test_points_that_never_report_go_offline_from_start():
    reg = Registry(
        [
            point("PT-1", "pressure", "MPa", gw="GA", h=1.0),
            point("PT-2", "pressure", "MPa", gw="GB", h=1.0, interval=60),
        ]
    )
    _, _, ev = run(reg, [([], 0)], until=200)
    assert brief(ev) == [
        (30.0, "PT-1", "offline", None, "firing"),
        (180.0, "PT-2", "offline", None, "firing"),
    ]


# ------------------------------------------------------------------ faults, latch, reset


def test_out_of_range_is_an_instrument_fault_not_a_process_alarm(plant):
    r = [rd("LT-101", 0, 5.0), rd("LT-101", 1, 10.5), rd("LT-101", 10, 10.5), rd("LT-101", 20, 5.0)]
    _, _, ev = run(plant, [(r, 20)])
    assert brief(ev) == [
        (1.0, "LT-101", "fault", None, "firing"),
        (20.0, "LT-101", "fault", None, "cleared"),
    ]
    assert ev[0].threshold == 10.0 and "measuring range" in ev[0].message


def test_device_reported_fault_suppresses_the_pending_process_alarm(plant):
    r = [rd("LT-101", 0, 8.5), rd("LT-101", 2, 8.5, q=2), rd("LT-101", 4, 8.5)]
    _, _, ev = run(plant, [(r, 8.5)])
    # the on-delay restarts after the fault: 4 s + 5 s
    assert brief(ev) == [
        (2.0, "LT-101", "fault", None, "firing"),
        (4.0, "LT-101", "fault", None, "cleared"),
    ]
    _, _, ev = run(plant, [(r, 9)])
    assert brief(ev)[-1] == (9.0, "LT-101", "limit", "H", "firing")


def test_gas_over_range_raises_its_highest_level_latched_until_reset(plant):
    r = [rd("AT-NH3", 0, 5.0), rd("AT-NH3", 1, 120.0), rd("AT-NH3", 5, 3.0)]
    engine, state, ev = run(plant, [(r, 5)])
    assert brief(ev) == [
        (1.0, "AT-NH3", "limit", "L2", "firing"),
        (1.0, "AT-NH3", "fault", None, "firing"),
        (5.0, "AT-NH3", "fault", None, "cleared"),
    ]
    latched = ev[0].alarm_id
    state, ev = engine.process(state, [rd("AT-NH3", 20, 2.0)], at(20))
    assert ev == []  # still latched although the reading is normal
    state, ev = engine.reset(state, latched, at(25))
    assert brief(ev) == [(25.0, "AT-NH3", "limit", "L2", "cleared")]
    assert ev[0].alarm_id == latched


def test_reset_while_still_present_reasserts_as_a_new_alarm(plant):
    r = [rd("AT-NH3", 1, 150.0)]
    engine, state, ev = run(plant, [(r, 1)])
    first = next(e for e in ev if e.kind == Kind.LIMIT)
    state, ev = engine.reset(state, first.alarm_id, at(10))
    assert brief(ev) == [
        (10.0, "AT-NH3", "limit", "L2", "cleared"),
        (10.0, "AT-NH3", "limit", "L2", "firing"),
    ]
    assert ev[1].alarm_id != first.alarm_id
    state, again = engine.reset(state, "no-such-alarm", at(11))
    assert again == []


# ------------------------------------------------------------------ voting


def test_2oo3_needs_two_heads_and_one_faulted_head_degrades_the_vote(plant):
    one = [rd("AT-CH4-1", 1, 30.0)]
    _, _, ev = run(plant, [(one, 1)])
    assert brief(ev, {Kind.VOTE, Kind.VOTE_DEGRADED}) == []
    two = [*one, rd("AT-CH4-2", 2, 30.0)]
    _, _, ev = run(plant, [(two, 2)])
    assert brief(ev, {Kind.VOTE}) == [(2.0, "Z2", "vote", "L1", "firing")]

    faulted = [rd("AT-CH4-3", 1, 0.0, q=2), rd("AT-CH4-1", 3, 30.0)]
    _, _, ev = run(plant, [(faulted, 3)])
    assert brief(ev, {Kind.VOTE, Kind.VOTE_DEGRADED, Kind.FAULT}) == [
        (1.0, "AT-CH4-3", "fault", None, "firing"),
        (1.0, "Z2", "vote_degraded", None, "firing"),
        (3.0, "Z2", "vote", "L1", "firing"),
    ]
    vote = next(e for e in ev if e.kind == Kind.VOTE)
    assert (vote.parameter, vote.zone, vote.rule) == ("gas.CH4", "Z2", "voting.gas-2ooN")


# ------------------------------------------------------------------ rate, frozen, interlock


def test_level_rising_faster_than_10_percent_of_span_per_minute(plant):
    r = [rd("LT-101", 0, 5.0), rd("LT-101", 30, 5.4), rd("LT-101", 60, 6.0), rd("LT-101", 90, 6.2)]
    _, _, ev = run(plant, [(r, 90)])
    # 0.8 m/min, then 1.2 m/min (> 1 m/min), then 0.4 m/min
    assert brief(ev, {Kind.RATE}) == [
        (60.0, "LT-101", "rate", None, "firing"),
        (90.0, "LT-101", "rate", None, "cleared"),
    ]


def test_frozen_value_after_two_hours_unchanged():
    reg = Registry([point("TT-1", "temperature", "°C", gw="GA", h=80.0, interval=600)])
    r = [rd("TT-1", t, 25.0) for t in range(0, 7201, 600)] + [rd("TT-1", 7800, 25.1)]
    _, _, ev = run(reg, [(r, 7800)])
    assert brief(ev) == [
        (7200.0, "TT-1", "stuck", None, "firing"),
        (7800.0, "TT-1", "stuck", None, "cleared"),
    ]


def test_tank_at_hh_with_the_inlet_valve_still_open_is_an_interlock_failure(plant):
    r = [rd("XV-101", 0, 1.0), rd("LT-101", 0, 9.5), rd("LT-101", 30, 9.5), rd("LT-101", 60, 9.5)]
    _, _, ev = run(plant, [(r, 70)])
    assert brief(ev, {Kind.INTERLOCK}) == [(65.0, "LT-101", "interlock", None, "firing")]
    assert "XV-101" in next(e for e in ev if e.kind == Kind.INTERLOCK).message
    closed = [*r, rd("XV-101", 40, 0.0)]
    _, _, ev = run(plant, [(closed, 70)])
    assert brief(ev, {Kind.INTERLOCK}) == []


# ------------------------------------------------------------------ fireworks


@pytest.fixture
def fireworks():
    kw = dict(ent="F1", gw="FG", industry=Industry.FIREWORKS, hazard="", interval=60)
    return Registry(
        [
            point("NP-1", "occupancy", "persons", zone="W1", h=3, **kw),
            point("TT-1", "temperature", "°C", zone="K1", range_low=-20, range_high=80, **kw),
            point("RH-1", "humidity", "%RH", zone="K1", range_low=0, range_high=100, **kw),
            point("EV-1", "event", "", zone="K1", **kw),
        ]
    )


def test_fourth_person_in_a_three_person_workshop_is_an_immediate_h(fireworks):
    r = [rd("NP-1", 0, 3, ent="F1"), rd("NP-1", 10, 4, ent="F1"), rd("NP-1", 20, 3, ent="F1")]
    _, _, ev = run(fireworks, [(r, 20)])
    assert brief(ev) == [
        (10.0, "NP-1", "occupancy", "H", "firing"),
        (20.0, "NP-1", "occupancy", "H", "cleared"),
    ]
    assert ev[0].threshold == 3.0


def test_warehouse_temperature_prewarning_alarm_and_humidity(fireworks):
    r = [
        rd("TT-1", 0, 31.9, ent="F1"),
        rd("TT-1", 10, 32.0, ent="F1"),
        rd("TT-1", 20, 35.0, ent="F1"),
        rd("RH-1", 20, 76.0, ent="F1"),
    ]
    _, _, ev = run(fireworks, [(r, 20)])
    assert brief(ev) == [
        (10.0, "TT-1", "limit", "H", "firing"),
        (20.0, "RH-1", "limit", "H", "firing"),
        (20.0, "TT-1", "limit", "HH", "firing"),
    ]
    assert {e.pack for e in ev} == {"fireworks"}


def test_event_messages_alarm_and_clear_after_the_hold(fireworks):
    from ingest.model import Reading

    ev_r = Reading(
        "F1",
        "EV-1",
        at(5),
        float("nan"),
        0,
        event_type="vehicle_in_1.1_zone",
        text="truck at gate 2",
    )
    _, _, ev = run(fireworks, [([ev_r], 5)], until=700)
    assert brief(ev, {Kind.EVENT}) == [
        (5.0, "EV-1", "event", None, "firing"),
        (605.0, "EV-1", "event", None, "cleared"),
    ]
    assert "truck at gate 2" in ev[0].message


# ------------------------------------------------------------------ contract details


def test_backfilled_readings_mark_the_transitions_they_cause(plant):
    r = [rd("AT-NH3", 1, 30.0, backfill=True), rd("AT-NH3", 2, 0.0)]
    _, _, ev = run(plant, [(r, 2)])
    assert [(str(e.state), e.backfill) for e in ev] == [("firing", True), ("cleared", False)]


def test_events_within_a_call_are_sorted_and_carry_the_ruleset_version(plant):
    r = [rd("AT-O2", 1, 19.0), rd("AT-NH3", 1, 60.0), rd("AT-CH4-1", 1, 60.0)]
    engine, _, ev = run(plant, [(r, 1)])
    keys = [(e.ts_ms, e.enterprise_code, e.tag, e.rule) for e in ev]
    assert keys == sorted(keys)
    assert {e.ruleset for e in ev} == {engine.ruleset.version}
    assert ev[0].to_record()["ts"] == "2025-11-29T08:00:01.000Z"


def test_one_event_per_state_change_never_one_per_reading(plant):
    r = [rd("AT-NH3", t, 40.0) for t in range(1, 50)]
    _, _, ev = run(plant, [(r, 50)])
    assert brief(ev, {Kind.LIMIT}) == [(1.0, "AT-NH3", "limit", "L1", "firing")]


def test_unknown_points_are_ignored(plant):
    _, _, ev = run(plant, [([rd("NOPE-1", 1, 99.0), rd("AT-NH3", 1, 1.0, ent="E9")], 1)])
    assert ev == []


def test_registry_fixture_is_the_shared_plant(plant):
    assert [p.key for p in plant] == [p.key for p in plant_registry()]


def test_a_range_with_one_bound_and_non_finite_values_are_faults():
    reg = Registry([point("PT-1", "pressure", "MPa", gw="GA", range_high=4.0, h=2.0)])
    r = [
        rd("PT-1", 1, 1.0),
        rd("PT-1", 2, 4.5),
        rd("PT-1", 3, 1.0),
        rd("PT-1", 4, float("nan")),
        rd("PT-1", 5, 1.0),
    ]
    _, _, ev = run(reg, [(r, 5)])
    assert brief(ev) == [
        (2.0, "PT-1", "fault", None, "firing"),
        (3.0, "PT-1", "fault", None, "cleared"),
        (4.0, "PT-1", "fault", None, "firing"),
        (5.0, "PT-1", "fault", None, "cleared"),
    ]
    assert ev[0].message == "above the measuring range (high 4)"
    assert ev[2].message == "not a finite number" and ev[2].value is None


def test_backfill_after_a_gateway_outage_never_clears_before_the_alarm_began(plant):
    live = keepalive(G1 + G2, 0, 60)
    engine, state, ev = run(plant, [(live, 60), (keepalive(G2, 65, 100), 100)])
    assert brief(ev) == [(90.0, "G1", "gateway", None, "firing")]
    # the gateway reconnects at 100 s and delivers what it buffered since 65 s
    buffered = [r for r in keepalive(G1, 65, 100)]
    buffered = [
        type(r)(**{**{f: getattr(r, f) for f in r.__struct_fields__}, "backfill": True})
        for r in buffered
    ]
    state, ev = engine.process(state, buffered, at(100))
    assert brief(ev) == [(90.0, "G1", "gateway", None, "cleared")]
    assert ev[0].backfill is True


def test_limit_alarms_say_what_crossed_which_set_point(plant, fireworks):
    _, _, ev = run(
        plant, [([rd("AT-NH3", 1, 30.0), rd("AT-O2", 1, 19.0), rd("AT-CH4-1", 1, 140.0)], 1)]
    )
    msgs = {(e.tag, str(e.kind)): e.message for e in ev}
    assert msgs[("AT-NH3", "limit")] == "30 ppm at or above the L1 set point 28.23 ppm"
    assert msgs[("AT-O2", "limit")] == "19 %vol at or below the L set point 19.5 %vol"
    assert msgs[("AT-CH4-1", "limit")] == (
        "140 %LEL above the detector's range: highest level, latched"
    )
    _, _, ev = run(fireworks, [([rd("NP-1", 1, 5, ent="F1")], 1)])
    assert ev[0].message == "5 persons present, quota 3"


def test_a_delay_completed_on_back_filled_data_is_marked_back_fill(plant):
    r = [rd("LT-101", 0, 8.5, backfill=True), rd("LT-101", 3, 8.52, backfill=True)]
    _, _, ev = run(plant, [(r, 3)], until=6)
    assert [(str(e.kind), str(e.level), e.backfill) for e in ev] == [("limit", "H", True)]
    live = [rd("LT-101", 0, 8.5, backfill=True), rd("LT-101", 3, 8.52)]
    _, _, ev = run(plant, [(live, 3)], until=6)
    assert [e.backfill for e in ev] == [False]  # the latest reading came in real time


def test_a_head_silent_on_a_live_gateway_degrades_the_vote(plant):
    others = [t for t in G1 + G2 if t != "AT-CH4-3"]
    live = keepalive(G1 + G2, 0, 20) + keepalive(others, 25, 60)
    _, _, ev = run(plant, [(live, 60)])
    assert brief(ev) == [
        (50.0, "AT-CH4-3", "offline", None, "firing"),
        (50.0, "Z2", "vote_degraded", None, "firing"),
    ]


def test_a_latching_rule_keeps_the_alarm_until_reset(tmp_path, plant):
    (tmp_path / "latch.rules.yaml").write_text(
        "rules:\n  - {name: nh3-latch, kind: limit, match: {tag: AT-NH3}, latch: true}\n"
    )
    engine = Engine(load_ruleset(tmp_path, plant), plant)
    state, ev = engine.process(
        engine.initial_state(T0), [rd("AT-NH3", 1, 30.0), rd("AT-NH3", 2, 1.0)], at(2)
    )
    assert brief(ev) == [(1.0, "AT-NH3", "limit", "L1", "firing")]
    assert ev[0].rule == "nh3-latch" and ev[0].pack == "gbt50493"
    state, ev2 = engine.reset(state, ev[0].alarm_id, at(3))
    assert brief(ev2) == [(3.0, "AT-NH3", "limit", "L1", "cleared")]
