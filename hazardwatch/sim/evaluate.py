"""Detection run: feed a simulation through the real path — batch payloads decoded and
normalised by `ingest`, evaluated by a `rules` engine in delivery order with event time — and
score the alarms against the injected incidents. Used by the detection benchmark, the tests
and `hazardwatch simulate --score`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hazardwatch.sim.scoring import DAY_MS, Score, score
from hazardwatch.sim.simulation import Simulation
from ingest.model import Reading
from rules.model import AlarmEvent


@dataclass(slots=True)
class DetectionRun:
    alarms: list[AlarmEvent]
    score: Score
    readings: int
    rejects: int
    seconds: float  # wall time of the whole run
    rejects_by_reason: dict[str, int] = field(default_factory=dict)


def build_engine(registry: Any, rules_dir: Path | None = None, *, reference: bool = False) -> Any:
    """The rules engine for a registry with the default packs (plus `rules_dir`). The fast
    `rules.engine.Engine` unless `reference` (or it is not available yet)."""
    from rules.loader import load_ruleset

    ruleset = load_ruleset(rules_dir, registry)
    if not reference:
        try:
            from rules.engine import Engine
        except ImportError:
            reference = True
        else:
            return Engine(ruleset, registry)
    from rules.reference import ReferenceEngine

    return ReferenceEngine(ruleset, registry)


def run_detection(
    sim: Simulation,
    end_ms: int,
    *,
    engine: Any = None,
    via_mqtt_payloads: bool = True,
    step_ms: int = 10_000,
    progress: Callable[[int, int], None] | None = None,
) -> DetectionRun:
    """Run `sim` until `end_ms` through ingest and the engine, and score the alarms.

    With `via_mqtt_payloads` every reading goes through the batch payloads and the ingest
    normaliser exactly as MQTT would deliver them (units, ISO times, back-fill flags); without
    it the columnar batches go to the engine directly (faster, same values).
    """
    from ingest.normalize import Normalizer

    t0 = time.perf_counter()
    registry = sim.registry
    engine = engine or build_engine(registry)
    state = engine.initial_state(sim.start_ms)
    alarms: list[AlarmEvent] = []
    n_readings = 0
    n_rejects = 0
    by_reason: dict[str, int] = {}
    if via_mqtt_payloads:
        norm = Normalizer(registry)
        for step in sim.stream(end_ms, step_ms=step_ms):
            batch: list[Reading] = []
            for topic, payload in step.messages:
                res = norm.normalize(topic, payload, step.now_ms)
                batch.extend(res.readings)
                for dl in res.rejects:
                    by_reason[str(dl.reason)] = by_reason.get(str(dl.reason), 0) + 1
                n_rejects += len(res.rejects)
            state, events = engine.process(state, batch, step.now_ms)
            alarms.extend(events)
            n_readings += len(batch)
            if progress:
                progress(step.now_ms - sim.start_ms, end_ms - sim.start_ms)
    else:
        points = registry.points
        for b in sim.deliveries(end_ms):
            batch = [
                Reading(
                    enterprise_code=points[p].enterprise_code,
                    tag=points[p].tag,
                    ts_ms=t,
                    value=v,
                    quality=q,
                    unit=points[p].unit,
                    received_ms=d,
                    backfill=d - t > 300_000,
                )
                for t, p, v, q, d in zip(
                    b.ts_ms.tolist(),
                    b.point.tolist(),
                    b.value.tolist(),
                    b.quality.tolist(),
                    b.deliver_ms.tolist(),
                    strict=True,
                )
            ]
            now = int(b.deliver_ms[-1]) if len(b) else sim._generated_until
            state, events = engine.process(state, batch, max(now, sim._generated_until - 1))
            alarms.extend(events)
            n_readings += len(batch)
            if progress:
                progress(sim._generated_until - sim.start_ms, end_ms - sim.start_ms)
    state, events = engine.tick(state, end_ms)
    alarms.extend(events)
    point_days = len(registry) * (end_ms - sim.start_ms) / DAY_MS
    result = score(sim.incidents, alarms, point_days=point_days)
    return DetectionRun(alarms, result, n_readings, n_rejects, time.perf_counter() - t0, by_reason)
