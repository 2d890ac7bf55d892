"""Engine state as a value: bytes round trip, restart and replay give the same alarm ids,
hot reload onto a new ruleset/registry keeps what still exists, calls never modify their
input state."""

from __future__ import annotations

import numpy as np
import pytest

from ingest.model import Registry
from rules.engine import Engine
from rules.loader import load_ruleset
from rules.model import AlarmState, Kind
from rules.state import StateFormatError

from .conftest import T0, at, plant_registry, point, rd

STREAM = [
    rd("AT-NH3", 1, 30.0),
    rd("LT-101", 2, 9.5),
    rd("XV-101", 2, 1.0),
    rd("AT-NH3", 20, 60.0),
    rd("LT-101", 30, 9.6),
    rd("AT-O2", 31, 18.0),
    rd("AT-NH3", 40, 1.0),
    rd("LT-101", 50, 5.0),
    rd("AT-O2", 60, 20.9),
]


@pytest.fixture
def engine(plant):
    return Engine(load_ruleset(None, plant), plant)


def run(engine, readings, state=None, now=None):
    state = state or engine.initial_state(T0)
    return engine.process(state, readings, now if now is not None else readings[-1].ts_ms)


def test_state_round_trips_through_bytes(engine):
    state, _ = run(engine, STREAM[:5])
    blob = state.to_bytes()
    again = engine.load_state(blob)
    assert again == state and again.to_bytes() == blob
    assert again.now_ms == state.now_ms and again.start_ms == T0


def test_restart_from_bytes_gives_the_same_events_and_ids_as_running_on(engine):
    whole, events = run(engine, STREAM, now=at(200))
    first, e1 = run(engine, STREAM[:4], now=STREAM[3].ts_ms)
    restarted = Engine(load_ruleset(None, plant_registry()), plant_registry())
    second, e2 = run(
        restarted, STREAM[4:], state=restarted.load_state(first.to_bytes()), now=at(200)
    )
    assert e1 + e2 == events
    assert second == whole
    # and a replay of the same input gives the same ids again
    _, replayed = run(engine, STREAM, now=at(200))
    assert [e.alarm_id for e in replayed] == [e.alarm_id for e in events]


def test_process_never_modifies_its_input_state(engine):
    state, _ = run(engine, STREAM[:3])
    before = state.to_bytes()
    engine.process(state, STREAM[3:], at(500))
    engine.tick(state, at(900))
    assert state.to_bytes() == before


def test_hot_reload_keeps_open_alarms_and_timers_of_points_that_still_exist(tmp_path, plant):
    old = Engine(load_ruleset(None, plant), plant)
    state, ev = run(old, [rd("AT-NH3", 1, 60.0), rd("AT-O2", 1, 20.9)])
    nh3 = next(e for e in ev if e.tag == "AT-NH3")
    # new registry: AT-O2 removed, a new point added; new rules change the NH3 on-delay
    pts = [p for p in plant if p.tag != "AT-O2"] + [
        point("PT-301", "pressure", "MPa", gw="G3", h=1.0)
    ]
    new_reg = Registry(pts, version="plant-v2")
    (tmp_path / "site.rules.yaml").write_text(
        "rules:\n  - {name: nh3-delay, kind: limit, match: {tag: AT-NH3}, for: 10s}\n"
    )
    new = Engine(load_ruleset(tmp_path, new_reg), new_reg)
    reloaded = new.load_state(state.to_bytes())
    assert reloaded.point_keys == new.plan.keys
    # the open NH3 alarm is still open: its clear carries the same id
    reloaded, ev = new.process(reloaded, [rd("AT-NH3", 5, 0.0)], at(5))
    assert [(e.tag, e.state, e.alarm_id) for e in ev] == [
        ("AT-NH3", AlarmState.CLEARED, nh3.alarm_id)
    ]
    # the new point's offline timer runs from the reload (the saved "now"), not from T0
    _, ev = new.tick(reloaded, at(1) + 30_000)
    offline = [e for e in ev if e.kind == Kind.OFFLINE]
    assert [(e.tag, e.ts_ms) for e in offline] == [("PT-301", at(1) + 30_000)]


def test_state_is_small_per_point(engine):
    state, _ = run(engine, STREAM)
    assert state.points.dtype.itemsize < 256
    assert state.nbytes() / len(state.point_keys) < 256


def test_bytes_that_are_not_a_state_are_refused(engine):
    with pytest.raises(StateFormatError):
        engine.load_state(b"not msgpack at all \xff\x00")
    with pytest.raises(StateFormatError):
        engine.load_state(b"\x81\xa6format\x02")


def test_an_engine_needs_the_registry_its_ruleset_was_built_for(plant):
    rs = load_ruleset(None, plant)
    other = Registry([*plant, point("QT-9", "pressure", "MPa", h=1.0)])
    with pytest.raises(ValueError, match="QT-9"):
        Engine(rs, other)


