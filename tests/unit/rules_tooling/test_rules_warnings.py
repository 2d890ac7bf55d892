"""The warning model (DOMAIN.md §4 defaults) on hand-made alarm streams with a fixed clock:
one test per condition, plus the lifecycle rules (never downgraded, closed only by a
disposition, deterministic ids, state through bytes)."""

from __future__ import annotations

import pytest

from rules.model import Colour, WarningState
from rules.warnings import (
    WarningConfigError,
    WarningModel,
    WarningModelState,
    load_warning_config,
    warning_id,
)

from .rt_factory import MIN, T0, S, alarm, point, registry

CFG = load_warning_config()


def run(events, until_ms=None, model=None, state=None):
    m = model or WarningModel(CFG)
    st = state or m.initial_state()
    st, out = m.on_alarms(st, events, events[-1].ts_ms if events else T0)
    if until_ms is not None:
        st, more = m.tick(st, until_ms)
        out += more
    return st, out


def summary(out):
    return [(e.ts_ms - T0, e.state.value, e.colour.value, e.hazard_code) for e in out]


def test_blue_one_point_first_level_shorter_than_5_min():
    evs = [alarm(T0, "AT-1"), alarm(T0 + 4 * MIN, "AT-1", "cleared")]
    st, out = run(evs, until_ms=T0 + 3 * 3600 * S)
    assert summary(out) == [(0, "raised", "blue", "HZ1")]
    assert out[0].warning_id == warning_id("E1", "HZ1", T0)
    assert "AT-1" in out[0].reason
    # a cleared alarm does not close the warning: it waits for a disposition
    (open_,) = WarningModel(CFG).open_warnings(st)
    assert open_.colour == Colour.BLUE


def test_yellow_when_first_level_persists_5_min_at_the_exact_instant():
    _, out = run([alarm(T0, "AT-1")], until_ms=T0 + 20 * MIN)
    assert summary(out) == [(0, "raised", "blue", "HZ1"), (5 * MIN, "upgraded", "yellow", "HZ1")]
    assert out[1].previous == Colour.BLUE and "persisting" in out[1].reason


def test_timers_do_not_depend_on_the_tick_cadence():
    m = WarningModel(CFG)
    _, once = run([alarm(T0, "AT-1")], until_ms=T0 + 3 * 3600 * S)
    st, many = m.on_alarms(m.initial_state(), [alarm(T0, "AT-1")], T0)
    for t in range(T0, T0 + 3 * 3600 * S + 1, 7 * S):
        st, more = m.tick(st, t)
        many += more
    assert [e.to_record() for e in many] == [e.to_record() for e in once]


def test_yellow_when_the_same_point_alarms_3_times_in_1_hour():
    evs = []
    for i, t in enumerate([0, 20, 40]):
        evs += [
            alarm(T0 + t * MIN, "AT-1", alarm_id=f"a{i}"),
            alarm(T0 + t * MIN + 30 * S, "AT-1", "cleared", alarm_id=f"a{i}"),
        ]
    _, out = run(evs)
    assert summary(out) == [(0, "raised", "blue", "HZ1"), (40 * MIN, "upgraded", "yellow", "HZ1")]
    assert "3 times" in out[1].reason


def test_three_alarms_spread_over_more_than_an_hour_stay_blue():
    evs = []
    for i, t in enumerate([0, 35, 70]):
        evs += [
            alarm(T0 + t * MIN, "AT-1", alarm_id=f"a{i}"),
            alarm(T0 + t * MIN + 30 * S, "AT-1", "cleared", alarm_id=f"a{i}"),
        ]
    _, out = run(evs)
    assert summary(out) == [(0, "raised", "blue", "HZ1")]


@pytest.mark.parametrize(
    ("level", "parameter"), [("L2", "gas.CH4"), ("HH", "level"), ("LL", "pressure")]
)
def test_orange_on_any_second_level_alarm(level, parameter):
    _, out = run([alarm(T0, "X-1", level=level, parameter=parameter)])
    assert summary(out) == [(0, "raised", "orange", "HZ1")]
    assert "second-level" in out[0].reason


def test_orange_when_two_points_of_one_zone_are_at_first_level():
    _, out = run([alarm(T0, "AT-1", zone="Z1"), alarm(T0 + MIN, "AT-2", zone="Z1")])
    assert summary(out) == [(0, "raised", "blue", "HZ1"), (MIN, "upgraded", "orange", "HZ1")]
    assert "zone Z1" in out[1].reason and set(out[1].alarm_ids) == {
        "A-E1-AT-1-limit",
        "A-E1-AT-2-limit",
    }


def test_two_points_in_different_zones_stay_blue():
    _, out = run([alarm(T0, "AT-1", zone="Z1"), alarm(T0 + MIN, "AT-2", zone="Z2")])
    assert summary(out) == [(0, "raised", "blue", "HZ1")]


