"""The embedded runner: one process, MQTT (or the simulator) in, the rules engine, the warning
model and the alerts stage on ONE evaluation thread, notifications delivered by an outbox
thread, time series written by a writer thread that is never on the alarm path.

`Pipeline` is the evaluation core (synchronous, owns all evaluation state; the demo drives it
directly in simulated time). `EmbeddedRunner` adds the threads around it: a bounded in-process
queue fed by the source, adaptive batching (whatever is queued when the evaluator is free), a
1 s wall-clock ticker so offline and escalation timers fire without new data, a commit thread
that writes the engine state + input position to SQLite (one write for all batches since the
last) and only then acks their MQTT messages, hot reload between batches, and a graceful
shutdown that flushes everything.

Order, and why it is crash-safe: normalise -> engine -> warnings -> alerts service (its own
SQLite: alarm state and outbox, one transaction per batch) -> outbox woken -> engine snapshot
written -> MQTT ack. A crash before the snapshot write re-processes the batches from the
broker's redelivery; alarm ids are deterministic and the alerts service ignores events it
already has, so nothing is duplicated, and since acks wait for the write nothing is lost.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from hazardwatch.engine_store import EngineStore
from hazardwatch.metrics import Metrics

log = logging.getLogger(__name__)


class RawMessage(NamedTuple):
    """One message as a source received it. `ack` runs after the batch holding it committed."""

    topic: str
    payload: bytes
    received_ms: int
    ack: Callable[[], None] | None = None


@dataclass(slots=True)
class Stages:
    """The pure cores the pipeline calls, built by `hazardwatch.wiring` from settings.

    `alerts` may be None (replay-like runs that only want alarms); `registry` and `ruleset` are
    kept to name the running rules and to map readings to points for the time-series writer.
    """

    registry: Any
    ruleset: Any
    normalizer: Any
    engine: Any
    warnings: Any
    alerts: Any | None = None

    @property
    def ruleset_version(self) -> str:
        return str(getattr(self.ruleset, "version", ""))


@dataclass(frozen=True, slots=True)
class RiskContext:
    """What the time-series feed needs, once a minute, to write the enterprises' dynamic risk
    and online rate: the warning model's open and overdue warnings and the running rules."""

    now_ms: int
    open_warnings: tuple[Any, ...]
    overdue: tuple[Any, ...]
    ruleset: Any
    weights: Any


@dataclass(slots=True)
class BatchOutcome:
    readings: list[Any] = field(default_factory=list)
    alarms: list[Any] = field(default_factory=list)
    warnings: list[Any] = field(default_factory=list)
    rejects: list[Any] = field(default_factory=list)
    risk: RiskContext | None = None


class PendingSave(NamedTuple):
    """A serialised snapshot waiting for its write (see `Pipeline.snapshot`)."""

    engine: bytes
    warnings: bytes
    position: dict[str, Any]
    ruleset: str
    now_ms: int


class TimeseriesSink(Protocol):
    """Where readings, alarms and warnings go for InfluxDB (see `wiring.TimeseriesFeed`)."""

    def submit(self, outcome: BatchOutcome) -> None: ...


class PipelineListener(Protocol):
    def on_batch(self, outcome: BatchOutcome, now_ms: int) -> None: ...