def test_process_columns_is_the_same_as_process(engine):
    idx = np.array([engine.point_index(f"E1/{r.tag}") for r in STREAM] + [-1])
    ts = np.array([r.ts_ms for r in STREAM] + [at(3)])
    val = np.array([r.value for r in STREAM] + [99.0])
    q = np.zeros(len(idx), dtype=np.int64)
    s1, e1 = engine.process_columns(engine.initial_state(T0), idx, ts, val, q, at(100))
    s2, e2 = engine.process(engine.initial_state(T0), STREAM, at(100))
    assert e1 == e2 and s1 == s2
    assert engine.point_index("E1/NOPE") == -1
    with pytest.raises(ValueError, match="same length"):
        engine.process_columns(engine.initial_state(T0), idx, ts[:-1], val, q, at(1))


def test_states_saved_before_subarray_fields_had_their_base_type_still_load(engine):
    import msgspec

    state, _ = run(engine, STREAM)
    obj = msgspec.msgpack.decode(state.to_bytes())
    for name in ("points", "gateways", "votes"):
        arr = getattr(state, name)
        obj[name]["fields"] = [
            [n, arr.dtype[n].str, list(arr.dtype[n].shape)] for n in arr.dtype.names
        ]  # the old '|V32' form
    assert engine.load_state(msgspec.msgpack.encode(obj)) == state


def test_a_reload_that_removes_a_rule_clears_its_open_alarms_once(tmp_path, plant):
    from rules.reference import ReferenceEngine

    old = Engine(load_ruleset(None, plant), plant)
    state, ev = old.process(
        old.initial_state(T0),
        [rd("AT-NH3", 1, 60.0), rd("LT-101", 1, 10.5), rd("XV-101", 1, 0.0)],
        at(40),
    )
    open_ids = {(e.tag, e.kind): e.alarm_id for e in ev if e.state == AlarmState.FIRING}
    assert ("AT-NH3", Kind.LIMIT) in open_ids and ("LT-101", Kind.FAULT) in open_ids
    assert ("AT-O2", Kind.OFFLINE) not in open_ids  # G1's outage is the one alarm
    (tmp_path / "site.rules.yaml").write_text(
        "rules:\n"
        "  - {name: no-nh3-limit, kind: limit, match: {tag: AT-NH3}, enabled: false}\n"
        "  - {name: no-tank-fault, kind: fault, match: {tag: LT-101}, enabled: false}\n"
    )
    rs = load_ruleset(tmp_path, plant)
    for eng in (Engine(rs, plant), ReferenceEngine(rs, plant)):
        loaded = Engine(rs, plant).load_state(state.to_bytes())
        after, ev = eng.tick(loaded, at(41))
        closed = {(e.tag, e.kind): e for e in ev if e.rule == "removed-by-reload"}
        assert set(closed) == {("AT-NH3", Kind.LIMIT), ("LT-101", Kind.FAULT)}
        for k, e in closed.items():
            assert e.state == AlarmState.CLEARED and e.alarm_id == open_ids[k]
            assert e.ts_ms == at(40)
        _, again = eng.tick(after, at(42))
        assert not [e for e in again if e.rule == "removed-by-reload"]


def test_a_reload_that_removes_a_gateway_or_vote_group_clears_their_alarms(tmp_path, plant):
    from rules.reference import ReferenceEngine

    old = Engine(load_ruleset(None, plant), plant)
    state, ev = old.process(old.initial_state(T0), [rd("AT-CH4-1", 1, 0.0, q=2)], at(40))
    fired = {(e.tag, e.kind): e.alarm_id for e in ev}
    assert ("Z2", Kind.VOTE_DEGRADED) in fired and ("G2", Kind.GATEWAY) in fired
    (tmp_path / "site.rules.yaml").write_text(
        "rules:\n"
        "  - {name: no-vote, kind: vote, match: {zone: Z2}, enabled: false}\n"
        "  - {name: no-g2-offline, kind: offline, match: {gateway: G2}, enabled: false}\n"
    )
    rs = load_ruleset(tmp_path, plant)
    for eng in (Engine(rs, plant), ReferenceEngine(rs, plant)):
        loaded = Engine(rs, plant).load_state(state.to_bytes())
        assert Engine(rs, plant).load_state(loaded.to_bytes()).orphans == loaded.orphans
        after, ev = eng.tick(loaded, at(41))
        closed = {(e.tag, e.kind): e for e in ev if e.rule == "removed-by-reload"}
        assert set(closed) == {("Z2", Kind.VOTE_DEGRADED), ("G2", Kind.GATEWAY)}
        assert all(
            e.alarm_id == fired[k] and e.state == AlarmState.CLEARED for k, e in closed.items()
        )
        assert after.orphans == ()
