"""The city simulator: a generated Qianjiang-like registry, realistic normal signals, injected
incidents with their ground truth, MQTT-shaped payloads in accelerated time or replay files,
and the scoring that matches alarms to injected incidents.

Part of the composition root (it may import `ingest` and `rules`; domain packages never import
it). Public surface::

    generate_registry(points, seed) -> Registry          # city.py
    Simulation(registry, seed=, start_ms=, incidents=)    # simulation.py
    Simulation.demo(points=, seed=, start_ms=, duration_ms=)
        .stream(end_ms, step_ms=, speed=) -> Iterator[SimStep(now_ms, messages, readings)]
        .deliveries(end_ms) -> Iterator[Batch]            # columnar, for replay/benchmarks
        .write_readings_csv(path, end_ms), .inject(kind, at_ms), .incidents (ground truth)
    stream(registry, seed, start_ms, speed, incidents) -> Iterator[SimStep]
    write_truth(path, incidents), read_truth(path)        # truth.py
    score(truth, alarms, point_days=) -> Score            # scoring.py (read_alarms for files)
    score_table(score) -> rich renderable                 # report.py (the demo's report)
    run_detection(sim, end_ms) -> DetectionRun            # evaluate.py: ingest + engine + score
    MqttSink(...), publish_simulation(sim, end_ms, sink, rate=|speed=)   # publish.py (I/O)

Pure (no clock, no I/O): city, signals, incidents, scoring, report. simulation.py writes replay
files and paces in wall time only when asked (`speed`); publish.py is the MQTT adapter.
"""

from hazardwatch.sim.city import generate_registry, write_registry_csv
from hazardwatch.sim.incidents import (
    ALL_KINDS,
    Expect,
    Incident,
    IncidentKind,
    make_incident,
    schedule_incidents,
)
from hazardwatch.sim.simulation import Batch, SimStep, Simulation, stream

__all__ = [
    "ALL_KINDS",
    "Batch",
    "Expect",
    "Incident",
    "IncidentKind",
    "SimStep",
    "Simulation",
    "generate_registry",
    "make_incident",
    "schedule_incidents",
    "stream",
    "write_registry_csv",
]
