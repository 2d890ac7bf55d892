"""ISA-18.2 figures on hand-made alarm lists: each table row is a situation an alarm engineer
would recognise and the figure they expect to read."""

from __future__ import annotations

from rules.kpi import KpiConfig, compute, flood_episodes, rolling_max

from .rt_factory import MIN, T0, S, alarm


def test_counts_by_rule_point_level_and_time_in_alarm():
    evs = [
        alarm(T0, "AT-1", level="L1", alarm_id="a1"),
        alarm(T0 + 30 * S, "AT-1", level="L2", alarm_id="a1"),  # level change: re-annunciation
        alarm(T0 + 2 * MIN, "AT-1", "cleared", level=None, alarm_id="a1"),
        alarm(T0 + 1 * MIN, "LT-9", level="HH", kind="limit", parameter="level", alarm_id="b1"),
        alarm(T0 + 5 * MIN, "GW1", level=None, kind="gateway", parameter="", alarm_id="g1"),
    ]
    k = compute(evs, start_ms=T0, end_ms=T0 + 10 * MIN)
    assert k.annunciations == 4
    assert k.by_level == {"L1": 1, "L2": 1, "HH": 1, "none": 1}
    assert k.by_point["E1/AT-1"] == 2
    assert k.by_kind == {"limit": 3, "gateway": 1}
    assert len(k.episodes) == 3
    ep = {e.alarm_id: e for e in k.episodes}
    assert ep["a1"].cleared and ep["a1"].duration_ms == 2 * MIN
    assert ep["a1"].highest_level == "L2" and ep["a1"].annunciations == 2
    # still open at the period end: counted up to the end, not forever
    assert not ep["b1"].cleared and ep["b1"].duration_ms == 9 * MIN
    assert k.time_in_alarm_ms == (2 + 9 + 5) * MIN
    assert k.time_in_alarm_by_point["E1/LT-9"] == 9 * MIN


def test_rate_per_enterprise_per_10_minutes():
    evs = [alarm(T0 + i * MIN, f"AT-{i}", alarm_id=f"x{i}") for i in range(6)]
    evs += [alarm(T0 + i * MIN, "AT-1", ent="E2", alarm_id=f"y{i}") for i in range(2)]
    k = compute(evs, start_ms=T0, end_ms=T0 + 30 * MIN)
    rates = {r.enterprise_code: r for r in k.rates}
    assert rates["E1"].intervals == 3
    assert rates["E1"].average_per_10min == 2.0
    assert rates["E1"].peak_per_10min == 6
    assert rates["E2"].alarms == 2
    assert rates["E1"].pct_intervals_over_flood == 0.0


def test_flood_starts_above_10_and_ends_below_5():
    # 12 alarms within 2 minutes: the 11th starts the flood.
    times = [T0 + i * 10 * S for i in range(12)]
    floods = flood_episodes("E1", times, T0 + 60 * MIN, KpiConfig())
    assert len(floods) == 1
    f = floods[0]
    assert f.start_ms == times[10]
    # The count drops below 5 when the 8th alarm (index 7) leaves the 10-min window.
    assert f.end_ms == times[7] + 10 * MIN
    assert f.alarms == 12 and f.peak_in_window == 12


def test_ten_alarms_in_ten_minutes_is_not_a_flood():
    times = [T0 + i * 50 * S for i in range(10)]
    assert flood_episodes("E1", times, T0 + 60 * MIN, KpiConfig()) == []


def test_flood_still_open_at_period_end_ends_there():
    times = [T0 + i * S for i in range(20)]
    (f,) = flood_episodes("E1", times, T0 + 2 * MIN, KpiConfig())
    assert f.end_ms == T0 + 2 * MIN


def test_two_separate_floods():
    burst1 = [T0 + i * S for i in range(11)]
    burst2 = [T0 + 60 * MIN + i * S for i in range(11)]
    floods = flood_episodes("E1", burst1 + burst2, T0 + 120 * MIN, KpiConfig())
    assert [f.start_ms for f in floods] == [burst1[-1], burst2[-1]]


def test_chattering_three_in_sixty_seconds():
    evs = []
    for i, t in enumerate([0, 20, 50]):  # 3 within 60 s: chattering
        evs.append(alarm(T0 + t * S, "AT-1", alarm_id=f"c{i}"))
        evs.append(alarm(T0 + t * S + 5 * S, "AT-1", "cleared", alarm_id=f"c{i}"))
    for i, t in enumerate([0, 61, 122]):  # 3 but spread over 2 minutes: not chattering
        evs.append(alarm(T0 + t * S, "AT-2", alarm_id=f"d{i}"))
    k = compute(evs)
    assert [str(c.source) for c in k.chattering] == ["E1/AT-1 limit (limit.gas.CH4)"]
    assert k.chattering[0].max_in_window == 3


def test_fleeting_and_stale():
    evs = [
        alarm(T0, "AT-1", alarm_id="f"),
        alarm(T0 + 2 * S, "AT-1", "cleared", alarm_id="f"),  # 2 s: fleeting (< 5 s)
        alarm(T0, "AT-2", alarm_id="ok"),
        alarm(T0 + 10 * S, "AT-2", "cleared", alarm_id="ok"),
        alarm(T0, "AT-3", alarm_id="old"),  # never cleared, 25 h: stale
    ]
    k = compute(evs, start_ms=T0, end_ms=T0 + 25 * 3600 * S)
    assert [e.alarm_id for e in k.fleeting] == ["f"]
    assert [e.alarm_id for e in k.stale] == ["old"]
    k2 = compute(evs, start_ms=T0, end_ms=T0 + 25 * 3600 * S, config=KpiConfig(fleeting_s=15))
    assert {e.alarm_id for e in k2.fleeting} == {"f", "ok"}


def test_top_bad_actors_ranked_with_share():
    evs = [alarm(T0 + i * MIN, "AT-1", alarm_id=f"p{i}") for i in range(6)]
    evs += [alarm(T0 + i * MIN, "AT-2", alarm_id=f"q{i}") for i in range(3)]
    evs += [alarm(T0, "AT-3", alarm_id="r")]
    k = compute(evs, config=KpiConfig(top_n=2))
    assert [(b.source.tag, b.annunciations, round(b.share_pct)) for b in k.bad_actors] == [
        ("AT-1", 6, 60),
        ("AT-2", 3, 30),
    ]


def test_empty_list_gives_zero_figures():
    k = compute([])
    assert k.annunciations == 0 and k.figures()["flood_episodes"] == 0 and k.bad_actors == ()


def test_rolling_max_half_open_window():
    assert rolling_max([0, 60_000, 120_000], 60_000) == 1
    assert rolling_max([0, 59_999, 60_000], 60_000) == 2
