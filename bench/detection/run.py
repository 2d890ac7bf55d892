"""Detection quality on a simulated week: 1,000 points of the Qianjiang-like city, the default
rule packs, every incident kind injected several times. Prints, per incident, whether it was
detected, by which alarm and after how long; false alarms on normal-but-noisy data per 1,000
point-days; generation and evaluation throughput; and, as the reference measured in the same
run, the plain per-reading engine (rules.reference) on a small city of the same generator with
incidents: its throughput, the ratio, and whether both engines raised identical alarms.

    .venv/bin/python bench/detection/run.py            # the week (a few minutes on 2 cores)
    .venv/bin/python bench/detection/run.py --days 1   # quicker
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console

from hazardwatch.sim import ALL_KINDS, Simulation
from hazardwatch.sim.evaluate import build_engine, slices_by_delivery
from hazardwatch.sim.report import score_table
from hazardwatch.sim.scoring import DAY_MS, score
from ingest.model import Reading

HOUR_MS = 3_600_000


def evaluate(sim: Simulation, end_ms: int, engine, step_ms: int, fast: bool, say=None):
    """Feed `sim` to `engine` in `step_ms` steps; returns (alarms, readings, gen_s, eval_s).
    `say` (if given) is called with a progress line after each simulated day."""
    pts = sim.registry.points
    to_engine = np.array([engine.point_index(p.key) for p in pts], np.int64) if fast else None
    state = engine.initial_state(sim.start_ms)
    alarms, n = [], 0
    gen_s = eval_s = 0.0
    it = sim.deliveries(end_ms)
    next_day = sim.start_ms + DAY_MS
    while True:
        if say is not None and sim.generated_until >= next_day:
            say(
                f"  day {(next_day - sim.start_ms) // DAY_MS}: {n:,} readings, {len(alarms)} "
                f"alarm events; generation {gen_s:.0f} s, engine {eval_s:.0f} s"
            )
            next_day += DAY_MS
        t = time.perf_counter()
        whole = next(it, None)
        gen_s += time.perf_counter() - t
        if whole is None:
            break
        t = time.perf_counter()
        for b, now in slices_by_delivery(whole, sim.generated_until, step_ms):
            bf = (b.deliver_ms - b.ts_ms) > 300_000
            if fast:
                state, ev = engine.process_columns(
                    state,
                    to_engine[b.point],
                    b.ts_ms,
                    b.value,
                    b.quality,
                    now,
                    backfill=bf if bf.any() else None,
                )
            else:
                batch = [
                    Reading(
                        enterprise_code=pts[p].enterprise_code,
                        tag=pts[p].tag,
                        ts_ms=ts,
                        value=v,
                        quality=q,
                        unit=pts[p].unit,
                        backfill=f,
                    )
                    for ts, p, v, q, f in zip(
                        b.ts_ms.tolist(),
                        b.point.tolist(),
                        b.value.tolist(),
                        b.quality.tolist(),
                        bf.tolist(),
                        strict=True,
                    )
                ]
                state, ev = engine.process(state, batch, now)
            alarms.extend(ev)
            n += len(b)
        eval_s += time.perf_counter() - t
    state, ev = engine.tick(state, end_ms)
    alarms.extend(ev)
    return alarms, n, gen_s, eval_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=3, help="incidents of each kind")
    ap.add_argument("--step-s", type=float, default=10.0, help="engine evaluation step")
    ap.add_argument(
        "--reference-minutes",
        type=float,
        default=60.0,
        help="simulated minutes the reference engine runs on (0 = skip)",
    )
    ap.add_argument("--start", default="2026-11-30T00:00:00+08:00")
    ap.add_argument(
        "--json-out", type=Path, default=None, help="also write the figures as JSON here"
    )
    args = ap.parse_args(argv)
    console = Console(width=160)
    start_ms = int(datetime.fromisoformat(args.start).timestamp() * 1000)
    end_ms = start_ms + int(args.days * DAY_MS)
    step_ms = int(args.step_s * 1000)

    t = time.perf_counter()
    sim = Simulation.demo(
        points=args.points,
        seed=args.seed,
        start_ms=start_ms,
        duration_ms=end_ms - start_ms,
        kinds=ALL_KINDS,
        repeats=args.repeats,
        shuffle=True,
    )
    setup_s = time.perf_counter() - t
    incidents = list(sim.incidents)
    console.print(
        f"city: {len(sim.registry):,} points, {len(sim.registry.enterprises())} enterprises, "
        f"{len(sim.registry.gateways())} gateways, {sim.model.readings_per_second:.1f} "
        f"readings/s simulated; {len(incidents)} incidents over {args.days:g} days "
        f"(seed {args.seed}); setup {setup_s:.1f} s"
    )

    engine = build_engine(sim.registry)
    fast = hasattr(engine, "process_columns")
    t = time.perf_counter()
    alarms, n, gen_s, eval_s = evaluate(sim, end_ms, engine, step_ms, fast, say=console.print)
    total_s = time.perf_counter() - t
    point_days = len(sim.registry) * (end_ms - start_ms) / DAY_MS
    result = score(incidents, alarms, point_days=point_days)
    console.print(score_table(result, max_false=50))

    by_kind: dict[str, list[float]] = {}
    for r in result.results:
        if r.time_to_detect_s is not None:
            by_kind.setdefault(str(r.incident.kind), []).append(r.time_to_detect_s)
    console.print(
        "\ntime to detect by kind (s): "
        + "; ".join(
            f"{k} median {np.median(v):.0f} max {max(v):.0f}" for k, v in sorted(by_kind.items())
        )
    )
    console.print(
        f"\nreadings: {n:,} in {total_s:.1f} s ({n / total_s:,.0f}/s end to end); "
        f"generation {gen_s:.1f} s ({n / gen_s:,.0f} readings/s), engine "
        f"({type(engine).__name__}) {eval_s:.1f} s ({n / eval_s:,.0f} readings/s)"
    )

    ref: dict = {}
    if args.reference_minutes > 0:
        # The reference: the plain per-reading engine (rules.reference) is ~100x slower, so
        # it runs on a small city of the same generator with incidents early on (a leak with
        # its votes, an overfill), and must raise exactly the alarms the fast engine raises.
        ref_end = start_ms + int(args.reference_minutes * 60_000)

        def small() -> Simulation:
            return Simulation.demo(
                points=150, seed=args.seed, start_ms=start_ms, duration_ms=int(4.5 * HOUR_MS)
            )

        s_fast, s_ref = small(), small()
        a_fast, n_fast, _, e_fast = evaluate(
            s_fast, ref_end, build_engine(s_fast.registry), step_ms, fast
        )
        a_ref, n_ref, _, e_ref = evaluate(
            s_ref, ref_end, build_engine(s_ref.registry, reference=True), step_ms, False
        )
        same = [a.to_record() for a in a_fast] == [a.to_record() for a in a_ref]
        ref = {
            "simulated_minutes": args.reference_minutes,
            "readings": n_ref,
            "engine_readings_per_s": n_fast / e_fast,
            "reference_readings_per_s": n_ref / e_ref,
            "ratio": (n_fast / e_fast) / (n_ref / e_ref),
            "identical_alarms": same,
            "alarms": len(a_ref),
        }
        console.print(
            f"reference (rules.reference on 150 points x {args.reference_minutes:g} simulated "
            f"min with a leak and an overfill, {n_ref:,} readings): {n_ref / e_ref:,.0f} "
            f"readings/s vs engine "
            f"{n_fast / e_fast:,.0f} readings/s = {ref['ratio']:.1f}x; identical alarms: "
            f"{'yes' if same else 'NO'} ({len(a_ref)} events)"
        )

    figures = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.python_version()}",
        "command": "bench/detection/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "points": len(sim.registry),
        "days": args.days,
        "seed": args.seed,
        "readings": n,
        "seconds": total_s,
        "generation_readings_per_s": n / gen_s,
        "engine_readings_per_s": n / eval_s,
        **{k: v for k, v in result.to_dict().items() if k not in ("results", "false")},
        "time_to_detect_s_by_kind": {
            k: {"median": float(np.median(v)), "max": max(v)} for k, v in by_kind.items()
        },
        "reference": ref,
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    ok = result.all_detected and (not ref or ref["identical_alarms"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
