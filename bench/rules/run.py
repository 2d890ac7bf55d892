"""Rules-engine benchmark: replay throughput on 10,000 points, against the per-reading
ReferenceEngine in the same run (identical output checked), and bytes of state per point.

    .venv/bin/python bench/rules/run.py [--points 10000] [--readings 1000000] [--ref 200000]

Targets (DESIGN.md): >= 1,000,000 readings/s per core, >= 20x the reference, < 256 bytes of
state per point. Single process, single thread (numpy here is not multi-threaded)."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ingest.model import Industry, Point, Reading, Registry
from rules.engine import Engine
from rules.loader import load_ruleset
from rules.reference import ReferenceEngine

T0 = 1_764_403_200_000
INTERVAL_S = 10.0
# Per 20-point gateway: 3 CH4 heads in one zone (2oo3), NH3, O2, a tank (level + inlet
# valve), pressure, temperature, ... the mix of a hazchem site.
LAYOUT = [
    ("AT-CH4-{z}1", "gas.CH4", "%LEL", 0, 100, {}, 0.0, 1.0),
    ("AT-CH4-{z}2", "gas.CH4", "%LEL", 0, 100, {}, 0.0, 1.0),
    ("AT-CH4-{z}3", "gas.CH4", "%LEL", 0, 100, {}, 0.0, 1.0),
    ("AT-NH3-{z}", "gas.NH3", "ppm", 0, 100, {}, 2.0, 1.0),
    ("AT-H2S-{z}", "gas.H2S", "mg/m3", 0, 50, {}, 0.5, 0.3),
    ("AT-O2-{z}", "gas.O2", "%vol", 0, 30, {}, 20.9, 0.1),
    ("LT-{z}", "level", "m", 0, 10, {"ll": 0.5, "l": 1.0, "h": 8.0, "hh": 9.0}, 5.0, 0.02),
    ("XV-{z}", "valve", "", None, None, {}, 0.0, 0.0),
    ("PT-{z}1", "pressure", "MPa", 0, 2.5, {"h": 1.6, "hh": 2.0}, 1.0, 0.01),
    ("PT-{z}2", "pressure", "MPa", 0, 2.5, {"h": 1.6, "hh": 2.0}, 1.0, 0.01),
    ("TT-{z}1", "temperature", "°C", -20, 200, {"h": 80.0, "hh": 95.0}, 40.0, 0.2),
    ("TT-{z}2", "temperature", "°C", -20, 200, {"h": 80.0, "hh": 95.0}, 40.0, 0.2),
    ("FT-{z}1", "flow", "m3/h", 0, 500, {"l": 20.0, "h": 450.0}, 200.0, 2.0),
    ("FT-{z}2", "flow", "m3/h", 0, 500, {"l": 20.0, "h": 450.0}, 200.0, 2.0),
    ("AT-CO-{z}", "gas.CO", "ppm", 0, 200, {}, 1.0, 0.5),
    ("AT-Cl2-{z}", "gas.Cl2", "ppm", 0, 10, {}, 0.0, 0.02),
    ("AT-HCl-{z}", "gas.HCl", "ppm", 0, 50, {}, 0.2, 0.1),
    ("AT-C3H8-{z}", "gas.C3H8", "%LEL", 0, 100, {}, 0.0, 1.0),
    ("AT-H2-{z}", "gas.H2", "%LEL", 0, 100, {}, 0.0, 1.0),
    ("AT-SO2-{z}", "gas.SO2", "ppm", 0, 20, {}, 0.1, 0.05),
]


def build_registry(n_points: int) -> tuple[Registry, np.ndarray, np.ndarray]:
    pts, base, noise = [], [], []
    per_gw = len(LAYOUT)
    for g in range(n_points // per_gw):
        ent = f"E{g // 10:03d}"
        z = f"{g % 10:02d}{g // 10:03d}"
        for tag, param, unit, lo, hi, lim, b, nz in LAYOUT:
            pts.append(
                Point(
                    ent,
                    ent,
                    Industry.HAZCHEM,
                    "qj",
                    f"H{g // 10:03d}",
                    2,
                    f"Z{z}",
                    f"GW{z}",
                    tag.format(z=z),
                    param,
                    unit,
                    lo,
                    hi,
                    expected_interval_s=INTERVAL_S,
                    **lim,
                )
            )
            base.append(b)
            noise.append(nz)
    return Registry(pts, version="bench"), np.array(base), np.array(noise)


def build_readings(n_points: int, n_readings: int, base, noise, seed: int = 7):
    """Every point once per interval, values around normal with noise, and a few rare
    excursions (a gas puff, a tank overfill) so alarms do happen."""
    rng = np.random.default_rng(seed)
    rounds = n_readings // n_points
    idx = np.tile(np.arange(n_points), rounds)
    # each point reports at its own phase of the interval, with a little jitter
    phase = rng.integers(0, int(INTERVAL_S * 1000) - 200, size=n_points)
    ts = (
        T0
        + 1000
        + np.repeat(np.arange(rounds), n_points) * int(INTERVAL_S * 1000)
        + phase[idx]
        + rng.integers(0, 200, size=len(idx))
    )
    val = np.round(base[idx] + rng.normal(0, 1, size=len(idx)) * noise[idx], 3)
    val = np.maximum(val, 0.0)
    spikes = rng.random(len(idx)) < 2e-4
    val[spikes] = val[spikes] + rng.uniform(20, 70, size=int(spikes.sum()))
    q = np.where(rng.random(len(idx)) < 2e-5, 2, 0)
    order = np.argsort(ts, kind="stable")
    return idx[order], ts[order], val[order], q[order]


def replay_columns(engine, idx, ts, val, q, batch):
    state = engine.initial_state(T0)
    events = []
    for s in range(0, len(idx), batch):
        e = slice(s, s + batch)
        state, ev = engine.process_columns(state, idx[e], ts[e], val[e], q[e], int(ts[e][-1]))
        events += ev
    return state, events


def replay_reference(ref, readings, batch):
    state = ref.initial_state(T0)
    events = []
    for s in range(0, len(readings), batch):
        b = readings[s : s + batch]
        state, ev = ref.process(state, b, b[-1].ts_ms)
        events += ev
    return state, events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--readings", type=int, default=1_000_000)
    ap.add_argument("--ref", type=int, default=200_000, help="readings for the comparison")
    ap.add_argument("--batch", type=int, default=200_000)
    args = ap.parse_args()

    reg, base, noise = build_registry(args.points)
    rs = load_ruleset(None, reg)
    engine, ref = Engine(rs, reg), ReferenceEngine(rs, reg)
    idx, ts, val, q = build_readings(len(reg), args.readings, base, noise)
    print(
        f"points {len(reg)}, readings {len(idx):,}, batch {args.batch:,}, "
        f"cpu {os.cpu_count()} (one used)"
    )

    # identical output on the comparison slice
    n = min(args.ref, len(idx))
    keys = [p.key for p in reg]
    readings = [
        Reading(*keys[i].split("/", 1), int(t), float(v), int(qq))
        for i, t, v, qq in zip(idx[:n], ts[:n], val[:n], q[:n], strict=True)
    ]
    t = time.perf_counter()
    ref_state, ref_events = replay_reference(ref, readings, args.batch)
    ref_s = time.perf_counter() - t
    t = time.perf_counter()
    eng_state, eng_events = replay_columns(engine, idx[:n], ts[:n], val[:n], q[:n], args.batch)
    eng_small_s = time.perf_counter() - t
    same = eng_events == ref_events and eng_state == ref_state
    print(
        f"comparison on {n:,} readings: reference {n / ref_s:,.0f} readings/s, engine "
        f"{n / eng_small_s:,.0f} readings/s, {len(ref_events)} alarm events, identical "
        f"output: {same}"
    )

    # throughput on the whole replay (best of 3)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        state, events = replay_columns(engine, idx, ts, val, q, args.batch)
        best = min(best, time.perf_counter() - t)
    rate = len(idx) / best
    ref_rate = n / ref_s
    blob = state.to_bytes()
    print(
        f"engine replay: {len(idx):,} readings in {best:.3f} s = {rate:,.0f} readings/s "
        f"per core; {len(events)} alarm events"
    )
    print(f"ratio engine / reference: {rate / ref_rate:.1f}x (target >= 20x)")
    print(
        f"state: {len(blob) / len(reg):.1f} bytes/point serialised (to_bytes), "
        f"{state.nbytes() / len(reg):.1f} bytes/point in memory (numpy records); "
        f"target < 256"
    )
    ok = same and rate >= 1_000_000 and rate / ref_rate >= 20 and len(blob) / len(reg) < 256
    print("targets met" if ok else "TARGETS NOT MET")


if __name__ == "__main__":
    main()
