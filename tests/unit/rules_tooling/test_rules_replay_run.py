"""`run_replay` over the real loader and engine: the same alarms as the per-reading reference
engine whatever the batch size, timers firing at their due instants after the data ends,
warnings derived from the alarms, and event messages passed through."""

from __future__ import annotations

import math

from ingest.model import Industry, Point, Reading, Registry
from rules.loader import load_ruleset
from rules.reference import ReferenceEngine
from rules.replay import run_replay
from rules.warnings import WarningModel, load_warning_config

from .rt_factory import MIN, T0, S, point, registry

REG = registry(
    point("AT-1", "gas.CH4", unit="%LEL", expected_interval_s=10, range_low=0, range_high=100),
    point("AT-2", "gas.NH3", unit="mg/m3", expected_interval_s=10, range_low=0, range_high=200),
)
RS = load_ruleset(None, REG)


def history():
    rd = []
    for i in range(60):
        rd.append(Reading("E1", "AT-1", T0 + i * 10 * S, 30.0 if 10 <= i < 40 else 5.0))
        rd.append(Reading("E1", "AT-2", T0 + i * 10 * S, 45.0 if 20 <= i < 25 else 1.0))
    return rd


def brief(alarms):
    return [
        ((a.ts_ms - T0) // S, a.tag, str(a.kind), a.level and str(a.level), str(a.state))
        for a in alarms
    ]


def test_alarms_at_the_right_times_including_timers_after_the_data_ends():
    res = run_replay(REG, RS, history(), end_ms=T0 + 20 * MIN)
    assert brief(res.alarms) == [
        (100, "AT-1", "limit", "L1", "firing"),
        (200, "AT-2", "limit", "L2", "firing"),
        (250, "AT-2", "limit", "L2", "cleared"),
        (400, "AT-1", "limit", "L1", "cleared"),
        (620, "GW1", "gateway", None, "firing"),  # last data at 590 s + 3 x 10 s
    ]
    assert res.readings == 120 and (res.start_ms, res.end_ms) == (T0, T0 + 20 * MIN)
    assert res.summary.annunciations == 3
    first = res.alarms[0]
    assert (first.pack, first.threshold, first.unit) == ("gbt50493", 25.0, "%LEL")


def test_batch_size_changes_nothing_and_equals_the_reference_engine():
    ref = run_replay(REG, RS, history(), end_ms=T0 + 20 * MIN, engine=ReferenceEngine(RS, REG))
    for bs in (1, 3, 64, 10_000):
        got = run_replay(REG, RS, history(), end_ms=T0 + 20 * MIN, batch_size=bs)
        assert [a.to_record() for a in got.alarms] == [a.to_record() for a in ref.alarms], bs


def test_same_input_same_alarm_ids():
    a = run_replay(REG, RS, history())
    b = run_replay(REG, RS, history())
    assert [x.alarm_id for x in a.alarms] == [x.alarm_id for x in b.alarms]


def test_warnings_follow_the_alarms():
    wm = WarningModel(load_warning_config(), REG)
    res = run_replay(REG, RS, history(), end_ms=T0 + 20 * MIN, warning_model=wm)
    # blue at the first CH4 alarm, orange at the NH3 second level; it would turn red only
    # after 60 min unresolved, beyond the replay's end
    assert [((w.ts_ms - T0) // S, str(w.state), str(w.colour)) for w in res.warnings] == [
        (100, "raised", "blue"),
        (200, "upgraded", "orange"),
    ]
    assert len({w.warning_id for w in res.warnings}) == 1


def test_offline_timers_start_at_the_replay_start_for_points_that_never_report():
    rd = [Reading("E1", "AT-1", T0 + i * 10 * S, 5.0) for i in range(10)]
    res = run_replay(REG, RS, rd, end_ms=T0 + 2 * MIN)
    assert brief(res.alarms) == [
        (30, "AT-2", "offline", None, "firing"),  # never reported: 3 x 10 s after the start
        (120, "GW1", "gateway", None, "firing"),  # then the whole gateway fell silent
    ]


def test_event_messages_go_through_the_fast_path():
    reg = Registry(
        [
            Point(
                enterprise_code="F1",
                enterprise_name="F",
                industry=Industry.FIREWORKS,
                district="D",
                hazard_code="",
                hazard_level=None,
                zone="Z11",
                gateway_code="G",
                tag="EV-1",
                parameter="event",
                unit="",
                expected_interval_s=3600,
            ),
        ]
    )
    rs = load_ruleset(None, reg)
    rd = [
        Reading(
            "F1",
            "EV-1",
            T0 + 5 * S,
            math.nan,
            event_type="vehicle_in_zone",
            text="truck in 1.1 zone",
        )
    ]
    res = run_replay(reg, rs, rd, start_ms=T0, end_ms=T0 + MIN, batch_size=1)
    ref = run_replay(reg, rs, rd, start_ms=T0, end_ms=T0 + MIN, engine=ReferenceEngine(rs, reg))
    assert [(a.kind, a.state) for a in res.alarms][:1] == [("event", "firing")]
    assert res.alarms == ref.alarms


def test_empty_input():
    res = run_replay(REG, RS, [])
    assert res.alarms == [] and res.summary.annunciations == 0


def test_default_warning_model_and_unsorted_input():
    rd = history()
    shuffled = rd[1::2] + rd[0::2]  # all of AT-2 first, then AT-1: not in time order
    res = run_replay(REG, RS, shuffled, end_ms=T0 + 20 * MIN)
    ref = run_replay(REG, RS, rd, end_ms=T0 + 20 * MIN)
    assert [a.to_record() for a in res.alarms] == [a.to_record() for a in ref.alarms]
    assert [str(w.colour) for w in res.warnings] == ["blue", "orange"]  # default model
    assert res.risk[0].enterprise_code == "E1"
    assert run_replay(REG, RS, rd, warning_model=None).warnings == []
