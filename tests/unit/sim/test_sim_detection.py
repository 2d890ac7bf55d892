"""Detection quality end to end, in process: a small city with one incident of every kind, its
payloads through the real ingest normaliser and the real rules engine with the default packs.
Every incident must be detected with every alarm it should cause, and normal-but-noisy data
must raise no alarm at all."""

from __future__ import annotations

import pytest

from hazardwatch.sim import ALL_KINDS, Simulation
from hazardwatch.sim.evaluate import build_engine, run_detection

T0 = 1_795_910_400_000
H = 3_600_000


@pytest.fixture(scope="module")
def runs():
    def make():
        return Simulation.demo(points=150, seed=21, start_ms=T0, duration_ms=int(4.5 * H))

    sim = make()
    via_mqtt = run_detection(sim, T0 + int(4.5 * H), engine=build_engine(sim.registry))
    sim2 = make()
    columnar = run_detection(
        sim2, T0 + int(4.5 * H), engine=build_engine(sim2.registry), via_mqtt_payloads=False
    )
    return via_mqtt, columnar


def test_every_incident_kind_is_detected_with_all_its_expected_alarms(runs) -> None:
    run, _ = runs
    assert run.rejects == 0, run.rejects_by_reason
    assert sorted(r.incident.kind for r in run.score.results) == sorted(ALL_KINDS)
    for r in run.score.results:
        assert r.detected, r.incident.description
        assert r.missing == (), (r.incident.kind, r.missing)
        assert 0 <= r.time_to_detect_s < (r.incident.end_ms - r.incident.start_ms) / 1000


def test_normal_but_noisy_data_raises_no_alarm(runs) -> None:
    run, _ = runs
    assert run.score.false_alarms == (), [
        (a.enterprise_code, a.tag, str(a.kind), a.level, a.value, a.rule)
        for a in run.score.false_alarms
    ]


def test_the_interlock_that_acts_raises_no_interlock_alarm(runs) -> None:
    run, _ = runs
    (acted,) = [r for r in run.score.results if r.incident.kind == "overfill"]
    inc = acted.incident
    assert not [
        a
        for a in run.alarms
        if a.kind == "interlock"
        and a.enterprise_code == inc.enterprise_code
        and inc.start_ms <= a.ts_ms <= inc.end_ms
    ]


def test_backfilled_excursion_alarm_is_marked_backfill(runs) -> None:
    run, _ = runs
    (bf,) = [r for r in run.score.results if r.incident.kind == "backfill"]
    assert bf.detected_by is not None and bf.detected_by.backfill


def test_mqtt_path_and_columnar_path_give_the_same_alarms(runs) -> None:
    via_mqtt, columnar = runs

    def key(run):
        return sorted(
            (a.ts_ms, a.enterprise_code, a.tag, str(a.kind), a.level, str(a.state))
            for a in run.alarms
        )

    assert via_mqtt.readings == columnar.readings
    assert key(via_mqtt) == key(columnar)
