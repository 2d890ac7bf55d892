"""Normal-but-noisy signals: inside the limits with margin (so a correct engine raises no
alarm on them), noisy enough that nothing looks frozen, on time, and deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from hazardwatch.sim import Simulation, generate_registry
from hazardwatch.sim.signals import DAY_MS, SignalModel

T0 = 1_795_910_400_000  # 2026-11-29T00:00:00Z


@pytest.fixture(scope="module")
def day():
    """One simulated day of 150 points (every kind of installation), columnar, with each
    point's readings in time order under `by_point[i]`."""
    reg = generate_registry(150, 5)
    sim = Simulation(reg, seed=5, start_ms=T0)
    batches = list(sim.deliveries(T0 + DAY_MS))
    cat = {
        f: np.concatenate([getattr(b, f) for b in batches])
        for f in ("ts_ms", "point", "value", "quality", "deliver_ms")
    }
    order = np.lexsort((cat["ts_ms"], cat["point"]))
    bounds = np.searchsorted(cat["point"][order], np.arange(len(reg) + 1))
    cat["by_point"] = [order[bounds[i] : bounds[i + 1]] for i in range(len(reg))]
    return reg, sim, cat


def test_gas_baselines_stay_far_below_the_first_level(day) -> None:
    from rules.loader import load_ruleset

    reg, _sim, d = day
    ruleset = load_ruleset(None, reg)
    for i, p in enumerate(reg.points):
        if not p.is_gas:
            continue
        al = min(t.value for t in ruleset.thresholds_for(p.key))
        v = d["value"][d["by_point"][i]]
        assert v.max() < 0.25 * al, (p.key, v.max(), al)
        assert v.min() >= 0


def test_process_values_stay_inside_their_limits_with_margin(day) -> None:
    from rules.loader import load_ruleset

    reg, _sim, d = day
    ruleset = load_ruleset(None, reg)
    for i, p in enumerate(reg.points):
        v = d["value"][d["by_point"][i]]
        for t in ruleset.thresholds_for(p.key):
            if p.is_gas:
                continue
            if p.parameter == "occupancy":
                assert v.max() <= t.value  # at the quota is allowed, over it is the alarm
            elif str(t.level) in ("H", "HH"):
                assert v.max() < t.value - 0.05 * (p.range_high - p.range_low), (p.key, t)
            else:
                assert v.min() > t.value, (p.key, t)
        assert p.range_low <= v.min() and v.max() <= p.range_high


def test_every_point_reports_at_its_expected_interval_with_jitter(day) -> None:
    reg, _sim, d = day
    for i, p in enumerate(reg.points):
        ts = d["ts_ms"][d["by_point"][i]]
        gaps = np.diff(ts) / 1000.0
        assert abs(np.median(gaps) - p.expected_interval_s) < 0.05 * p.expected_interval_s
        assert gaps.std() > 0  # timing jitter
        # Well inside the offline rule's multiple of 3 intervals.
        assert gaps.max() < 1.5 * p.expected_interval_s, p.key
        assert ts[0] - T0 < 2 * p.expected_interval_s * 1000


def test_analog_values_never_repeat_for_long(day) -> None:
    """A transmitter that repeats one value is what the frozen-value rule looks for."""
    reg, _sim, d = day
    for i, p in enumerate(reg.points):
        if p.parameter not in ("level", "temperature", "pressure", "humidity") and not p.is_gas:
            continue
        v = d["value"][d["by_point"][i]]
        run = longest_run(v)
        assert run * p.expected_interval_s < 30 * 60, (p.key, run)


def longest_run(v: np.ndarray) -> int:
    """Length of the longest run of identical consecutive values."""
    change = np.flatnonzero(np.diff(v) != 0)
    edges = np.concatenate([[-1], change, [len(v) - 1]])
    return int(np.diff(edges).max())


def test_values_are_quantised_to_the_point_resolution(day) -> None:
    _reg, sim, d = day
    step = sim.model.step[d["point"]]
    assert np.allclose(np.round(d["value"] / step) * step, d["value"])


def test_temperature_follows_the_day_and_workshops_empty_at_night(day) -> None:
    reg, _sim, d = day
    local_h = ((d["ts_ms"] + 8 * 3_600_000) % DAY_MS) / 3_600_000
    temp = np.array([p.parameter == "temperature" for p in reg.points])[d["point"]]
    afternoon = d["value"][temp & (local_h > 14) & (local_h < 16)].mean()
    night = d["value"][temp & (local_h > 3) & (local_h < 5)].mean()
    assert afternoon - night > 5
    occ = np.array([p.parameter == "occupancy" for p in reg.points])[d["point"]]
    assert d["value"][occ & (local_h > 20)].max() == 0
    assert d["value"][occ & (local_h > 9) & (local_h < 11)].max() >= 1


def test_chunks_are_deterministic_and_independent_of_how_they_are_read() -> None:
    reg = generate_registry(200, 9)
    a = SignalModel(reg, seed=9, start_ms=T0)
    b = SignalModel(reg, seed=9, start_ms=T0)
    c3a, c3b = a.chunk(3), b.chunk(3)
    a.chunk(0)  # reading other chunks first changes nothing
    assert np.array_equal(c3a.value, c3b.value) and np.array_equal(c3a.ts_ms, a.chunk(3).ts_ms)
    s1 = Simulation(reg, seed=9, start_ms=T0)
    s2 = Simulation(reg, seed=9, start_ms=T0)
    whole = np.concatenate([x.value for x in s1.deliveries(T0 + 3_600_000)])
    parts = [x.value for x in s2.deliveries(T0 + 1_234_567, final=False)]
    parts += [x.value for x in s2.deliveries(T0 + 3_600_000)]
    assert np.array_equal(whole, np.concatenate(parts))


def test_other_seed_other_noise() -> None:
    reg = generate_registry(100, 1)
    a = SignalModel(reg, seed=1, start_ms=T0).chunk(0)
    b = SignalModel(reg, seed=2, start_ms=T0).chunk(0)
    assert not np.array_equal(a.value, b.value)