class Pipeline:
    """Evaluation core. Not thread-safe by design: exactly one thread calls it."""

    def __init__(
        self,
        stages: Stages,
        *,
        start_ms: int,
        store: EngineStore | None = None,
        metrics: Metrics | None = None,
        sink: TimeseriesSink | None = None,
        on_reject: Callable[[Any], None] | None = None,
        listeners: Iterable[PipelineListener] = (),
        alerts_tick_ms: int = 0,
        risk_every_ms: int = 60_000,
    ) -> None:
        self.stages = stages
        # Dynamic risk and online rate go to the time-series feed at this cadence (ticks).
        self.risk_every_ms = risk_every_ms
        self._last_risk = -(1 << 62)
        # The alerts stage's timers are minutes long (escalation, reminders); a simulated run
        # may tick them less often than the engine to save a SQLite transaction per tick.
        self.alerts_tick_ms = alerts_tick_ms
        self._last_alerts_tick = -(1 << 62)
        self.store = store
        self.metrics = metrics or Metrics()
        self.sink = sink
        self.on_reject = on_reject
        self.listeners = list(listeners)
        self.position: dict[str, Any] = {}
        self.restored = False
        snap = store.load() if store is not None else None
        if snap is not None:
            # Keyed by point key inside: loads into an engine built from newer rules too.
            self.engine_state = stages.engine.load_state(snap.engine)
            self.warning_state = _load_warnings(stages.warnings, snap.warnings)
            self.position = dict(snap.position)
            self.restored = True
            log.info(
                "restored engine state of batch %d (saved by ruleset %s)",
                snap.batches,
                snap.ruleset or "?",
            )
        else:
            self.engine_state = stages.engine.initial_state(start_ms)
            self.warning_state = stages.warnings.initial_state()
        self.metrics.set_ruleset(stages.ruleset_version)
        self._dirty = False
        self._engine_now_ms = start_ms
        self.last_save_s = 0.0

    # -- the two inputs: data and time ----------------------------------------------------------
    def process(self, messages: Sequence[RawMessage], now_ms: int) -> BatchOutcome:
        """Normalise and evaluate one batch of messages (state is not committed here)."""
        out = BatchOutcome()
        normalize = self.stages.normalizer.normalize
        lag_from: int | None = None
        for m in messages:
            res = normalize(m.topic, m.payload, m.received_ms)
            if res.readings:
                out.readings.extend(res.readings)
            if res.rejects:
                out.rejects.extend(res.rejects)
            if lag_from is None or m.received_ms < lag_from:
                lag_from = m.received_ms
        for dl in out.rejects:
            self.metrics.observe_reject(str(dl.reason))
            if self.on_reject is not None:
                self.on_reject(dl)
        self.engine_state, out.alarms = self.stages.engine.process(
            self.engine_state, out.readings, now_ms
        )
        self._engine_now_ms = now_ms
        self._after_engine(out, now_ms)
        self.metrics.observe_batch(
            len(messages), len(out.readings), None if lag_from is None else now_ms - lag_from
        )
        return out

    def tick(self, now_ms: int, min_engine_gap_ms: int = 0) -> BatchOutcome:
        """Advance timers to `now_ms` with no new data (offline, on-delays, escalation).

        `process()` already runs the engine's timers up to its `now`; when it did so less
        than `min_engine_gap_ms` ago the engine pass (a sweep over every point) is skipped
        and only the warning and alerts timers run."""
        out = BatchOutcome()
        # `not 0 <= gap < interval`: due, or the clock went back (an adopted backward step of
        # the host clock, hazardwatch/clock.py), which must not stall this for the step.
        if not 0 <= now_ms - self._engine_now_ms < min_engine_gap_ms:
            self.engine_state, out.alarms = self.stages.engine.tick(self.engine_state, now_ms)
            self._engine_now_ms = now_ms
        if self.sink is not None and not 0 <= now_ms - self._last_risk < self.risk_every_ms:
            self._last_risk = now_ms
            wm, ws = self.stages.warnings, self.warning_state
            out.risk = RiskContext(
                now_ms=now_ms,
                open_warnings=tuple(wm.open_warnings(ws)),
                overdue=tuple(wm.overdue(ws, now_ms)),
                ruleset=self.stages.ruleset,
                weights=wm.config.risk,
            )
        self._after_engine(out, now_ms, tick=True)
        return out

    def _after_engine(self, out: BatchOutcome, now_ms: int, tick: bool = False) -> None:
        st = self.stages
        if out.alarms:
            self.warning_state, out.warnings = st.warnings.on_alarms(
                self.warning_state, out.alarms, now_ms
            )
        if tick:
            self.warning_state, more = st.warnings.tick(self.warning_state, now_ms)
            out.warnings.extend(more)
        if st.alerts is not None:
            alerts_tick = tick and not 0 <= now_ms - self._last_alerts_tick < self.alerts_tick_ms
            if out.alarms or out.warnings or alerts_tick:
                # Group commit: every transition of the batch (alarm state, journal, outbox
                # rows) in ONE transaction, so one fsync however many alarms a batch holds.
                # A crash inside loses the whole group, which the broker redelivers (acks
                # wait for the engine commit that follows).
                group = getattr(st.alerts, "batch", None)
                with group() if group is not None else contextlib.nullcontext():
                    for ev in out.alarms:
                        st.alerts.on_alarm(ev, now_ms)
                    for wev in out.warnings:
                        st.alerts.on_warning(wev, now_ms)
                    if alerts_tick:
                        st.alerts.tick(now_ms)
                        self._last_alerts_tick = now_ms
        for ev in out.alarms:
            self.metrics.observe_alarm(str(ev.kind), ev.level and str(ev.level), str(ev.state))
        for wev in out.warnings:
            self.metrics.observe_warning(str(wev.colour), str(wev.state))
        if out.alarms or out.warnings or out.readings:
            self._dirty = True
        if self.sink is not None and (out.readings or out.alarms or out.warnings or out.risk):
            self.sink.submit(out)
        for listener in self.listeners:
            listener.on_batch(out, now_ms)

    # -- commit ---------------------------------------------------------------------------------
    def commit(self, now_ms: int, position: dict[str, Any] | None = None) -> bool:
        """Persist engine + warning state and the input position in one transaction."""
        snap = self.snapshot(now_ms, position)
        if snap is None:
            return False
        self.save(snap)
        return True

    def snapshot(self, now_ms: int, position: dict[str, Any] | None = None) -> PendingSave | None:
        """What `commit` would save, serialised now (on the evaluation thread, which owns the
        state), for `save` to write later from another thread; None when nothing changed."""
        if position:
            self.position.update(position)
            self._dirty = True
        if self.store is None or not self._dirty:
            return None
        self._dirty = False
        return PendingSave(
            self.engine_state.to_bytes(),
            self.warning_state.to_bytes(),
            dict(self.position),
            self.stages.ruleset_version,
            now_ms,
        )

    def save(self, snap: PendingSave) -> None:
        """Write a snapshot in one transaction (synchronous=FULL: durable when it returns).
        Touches only the store, so the runner calls it from its commit thread."""
        assert self.store is not None
        t0 = time.perf_counter()
        self.store.save(snap.engine, snap.warnings, snap.position, snap.ruleset, snap.now_ms)
        self.last_save_s = time.perf_counter() - t0

    # -- control --------------------------------------------------------------------------------
    def swap(self, stages: Stages) -> None:
        """Hot reload: move the open alarms and timers into an engine built from new rules."""
        self.engine_state = stages.engine.load_state(self.engine_state.to_bytes())
        self.warning_state = _load_warnings(stages.warnings, self.warning_state.to_bytes())
        self.stages = stages
        self.metrics.set_ruleset(stages.ruleset_version)
        self._dirty = True

    def reset_alarm(self, alarm_id: str, now_ms: int) -> BatchOutcome:
        """A latched alarm was disposed while still present: reset it at the engine (it
        re-asserts as a new firing if the condition is still there)."""
        out = BatchOutcome()
        self.engine_state, out.alarms = self.stages.engine.reset(
            self.engine_state, alarm_id, now_ms
        )
        self._after_engine(out, now_ms)
        self._dirty = True
        return out

    def close_warning(self, warning_id: str, now_ms: int) -> None:
        """A disposition was filed in the alerts stage: the warning model may close it."""
        try:
            self.warning_state, events = self.stages.warnings.close(
                self.warning_state, warning_id, now_ms
            )
        except KeyError:
            # Already closed before a restart, or raised by rules since replaced: nothing open.
            log.warning("disposition for unknown or closed warning %s ignored", warning_id)
            return
        out = BatchOutcome(warnings=list(events or []))
        if self.stages.alerts is not None:
            for wev in out.warnings:
                self.stages.alerts.on_warning(wev, now_ms)
        for wev in out.warnings:
            self.metrics.observe_warning(str(wev.colour), str(wev.state))
        self._dirty = True
        if self.sink is not None and out.warnings:
            self.sink.submit(out)
        for listener in self.listeners:
            listener.on_batch(out, now_ms)


