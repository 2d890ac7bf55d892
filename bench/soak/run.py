"""Soak: ten times city load through the embedded runner for a long time, watching memory and
lag. A city is ~5,000 points at 1-60 s (500-1,000 readings/s); the default here is 7,500
readings/s from a generated registry of as many points as that takes at the simulator's own
mix of intervals, fed in real time (incidents included, so alarms, warnings and notifications
flow) into `hazardwatch.wiring.build_embedded` -- the same threads, SQLite state and outbox as
`hazardwatch run`, time series to line-protocol files.

Every 10 s it samples RSS (/proc/self/status), receive-to-evaluated lag, throughput, queue and
outbox depth; at the end it prints memory at start and end, the RSS slope, the maximum lag, and
each figure of the last minute as a ratio against the first minute (the reference).

    .venv/bin/python bench/soak/run.py                 # 30 minutes
    .venv/bin/python bench/soak/run.py --minutes 3 [--rate 7500] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from alerts.model import Notification, Verdict
from hazardwatch.runner import RawMessage, wall_ms
from hazardwatch.settings import load_settings
from hazardwatch.sim.city import generate_registry
from hazardwatch.sim.incidents import ALL_KINDS, DEFAULT_DURATION_MS, IncidentKind, NoSubject
from hazardwatch.sim.simulation import Simulation
from hazardwatch.wiring import build_embedded

CITY_POINTS = 5000
CITY_RATE = 750.0  # readings/s of a city: ~5,000 points at 1-60 s make 500-1,000 (DOMAIN.md)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class CountingChannel:
    """Accepts every notification and keeps only counts (a recording list would itself grow
    for the whole soak); keys are kept to count duplicates, one per notification sent."""

    rate_limit = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.delivered = 0
        self.keys: set[str] = set()
        self.duplicates = 0
        self._lock = threading.Lock()

    def send(self, n: Notification) -> Verdict:
        with self._lock:
            self.delivered += 1
            key = n.id  # the idempotency key
            if key in self.keys:
                self.duplicates += 1
            self.keys.add(key)
        return Verdict.delivered()


class SimSource:
    """The simulator as a runner source, paced in real time (1 simulated s per wall s).
    `behind_ms` is how late the feeder is against the wall clock: it grows when the runner's
    bounded queue pushes back."""

    def __init__(self) -> None:
        self.sim: Simulation | None = None  # set once the setup is done (it takes a while)
        self.end_ms = 0
        self.behind_ms = 0
        self.max_behind_ms = 0
        self.late_ms = 0  # how late the feed started against its simulated start
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, deliver) -> None:
        assert self.sim is not None, "SimSource.sim must be set before the runner starts"

        def run() -> None:
            try:
                for step in self.sim.stream(self.end_ms, step_ms=1000, speed=1.0):
                    if self._stop.is_set():
                        return
                    now = wall_ms()
                    for topic, payload in step.messages:
                        deliver(RawMessage(topic, payload, now))
                    self.behind_ms = max(0, wall_ms() - step.now_ms - self.late_ms)
                    self.max_behind_ms = max(self.max_behind_ms, self.behind_ms)
            finally:
                self.done.set()

        self._thread = threading.Thread(target=run, name="soak-source", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


class LagWindow:
    """Per-batch receive-to-evaluated lag and reading counts since the last sample."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lags: list[float] = []
        self.readings = 0
        self.all_max = 0.0

    def observe(self, n_readings: int, lag_ms: float | None) -> None:
        with self._lock:
            self.readings += n_readings
            if lag_ms is not None:
                self.lags.append(lag_ms)
                self.all_max = max(self.all_max, lag_ms)

    def take(self) -> tuple[int, list[float]]:
        with self._lock:
            out = (self.readings, self.lags)
            self.readings, self.lags = 0, []
            return out


@dataclass
class Sample:
    t_s: float
    feeding: bool  # False once the simulator has delivered everything (drain)
    rss_mb: float
    readings_per_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    source_behind_ms: int
    queue: int
    outbox: int
    alarms: int


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)]


def _slope_mb_per_h(samples: list[Sample], per_min: int) -> float:
    """Least-squares slope of each minute's lowest RSS: the allocator and the simulator's
    buffers make a sawtooth of tens of MB; a leak raises its floor."""
    floors = [samples[i : i + per_min] for i in range(0, len(samples), per_min)]
    floors = [f for f in floors if len(f) == per_min] or floors
    if len(floors) < 2:
        return 0.0
    ts = [min(f, key=lambda s: s.rss_mb).t_s / 3600 for f in floors]
    ys = [min(s.rss_mb for s in f) for f in floors]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den if den else 0.0


