"""The pure parts of the Faust app, without a broker: the transitions codec, the partition an
enterprise's state lives in, and per-enterprise evaluation giving exactly the embedded
pipeline's alarms."""

from __future__ import annotations

import json

from aiokafka.partitioner import DefaultPartitioner

from hazardwatch.faust_app import (
    EnterpriseCore,
    LiveStates,
    decode_transition,
    encode_transition,
    partition_for,
)
from hazardwatch.runner import Pipeline, RawMessage
from hazardwatch.wiring import RuleSources, build_stages, load_rules
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState

REG = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,lat,lon\n"
    + "".join(
        f"{e},{e}化工,hazchem,潜江,{e}-MH1,2,Z1,G1,AT-{i},gas.Cl2,mg/m3,0,10,,,,,600,,\n"
        for e in ("EA", "EB")
        for i in (1, 2, 3)
    )
    + "EB,EB化工,hazchem,潜江,EB-MH1,2,T1,G1,LT-1,level,m,0,20,,,15,19,600,,\n"
)
T0 = 1_764_403_200_000


def test_transitions_round_trip():
    a = AlarmEvent(
        ts_ms=T0,
        enterprise_code="EA",
        hazard_code="H",
        zone="Z",
        tag="AT-1",
        parameter="gas.Cl2",
        kind=Kind.VOTE,
        level=Level.L2,
        state=AlarmState.FIRING,
        value=None,
        threshold=2.0,
        unit="mg/m3",
        rule="r",
        alarm_id="a1",
        ruleset="v1",
    )
    w = WarningEvent(
        ts_ms=T0,
        warning_id="W-1",
        enterprise_code="EA",
        hazard_code="H",
        colour=Colour.RED,
        previous=Colour.ORANGE,
        state=WarningState.UPGRADED,
        reason="two at second level",
        alarm_ids=("a1", "a2"),
    )
    assert decode_transition(encode_transition(a)) == a
    assert decode_transition(encode_transition(w)) == w


def test_state_partition_is_the_partition_the_bridge_produces_to():
    default = DefaultPartitioner()
    for key in (b"EA", b"QJSH01", "潜江化工".encode(), b"x" * 40):
        parts = list(range(8))
        assert partition_for(key, 8) == default(key, parts, parts)


def _msgs(ent: str, rows: list[tuple[float, dict[str, float]]]) -> list[RawMessage]:
    out = []
    for dt, values in rows:
        ts = T0 + int(dt * 1000)
        body = {"ts": ts, "data": [{"tag": t, "v": v} for t, v in values.items()]}
        out.append(RawMessage(f"hw/{ent}/G1/data", json.dumps(body).encode(), ts))
    return out


def test_per_enterprise_evaluation_equals_the_whole_registry_pipeline(tmp_path):
    reg = tmp_path / "registry.csv"
    reg.write_text(REG, encoding="utf-8")
    bundle = load_rules(RuleSources(reg))
    plan = {
        "EA": [
            (0, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1}),
            (5, {"AT-1": 2.5, "AT-2": 2.4, "AT-3": 0.1}),  # 2oo3 at second level
            (9, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1}),
        ],
        "EB": [
            (0, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 10}),
            (2, {"AT-1": 1.5, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 16}),
            (8, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 16.5}),
            (12, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 10}),
        ],
    }
    # embedded: the whole registry in one pipeline
    p = Pipeline(build_stages(bundle), start_ms=T0)
    embedded = []
    for ent, rows in plan.items():
        for m in _msgs(ent, rows):
            embedded += p.process([m], m.received_ms).alarms
    # distributed: one state per enterprise, as the Faust tables hold it
    core = EnterpriseCore(bundle)
    norm = build_stages(bundle).normalizer
    per_ent = []
    for ent, rows in plan.items():
        est = wst = None
        for m in _msgs(ent, rows):
            readings = norm.normalize(m.topic, m.payload, m.received_ms).readings
            step = core.process(ent, est, wst, readings, m.received_ms)
            est, wst = step.engine, step.warnings
            per_ent += step.alarms
    assert embedded  # the plan does raise alarms (vote, limits, level on-delay)
    assert {a.kind for a in embedded} >= {Kind.LIMIT, Kind.VOTE}
    key = lambda a: (a.ts_ms, a.enterprise_code, a.tag, a.rule)  # noqa: E731
    assert sorted(per_ent, key=key) == sorted(embedded, key=key)


