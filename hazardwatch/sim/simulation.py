"""The simulation: normal signals plus injected incidents, delivered in gateway order as
columnar batches (for replay files and benchmarks) or as MQTT-shaped batch payloads stepped
through simulated time (for the live demo and the MQTT publisher).

Usage (the embedded runner's demo does this)::

    sim = Simulation.demo(points=300, seed=7, start_ms=t0, duration_ms=3 * 3600_000)
    for step in sim.stream(step_ms=1000):           # simulated time, as fast as you pull
        now_ms, messages = step.now_ms, step.messages  # [(topic, payload_bytes), ...]
        ...
    truth = sim.incidents                            # ground truth (also `truth_records()`)

`stream(..., speed=60)` paces the steps in wall-clock time (60 simulated s per real s);
without `speed` the caller sets the pace. Everything is deterministic from the seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hazardwatch.sim import incidents as inc
from hazardwatch.sim.city import generate_registry
from hazardwatch.sim.incidents import Incident, IncidentKind
from hazardwatch.sim.signals import HOUR_MS, SignalModel, _decimals, _linear, _nice_step
from ingest.model import Registry, iso_ms


@dataclass(frozen=True, slots=True)
class Batch:
    """Readings delivered in one chunk of simulated time, ordered by (deliver, gateway, ts,
    point). `deliver_ms > ts_ms` marks back-filled readings (held by their gateway)."""

    ts_ms: np.ndarray  # int64
    point: np.ndarray  # int32 index into registry.points
    value: np.ndarray  # float64, registered unit
    quality: np.ndarray  # int8
    deliver_ms: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.ts_ms)


class SimStep(NamedTuple):
    """One step of simulated time: everything delivered in (now_ms - step, now_ms]."""

    now_ms: int
    messages: list[tuple[str, bytes]]  # (MQTT topic, JSON batch payload)
    readings: int
    counts: tuple[int, ...] = ()  # readings in each message


class Simulation:
    """Normal signals of a registry plus a list of incidents, from `start_ms`."""

    def __init__(
        self,
        registry: Registry,
        *,
        seed: int = 7,
        start_ms: int,
        incidents: Iterable[Incident] = (),
        chunk_ms: int = 300_000,
        topic_prefix: str = "hw",
    ) -> None:
        self.registry = registry
        self.seed = seed
        self.start_ms = int(start_ms)
        self.model = SignalModel(registry, seed=seed, start_ms=start_ms, chunk_ms=chunk_ms)
        self.incidents: list[Incident] = sorted(incidents, key=lambda i: i.start_ms)
        self.topic_prefix = topic_prefix
        self._generated_until = self.start_ms
        self._pending: list[Batch] = []
        self._n_injected = 0
        self._encoder = _PayloadEncoder(self.model, topic_prefix)

    # -- construction helpers -------------------------------------------------------------
    @classmethod
    def demo(
        cls,
        *,
        points: int = 300,
        seed: int = 7,
        start_ms: int,
        duration_ms: int = 3 * HOUR_MS,
        registry: Registry | None = None,
        kinds: Iterable[IncidentKind | str] = inc.ALL_KINDS,
        repeats: int = 1,
        shuffle: bool = False,
        durations: dict[IncidentKind, int] | None = None,
        topic_prefix: str = "hw",
    ) -> Simulation:
        """A city (generated unless `registry` is given) with incidents of every kind spread
        over [start, start + duration): the demo's and the detection benchmark's setup."""
        reg = registry if registry is not None else generate_registry(points, seed)
        sim = cls(reg, seed=seed, start_ms=start_ms, topic_prefix=topic_prefix)
        sim.schedule(
            start_ms + duration_ms,
            kinds=kinds,
            repeats=repeats,
            shuffle=shuffle,
            durations=durations,
        )
        return sim

    def schedule(
        self,
        end_ms: int,
        *,
        kinds: Iterable[IncidentKind | str] = inc.ALL_KINDS,
        repeats: int = 1,
        shuffle: bool = True,
        durations: dict[IncidentKind, int] | None = None,
    ) -> list[Incident]:
        """Schedule incidents over [start, end_ms) (see `incidents.schedule_incidents`)."""
        new = inc.schedule_incidents(
            self.model,
            max(self.start_ms, self._generated_until),
            end_ms,
            seed=self.seed,
            kinds=kinds,
            repeats=repeats,
            shuffle=shuffle,
            durations=durations,
            id_prefix=f"inc{len(self.incidents) or ''}",
        )
        self.incidents = sorted([*self.incidents, *new], key=lambda i: i.start_ms)
        return new

    def inject(
        self,
        kind: IncidentKind | str,
        at_ms: int | None = None,
        *,
        enterprise_code: str | None = None,
        tag_or_gateway: str | None = None,
        duration_ms: int | None = None,
    ) -> Incident:
        """Inject one incident on demand, at `at_ms` or as soon as possible (readings already
        generated cannot change). The subject is chosen at random unless named."""
        kind = IncidentKind(kind)
        t0 = max(int(at_ms) if at_ms is not None else 0, self._generated_until)
        subjects = inc.candidates(self.model, kind)
        if enterprise_code is not None:
            subjects = [s for s in subjects if s[0] == enterprise_code]
        if tag_or_gateway is not None:
            subjects = [
                s
                for s in subjects
                if s[1] == tag_or_gateway
                or s[2][0].tag == tag_or_gateway
                or s[2][0].zone == tag_or_gateway
            ]
        if not subjects:
            raise inc.NoSubject(
                f"no subject for an incident of kind {kind}"
                + (f" in {enterprise_code}" if enterprise_code else "")
                + (f" matching {tag_or_gateway!r}" if tag_or_gateway else "")
            )
        self._n_injected += 1
        rng = np.random.default_rng([self.seed, 0xD0, self._n_injected])
        subject = subjects[int(rng.integers(len(subjects)))]
        new = inc.make_incident(
            self.model,
            kind,
            t0,
            subject,
            rng,
            incident_id=f"ondemand-{self._n_injected:04d}",
            duration_ms=duration_ms,
        )
        self.incidents = sorted([*self.incidents, new], key=lambda i: i.start_ms)
        return new

    @property
    def generated_until(self) -> int:
        """Simulated time (epoch ms) up to which readings have been generated and delivered."""
        return self._generated_until

    def truth_records(self) -> list[dict]:
        return [i.to_record() for i in self.incidents]

    # -- columnar delivery ----------------------------------------------------------------
    def deliveries(self, end_ms: int, *, final: bool = True) -> Iterator[Batch]:
        """Columnar batches of everything delivered until `end_ms`, one per chunk, in delivery
        order, continuing where the previous call stopped. Readings a gateway still holds at
        `end_ms` are delivered at the end when `final`, else kept for the next call."""
        m = self.model
        if end_ms <= self._generated_until:
            return
        c_first = m.chunk_index(self._generated_until)
        c_last = m.chunk_index(end_ms - 1)
        for c in range(c_first, c_last + 1):
            lo_ts = self._generated_until
            chunk = m.chunk(c)
            for incident in self.incidents:
                inc.apply(incident, m, chunk)
            m.finish(chunk)
            hi_ts = min(chunk.end_ms, end_ms)
            keep = chunk.keep & (chunk.ts_ms >= lo_ts) & (chunk.ts_ms < hi_ts)
            self._generated_until = hi_ts
            fresh = Batch(
                chunk.ts_ms[keep],
                chunk.point[keep],
                chunk.value[keep],
                chunk.quality[keep],
                chunk.deliver_ms[keep],
            )
            allb = _concat([*self._pending, fresh])
            if final and c == c_last:
                allb.deliver_ms[:] = np.minimum(allb.deliver_ms, end_ms - 1)
                due = np.ones(len(allb), bool)
            else:
                due = allb.deliver_ms < hi_ts
            self._pending = [_take(allb, ~due)] if not due.all() else []
            yield _ordered(_take(allb, due), m.gateway_of)

    # -- MQTT-shaped stream ---------------------------------------------------------------
    def stream(
        self,
        end_ms: int | None = None,
        *,
        step_ms: int = 1000,
        speed: float | None = None,
    ) -> Iterator[SimStep]:
        """Steps of `step_ms` simulated time with the batch payloads delivered in each (empty
        steps too, so a consumer's timers advance during an outage), on a fixed grid from the
        current simulated time; the last step ends exactly at `end_ms` (forever if None).
        With `speed`, each step is yielded no earlier than its simulated time divided by
        `speed` after the first (wall clock)."""
        if step_ms <= 0:
            raise ValueError(f"step_ms must be > 0, got {step_ms}")
        wall0 = time.monotonic()
        sim0 = now = self._generated_until
        edge = sim0 + step_ms  # end of the step being filled
        carry: Batch | None = None  # delivered readings not yet in a yielded step

        def emit(b: Batch, lo: int, hi: int, step_end: int) -> SimStep:
            msgs, counts = self._encoder.encode(b, lo, hi)
            if speed:
                delay = wall0 + (step_end - sim0) / 1000.0 / speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return SimStep(step_end, msgs, hi - lo, counts)

        while end_ms is None or now < end_ms:
            chunk_end = (
                self.model.start_ms + (self.model.chunk_index(now) + 1) * self.model.chunk_ms
            )
            stop = chunk_end if end_ms is None else min(chunk_end, end_ms)
            for batch in self.deliveries(stop, final=stop == end_ms):
                b = batch if carry is None else _concat([carry, batch])
                lo = 0
                while edge <= stop:
                    hi = int(np.searchsorted(b.deliver_ms, edge))
                    yield emit(b, lo, hi, edge)
                    lo = hi
                    edge += step_ms
                carry = _take(b, slice(lo, len(b)))
            now = stop
        if carry is not None and end_ms is not None and edge - step_ms < end_ms:
            yield emit(carry, 0, len(carry), end_ms)  # the last, shorter step

    # -- replay file ------------------------------------------------------------------------
    def write_readings_csv(
        self,
        path,
        end_ms: int,
        *,
        ts_format: str = "epoch_ms",
        progress: Callable[[int], None] | None = None,
        speed: float | None = None,
    ) -> int:
        """Write the replay CSV (`ts,enterprise_code,tag,value,unit,quality`) of everything
        delivered until `end_ms`, in delivery order, streamed step by step (a simulated week
        does not fit in memory); returns the number of rows. `progress` gets the simulated ms
        written so far. With `speed`, rows are written and flushed as their simulated time
        comes (speed x real time, in 1 s simulated steps), for a consumer following the file."""
        if ts_format not in ("epoch_ms", "iso"):
            raise ValueError(f"ts_format must be epoch_ms or iso, got {ts_format!r}")
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        enc = self._encoder
        rows = 0
        sim0 = prev = self._generated_until
        wall0 = time.monotonic()
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write("ts,enterprise_code,tag,value,unit,quality\n")
            for batch in self.deliveries(end_ms):
                rows += len(batch)
                if speed is None:
                    f.write(enc.csv_rows(batch, ts_format))
                else:
                    edges = np.arange(prev + 1000, self._generated_until + 1000, 1000)
                    cuts = [0, *np.searchsorted(batch.deliver_ms, edges).tolist()]
                    for edge, lo, hi in zip(edges.tolist(), cuts[:-1], cuts[1:], strict=True):
                        delay = wall0 + (edge - sim0) / 1000.0 / speed - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                        if hi > lo:
                            f.write(enc.csv_rows(_take(batch, slice(lo, hi)), ts_format))
                            f.flush()
                prev = self._generated_until
                if progress is not None:
                    progress(self._generated_until - self.start_ms)
        return rows


class _PayloadEncoder:
    """Turns columnar batches into batch payloads (one per gateway upload) and CSV rows,
    converting values to each point's publish unit (the ppm ammonia heads)."""

    def __init__(self, model: SignalModel, topic_prefix: str) -> None:
        self.model = model
        pts = model.points
        n = len(pts)
        self.scale = np.ones(n)
        self.offset = np.zeros(n)
        self.decimals = model.decimals.astype(np.int64).copy()
        self.publish_unit: list[str] = []
        for i, p in enumerate(pts):
            pu = p.attrs.get("sim_publish_unit", "") or p.unit
            conv = _linear(p.unit, pu, p.parameter) if pu != p.unit else (1.0, 0.0)
            if conv is None:
                pu, conv = p.unit, (1.0, 0.0)
            self.scale[i], self.offset[i] = conv
            if pu != p.unit:
                self.decimals[i] = _decimals(_nice_step(model.step[i] * abs(conv[0])))
            self.publish_unit.append(pu)
        # One printf-style template per point: `template % (value, quality)` is the fastest
        # way CPython has to format a reading (a load run needs ~100k of them per second).
        self.item_fmt = [
            f'{{"tag":"{_pct(_json_str(p.tag))}","v":%.{int(d)}f,"q":%d'
            + (f',"u":"{_pct(_json_str(u))}"' if u != p.unit else "")
            + "}"
            for p, u, d in zip(pts, self.publish_unit, self.decimals.tolist(), strict=True)
        ]
        self.csv_fmt = [
            f"{_pct(p.enterprise_code)},{_pct(p.tag)},%.{int(d)}f,{_pct(u)},%d\n"
            for p, u, d in zip(pts, self.publish_unit, self.decimals.tolist(), strict=True)
        ]
        self.topics = [f"{topic_prefix}/{g.enterprise_code}/{g.code}/data" for g in model.gateways]
        self.iso_gw = np.array([g.ts_format == "iso" for g in model.gateways], bool)

    def published(self, batch: Batch, lo: int, hi: int) -> np.ndarray:
        pt = batch.point[lo:hi]
        return batch.value[lo:hi] * self.scale[pt] + self.offset[pt]

    def encode(
        self, batch: Batch, lo: int, hi: int
    ) -> tuple[list[tuple[str, bytes]], tuple[int, ...]]:
        """Batch payloads for readings lo..hi of `batch`, one per (gateway, upload ts), and
        the number of readings in each."""
        if hi <= lo:
            return [], ()
        pt = batch.point[lo:hi]
        ts = batch.ts_ms[lo:hi]
        q = batch.quality[lo:hi]
        val = self.published(batch, lo, hi)
        gw = self.model.gateway_of[pt]
        brk = np.nonzero((gw[1:] != gw[:-1]) | (ts[1:] != ts[:-1]))[0] + 1
        starts = [0, *brk.tolist()]
        ends = [*brk.tolist(), len(pt)]
        out = []
        fmt = self.item_fmt
        iso = self.iso_gw.tolist()
        gwl, tsl = gw.tolist(), ts.tolist()
        ptl, vl, ql = pt.tolist(), val.tolist(), q.tolist()
        for a, b in zip(starts, ends, strict=True):
            g = gwl[a]
            t = tsl[a]
            ts_s = f'"{_iso_cst(t)}"' if iso[g] else str(t)
            items = ",".join([fmt[p] % (vl[j], ql[j]) for j, p in enumerate(ptl[a:b], a)])
            out.append((self.topics[g], f'{{"ts":{ts_s},"data":[{items}]}}'.encode()))
        return out, tuple(b - a for a, b in zip(starts, ends, strict=True))

    def csv_rows(self, batch: Batch, ts_format: str) -> str:
        val = self.published(batch, 0, len(batch)).tolist()
        fmt = self.csv_fmt
        ts = batch.ts_ms.tolist()
        if ts_format == "iso":
            ts = [iso_ms(t) for t in ts]
        return "".join(
            [
                f"{t},{fmt[p] % (v, q)}"
                for t, p, v, q in zip(
                    ts, batch.point.tolist(), val, batch.quality.tolist(), strict=True
                )
            ]
        )


def _pct(s: str) -> str:
    """Escape '%' for a printf-style template."""
    return s.replace("%", "%%")


def _json_str(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _iso_cst(ms: int) -> str:
    """Epoch ms -> ISO 8601 in Beijing time with its offset, as some gateways send it."""
    sec, milli = divmod(ms + 8 * 3_600_000, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{milli:03d}+08:00"


def _concat(batches: Sequence[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return Batch(*(np.concatenate([getattr(b, f) for b in batches]) for f in Batch.__slots__))


def _take(b: Batch, sel: np.ndarray) -> Batch:
    return Batch(b.ts_ms[sel], b.point[sel], b.value[sel], b.quality[sel], b.deliver_ms[sel])


def _ordered(b: Batch, gateway_of: np.ndarray) -> Batch:
    order = np.lexsort((b.point, b.ts_ms, gateway_of[b.point], b.deliver_ms))
    return _take(b, order)


def stream(
    registry: Registry,
    seed: int,
    start_ms: int,
    speed: float | None,
    incidents: Iterable[Incident],
    *,
    end_ms: int | None = None,
    step_ms: int = 1000,
    topic_prefix: str = "hw",
) -> Iterator[SimStep]:
    """Shorthand for `Simulation(registry, ...).stream(end_ms, step_ms=..., speed=...)`.
    The ground truth is the `incidents` you pass (build them with `Simulation.demo(...)`,
    `schedule_incidents` or `make_incident`)."""
    sim = Simulation(
        registry, seed=seed, start_ms=start_ms, incidents=incidents, topic_prefix=topic_prefix
    )
    return sim.stream(end_ms, step_ms=step_ms, speed=speed)
