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

import numpy as np

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
    """The rules engine for a registry with the default packs (plus `rules_dir`): the fast
    `rules.engine.Engine`, or the plain per-reading `rules.reference.ReferenceEngine`."""
    from rules.loader import load_ruleset

    ruleset = load_ruleset(rules_dir, registry)
    if reference:
        from rules.reference import ReferenceEngine

        return ReferenceEngine(ruleset, registry)
    from rules.engine import Engine

    return Engine(ruleset, registry)


def run_detection(
    sim: Simulation,
    end_ms: int,
    *,
    engine: Any = None,
    via_mqtt_payloads: bool = True,
    step_ms: int = 10_000,
    backfill_after_ms: int = 300_000,
    progress: Callable[[int, int], None] | None = None,
) -> DetectionRun:
    """Run `sim` until `end_ms` through ingest and the engine, and score the alarms.

    With `via_mqtt_payloads` every reading goes through the batch payloads and the ingest
    normaliser exactly as MQTT would deliver them (units, ISO times, back-fill flags); without
    it the columnar batches go to the engine directly (faster, same values; readings held
    longer than `backfill_after_ms` are flagged back-filled, as ingest's default does).
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
        # The columnar fast path: the same readings (registered units), straight into the
        # engine's vectorised entry point, one chunk of delivery at a time.
        to_engine = np.array([engine.point_index(p.key) for p in registry.points], np.int64)
        columns = hasattr(engine, "process_columns")
        points = registry.points
        for whole in sim.deliveries(end_ms):
            for b, now in slices_by_delivery(whole, sim.generated_until, step_ms):
                state, events = _feed(
                    engine, state, b, now, to_engine, points, columns, backfill_after_ms
                )
                alarms.extend(events)
                n_readings += len(b)
            if progress:
                progress(sim.generated_until - sim.start_ms, end_ms - sim.start_ms)
    state, events = engine.tick(state, end_ms)
    alarms.extend(events)
    point_days = len(registry) * (end_ms - sim.start_ms) / DAY_MS
    result = score(sim.incidents, alarms, point_days=point_days)
    return DetectionRun(alarms, result, n_readings, n_rejects, time.perf_counter() - t0, by_reason)


def _feed(engine, state, b, now, to_engine, points, columns: bool, backfill_after_ms: int):
    backfill = (b.deliver_ms - b.ts_ms) > backfill_after_ms
    if columns:
        return engine.process_columns(
            state,
            to_engine[b.point],
            b.ts_ms,
            b.value,
            b.quality,
            now,
            backfill=backfill if backfill.any() else None,
        )
    batch = [  # the reference engine takes Reading objects
        Reading(
            enterprise_code=points[p].enterprise_code,
            tag=points[p].tag,
            ts_ms=t,
            value=v,
            quality=q,
            unit=points[p].unit,
            received_ms=d,
            backfill=bf,
        )
        for t, p, v, q, d, bf in zip(
            b.ts_ms.tolist(),
            b.point.tolist(),
            b.value.tolist(),
            b.quality.tolist(),
            b.deliver_ms.tolist(),
            backfill.tolist(),
            strict=True,
        )
    ]
    return engine.process(state, batch, now)


def slices_by_delivery(batch: Any, until_ms: int, step_ms: int) -> Any:
    """Cut a delivered chunk into steps of `step_ms` by delivery time: (readings, now_ms).
    The engine is evaluated as a live runner would, every step, never with `now` far ahead
    of the readings (which would also push its quiet fast path to the per-reading machine)."""
    from hazardwatch.sim.simulation import _take

    if not len(batch):
        yield batch, until_ms
        return
    first = int(batch.deliver_ms[0])
    edges = [*range(first - first % step_ms + step_ms, until_ms, step_ms), until_ms]
    cuts = np.searchsorted(batch.deliver_ms, edges)
    lo = 0
    for edge, hi in zip(edges, cuts.tolist(), strict=True):
        if hi > lo:
            yield _take(batch, slice(lo, hi)), edge
        lo = hi