def _core(tmp_path) -> EnterpriseCore:
    reg = tmp_path / "registry.csv"
    reg.write_text(REG, encoding="utf-8")
    return EnterpriseCore(load_rules(RuleSources(reg)))


def _readings(core: EnterpriseCore, ent: str, rows) -> list[list]:
    norm = build_stages(core.bundle).normalizer
    return [norm.normalize(m.topic, m.payload, m.received_ms).readings for m in _msgs(ent, rows)]


PLAN_EB = [
    (0, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 10}),
    (2, {"AT-1": 1.5, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 16}),
    (8, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 16.5}),
    (12, {"AT-1": 0.1, "AT-2": 0.1, "AT-3": 0.1, "LT-1": 10}),
]


def test_live_states_decode_once_and_flush_what_the_pure_core_computes(tmp_path):
    """The worker keeps state in memory between flushes: same alarms and same flushed bytes as
    the bytes-in/bytes-out core, the table read and decoded once, only changed enterprises
    written, and after `forget` (a rebalance) the state comes from the tables again."""
    core = _core(tmp_path)
    table: dict[bytes, tuple[bytes | None, bytes | None, bytes | None]] = {}
    reads = []

    def stored(key: bytes):
        reads.append(key)
        return table.get(key, (None, None, None))

    live = LiveStates(core, stored)
    batches = _readings(core, "EB", PLAN_EB)
    est = wst = None
    pure_alarms, live_alarms = [], []
    for i, rs in enumerate(batches):
        now = T0 + (i * 4 + 1) * 1000
        step = core.process("EB", est, wst, rs, now)
        est, wst = step.engine, step.warnings
        pure_alarms += step.alarms
        alarms, _events = live.process("EB", rs, now)
        live_alarms += alarms
        if i == 1:  # a flush half-way: the table now holds the state after two batches
            assert [k for k, _e, _w, _r in live.take_dirty()] == [b"EB"]
            assert not live.dirty()
    assert live_alarms == pure_alarms and {a.kind for a in pure_alarms} >= {Kind.LIMIT}
    assert reads == [b"EB"]  # decoded once, then kept in memory
    flushed = live.take_dirty()
    assert flushed == [(b"EB", est, wst, b"")]  # byte for byte the pure core's state
    assert live.take_dirty() == []  # nothing changed since
    # a rebalance: memory dropped, the (recovered) table is read again and evaluation goes on
    table[b"EB"] = (est, wst, None)
    live.forget()
    now = T0 + 2_000_000  # silent past 3x the expected interval: offline alarms
    alarms, _events = live.tick("EB", now)
    assert alarms and alarms == core.tick("EB", est, wst, now).alarms
    assert reads == [b"EB", b"EB"]


def test_live_states_skip_the_engine_tick_right_after_a_batch(tmp_path):
    """A batch evaluates the engine's timers up to its `now`; the 1 s tick of that enterprise
    within the next second only ticks the warning model (under load every enterprise has a
    batch every second, so the tick costs nothing), and later ones fire what is due."""
    core = _core(tmp_path)
    live = LiveStates(core, lambda key: (None, None, None))
    eng = core.engine("EB")
    ticks = []
    orig = eng.tick
    eng.tick = lambda s, now: (ticks.append(now), orig(s, now))[1]
    (rs,) = _readings(core, "EB", PLAN_EB[:1])
    live.process("EB", rs, T0 + 100)
    live.tick("EB", T0 + 900)
    assert ticks == []
    live.tick("EB", T0 + 1100)
    assert ticks == [T0 + 1100]
    # silence past 3x the expected interval (600 s): offline alarms from the tick, as the pure core
    step = core.process("EB", None, None, rs, T0 + 100)
    later = T0 + 2_000_000
    alarms, _ = live.tick("EB", later)
    assert alarms and {a.kind for a in alarms} <= {Kind.OFFLINE, Kind.GATEWAY}
    assert alarms == core.tick("EB", step.engine, step.warnings, later).alarms