def _load_warnings(model: Any, data: bytes) -> Any:
    """Warning state from bytes: the model's state type knows its own format."""
    return type(model.initial_state()).load(data)


# ------------------------------------------------------------------------------------------------
# The threaded shell around the pipeline.


class Source(Protocol):
    """A message source: delivers RawMessages until stopped (MQTT, the simulator, a file)."""

    def start(self, deliver: Callable[[RawMessage], None]) -> None: ...

    def stop(self) -> None: ...


class OutboxLike(Protocol):
    def deliver_due(self, now_ms: int, channels: Any) -> Any: ...


def wall_ms() -> int:
    # The guarded clock: a step of the system clock neither floods nor stalls the timers.
    from hazardwatch.clock import wall_ms as guarded_wall_ms

    return guarded_wall_ms()


@dataclass(frozen=True, slots=True)
class RunnerConfig:
    batch_max_messages: int = 2000
    # Adaptive batching: a batch is whatever is queued when the evaluator is free (up to
    # batch_max_messages), so at low load a message is evaluated at once and under load
    # batches grow by themselves. A wait > 0 only trades latency for bigger batches.
    batch_max_wait_ms: int = 0
    queue_max: int = 20000  # bounded: a source blocks (and MQTT stops acking) when we lag
    tick_interval_ms: int = 1000
    # Group commit: one snapshot write (one fsync) per interval covers every batch since the
    # last one; acks wait for it, and a crash re-processes at most this much input.
    commit_interval_ms: int = 200
    outbox_interval_ms: int = 100
    shutdown_timeout_s: float = 10.0


