"""Properties of the simulation that must hold for any seed, size, step and cut: the stream
carries exactly the columnar readings, however it is stepped or resumed, and every scheduled
incident lies inside its run on a subject of its own gateway."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hazardwatch.sim import ALL_KINDS, Simulation, generate_registry
from hazardwatch.sim.incidents import schedule_incidents

T0 = 1_795_910_400_000
MIN = 60_000
REGISTRIES = {n: generate_registry(n, 1) for n in (40, 130)}


def columnar(sim: Simulation, end_ms: int) -> list[tuple[int, int, float, int]]:
    out = []
    for b in sim.deliveries(end_ms):
        out += list(
            zip(
                b.ts_ms.tolist(),
                b.point.tolist(),
                b.value.tolist(),
                b.quality.tolist(),
                strict=True,
            )
        )
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.sampled_from([40, 130]),
    seed=st.integers(0, 10_000),
    step_ms=st.integers(200, 120_000),
    cut_ms=st.integers(1, 20 * MIN - 1),
)
def test_stepping_and_resuming_change_nothing(n, seed, step_ms, cut_ms) -> None:
    reg = REGISTRIES[n]
    end = T0 + 20 * MIN
    whole = columnar(Simulation(reg, seed=seed, start_ms=T0), end)
    resumed = Simulation(reg, seed=seed, start_ms=T0)
    parts = []
    for b in resumed.deliveries(T0 + cut_ms, final=False):
        parts += list(
            zip(
                b.ts_ms.tolist(),
                b.point.tolist(),
                b.value.tolist(),
                b.quality.tolist(),
                strict=True,
            )
        )
    parts += columnar(resumed, end)
    assert parts == whole
    stepped = Simulation(reg, seed=seed, start_ms=T0)
    steps = list(stepped.stream(end, step_ms=step_ms))
    assert sum(s.readings for s in steps) == len(whole)
    assert all(sum(s.counts) == s.readings and len(s.counts) == len(s.messages) for s in steps)
    nows = [s.now_ms for s in steps]
    # A fixed grid of steps from the start; the last one ends exactly at the end.
    assert nows[:-1] == [T0 + (k + 1) * step_ms for k in range(len(nows) - 1)]
    assert nows[-1] == end and end - nows[-2 if len(nows) > 1 else -1] <= step_ms


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), hours=st.integers(4, 30), repeats=st.integers(1, 2))
def test_scheduled_incidents_fit_their_run_and_never_share_a_gateway(seed, hours, repeats):
    reg = REGISTRIES[130]
    model = Simulation(reg, seed=seed, start_ms=T0).model
    end = T0 + hours * 60 * MIN
    kinds = ALL_KINDS if hours * repeats >= 8 else ALL_KINDS[:4]
    try:
        incs = schedule_incidents(model, T0, end, seed=seed, kinds=kinds, repeats=repeats)
    except ValueError as exc:  # the only acceptable refusal: not enough time or subjects
        assert "too short" in str(exc) or "no free subject" in str(exc)
        return
    assert len(incs) == len(kinds) * repeats
    for i in incs:
        assert T0 < i.start_ms < i.end_ms <= end
        assert i.expect and i.tags
    by_gw: dict[tuple[str, str], list] = {}
    for i in incs:
        by_gw.setdefault((i.enterprise_code, i.gateway), []).append((i.start_ms, i.end_ms))
    for spans in by_gw.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