def _inject_incidents(sim: Simulation, start_ms: int, end_ms: int, every_s: float) -> int:
    """One incident every `every_s` seconds, rotating through the kinds, so the rules, the
    warning model, the alerts service and the outbox carry load all along (injected up front:
    the simulator generates minutes of readings ahead)."""
    kinds = [k for k in ALL_KINDS if k is not IncidentKind.FROZEN]  # needs hours to show
    n = 0
    at = start_ms + 20_000
    while at < end_ms - 30_000:
        kind = kinds[n % len(kinds)]
        try:
            sim.inject(kind, at, duration_ms=60_000 if DEFAULT_DURATION_MS[kind] else None)
        except NoSubject:
            kinds.remove(kind)
            if not kinds:
                break
            continue
        n += 1
        at += int(every_s * 1000)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument(
        "--rate", type=float, default=10 * CITY_RATE, help="target readings/s (10x a city)"
    )
    ap.add_argument("--points", type=int, default=0, help="registry size (default: from --rate)")
    ap.add_argument("--sample-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--incident-every-s", type=float, default=20.0)
    ap.add_argument("--json", type=Path, help="write the samples and summary here")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    a = ap.parse_args()

    t_setup = time.monotonic()
    rss_boot = rss_mb()
    city = generate_registry(CITY_POINTS, a.seed)
    city_rate = sum(1 / p.expected_interval_s for p in city)
    points = a.points or max(CITY_POINTS, round(a.rate / city_rate * CITY_POINTS))
    registry = city if points == CITY_POINTS else generate_registry(points, a.seed)
    del city
    nominal = sum(1 / p.expected_interval_s for p in registry)
    print(
        f"city: {CITY_POINTS} points = {city_rate:,.0f} readings/s; soak: {len(registry):,} "
        f"points in {len(registry.enterprises())} enterprises = {nominal:,.0f} readings/s "
        f"({nominal / CITY_RATE:.1f}x a city's {CITY_RATE:,.0f}/s) for {a.minutes:g} min"
    )

    data = Path(tempfile.mkdtemp(prefix="hw-soak-"))
    settings = load_settings(
        None,
        environ={
            "HW_MODE": "embedded",
            "HW_STORAGE__DATA_DIR": str(data),
            "HW_METRICS__PORT": "0",
            "HW_LOG__LEVEL": "WARNING",
        },
    )
    platform = CountingChannel("platform")
    source = SimSource()
    emb = build_embedded(
        settings,
        source=source,
        channels={"platform": platform},
        registry=registry,
        watch_interval_s=0,
    )
    window = LagWindow()
    observe = emb.metrics.observe_batch

    def observe_batch(n_messages: int, n_readings: int, lag_ms: float | None) -> None:
        observe(n_messages, n_readings, lag_ms)
        window.observe(n_readings, lag_ms)

    emb.metrics.observe_batch = observe_batch  # the pipeline calls it per batch
    # Simulated time is wall-clock time, from a whole second just after the setup (incident
    # injection takes a few seconds on a large registry).
    gc.collect()
    start_ms = (wall_ms() // 1000 + 5 + len(registry) // 20_000) * 1000
    end_ms = start_ms + int(a.minutes * 60_000)
    sim = Simulation(registry, seed=a.seed, start_ms=start_ms)
    n_incidents = _inject_incidents(sim, start_ms, end_ms, a.incident_every_s)
    source.sim, source.end_ms = sim, end_ms
    gc.collect()
    rss_start = rss_mb()
    print(
        f"setup {time.monotonic() - t_setup:.0f} s (registry, rules for every point, state "
        f"stores); RSS {rss_boot:.0f} MB at boot, {rss_start:.0f} MB at start; "
        f"{n_incidents} incidents injected; data in {data}"
    )
    while wall_ms() < start_ms:
        time.sleep(0.01)
    # A large setup may pass the planned start: readings then arrive that much older than
    # their time stamps (a constant offset, not lag; it is subtracted from "behind").
    source.late_ms = max(0, wall_ms() - start_ms)

    samples: list[Sample] = []
    emb.runner.start()
    t0 = time.monotonic()
    next_t = t0 + a.sample_s
    alarms_total = 0
    try:
        while not source.done.is_set() or emb.runner._q.qsize():
            time.sleep(max(0.0, next_t - time.monotonic()))
            now = time.monotonic()
            n, lags = window.take()
            figs = emb.metrics.figures()
            alarms_total = int(figs.alarms)
            s = Sample(
                t_s=round(now - t0, 1),
                feeding=not source.done.is_set(),
                rss_mb=round(rss_mb(), 1),
                readings_per_s=round(n / (now - (next_t - a.sample_s)), 1),
                lag_p50_ms=_pct(lags, 0.5),
                lag_p99_ms=_pct(lags, 0.99),
                lag_max_ms=max(lags, default=0.0),
                source_behind_ms=source.behind_ms,
                queue=emb.runner._q.qsize(),
                outbox=emb.alert_store.outbox_depth(),
                alarms=alarms_total,
            )
            samples.append(s)
            print(
                f"  {s.t_s:7.0f} s  RSS {s.rss_mb:7.1f} MB  {s.readings_per_s:8,.0f} readings/s  "
                f"lag p50 {s.lag_p50_ms:5.0f} p99 {s.lag_p99_ms:5.0f} max {s.lag_max_ms:6.0f} ms  "
                f"behind {s.source_behind_ms:5d} ms  queue {s.queue:5d}  outbox {s.outbox:4d}  "
                f"alarms {s.alarms}",
                flush=True,
            )
            next_t += a.sample_s
            if emb.runner.failure is not None:
                print(f"the runner failed: {emb.runner.failure!r}")
                return 1
    except KeyboardInterrupt:
        print("interrupted; summarising what ran")
    finally:
        source.stop()
        emb.runner.stop()
    wall = time.monotonic() - t0
    emb.metrics.outbox_depth.set_function(lambda: 0)  # the store is closed by now
    figs = emb.metrics.figures()
    rss_stopped = rss_mb()

    # Figures are of the loaded run: the drain after the last simulated second is left out.
    loaded = [s for s in samples if s.feeding] or samples
    per_min = max(1, round(60 / a.sample_s))
    first, last = loaded[:per_min], loaded[-per_min:]
    steady = loaded[per_min:] or loaded
    rss_end = loaded[-1].rss_mb if loaded else rss_stopped
    fed_s = loaded[-1].t_s if loaded else wall

    def mean(xs: list[Sample], f: str) -> float:
        return statistics.fmean(getattr(s, f) for s in xs) if xs else 0.0

    def ratio(f: str, agg=mean) -> str:
        a_, b_ = agg(first, f), agg(last, f)
        return f"{b_ / a_:.2f}x" if a_ else "n/a"

    def peak(xs: list[Sample], f: str) -> float:
        return max((getattr(s, f) for s in xs), default=0.0)

    files = {p.name: p.stat().st_size for p in data.glob("*.db")}
    lp = sum(p.stat().st_size for p in (data / "lineprotocol").glob("*.lp"))
    summary = {
        "minutes": round(wall / 60, 2),
        "points": len(registry),
        "nominal_readings_per_s": round(nominal),
        "readings": int(figs.readings_in),
        "readings_per_s_loaded": round(mean(loaded, "readings_per_s")),
        "rejects": int(figs.rejects),
        "alarm_transitions": int(figs.alarms),
        "notifications_delivered": platform.delivered,
        "duplicate_notifications": platform.duplicates,
        "outbox_at_last_sample": samples[-1].outbox if samples else None,
        "rss_boot_mb": round(rss_boot, 1),
        "rss_start_mb": round(rss_start, 1),
        "rss_after_first_minute_mb": round(mean(first, "rss_mb"), 1),
        "rss_end_of_load_mb": round(rss_end, 1),
        "rss_after_shutdown_mb": round(rss_stopped, 1),
        "rss_slope_mb_per_h_after_first_minute": round(_slope_mb_per_h(steady, per_min), 1),
        "rss_min_max_after_first_minute_mb": [
            min((s.rss_mb for s in steady), default=0.0),
            max((s.rss_mb for s in steady), default=0.0),
        ],
        "lag_max_ms": peak(loaded, "lag_max_ms"),
        "lag_p99_max_window_ms": peak(loaded, "lag_p99_ms"),
        "feed_started_late_ms": source.late_ms,
        "feed_max_behind_ms": source.max_behind_ms,
        "sqlite_bytes": files,
        "lineprotocol_bytes": lp,
    }
    print(
        f"\nran {summary['minutes']} min: {summary['readings']:,} readings "
        f"({summary['readings_per_s_loaded']:,}/s under load, nominal "
        f"{summary['nominal_readings_per_s']:,}/s), "
        f"{summary['rejects']} rejected, {summary['alarm_transitions']} alarm transitions, "
        f"{platform.delivered} notifications delivered ({platform.duplicates} duplicate keys)"
    )
    print(
        f"memory: {rss_start:.0f} MB at start, {mean(first, 'rss_mb'):.0f} MB over the first "
        f"minute, {rss_end:.0f} MB at the end of the load ({fed_s / 60:.1f} min), "
        f"{rss_stopped:.0f} MB after shutdown; after the first minute between "
        f"{summary['rss_min_max_after_first_minute_mb'][0]:.0f} and "
        f"{summary['rss_min_max_after_first_minute_mb'][1]:.0f} MB, slope of the per-minute "
        f"floor {summary['rss_slope_mb_per_h_after_first_minute']:+.1f} MB/h"
    )
    print(
        f"lag (receive -> evaluated): max {summary['lag_max_ms']:.0f} ms, worst 10 s p99 "
        f"{summary['lag_p99_max_window_ms']:.0f} ms; feeder at most "
        f"{source.max_behind_ms} ms behind real time (it started {source.late_ms} ms late)"
    )
    print(
        f"last minute / first minute (reference): RSS {ratio('rss_mb')}, readings/s "
        f"{ratio('readings_per_s')}, lag p99 {ratio('lag_p99_ms')}, lag max "
        f"{ratio('lag_max_ms', peak)}"
    )
    print(
        f"state on disk: {', '.join(f'{k} {v / 1e6:.1f} MB' for k, v in files.items())}; "
        f"line protocol {lp / 1e6:.0f} MB"
    )
    if a.json:
        a.json.write_text(
            json.dumps(
                {"summary": summary, "samples": [asdict(s) for s in samples]},
                indent=2,
            )
        )
    if not a.keep:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
