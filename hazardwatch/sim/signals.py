"""Normal-but-noisy signals for every point of a registry, generated in fixed time chunks with
numpy: gateway upload cycles with timing jitter, baselines, noise, slow drift, the daily
temperature cycle, tank fill/withdraw swings, workshop head-counts, and quantisation.

Pure and deterministic: chunk `c` of a model depends only on (registry, seed, start, c), so a
live stream, a replay file and a benchmark built from the same seed see identical readings.
Values are in each point's registered unit; a publisher converts to a point's publish unit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hazardwatch.sim.city import load_template
from ingest.model import Point, Registry

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# Beijing time (UTC+8): the daily temperature cycle and workshop shifts follow local time.
LOCAL_OFFSET_MS = 8 * HOUR_MS

ANALOG, OCCUPANCY = 0, 1


@dataclass(slots=True)
class Chunk:
    """Readings of one chunk, one element per reading, before delivery ordering.

    `deliver_ms` is when the gateway hands the reading over (== `ts_ms` unless an incident
    holds it back); `keep` False drops a reading (a silent gateway); `touched` marks readings
    an incident changed, which are not clamped to the measuring range.
    """

    start_ms: int
    end_ms: int
    ts_ms: np.ndarray  # int64, event time
    point: np.ndarray  # int32, index into registry.points
    value: np.ndarray  # float64, in the point's registered unit
    quality: np.ndarray  # int8
    deliver_ms: np.ndarray  # int64
    keep: np.ndarray  # bool
    touched: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True, slots=True)
class Gateway:
    enterprise_code: str
    code: str
    members: np.ndarray  # int32 point indices
    cycle_ms: int
    every: np.ndarray  # int32 per member: reports every n-th upload
    offset: np.ndarray  # int32 per member: which upload of the n
    phase_ms: int
    jitter_sd_ms: float
    ts_format: str  # epoch_ms | iso


def _nice_step(x: float) -> float:
    """The power of ten nearest to x (quantisation steps are decimal)."""
    return 10.0 ** round(math.log10(x)) if x > 0 else 1.0


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9))


def _linear(from_unit: str, to_unit: str, parameter: str) -> tuple[float, float] | None:
    if from_unit == to_unit:
        return 1.0, 0.0
    from ingest.units import UnitError, linear

    try:
        return linear(from_unit, to_unit, parameter)
    except UnitError:
        return None


def signal_profile(point: Point, signals: Mapping[str, Any]) -> dict[str, float]:
    """Signal parameters of one point, in its registered unit.

    Uses the template's profile for the parameter (converted to the point's unit), or, for a
    parameter or unit the template does not know, one derived from the point's range and limits.
    """
    lo = point.range_low if point.range_low is not None else 0.0
    hi = point.range_high if point.range_high is not None else max(lo + 100.0, (point.h or 0) * 1.5)
    span = max(hi - lo, 1e-9)
    prof = signals.get(point.parameter)
    conv = _linear(prof["unit"], point.unit, point.parameter) if prof else None
    out: dict[str, float]
    if prof is not None and conv is not None:
        scale, offset = conv
        out = {
            "baseline": prof.get("baseline", 0.0) * scale + offset,
            "noise": prof.get("noise", 0.0) * abs(scale),
            "step": _nice_step(prof.get("step", 0.01) * abs(scale))
            if scale != 1
            else prof.get("step", 0.01),
            "drift_per_day": prof.get("drift_per_day", 0.0) * abs(scale),
            "diurnal": prof.get("diurnal", 0.0) * scale,
            "swing": prof.get("swing", 0.0) * abs(scale),
            "leak_peak": prof.get("leak_peak", 0.0) * scale + offset
            if "leak_peak" in prof
            else hi * 0.8,
        }
        periods = prof.get("swing_period_h", [8, 8])
        out["swing_period_lo_h"], out["swing_period_hi_h"] = float(periods[0]), float(periods[1])
    elif point.is_gas:
        out = {
            "baseline": lo + 0.01 * span,
            "noise": 0.004 * span,
            "step": _nice_step(span / 1000),
            "drift_per_day": 0.0005 * span,
            "diurnal": 0.0,
            "swing": 0.0,
            "leak_peak": lo + 0.8 * span,
        }
    else:
        top = point.h if point.h is not None else hi
        bottom = point.l if point.l is not None else lo
        out = {
            "baseline": bottom + 0.5 * (top - bottom),
            "noise": 0.002 * span,
            "step": _nice_step(span / 10000),
            "drift_per_day": 0.0,
            "diurnal": 0.0,
            "swing": 0.0,
            "leak_peak": hi,
        }
    out.setdefault("swing_period_lo_h", 8.0)
    out.setdefault("swing_period_hi_h", 8.0)
    out["range_low"], out["range_high"] = lo, hi
    return out


class SignalModel:
    """Normal operation of a whole registry. `chunk(c)` gives chunk `c`'s readings."""

    def __init__(
        self,
        registry: Registry,
        *,
        seed: int = 7,
        start_ms: int,
        chunk_ms: int = 300_000,
        template: Mapping[str, Any] | None = None,
    ) -> None:
        if chunk_ms < 1000:
            raise ValueError(f"chunk_ms must be >= 1000, got {chunk_ms}")
        tpl = template or load_template()
        self.registry = registry
        self.points: tuple[Point, ...] = registry.points
        self.seed = seed
        self.start_ms = int(start_ms)
        self.chunk_ms = int(chunk_ms)
        self._index = {p.key: i for i, p in enumerate(self.points)}
        rng = np.random.default_rng([seed, 0x5EED])
        n = len(self.points)
        self.kind = np.zeros(n, np.int8)
        self.baseline = np.zeros(n)
        self.noise = np.zeros(n)
        self.step = np.ones(n)
        self.drift = np.zeros(n)
        self.diurnal = np.zeros(n)
        self.swing = np.zeros(n)
        self.swing_period_ms = np.full(n, 8.0 * HOUR_MS)
        self.swing_phase = np.zeros(n)
        self.lo = np.zeros(n)
        self.hi = np.zeros(n)
        self.quota = np.zeros(n, np.int64)
        self.leak_peak = np.zeros(n)
        signals = tpl["signals"]
        occ = signals.get("occupancy", {})
        self.shifts = [(float(a), float(b)) for a, b in occ.get("shifts", [[8, 12], [13.5, 17.5]])]
        self.dwell_ms = int(float(occ.get("dwell_min", 7)) * 60_000)
        for i, p in enumerate(self.points):
            prof = signal_profile(p, signals)
            self.lo[i], self.hi[i] = prof["range_low"], prof["range_high"]
            self.step[i] = prof["step"]
            self.leak_peak[i] = prof["leak_peak"]
            if p.parameter == "occupancy":
                self.kind[i] = OCCUPANCY
                self.quota[i] = int(p.h) if p.h is not None and p.h >= 1 else 3
                self.step[i] = 1.0
                continue
            self.baseline[i] = prof["baseline"]
            self.noise[i] = prof["noise"]
            self.drift[i] = prof["drift_per_day"] * rng.uniform(-1.0, 1.0)
            self.diurnal[i] = prof["diurnal"] * rng.uniform(0.8, 1.2)
            self.swing[i] = prof["swing"] * rng.uniform(0.6, 1.0)
            self.swing_period_ms[i] = (
                rng.uniform(prof["swing_period_lo_h"], prof["swing_period_hi_h"]) * HOUR_MS
            )
            self.swing_phase[i] = rng.uniform(0, 2 * math.pi)
        self.decimals = np.array([_decimals(s) for s in self.step], np.int8)
        jitter_fraction = float(tpl["timing"].get("jitter_fraction", 0.06))
        self.gateways: list[Gateway] = []
        self.gateway_of = np.zeros(n, np.int32)
        for (ent, gw), pts in registry.gateways().items():
            idx = np.array([self._index[p.key] for p in pts], np.int32)
            intervals = np.array([p.expected_interval_s for p in pts]) * 1000.0
            cycle = int(max(100.0, intervals.min()))
            every = np.maximum(1, np.round(intervals / cycle)).astype(np.int32)
            offset = rng.integers(0, every).astype(np.int32)
            ts_format = next((p.attrs.get("sim_ts_format", "") for p in pts), "") or "epoch_ms"
            self.gateway_of[idx] = len(self.gateways)
            self.gateways.append(
                Gateway(
                    enterprise_code=ent,
                    code=gw,
                    members=idx,
                    cycle_ms=cycle,
                    every=every,
                    offset=offset,
                    phase_ms=int(rng.integers(0, cycle)),
                    jitter_sd_ms=cycle * jitter_fraction / 3.0,
                    ts_format=ts_format,
                )
            )
        # Per-point timing, flattened so a chunk is generated for all points at once: point
        # i reports at gateway uploads k = offset_i + j * every_i, j = 0, 1, ...
        self._cycle = np.zeros(n, np.int64)
        self._every = np.ones(n, np.int64)
        self._offset = np.zeros(n, np.int64)
        self._phase = np.zeros(n, np.int64)
        self._jitter_sd = np.zeros(n)
        for g in self.gateways:
            m = g.members
            self._cycle[m] = g.cycle_ms
            self._every[m] = g.every
            self._offset[m] = g.offset
            self._phase[m] = g.phase_ms
            self._jitter_sd[m] = g.jitter_sd_ms
        self._period = self._cycle * self._every
        self._first = self.start_ms + self._phase + self._offset * self._cycle

    # -- lookups -------------------------------------------------------------------------
    def index(self, enterprise_code: str, tag: str) -> int:
        """Index of a point; KeyError naming the point if it is not registered."""
        try:
            return self._index[f"{enterprise_code}/{tag}"]
        except KeyError:
            raise KeyError(f"point {enterprise_code}/{tag} is not in the registry") from None

    def chunk_index(self, t_ms: int) -> int:
        return (int(t_ms) - self.start_ms) // self.chunk_ms

    @property
    def readings_per_second(self) -> float:
        """Average rate of the whole registry (readings per simulated second)."""
        return float(np.sum(1000.0 / self._period))

    # -- the noise-free signal ------------------------------------------------------------
    def base(self, point: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
        """Noise-free normal value of `point[i]` at `ts_ms[i]` (same shapes)."""
        point = np.asarray(point, np.int64)
        ts = np.asarray(ts_ms, np.int64)
        t_rel = (ts - self.start_ms).astype(np.float64)
        local_h = ((ts + LOCAL_OFFSET_MS) % DAY_MS) / HOUR_MS
        v = (
            self.baseline[point]
            + self.drift[point] * (t_rel / DAY_MS)
            + self.diurnal[point] * np.sin(2 * np.pi * (local_h - 9.0) / 24.0)
            + self.swing[point]
            * np.sin(2 * np.pi * t_rel / self.swing_period_ms[point] + self.swing_phase[point])
        )
        occ = self.kind[point] == OCCUPANCY
        if occ.any():
            v[occ] = self._occupancy(point[occ], ts[occ], local_h[occ])
        return v

    def _occupancy(self, point: np.ndarray, ts: np.ndarray, local_h: np.ndarray) -> np.ndarray:
        in_shift = np.zeros(len(ts), bool)
        for a, b in self.shifts:
            in_shift |= (local_h >= a) & (local_h < b)
        # Head-count changes every `dwell` minutes: a stateless hash of (point, slot) keeps
        # it deterministic whatever the chunking.
        slot = (ts // self.dwell_ms).astype(np.uint64)
        h = _mix(
            point.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) ^ slot ^ np.uint64(self.seed)
        )
        count = 1 + (h % self.quota[point].astype(np.uint64)).astype(np.float64)
        return np.where(in_shift, count, 0.0)

    def quantise(self, point: np.ndarray, value: np.ndarray) -> np.ndarray:
        step = self.step[point]
        return np.round(value / step) * step

    # -- chunks -----------------------------------------------------------------------------
    def chunk(self, c: int) -> Chunk:
        """Normal readings with event time in [start + c*chunk_ms, start + (c+1)*chunk_ms)."""
        c0 = self.start_ms + c * self.chunk_ms
        c1 = c0 + self.chunk_ms
        rng = np.random.default_rng([self.seed, int(c) + 1])
        # Nominal report times of point i: first_i + j * period_i, for j in [j_lo, j_hi).
        j_lo = np.maximum(0, -((self._first - c0) // self._period))
        j_hi = np.maximum(0, -((self._first - c1) // self._period))
        counts = j_hi - j_lo
        total = int(counts.sum())
        pt = np.repeat(np.arange(len(self.points), dtype=np.int32), counts)
        starts = np.cumsum(counts) - counts
        j = j_lo[pt] + (np.arange(total, dtype=np.int64) - starts[pt])
        k = self._offset[pt] + j * self._every[pt]  # the gateway upload this reading is in
        # Jitter belongs to the upload (all its readings share one ts): a hash of (gateway,
        # upload) keeps it identical for every point of the upload, whatever the chunking.
        u1, u2 = _uniform2(self.gateway_of[pt].astype(np.uint64), k.astype(np.uint64), self.seed)
        z = np.clip(np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * np.pi * u2), -3.0, 3.0)
        nominal = self.start_ms + self._phase[pt] + k * self._cycle[pt]
        ts = np.clip(np.round(nominal + z * self._jitter_sd[pt]), c0, c1 - 1).astype(np.int64)
        value = self.base(pt, ts) + self.noise[pt] * rng.standard_normal(len(ts))
        n = len(ts)
        return Chunk(
            start_ms=c0,
            end_ms=c1,
            ts_ms=ts,
            point=pt,
            value=value,
            quality=np.zeros(n, np.int8),
            deliver_ms=ts.copy(),
            keep=np.ones(n, bool),
            touched=np.zeros(n, bool),
        )

    def finish(self, chunk: Chunk) -> None:
        """Clamp untouched readings to the measuring range (a transmitter saturates, it does
        not report a fault on noise) and quantise every value to its point's resolution."""
        pt = chunk.point
        v = chunk.value
        calm = ~chunk.touched
        v[calm] = np.clip(v[calm], self.lo[pt[calm]], self.hi[pt[calm]])
        finite = np.isfinite(v)
        v[finite] = self.quantise(pt[finite], v[finite])


def _uniform2(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent uniforms in (0, 1] from hashing (a, b, seed); vectorised."""
    with np.errstate(over="ignore"):
        h1 = _mix(a * np.uint64(0x9E3779B97F4A7C15) ^ _mix(b ^ np.uint64(seed)))
        h2 = _mix(h1 ^ np.uint64(0xD1B54A32D192ED03))
    scale = 1.0 / float(1 << 53)
    return ((h1 >> np.uint64(11)).astype(np.float64) + 1.0) * scale, (h2 >> np.uint64(11)).astype(
        np.float64
    ) * scale


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-mixed 64-bit hash, vectorised (wrapping arithmetic)."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return x
