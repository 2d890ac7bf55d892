"""Property tests (Hypothesis) for the warning model and the KPI figures: invariants that must
hold on any alarm stream, checked against brute-force definitions where there is one."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from rules.kpi import KpiConfig, flood_episodes, rolling_max
from rules.model import Colour, WarningState
from rules.warnings import WarningModel, load_warning_config

from .rt_factory import T0, S, alarm

CFG = load_warning_config()
TAGS = [
    ("AT-1", "Z1", "gas.NH3"),
    ("AT-2", "Z1", "gas.CH4"),
    ("LT-1", "Z2", "level"),
    ("AT-3", "Z3", "gas.H2S"),
]


@st.composite
def alarm_streams(draw):
    """Well-formed transition streams: per point, firing (possibly re-levelled) then cleared."""
    n = draw(st.integers(1, 25))
    t = T0
    open_: dict[str, str] = {}
    episode = 0
    evs = []
    for _ in range(n):
        t += draw(st.integers(1, 40 * 60)) * S
        tag, zone, param = draw(st.sampled_from(TAGS))
        hazard = draw(st.sampled_from(["HZ1", "HZ2"])) if tag not in open_ else None
        level = draw(st.sampled_from(["H", "HH"] if param == "level" else ["L1", "L2"]))
        if tag in open_ and draw(st.booleans()):
            aid, hz = open_.pop(tag).split("|")
            evs.append(
                alarm(
                    t,
                    tag,
                    "cleared",
                    alarm_id=aid,
                    hazard=hz,
                    zone=zone,
                    parameter=param,
                    level=level,
                )
            )
        elif tag in open_:
            aid, hz = open_[tag].split("|")
            evs.append(
                alarm(t, tag, alarm_id=aid, hazard=hz, zone=zone, parameter=param, level=level)
            )
        else:
            episode += 1
            aid = f"{tag}-{episode}"
            open_[tag] = f"{aid}|{hazard}"
            evs.append(
                alarm(t, tag, alarm_id=aid, hazard=hazard, zone=zone, parameter=param, level=level)
            )
    return evs


def _run(evs, cuts, tick_every_s, end):
    m = WarningModel(CFG)
    stt = m.initial_state()
    out = []
    bounds = [0, *sorted({min(c, len(evs)) for c in cuts}), len(evs)]
    for a, b in itertools.pairwise(bounds):
        if a >= b:
            continue
        chunk = evs[a:b]
        stt, o = m.on_alarms(stt, chunk, chunk[-1].ts_ms)
        out += o
        if tick_every_s:
            nxt = evs[b].ts_ms if b < len(evs) else end
            for t in range(chunk[-1].ts_ms, nxt, tick_every_s * S):
                stt, o = m.tick(stt, t)
                out += o
        stt = type(stt).load(stt.to_bytes())
    stt, o = m.tick(stt, end)
    return out + o, stt, m


@settings(max_examples=120, deadline=None)
@given(alarm_streams(), st.lists(st.integers(0, 25), max_size=5), st.sampled_from([0, 301, 1200]))
def test_warnings_do_not_depend_on_batching_ticks_or_restarts(evs, cuts, tick_every_s):
    end = evs[-1].ts_ms + 4 * 3600 * S
    ref, _, _ = _run(evs, [], 0, end)
    got, _, _ = _run(evs, cuts, tick_every_s, end)
    assert [e.to_record() for e in got] == [e.to_record() for e in ref]


@settings(max_examples=120, deadline=None)
@given(alarm_streams())
def test_one_open_warning_per_installation_and_colours_only_rise(evs):
    out, stt, m = _run(evs, [], 0, evs[-1].ts_ms + 3 * 3600 * S)
    colour: dict[str, Colour] = {}
    installation: dict[str, str] = {}
    for e in out:
        assert e.state != WarningState.CLOSED
        if e.state == WarningState.RAISED:
            assert e.hazard_code not in installation.values()  # never two at once
            installation[e.warning_id] = e.hazard_code
        else:
            assert e.previous == colour[e.warning_id]
            assert e.colour.rank > colour[e.warning_id].rank
        colour[e.warning_id] = e.colour
    assert len(m.open_warnings(stt)) == len(installation)
    assert [e.ts_ms for e in out] == sorted(e.ts_ms for e in out)


times_st = st.lists(st.integers(0, 3 * 3600), max_size=120).map(
    lambda xs: sorted(T0 + x * S for x in xs)
)


def _count(times, t, w):
    return sum(1 for x in times if t - w < x <= t)


@settings(max_examples=150, deadline=None)
@given(times_st)
def test_floods_match_the_definition(times):
    cfg = KpiConfig()
    w = 600 * S
    end = T0 + 4 * 3600 * S
    floods = flood_episodes("E1", times, end, cfg)
    for f in floods:
        assert _count(times, f.start_ms, w) > cfg.flood_start
        assert f.end_ms == end or _count(times, f.end_ms, w) < cfg.flood_end
        assert f.peak_in_window <= rolling_max(times, w)
    for a, b in itertools.pairwise(floods):
        assert a.end_ms < b.start_ms  # episodes never overlap
    # every instant whose trailing window holds more than flood_start alarms lies in a flood
    for t in times:
        if _count(times, t, w) > cfg.flood_start:
            assert any(f.start_ms <= t <= f.end_ms for f in floods)


@settings(max_examples=150, deadline=None)
@given(times_st, st.integers(1, 900))
def test_rolling_max_matches_brute_force(times, window_s):
    w = window_s * S
    assert rolling_max(times, w) == max((_count(times, t, w) for t in times), default=0)
