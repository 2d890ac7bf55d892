"""`rules diff` logic on hand-made alarm lists: matching by what the operator sees, added /
removed / shifted alarms, first-alarm shifts, KPI changes and the regression verdict."""

from __future__ import annotations

import pytest

from rules.diff import FailOnError, diff_alarms, parse_fail_on, regressions

from .rt_factory import MIN, T0, S, alarm


def pair(t, tag, dur=MIN, **kw):
    aid = f"{tag}-{t}"
    return [alarm(t, tag, alarm_id=aid, **kw), alarm(t + dur, tag, "cleared", alarm_id=aid, **kw)]


def test_identical_runs_have_no_differences():
    evs = pair(T0, "AT-1") + pair(T0 + 5 * MIN, "AT-2")
    d = diff_alarms(evs, list(evs))
    assert d.identical and d.unchanged == 2 and d.kpi_changes == {}
    assert regressions(d, parse_fail_on(["removed,added,later:0,earlier:0"])) == []


def test_renamed_rule_is_not_a_change():
    old = pair(T0, "AT-1", rule="site.limit")
    new = pair(T0, "AT-1", rule="site.limit-renamed")
    assert diff_alarms(old, new).identical


def test_added_removed_and_shifted():
    old = pair(T0, "AT-1") + pair(T0, "AT-2") + pair(T0 + 10 * MIN, "AT-3", level="L2")
    new = pair(T0 + 30 * S, "AT-1") + pair(T0 + 20 * MIN, "AT-4")
    d = diff_alarms(old, new)
    assert [str(k) for k in (s.key for s in d.shifted)] == ["E1/AT-1 limit L1"]
    assert d.shifted[0].delta_ms == 30 * S
    assert [(e.tag, e.level) for e in d.removed] == [("AT-2", "L1"), ("AT-3", "L2")]
    assert [e.tag for e in d.added] == ["AT-4"]
    firsts = {str(s.key): (s.old_ms, s.new_ms) for s in d.first_alarm}
    assert firsts["E1/AT-1 limit L1"] == (T0, T0 + 30 * S)
    assert firsts["E1/AT-4 limit L1"] == (None, T0 + 20 * MIN)
    assert d.kpi_changes["episodes"] == (3.0, 2.0)


def test_level_is_part_of_the_key():
    d = diff_alarms(pair(T0, "AT-1", level="L1"), pair(T0, "AT-1", level="L2"))
    assert [e.level for e in d.removed] == ["L1"] and [e.level for e in d.added] == ["L2"]


def test_firings_further_apart_than_the_window_are_removed_and_added():
    d = diff_alarms(pair(T0, "AT-1"), pair(T0 + 11 * MIN, "AT-1"))
    assert len(d.removed) == 1 and len(d.added) == 1 and d.shifted == ()
    d = diff_alarms(pair(T0, "AT-1"), pair(T0 + 11 * MIN, "AT-1"), match_window_s=900)
    assert d.shifted[0].delta_ms == 11 * MIN


def test_repeated_episodes_are_matched_in_order():
    old = pair(T0, "AT-1") + pair(T0 + 20 * MIN, "AT-1") + pair(T0 + 40 * MIN, "AT-1")
    new = pair(T0 + 20 * MIN, "AT-1") + pair(T0 + 40 * MIN, "AT-1")
    d = diff_alarms(old, new)
    assert [e.ts_ms for e in d.removed] == [T0] and d.shifted == () and d.unchanged == 2


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        (["removed"], ["alarm removed: E1/AT-2 limit L1 at"]),
        (["added"], ["alarm added: E1/AT-9 limit L1 at"]),
        (["later:10"], ["alarm later by 30 s (> 10 s): E1/AT-1 limit L1"]),
        (["later:30"], []),
        (["earlier:0"], []),
        (["more:episodes"], []),
        (["more:time_in_alarm_s"], []),
        (["none"], []),
        (["removed,added"], ["alarm removed", "alarm added"]),
    ],
)
def test_regression_table(spec, expect):
    old = pair(T0, "AT-1") + pair(T0, "AT-2")
    new = pair(T0 + 30 * S, "AT-1") + pair(T0, "AT-9", dur=30 * S)
    got = regressions(diff_alarms(old, new), parse_fail_on(spec))
    assert len(got) == len(expect)
    for g, e in zip(got, expect, strict=True):
        assert g.startswith(e)


def test_kpi_increase_is_a_regression_when_asked():
    old = pair(T0, "AT-1")
    new = [e for i in range(3) for e in pair(T0 + i * 10 * S, "AT-1", dur=5 * S)]
    d = diff_alarms(old, new)
    assert regressions(d, parse_fail_on(["more:chattering_sources"])) == [
        "chattering_sources increased from 0 to 1"
    ]


@pytest.mark.parametrize("bad", ["later", "later:x", "faster", "more:colour"])
def test_bad_fail_on_spec(bad):
    with pytest.raises(FailOnError, match="--fail-on"):
        parse_fail_on([bad])