_STOP = object()


class EmbeddedRunner:
    """Runs a Pipeline with its threads. `start()` returns at once; `stop()` shuts down
    gracefully (source stopped, queue drained, state committed, messages acked, outbox given a
    last delivery round, writer flushed)."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: Source | None,
        *,
        config: RunnerConfig | None = None,
        outbox: OutboxLike | None = None,
        channels: Any = None,
        reloader: Any = None,
        clock: Callable[[], int] = wall_ms,
        on_stop: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.cfg = config or RunnerConfig()
        self.outbox = outbox
        self.channels = channels
        self.reloader = reloader
        self.clock = clock
        self._on_stop = list(on_stop)
        self._q: queue.Queue[Any] = queue.Queue(self.cfg.queue_max)
        self._control: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._outbox_wake = threading.Event()
        self._eval_thread = threading.Thread(target=self._eval_loop, name="hw-eval", daemon=True)
        self._outbox_thread = threading.Thread(
            target=self._outbox_loop, name="hw-outbox", daemon=True
        )
        # Snapshot writes (and the acks waiting for them) run on their own thread, so the
        # evaluator never waits for an fsync: one write in flight, the next one queued.
        self._commits: queue.Queue[Any] = queue.Queue(maxsize=1)
        self._commit_idle = threading.Event()
        self._commit_idle.set()
        self._commit_thread = threading.Thread(
            target=self._commit_loop, name="hw-commit", daemon=True
        )
        self._failure: BaseException | None = None
        self.stopped = threading.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> EmbeddedRunner:
        self._commit_thread.start()
        self._eval_thread.start()
        if self.outbox is not None:
            self._outbox_thread.start()
        if self.source is not None:
            self.source.start(self.deliver)
        return self

    def deliver(self, msg: RawMessage) -> None:
        """Source callback: blocks when the queue is full (backpressure, no silent drop)."""
        self._q.put(msg)

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the evaluation thread between batches (warning closed, reset, ...)."""
        self._control.put(fn)

    def stop(self) -> None:
        if self._stopping.is_set():
            self.stopped.wait(self.cfg.shutdown_timeout_s * 2)
            return
        log.info("stopping: draining the queue and committing state")
        # Take nothing new, drain and commit what is queued, ack it while still connected,
        # and only then disconnect: a clean stop leaves nothing for the broker to redeliver.
        pause = getattr(self.source, "pause", None)
        if pause is not None:
            pause()
        elif self.source is not None:
            self._stop_source()
        self._stopping.set()
        self._q.put(_STOP)
        self._eval_thread.join(self.cfg.shutdown_timeout_s)
        self._finish_commits()  # normally done by the evaluator's last round already
        if pause is not None:
            self._stop_source()
        self._outbox_wake.set()
        if self._outbox_thread.is_alive():
            self._outbox_thread.join(self.cfg.shutdown_timeout_s)
        for fn in self._on_stop:
            try:
                fn()
            except Exception:
                log.exception("shutdown step failed")
        self.stopped.set()

    def _stop_source(self) -> None:
        try:
            self.source.stop()  # type: ignore[union-attr]
        except Exception:
            log.exception("source did not stop cleanly")

    def wait(self, timeout: float | None = None) -> bool:
        return self.stopped.wait(timeout)

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    # -- evaluation thread ----------------------------------------------------------------------
    def _eval_loop(self) -> None:
        cfg = self.cfg
        p = self.pipeline
        pending_acks: list[Callable[[], None]] = []
        last_tick = last_commit = self.clock()
        stop_seen = False
        try:
            while True:
                batch: list[RawMessage] = []
                timeout = max(0.0, (last_tick + cfg.tick_interval_ms - self.clock()) / 1000)
                try:
                    first = self._q.get(timeout=min(timeout, 0.2))
                except queue.Empty:
                    first = None
                if first is _STOP:
                    stop_seen = True
                elif first is not None:
                    batch.append(first)
                    stop_seen = self._fill(batch)
                now = self.clock()
                wake = False
                if batch:
                    out = p.process(batch, now)
                    pending_acks.extend(m.ack for m in batch if m.ack is not None)
                    # Notifications come from transitions; the alerts stage has stored them
                    # (committed) by now, so the outbox may send them at once.
                    wake = bool(out.alarms or out.warnings)
                while True:
                    try:
                        fn = self._control.get_nowait()
                    except queue.Empty:
                        break
                    fn()
                    wake = True
                if self.reloader is not None and self.reloader.pending:
                    self.reloader.poll()
                # Also when the clock went back (an adopted backward step): never wait it out.
                if not 0 <= now - last_tick < cfg.tick_interval_ms:
                    p.tick(now, min_engine_gap_ms=cfg.tick_interval_ms // 2)
                    last_tick = now
                    wake = True
                if wake:
                    self._outbox_wake.set()
                # The snapshot write runs on the commit thread: here it is only serialised
                # and handed over with the acks it covers. At most one write in flight; while
                # it runs, batches go on and their acks join the next write (a group
                # commit). A large registry's snapshot takes a while, so the disk is kept
                # busy with snapshots at most ~20 % of the time (alarm fsyncs share it).
                interval = max(cfg.commit_interval_ms, int(p.last_save_s * 5000))
                must = stop_seen or len(pending_acks) >= cfg.queue_max // 2
                due = not 0 <= now - last_commit < interval  # or the clock went back
                if must or (due and self._commit_idle.is_set()):
                    snap = p.snapshot(now, {"committed_ms": now})
                    self._commit_idle.clear()
                    self._commits.put((snap, pending_acks))  # waits while one is queued
                    pending_acks = []
                    last_commit = now
                if stop_seen:
                    self._finish_commits()
                    break
        except BaseException as exc:  # the process must not limp on without its evaluator
            self._failure = exc
            log.exception("evaluation thread failed; stopping")
            threading.Thread(target=self.stop, daemon=True).start()

    def _fill(self, batch: list[RawMessage]) -> bool:
        """Add whatever is queued to `batch` (up to the bound, waiting at most
        batch_max_wait_ms for more); True when the stop marker was met."""
        cfg = self.cfg
        deadline = time.monotonic() + cfg.batch_max_wait_ms / 1000
        while len(batch) < cfg.batch_max_messages:
            try:
                m = self._q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    m = self._q.get(timeout=left)
                except queue.Empty:
                    break
            if m is _STOP:
                return True
            batch.append(m)
        return False

    # -- commit thread --------------------------------------------------------------------------
    def _commit_loop(self) -> None:
        """Write each handed-over snapshot, then send the acks it covers (in hand-over order:
        an ack never precedes the write of the state its message produced)."""
        while True:
            item = self._commits.get()
            if item is _STOP:
                return
            snap, acks = item
            if self._failure is None:
                try:
                    if snap is not None:
                        self.pipeline.save(snap)
                    for ack in acks:
                        ack()
                except BaseException as exc:
                    # Not durable, so not acked: the broker redelivers it to the next run.
                    self._failure = exc
                    log.exception("state commit failed; stopping")
                    threading.Thread(target=self.stop, daemon=True).start()
            if self._commits.empty():
                self._commit_idle.set()

    def _finish_commits(self) -> None:
        """Wait for the handed-over writes and their acks, then end the commit thread."""
        if not self._commit_thread.is_alive():
            return
        self._commits.put(_STOP)
        self._commit_thread.join(self.cfg.shutdown_timeout_s)

    # -- outbox thread --------------------------------------------------------------------------
    def _outbox_loop(self) -> None:
        assert self.outbox is not None
        while True:
            self._outbox_wake.wait(self.cfg.outbox_interval_ms / 1000)
            self._outbox_wake.clear()
            try:
                self.outbox.deliver_due(self.clock(), self.channels)
            except Exception:
                log.exception("outbox delivery round failed; will retry")
            if self._stopping.is_set() and not self._eval_thread.is_alive():
                # One last round after the final batch, then leave the rest to the next start.
                try:
                    self.outbox.deliver_due(self.clock(), self.channels)
                except Exception:
                    log.exception("final outbox delivery round failed")
                return