def test_yellow_unresolved_30_min_becomes_orange_and_orange_60_min_becomes_red():
    _, out = run([alarm(T0, "AT-1")], until_ms=T0 + 4 * 3600 * S)
    assert summary(out) == [
        (0, "raised", "blue", "HZ1"),
        (5 * MIN, "upgraded", "yellow", "HZ1"),
        (35 * MIN, "upgraded", "orange", "HZ1"),
        (95 * MIN, "upgraded", "red", "HZ1"),
    ]
    assert "yellow unresolved for 30 min" in out[2].reason
    assert "orange unresolved for 1 h" in out[3].reason
    assert len({e.warning_id for e in out}) == 1  # one warning, upgraded


def test_red_when_two_points_at_second_level_in_one_installation():
    _, out = run(
        [
            alarm(T0, "AT-1", level="L2", zone="Z1"),
            alarm(T0 + S, "LT-1", level="HH", zone="Z9", parameter="level"),
        ]
    )
    assert summary(out) == [(0, "raised", "orange", "HZ1"), (S, "upgraded", "red", "HZ1")]


def test_second_level_points_in_two_installations_give_two_orange_warnings():
    _, out = run(
        [
            alarm(T0, "AT-1", level="L2", hazard="HZ1"),
            alarm(T0 + S, "AT-2", level="L2", hazard="HZ2"),
        ]
    )
    assert summary(out) == [(0, "raised", "orange", "HZ1"), (S, "raised", "orange", "HZ2")]


def test_red_on_second_level_toxic_alarm_with_linked_process_excursion():
    _, out = run(
        [
            alarm(T0, "LT-1", level="H", parameter="level", zone="T"),
            alarm(T0 + S, "AT-NH3", level="L2", parameter="gas.NH3", zone="G"),
        ]
    )
    assert summary(out) == [(0, "raised", "blue", "HZ1"), (S, "upgraded", "red", "HZ1")]
    assert "toxic" in out[1].reason and "LT-1" in out[1].reason


def test_combustible_gas_with_process_excursion_is_only_orange():
    _, out = run(
        [
            alarm(T0, "LT-1", level="H", parameter="level", zone="T"),
            alarm(T0 + S, "AT-CH4", level="L2", parameter="gas.CH4", zone="G"),
        ]
    )
    assert summary(out) == [(0, "raised", "blue", "HZ1"), (S, "upgraded", "orange", "HZ1")]


def test_never_downgraded_while_open():
    evs = [
        alarm(T0, "AT-1", level="L2", alarm_id="a"),
        alarm(T0 + MIN, "AT-1", "cleared", alarm_id="a"),
        alarm(T0 + 2 * MIN, "AT-2", level="L1", alarm_id="b"),
    ]
    st, out = run(evs)
    assert summary(out) == [(0, "raised", "orange", "HZ1")]
    assert WarningModel(CFG).open_warnings(st)[0].colour == Colour.ORANGE


def test_close_by_disposition_then_new_alarm_raises_a_new_warning():
    m = WarningModel(CFG)
    evs = [alarm(T0, "AT-1", alarm_id="a"), alarm(T0 + MIN, "AT-1", "cleared", alarm_id="a")]
    st, out = run(evs, model=m)
    wid = out[0].warning_id
    st, closed = m.close(st, wid, T0 + 10 * MIN, reason="process fluctuation")
    assert [(e.state, e.warning_id, e.reason) for e in closed] == [
        (WarningState.CLOSED, wid, "process fluctuation")
    ]
    assert m.open_warnings(st) == []
    # a repeated disposition (at-least-once delivery) is a no-op
    assert m.close(st, wid, T0 + 11 * MIN)[1] == []
    with pytest.raises(KeyError, match="no open warning 'W-nope'"):
        m.close(st, "W-nope", T0)
    st, out2 = m.on_alarms(st, [alarm(T0 + 20 * MIN, "AT-1", alarm_id="b")], T0 + 20 * MIN)
    assert [e.state for e in out2] == [WarningState.RAISED]
    assert out2[0].warning_id != wid


def test_alarm_still_active_at_disposition_reasserts():
    m = WarningModel(CFG)
    st, out = run([alarm(T0, "AT-1")], until_ms=T0 + 10 * MIN, model=m)
    st, ev = m.close(st, out[0].warning_id, T0 + 10 * MIN)
    assert [(e.state.value, e.colour.value) for e in ev] == [
        ("closed", "yellow"),
        ("raised", "yellow"),
    ]
    assert ev[1].reason.startswith("re-asserted after disposition")


def test_data_quality_alarms_raise_no_warning_but_interlock_failure_is_orange():
    _, out = run(
        [
            alarm(T0, "AT-1", kind="offline", level=None),
            alarm(T0, "AT-2", kind="fault", level=None),
            alarm(T0, "GW1", kind="gateway", level=None),
        ],
        until_ms=T0 + 2 * 3600 * S,
    )
    assert out == []
    _, out = run([alarm(T0, "LT-1", kind="interlock", level=None, parameter="level")])
    assert summary(out) == [(0, "raised", "orange", "HZ1")]


