"""The MQTT-shaped stream: batch payloads per gateway upload that the real ingest normaliser
accepts without a single dead letter, carrying exactly the simulated readings."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hazardwatch.sim import Simulation, generate_registry, stream
from ingest.normalize import Normalizer

T0 = 1_795_910_400_000
MIN = 60_000


@pytest.fixture(scope="module")
def registry():
    return generate_registry(150, 4)


def test_payloads_follow_the_contract_and_normalise_without_rejects(registry) -> None:
    sim = Simulation(registry, seed=4, start_ms=T0)
    norm = Normalizer(registry)
    got = []
    topics = set()
    for step in sim.stream(T0 + 10 * MIN, step_ms=1000):
        for topic, payload in step.messages:
            topics.add(topic)
            doc = json.loads(payload)
            assert set(doc) == {"ts", "data"} and doc["data"]
            assert all(
                {"tag", "v", "q"} <= set(item) <= {"tag", "v", "q", "u"} for item in doc["data"]
            )
            res = norm.normalize(topic, payload, step.now_ms)
            assert res.rejects == [], res.rejects[:1]
            got.extend(res.readings)
    assert all(t.startswith("hw/") and t.endswith("/data") and t.count("/") == 3 for t in topics)
    expected = Simulation(registry, seed=4, start_ms=T0)
    cols = list(expected.deliveries(T0 + 10 * MIN))
    ts = np.concatenate([b.ts_ms for b in cols])
    val = np.concatenate([b.value for b in cols])
    pts = np.concatenate([b.point for b in cols])
    assert len(got) == len(ts)
    keys = [registry.points[p].key for p in pts.tolist()]
    want = sorted(zip(keys, ts.tolist(), val.tolist(), strict=True))
    have = sorted((r.key, r.ts_ms, r.value) for r in got)
    for (k1, t1, v1), (k2, t2, v2) in zip(want, have, strict=True):
        assert (k1, t1) == (k2, t2)
        # ppm heads round-trip through the unit conversion at their published resolution.
        assert v2 == pytest.approx(v1, abs=0.1), k1


def test_ppm_heads_say_so_and_iso_gateways_send_offsets(registry) -> None:
    sim = Simulation(registry, seed=4, start_ms=T0)
    units, ts_kinds = set(), set()
    for step in sim.stream(T0 + 2 * MIN):
        for _topic, payload in step.messages:
            doc = json.loads(payload)
            ts_kinds.add(type(doc["ts"]).__name__)
            if isinstance(doc["ts"], str):
                assert doc["ts"].endswith("+08:00")
            units |= {item["u"] for item in doc["data"] if "u" in item}
    assert units == {"ppm"}
    assert ts_kinds == {"int", "str"}


def test_steps_cover_time_evenly_even_when_nothing_is_delivered(registry) -> None:
    sim = Simulation(registry, seed=4, start_ms=T0)
    sim.inject("gateway_outage", T0)
    nows = [s.now_ms for s in sim.stream(T0 + 3 * MIN, step_ms=500)]
    assert nows == list(range(T0 + 500, T0 + 3 * MIN + 1, 500))


def test_one_payload_per_gateway_upload(registry) -> None:
    sim = Simulation(registry, seed=4, start_ms=T0)
    seen = set()
    for step in sim.stream(T0 + 5 * MIN, step_ms=2000):
        for topic, payload in step.messages:
            key = (topic, json.loads(payload)["ts"])
            assert key not in seen
            seen.add(key)


def test_speed_paces_the_stream_in_wall_clock_time(registry) -> None:
    t = time.monotonic()
    steps = list(stream(registry, 4, T0, 20.0, [], end_ms=T0 + 10_000, step_ms=1000))
    assert len(steps) == 10
    assert time.monotonic() - t >= 0.45  # 10 simulated seconds at 20x


def test_same_seed_same_payloads(registry) -> None:
    a = [s.messages for s in Simulation(registry, seed=4, start_ms=T0).stream(T0 + MIN)]
    b = [s.messages for s in Simulation(registry, seed=4, start_ms=T0).stream(T0 + MIN)]
    assert a == b


def test_backfilled_readings_are_flagged_by_ingest(registry) -> None:
    sim = Simulation(registry, seed=4, start_ms=T0)
    inc = sim.inject("backfill", T0 + MIN)
    norm = Normalizer(registry)
    late = []
    for step in sim.stream(inc.end_ms + MIN, step_ms=1000):
        for topic, payload in step.messages:
            late += [r for r in norm.normalize(topic, payload, step.now_ms).readings if r.backfill]
    assert late and {r.enterprise_code for r in late} == {inc.enterprise_code}
    assert max(r.ts_ms for r in late) < inc.end_ms