def test_a_fresh_state_starts_before_a_backlog_so_it_takes_the_fast_path(tmp_path, monkeypatch):
    """A worker lagging behind (or started after the bridge) evaluates readings older than
    now. A fresh state starts at the worker's start or the oldest record's bridge time, so
    those readings are in order for every point: no per-reading machine, same alarms."""
    import rules.reference

    core = _core(tmp_path)
    batches = _readings(core, "EB", [(0, {"AT-1": 0.1, "LT-1": 10}), (1, {"AT-1": 0.2})])
    calls = []
    orig = rules.reference.Machine.reading
    monkeypatch.setattr(
        rules.reference.Machine, "reading", lambda *a, **k: (calls.append(1), orig(*a, **k))[1]
    )
    lagging_now = T0 + 30_000  # processed 30 s after the bridge received them
    live = LiveStates(core, lambda key: (None, None, None), start_ms=T0 + 20_000)
    live.process("EB", batches[0], lagging_now, first_seen_ms=T0)
    live.process("EB", batches[1], lagging_now, first_seen_ms=T0 + 1000)
    assert calls == []
    ((_key, est, _wst, _rec),) = live.take_dirty()
    assert core.engine("EB").load_state(est).start_ms == T0
    # without a first-seen time, the worker's start bounds it
    live2 = LiveStates(core, lambda key: (None, None, None), start_ms=T0 - 5000)
    live2.tick("EB", lagging_now)
    ((_key, est, _wst, _rec),) = live2.take_dirty()
    assert core.engine("EB").load_state(est).start_ms == T0 - 5000


def test_a_record_consumed_again_after_a_crash_is_not_applied_twice(tmp_path):
    """The state is written with the newest record it includes; after a crash the records
    after the last committed offset are consumed again, and those the written state already
    includes are recognised, so the alarms after a restart equal an uninterrupted run."""
    core = _core(tmp_path)
    batches = _readings(core, "EB", PLAN_EB)
    now = lambda i: T0 + (i * 4 + 1) * 1000  # noqa: E731
    # uninterrupted
    ref = LiveStates(core, lambda key: (None, None, None), start_ms=T0)
    expected = [
        ref.process("EB", rs, now(i), record=(3, 10 + i))[0] for i, rs in enumerate(batches)
    ]
    # crashed after the state of records 10 and 11 was written, their offsets not committed
    table: dict[bytes, tuple] = {}
    first = LiveStates(core, lambda key: table.get(key, (None, None, None)), start_ms=T0)
    got = [
        first.process("EB", rs, now(i), record=(3, 10 + i))[0] for i, rs in enumerate(batches[:2])
    ]
    for key, est, wst, rec in first.take_dirty():
        table[key] = (est, wst, rec)
    assert table[b"EB"][2] == b"3:11"
    after = LiveStates(core, lambda key: table.get(key, (None, None, None)), start_ms=T0)
    for i, rs in enumerate(batches):  # the new owner consumes from the committed offset (10)
        if after.includes("EB", 3, 10 + i, now(i)):
            assert i < 2
            continue
        got.append(after.process("EB", rs, now(i), record=(3, 10 + i))[0])
    assert got == expected and any(expected)
    # the same offset of another partition (the partition count changed) is not taken as seen
    assert not after.includes("EB", 2, 5, now(9))
