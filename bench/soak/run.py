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
    .venv/bin/python bench/soak/run.py --minutes 9 --tracemalloc   # where the heap grows

`--tracemalloc` traces the Python heap (numpy arrays included) from the start of the load: it
prints the traced size (what was allocated since then and is still alive) with every sample,
and the 15 allocation sites that grew most between a snapshot after the first minute and one
at the end of the load, with their tracebacks. At the end of the load RSS is also measured
after `gc.collect()` and glibc `malloc_trim(0)` (`--trim-probe`, implied by `--tracemalloc`):
what comes back then was free memory the allocator held, not a leak.
"""

from __future__ import annotations

import argparse
import ctypes
import faulthandler
import gc
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import asdict, dataclass
from pathlib import Path

from alerts.model import Notification, Verdict
from hazardwatch.runner import RawMessage, wall_ms
from hazardwatch.settings import load_settings
from hazardwatch.sim import incidents as sim_incidents
from hazardwatch.sim.city import generate_registry
from hazardwatch.sim.incidents import ALL_KINDS, DEFAULT_DURATION_MS, IncidentKind, NoSubject
from hazardwatch.sim.simulation import Simulation
from hazardwatch.wiring import build_embedded

CITY_POINTS = 5000
CITY_RATE = 750.0  # readings/s of a city: ~5,000 points at 1-60 s make 500-1,000 (DOMAIN.md)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (n, ctypes.c_size_t)
        for n in (
            "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        ).split()
    ]


def _mallinfo2():
    try:
        f = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None  # not glibc >= 2.33
    f.restype = _MallInfo2
    return f


_MALLINFO2 = _mallinfo2()


def heap_mb() -> tuple[float | None, float | None, int]:
    """(bytes malloc has handed out and not got back, free bytes it holds in its arenas --
    RSS it does not give back --, pymalloc blocks in use): a leak grows the first or the
    third, fragmentation the second. All arenas of all threads are summed."""
    blocks = sys.getallocatedblocks()
    if _MALLINFO2 is None:
        return None, None, blocks
    m = _MALLINFO2()
    return (m.uordblks + m.hblkhd) / 2**20, m.fordblks / 2**20, blocks


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): give free heap pages back to the OS (False off glibc)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def _print_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int) -> None:
    stats = after.compare_to(before, "traceback")
    stats.sort(key=lambda st: st.size_diff, reverse=True)
    total = sum(st.size_diff for st in stats)
    print(
        f"\ntracemalloc: traced heap grew {total / 1e6:+.1f} MB between the snapshots; "
        f"top {top} growing sites:"
    )
    for st in stats[:top]:
        print(
            f"  {st.size_diff / 1e6:+8.2f} MB  {st.count_diff:+9,d} blocks  "
            f"(now {st.size / 1e6:.2f} MB)"
        )
        for line in st.traceback.format(limit=8, most_recent_first=True):
            print(f"      {line}")


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
    # glibc malloc in use / free held (MB) and pymalloc blocks in use (see heap_mb)
    malloc_used_mb: float | None = None
    malloc_free_mb: float | None = None
    py_blocks: int = 0
    feed_queue: int = 0  # batches waiting for the time-series writer thread
    traced_mb: float | None = None  # Python heap traced by tracemalloc (--tracemalloc)
    # With --malloc-trim-s: RSS right after malloc_trim(0) (what the process really holds,
    # free heap pages returned) and how long the call took.
    rss_trimmed_mb: float | None = None
    trim_ms: float | None = None


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(q * len(xs)) - 1)]


def _slope_mb_per_h(samples: list[Sample], per_min: int, f: str = "rss_mb") -> float:
    """Least-squares slope of each minute's lowest RSS: the allocator and the simulator's
    buffers make a sawtooth of tens of MB; a leak raises its floor."""
    floors = [samples[i : i + per_min] for i in range(0, len(samples), per_min)]
    floors = [f for f in floors if len(f) == per_min] or floors
    if len(floors) < 2:
        return 0.0
    ts = [min(m, key=lambda s: getattr(s, f)).t_s / 3600 for m in floors]
    ys = [min(getattr(s, f) for s in m) for m in floors]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den if den else 0.0


# "Memory flat" threshold on the slope of the per-minute RSS floor. Per-minute floors of a
# steady run wander by about +-5 MB (allocator, batch sizes), which over a 30-minute run is
# a slope uncertainty of about 20 MB/h: a slower growth cannot be told from noise in that
# time (run longer to see it), a faster one is real. At 20 MB/h a 1 GB process would still
# grow by half in a day, so "yes" here means "no growth a 30-minute soak can see".
FLAT_SLOPE_MB_PER_H = 20.0
FLAT_LAST_FIRST = 1.03  # the last steady minutes' floor against the first steady minutes'
# Warm-up: the first minutes fill what a long-running process keeps at its working size (the
# engine's per-point state and windows, SQLite's page cache, the allocator's arenas, the
# time-series feed's batches). At 10x city load RSS rose for about 4 minutes, then stayed
# within +-25 MB for the next 26. "Flat" is judged after the warm-up; the warm-up's growth is
# printed beside it. A run shorter than three times the warm-up judges from its second minute.
WARMUP_MIN = 5.0
# "Lag bounded": the last 5 loaded minutes' worst 10-s p99 under this, and nothing queued
# growing (runner queue, time-series feed queue, outbox) nor the feeder falling behind.
# DESIGN's target is p99 < 100 ms at city load on its own 2 cores; at 10x that load on a
# machine shared with other work a soak asks whether lag stays bounded: a pipeline short
# of even 1 % of 7,500 readings/s builds a backlog whose lag passes 1 s within minutes.
LAG_P99_BOUND_MS = 1000.0
BEHIND_BOUND_MS = 2000


def verdicts(
    loaded: list[Sample], per_min: int, queue_max: int, warmup_min: float = WARMUP_MIN
) -> tuple[bool, bool, list[str]]:
    """The soak's two verdicts and the lines that say them (with the figures behind them)."""
    floors = _minute_floors(loaded, per_min)
    warm = round(warmup_min) if len(floors) >= 3 * warmup_min else 1
    steady = loaded[warm * per_min :] or loaded
    slope = _slope_mb_per_h(steady, per_min)
    # first and last steady minutes: the median of up to 5 minute floors each (one minute's
    # floor wanders by +-25 MB at this load)
    k = max(1, min(5, (len(floors) - warm) // 2))
    ref = statistics.median(floors[warm : warm + k]) if len(floors) > warm else 0.0
    end = statistics.median(floors[-k:]) if floors else 0.0
    last_first = end / ref if ref else float("nan")
    flat = slope <= FLAT_SLOPE_MB_PER_H and last_first <= FLAT_LAST_FIRST
    tail = loaded[-5 * per_min :]
    head = loaded[:per_min]
    p99 = max((s.lag_p99_ms for s in tail), default=0.0)

    def grows(f: str, floor: int) -> bool:
        # "Growing": the tail's last value above both a small floor and the run's first
        # minute's peak (queues breathe with batches; a backlog keeps rising).
        end = getattr(tail[-1], f) if tail else 0
        return end > max(floor, max((getattr(s, f) for s in head), default=0))

    queued = {
        "queue": grows("queue", queue_max // 10),
        "feed queue": grows("feed_queue", 100),
        "outbox": grows("outbox", 100),
    }
    behind = tail[-1].source_behind_ms if tail else 0
    bounded = p99 <= LAG_P99_BOUND_MS and not any(queued.values()) and behind <= BEHIND_BOUND_MS
    lines = [
        f"memory flat: {'yes' if flat else 'no'} (after a {warm}-minute warm-up in which the "
        f"minute floor went {floors[0] if floors else 0:.0f} -> {ref:.0f} MB: floor slope "
        f"{slope:+.1f} MB/h, threshold {FLAT_SLOPE_MB_PER_H:g}; last/first {k} steady "
        f"minutes (median floor) {last_first:.3f}: {end:.0f} / {ref:.0f} MB, threshold "
        f"{FLAT_LAST_FIRST:g})",
        f"lag bounded: {'yes' if bounded else 'no'} (last 5 min worst 10-s p99 {p99:.0f} ms, "
        f"bound {LAG_P99_BOUND_MS:.0f}; feeder {behind} ms behind at the end, bound "
        f"{BEHIND_BOUND_MS}; queued and growing: "
        f"{', '.join(k for k, v in queued.items() if v) or 'nothing'} (runner queue, "
        f"time-series feed queue and outbox watched))",
    ]
    return flat, bounded, lines


def _minute_floors(samples: list[Sample], per_min: int, f: str = "rss_mb") -> list[float]:
    return [
        min(getattr(s, f) for s in samples[i : i + per_min])
        for i in range(0, len(samples), per_min)
    ]


def _cache_incident_subjects() -> None:
    """Memoise the simulator's incident subject search per registry and kind (the soak
    injects dozens of incidents into one registry)."""
    search = sim_incidents.candidates
    found: dict[tuple[int, object], object] = {}

    def cached(model, kind):
        key = (id(model.registry), kind)
        if key not in found:
            found[key] = search(model, kind)
        return found[key]

    sim_incidents.candidates = cached


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
    ap.add_argument(
        "--warmup-min",
        type=float,
        default=WARMUP_MIN,
        help="minutes left out of the memory-flat verdict (printed beside it)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--incident-every-s", type=float, default=20.0)
    ap.add_argument(
        "--sim-chunk-s",
        type=float,
        default=30.0,
        help="simulated seconds the simulator generates at a time (its own buffers)",
    )
    ap.add_argument("--json", type=Path, help="write the samples and summary here")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    ap.add_argument(
        "--tracemalloc",
        action="store_true",
        help="trace the Python heap; print the top growing allocation sites (slower)",
    )
    ap.add_argument("--tracemalloc-frames", type=int, default=8)
    ap.add_argument(
        "--trim-probe",
        action="store_true",
        help="at the end of the load, measure RSS after gc.collect() and malloc_trim(0)",
    )
    ap.add_argument(
        "--malloc-trim-s",
        type=float,
        default=0.0,
        help="call malloc_trim(0) after the RSS sample every S seconds (a production "
        "mitigation; samples then also show RSS right after it)",
    )
    a = ap.parse_args()
    # `kill -USR1 <pid>` prints every thread's stack: where a stalled run is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    a.trim_probe = a.trim_probe or a.tracemalloc
    snap_first: tracemalloc.Snapshot | None = None
    snap_last: tracemalloc.Snapshot | None = None
    trim_probe: dict[str, float] = {}

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
    alloc = {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "PYTHONMALLOC"))}
    print(
        "allocator: "
        + (" ".join(f"{k}={v}" for k, v in sorted(alloc.items())) or "glibc defaults")
        + (f", malloc_trim(0) every {a.malloc_trim_s:g} s" if a.malloc_trim_s > 0 else "")
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
    # Simulated time is wall-clock time, from a whole second just after the setup. Offline
    # timers compare reading times with the wall clock, so a feed starting more than a
    # gateway timeout (15 s) late would look offline all along: finding incident subjects
    # scans the registry (28 scans took over a minute on the loaded machine), so they are
    # found once, in a dry run, before the start time is chosen.
    _cache_incident_subjects()
    dry = Simulation(registry, seed=a.seed, start_ms=wall_ms(), chunk_ms=60_000)
    _inject_incidents(dry, dry.start_ms, dry.start_ms + int(a.minutes * 60_000), a.incident_every_s)
    del dry
    gc.collect()
    start_ms = (wall_ms() // 1000 + 5 + len(registry) // 20_000) * 1000
    end_ms = start_ms + int(a.minutes * 60_000)
    # The simulator generates a chunk of readings at a time and delivers nothing meanwhile:
    # its default 5 min (2.2 million readings here) took >15 s to generate on a loaded
    # machine, so every gateway of 5 s points (timeout 15 s) went offline at each chunk, and
    # its ~100 MB of buffers made the benchmark's own RSS sawtooth.
    sim = Simulation(registry, seed=a.seed, start_ms=start_ms, chunk_ms=int(a.sim_chunk_s * 1000))
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
    print(f"feed starts {source.late_ms} ms late (offline timeouts start at 15 s)", flush=True)

    # The pipeline was built (start_ms = its build time) before the simulator and the
    # incidents were set up; `hazardwatch run` starts right after building. Offline timers
    # of points that have not reported yet run from the engine's start, so start it when the
    # feed starts, or a setup longer than a gateway timeout raises thousands of gateway
    # alarms at the first tick.
    pipeline = emb.pipeline
    feed_q = getattr(pipeline.sink, "_q", None)
    pipeline.engine_state = pipeline.stages.engine.initial_state(start_ms)
    samples: list[Sample] = []
    per_min = max(1, round(60 / a.sample_s))
    if a.tracemalloc:
        # From the start of the load, not of the setup: tracing the setup's millions of
        # allocations (rules for every point) takes minutes and only growth matters here.
        tracemalloc.start(a.tracemalloc_frames)
    last_sample = [time.monotonic()]

    def watchdog() -> None:
        # The sampler blocks too when the evaluator holds the alerts store (an alarm storm
        # in one batch): say so once, with every thread's stack, instead of going silent.
        while not source.done.wait(10):
            if time.monotonic() - last_sample[0] > 6 * a.sample_s + 30:
                print(
                    f"\nno sample for {time.monotonic() - last_sample[0]:.0f} s: the run is "
                    "stalled; every thread's stack:",
                    flush=True,
                )
                faulthandler.dump_traceback(all_threads=True)
                return

    threading.Thread(target=watchdog, name="soak-watchdog", daemon=True).start()
    emb.runner.start()
    t0 = time.monotonic()
    next_t = t0 + a.sample_s
    next_trim = t0
    alarms_total = 0
    try:
        while not source.done.is_set() or emb.runner._q.qsize():
            time.sleep(max(0.0, next_t - time.monotonic()))
            now = time.monotonic()
            n, lags = window.take()
            figs = emb.metrics.figures()
            alarms_total = int(figs.alarms)
            used, free, blocks = heap_mb()
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
                feed_queue=feed_q.qsize() if feed_q is not None else 0,
                outbox=emb.alert_store.outbox_depth(),
                alarms=alarms_total,
                malloc_used_mb=None if used is None else round(used, 1),
                malloc_free_mb=None if free is None else round(free, 1),
                py_blocks=blocks,
                traced_mb=(
                    round(tracemalloc.get_traced_memory()[0] / 1e6, 1) if a.tracemalloc else None
                ),
            )
            if a.malloc_trim_s > 0 and now >= next_trim:
                next_trim = now + a.malloc_trim_s
                t_trim = time.perf_counter()
                malloc_trim()
                s.trim_ms = round((time.perf_counter() - t_trim) * 1000, 1)
                s.rss_trimmed_mb = round(rss_mb(), 1)
            samples.append(s)
            last_sample[0] = time.monotonic()
            print(
                f"  {s.t_s:7.0f} s  RSS {s.rss_mb:7.1f} MB  {s.readings_per_s:8,.0f} readings/s  "
                f"lag p50 {s.lag_p50_ms:5.0f} p99 {s.lag_p99_ms:5.0f} max {s.lag_max_ms:6.0f} ms  "
                f"behind {s.source_behind_ms:5d} ms  queue {s.queue:5d}/{s.feed_queue:4d}  "
                f"outbox {s.outbox:4d}  "
                f"alarms {s.alarms}  malloc used {s.malloc_used_mb} free {s.malloc_free_mb} MB"
                f"  pyblocks {s.py_blocks / 1e6:.2f}M"
                + (f"  traced {s.traced_mb:6.1f} MB" if s.traced_mb is not None else "")
                + (
                    f"  trimmed {s.rss_trimmed_mb:7.1f} MB ({s.trim_ms:.0f} ms)"
                    if s.rss_trimmed_mb is not None
                    else ""
                ),
                flush=True,
            )
            if a.tracemalloc and len(samples) == per_min:
                snap_first = tracemalloc.take_snapshot()
            next_t += a.sample_s
            if emb.runner.failure is not None:
                print(f"the runner failed: {emb.runner.failure!r}")
                return 1
    except KeyboardInterrupt:
        print("interrupted; summarising what ran")
    finally:
        # Everything is delivered and evaluated (or the run was interrupted); the pipeline
        # and its state are still alive.
        if a.tracemalloc:
            snap_last = tracemalloc.take_snapshot()
        if a.trim_probe:
            trim_probe["rss_end_mb"] = round(rss_mb(), 1)
            gc.collect()
            trim_probe["rss_after_gc_mb"] = round(rss_mb(), 1)
            trim_probe["malloc_trim"] = malloc_trim()
            trim_probe["rss_after_trim_mb"] = round(rss_mb(), 1)
            if a.tracemalloc:
                trim_probe["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 1e6, 1)

        source.stop()
        emb.runner.stop()
    wall = time.monotonic() - t0
    emb.metrics.outbox_depth.set_function(lambda: 0)  # the store is closed by now
    figs = emb.metrics.figures()
    rss_stopped = rss_mb()

    # Figures are of the loaded run: the drain after the last simulated second is left out.
    loaded = [s for s in samples if s.feeding] or samples
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
    print(
        "RSS per minute (lowest sample of each minute, MB): "
        + " ".join(f"{m:.0f}" for m in _minute_floors(loaded, per_min))
    )
    if loaded and loaded[0].malloc_used_mb is not None:
        for f in ("malloc_used_mb", "malloc_free_mb"):
            slope_f = _slope_mb_per_h(steady, per_min, f)
            summary[f"{f[:-3]}_floor_slope_mb_per_h"] = round(slope_f, 1)
        print(
            "malloc in use, per minute (lowest, MB): "
            + " ".join(f"{m:.0f}" for m in _minute_floors(loaded, per_min, "malloc_used_mb"))
            + f" (slope {summary['malloc_used_floor_slope_mb_per_h']:+.1f} MB/h); free but "
            "held: "
            + " ".join(f"{m:.0f}" for m in _minute_floors(loaded, per_min, "malloc_free_mb"))
            + f" (slope {summary['malloc_free_floor_slope_mb_per_h']:+.1f} MB/h); pymalloc "
            "blocks in use (millions): "
            + " ".join(f"{m / 1e6:.2f}" for m in _minute_floors(loaded, per_min, "py_blocks"))
        )
    if trim_probe:
        summary["trim_probe"] = trim_probe
        print(
            f"trim probe at the end of the load: RSS {trim_probe['rss_end_mb']:.0f} MB, "
            f"{trim_probe['rss_after_gc_mb']:.0f} MB after gc.collect(), "
            f"{trim_probe['rss_after_trim_mb']:.0f} MB after malloc_trim(0)"
            + (f"; traced Python heap {trim_probe['traced_mb']:.0f} MB" if a.tracemalloc else "")
        )
    if snap_first is not None and snap_last is not None:
        _print_growth(snap_first, snap_last, 15)
    if a.malloc_trim_s > 0:
        trimmed = [s for s in loaded if s.rss_trimmed_mb is not None]
        steady_t = trimmed[per_min:] or trimmed
        summary["rss_trimmed_slope_mb_per_h"] = round(
            _slope_mb_per_h(steady_t, per_min, "rss_trimmed_mb"), 1
        )
        summary["trim_ms_max"] = max((s.trim_ms or 0.0 for s in trimmed), default=0.0)
        print(
            f"with malloc_trim(0) every {a.malloc_trim_s:g} s: RSS right after it, per minute: "
            + " ".join(f"{m:.0f}" for m in _minute_floors(trimmed, per_min, "rss_trimmed_mb"))
            + f" MB, floor slope {summary['rss_trimmed_slope_mb_per_h']:+.1f} MB/h; "
            f"the call took at most {summary['trim_ms_max']:.0f} ms"
        )
    flat, bounded, verdict_lines = verdicts(loaded, per_min, emb.runner.cfg.queue_max, a.warmup_min)
    summary["memory_flat"], summary["lag_bounded"] = flat, bounded
    print()
    for line in verdict_lines:
        print(line)
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