def test_points_outside_an_installation_give_an_enterprise_level_warning():
    _, out = run([alarm(T0, "TT-1", hazard="", level="H", parameter="temperature")])
    assert summary(out) == [(0, "raised", "blue", "")]


def test_backfilled_alarm_marks_its_warning():
    _, out = run([alarm(T0, "AT-1", backfill=True)])
    assert out[0].backfill is True


def test_same_input_same_ids_and_state_survives_bytes():
    evs = [
        alarm(T0, "AT-1", zone="Z1"),
        alarm(T0 + MIN, "AT-2", zone="Z1"),
        alarm(T0 + 3 * MIN, "AT-3", level="L2", zone="Z2"),
    ]
    m = WarningModel(CFG)
    _, whole = run(evs, until_ms=T0 + 3 * 3600 * S, model=m)
    st, part1 = m.on_alarms(m.initial_state(), evs[:2], T0 + 2 * MIN)
    st = WarningModelState.load(st.to_bytes())
    st, part2 = m.on_alarms(st, evs[2:], T0 + 3 * MIN)
    st, part3 = m.tick(st, T0 + 3 * 3600 * S)
    assert [e.to_record() for e in part1 + part2 + part3] == [e.to_record() for e in whole]
    # orange since the second zone point (1 min), unresolved 60 min -> red
    assert summary(whole)[-1] == (MIN + 60 * MIN, "upgraded", "red", "HZ1")


def test_input_state_is_not_mutated():
    m = WarningModel(CFG)
    st0 = m.initial_state()
    before = st0.to_bytes()
    m.on_alarms(st0, [alarm(T0, "AT-1")], T0)
    assert st0.to_bytes() == before


def test_open_warnings_carry_the_installation_grade_and_overdue_after_24h():
    reg = registry(point("AT-1", level=1))
    m = WarningModel(CFG, reg)
    st, _ = m.on_alarms(m.initial_state(), [alarm(T0, "AT-1")], T0)
    (w,) = m.open_warnings(st, "E1")
    assert w.hazard_level == 1
    assert m.overdue(st, T0 + 23 * 3600 * S) == []
    assert [x.warning_id for x in m.overdue(st, T0 + 24 * 3600 * S)] == [w.warning_id]


def test_override_file_changes_a_default(tmp_path):
    (tmp_path / "warnings.yaml").write_text("yellow:\n  first_level_persist_s: 60\n")
    cfg = load_warning_config(tmp_path)
    assert cfg.yellow.first_level_persist_s == 60 and cfg.yellow.repeat_count == 3
    _, out = run([alarm(T0, "AT-1")], until_ms=T0 + 2 * MIN, model=WarningModel(cfg))
    assert summary(out)[1] == (MIN, "upgraded", "yellow", "HZ1")


def test_rules_dir_without_override_uses_defaults(tmp_path):
    assert load_warning_config(tmp_path) == CFG


def test_bad_override_reports_every_problem_with_its_key_path(tmp_path):
    f = tmp_path / "warnings.yaml"
    f.write_text(
        "yellow:\n  repeat_count: 1\n  repeat_windw_s: 10\n"
        "first_levels: [L1, L7]\nrisk:\n  bands: {red: 10, blue: 50}\n"
    )
    with pytest.raises(WarningConfigError) as ei:
        load_warning_config(f)
    msg = str(ei.value)
    assert str(f) in msg
    assert "yellow.repeat_count: Input should be greater than or equal to 2, got 1" in msg
    assert "yellow.repeat_windw_s: Extra inputs are not permitted" in msg
    assert "first_levels.1:" in msg and "'L7'" in msg
    assert "bands must not decrease from blue to red" in msg
    assert len(ei.value.problems) == 4


def test_strings_are_not_numbers_or_booleans(tmp_path):
    f = tmp_path / "warnings.yaml"
    f.write_text('yellow:\n  first_level_persist_s: "300"\nblue:\n  first_level: "yes"\n')
    with pytest.raises(WarningConfigError) as ei:
        load_warning_config(f)
    assert len(ei.value.problems) == 2
    assert "yellow.first_level_persist_s: Input should be a valid number, got '300'" in str(
        ei.value
    )
    assert "blue.first_level: Input should be a valid boolean, got 'yes'" in str(ei.value)


def test_override_that_is_not_yaml_or_not_a_mapping(tmp_path):
    f = tmp_path / "warnings.yaml"
    f.write_text("yellow: [unclosed\n")
    with pytest.raises(WarningConfigError, match="not valid YAML"):
        load_warning_config(f)
    f.write_text("- a list\n")
    with pytest.raises(WarningConfigError, match="expected a mapping of keys, got list"):
        load_warning_config(f)
