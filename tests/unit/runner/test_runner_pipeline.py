"""The evaluation core and its threaded shell, on stand-in cores: batching, the commit/ack
order that makes `kill -9` safe, the wall-clock ticker, reload between batches, shutdown."""

from __future__ import annotations

import threading
import time

from hazardwatch.engine_store import EngineStore
from hazardwatch.metrics import Metrics
from hazardwatch.reload import Reloader
from hazardwatch.runner import EmbeddedRunner, Pipeline, RawMessage, RunnerConfig

from .fakes import FakeAlerts, FakeEngine, fake_stages


def msg(payload: bytes, t: int, ack=None) -> RawMessage:
    return RawMessage("hw/E1/G1/data", payload, t, ack)


def test_batch_flows_through_engine_warnings_and_alerts():
    alerts = FakeAlerts()
    rejects = []
    p = Pipeline(fake_stages(alerts), start_ms=0, on_reject=rejects.append)
    out = p.process([msg(b"E1/T1=5", 1000), msg(b"E1/T1=12", 1100), msg(b"bad", 1100)], 1200)
    assert [(a.alarm_id, a.state) for a in out.alarms] == [("limit:E1/T1", "firing")]
    assert [w.warning_id for w in out.warnings] == ["w:limit:E1/T1"]
    assert [a.alarm_id for a in alerts.alarms] == ["limit:E1/T1"]
    assert [w.state for w in alerts.warnings] == ["raised"]
    assert [r.reason for r in rejects] == ["malformed_json"]
    f = p.metrics.figures()
    assert (f.readings_in, f.rejects, f.alarms) == (2, 1, 1)


def test_tick_fires_timers_without_data():
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0)
    p.process([msg(b"E1/T1=1", 1000)], 1000)
    assert p.tick(5999).alarms == []
    out = p.tick(6000)
    assert [(a.kind, a.state) for a in out.alarms] == [("offline", "firing")]
    assert alerts.ticks == 2


def test_restart_restores_state_so_nothing_fires_twice(tmp_path):
    store = EngineStore(tmp_path / "s.db")
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0, store=store)
    p.process([msg(b"E1/T1=12", 1000)], 1000)
    assert p.commit(1000, {"sim_index": 1})
    store.close()
    # a new process: the open alarm is restored, the same reading again changes nothing
    store2 = EngineStore(tmp_path / "s.db")
    p2 = Pipeline(fake_stages(alerts), start_ms=5000, store=store2)
    assert p2.restored and p2.position == {"sim_index": 1}
    assert p2.process([msg(b"E1/T1=13", 2000)], 2000).alarms == []
    out = p2.process([msg(b"E1/T1=3", 3000)], 3000)
    assert [(a.alarm_id, a.state) for a in out.alarms] == [("limit:E1/T1", "cleared")]


def test_commit_skipped_when_nothing_changed(tmp_path):
    store = EngineStore(tmp_path / "s.db")
    p = Pipeline(fake_stages(), start_ms=0, store=store)
    assert not p.commit(0)
    p.process([msg(b"E1/T1=1", 10)], 10)
    assert p.commit(10)
    assert not p.commit(20)
    assert store.batches == 1


def test_swap_keeps_open_alarms_under_new_rules():
    p = Pipeline(fake_stages(), start_ms=0)
    p.process([msg(b"E1/T1=12", 1000)], 1000)
    p.swap(fake_stages(engine=FakeEngine(limit=20.0, version="v2")))
    assert p.metrics.registry.get_sample_value("hw_ruleset_info", {"version": "v2"}) == 1
    # 15 is fine under the new limit: the alarm opened under v1 clears
    out = p.process([msg(b"E1/T1=15", 2000)], 2000)
    assert [(a.alarm_id, a.state) for a in out.alarms] == [("limit:E1/T1", "cleared")]


def test_close_warning_reaches_model_and_alerts():
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0)
    p.process([msg(b"E1/T1=12", 1000)], 1000)
    p.close_warning("w:limit:E1/T1", 2000)
    assert [w.state for w in alerts.warnings] == ["raised", "closed"]
    assert p.warning_state.open == {}


class ListSource:
    def __init__(self, msgs):
        self.msgs = msgs
        self.stopped = False

    def start(self, deliver):
        threading.Thread(target=lambda: [deliver(m) for m in self.msgs], daemon=True).start()

    def stop(self):
        self.stopped = True


class SlowStore(EngineStore):
    """Records, at each save, which acks had already been sent."""

    def __init__(self, path, acked):
        super().__init__(path)
        self.acked = acked
        self.acked_at_save: list[int] = []

    def save(self, *a, **kw):
        self.acked_at_save.append(len(self.acked))
        super().save(*a, **kw)


def test_runner_acks_only_after_commit_and_flushes_on_stop(tmp_path):
    acked: list[int] = []
    store = SlowStore(tmp_path / "s.db", acked)
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0, store=store)
    msgs = [
        msg(f"E1/T{i % 7}={i % 15}".encode(), 1000 + i, (lambda i=i: acked.append(i)))
        for i in range(500)
    ]
    clock = [10_000]
    r = EmbeddedRunner(
        p,
        ListSource(msgs),
        clock=lambda: clock[0],
        config=RunnerConfig(commit_interval_ms=10_000, tick_interval_ms=10**9),
    )
    r.start()
    deadline = time.monotonic() + 10
    while p.metrics.figures().readings_in < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    # the clock has not moved: no commit yet, so nothing may be acked
    assert acked == []
    r.stop()
    assert sorted(acked) == list(range(500))
    assert store.acked_at_save[-1] == 0  # the final commit happened before any ack
    assert r.source.stopped
    snap = EngineStore(tmp_path / "s.db").load()
    assert snap is not None and snap.position["committed_ms"] == 10_000


def test_runner_ticks_on_wall_clock_and_runs_reload_between_batches(tmp_path):
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0, metrics=Metrics())
    applied = []
    reloader = Reloader(
        lambda: fake_stages(alerts, FakeEngine(limit=50, version="v9")),
        lambda s: (p.swap(s), applied.append(s)),
        lambda s: s.ruleset_version,
    )
    clock = [1000]
    r = EmbeddedRunner(
        p,
        ListSource([msg(b"E1/T1=1", 1000)]),
        clock=lambda: clock[0],
        reloader=reloader,
        config=RunnerConfig(tick_interval_ms=1000),
    )
    r.start()
    deadline = time.monotonic() + 5
    while p.metrics.figures().readings_in < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    clock[0] = 7000  # 6 s without data: the ticker must raise the offline alarm
    while not any(a.kind == "offline" for a in alerts.alarms) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [(a.kind, a.state) for a in alerts.alarms] == [("offline", "firing")]
    reloader.request("api")
    while not applied and time.monotonic() < deadline:
        time.sleep(0.01)
    r.stop()
    assert applied and p.stages.ruleset_version == "v9"


def test_outbox_thread_delivers_after_batches(tmp_path):
    delivered = threading.Event()

    class Outbox:
        def __init__(self):
            self.calls = 0

        def deliver_due(self, now_ms, channels):
            self.calls += 1
            if channels == "ch":
                delivered.set()

    ob = Outbox()
    p = Pipeline(fake_stages(FakeAlerts()), start_ms=0)
    r = EmbeddedRunner(p, ListSource([msg(b"E1/T1=99", 1)]), outbox=ob, channels="ch")
    r.start()
    assert delivered.wait(5)
    r.stop()
    assert ob.calls >= 2  # at least one round after the final batch


def test_close_of_unknown_warning_is_ignored():
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0)
    p.close_warning("w:nope", 1)
    assert alerts.warnings == []


def test_tick_skips_the_engine_sweep_right_after_a_batch_but_runs_alerts_timers():
    calls = []
    eng = FakeEngine()
    orig = eng.tick
    eng.tick = lambda st, now: (calls.append(now), orig(st, now))[1]
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts, engine=eng), start_ms=0)
    p.process([msg(b"E1/T1=1", 1000)], 1000)  # process() ran the engine's timers to 1000
    calls.clear()
    p.tick(1300, min_engine_gap_ms=500)
    assert calls == [] and alerts.ticks == 1
    p.tick(1600, min_engine_gap_ms=500)
    assert calls == [1600] and alerts.ticks == 2


class GatedStore(EngineStore):
    """A snapshot write that blocks until released (a slow fsync), or fails."""

    def __init__(self, path, fail: bool = False):
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail = fail
        self.saves = 0

    def save(self, *a, **kw):
        self.entered.set()
        self.gate.wait(10)
        if self.fail:
            raise OSError("disk full")
        super().save(*a, **kw)
        self.saves += 1


class QueueSource:
    """Delivers what the test puts, when it puts it."""

    def __init__(self):
        self.deliver = None
        self.stopped = False

    def start(self, deliver):
        self.deliver = deliver

    def stop(self):
        self.stopped = True


def _wait(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.005)
    return cond()


def test_evaluation_goes_on_while_a_snapshot_is_written_and_acks_wait_for_it(tmp_path):
    acked: list[int] = []
    store = GatedStore(tmp_path / "s.db")
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts), start_ms=0, store=store)
    src = QueueSource()
    r = EmbeddedRunner(p, src, config=RunnerConfig(commit_interval_ms=1, tick_interval_ms=10**9))
    r.start()
    src.deliver(msg(b"E1/T1=1", 1000, lambda: acked.append(1)))
    assert _wait(store.entered.is_set)  # the write of the first batch is under way, and slow
    # a transition arrives meanwhile: evaluated and handed to the alerts stage at once
    src.deliver(msg(b"E1/T1=12", 1100, lambda: acked.append(2)))
    assert _wait(
        lambda: [a.alarm_id for a in alerts.alarms if a.kind == "limit"] == ["limit:E1/T1"]
    )
    assert acked == []  # nothing acked before the write holding its state is durable
    store.gate.set()
    # the first ack follows the first write; the second, the next write (a group commit)
    assert _wait(lambda: acked == [1, 2])
    r.stop()
    assert store.saves >= 2
    snap = EngineStore(tmp_path / "s.db").load()
    assert snap is not None and "limit:E1/T1" in snap.engine.decode()


def test_a_failed_snapshot_write_acks_nothing_and_stops_the_runner(tmp_path):
    acked: list[int] = []
    store = GatedStore(tmp_path / "s.db", fail=True)
    store.gate.set()
    p = Pipeline(fake_stages(FakeAlerts()), start_ms=0, store=store)
    src = QueueSource()
    r = EmbeddedRunner(p, src, config=RunnerConfig(commit_interval_ms=1, tick_interval_ms=10**9))
    r.start()
    src.deliver(msg(b"E1/T1=1", 1000, lambda: acked.append(1)))
    assert r.wait(10), "the runner should stop when its state cannot be written"
    assert isinstance(r.failure, OSError)
    assert acked == []  # the broker redelivers it to the next run


def test_batches_are_what_is_queued_with_no_wait_for_more():
    batches: list[int] = []

    class Sizes:
        def on_batch(self, outcome, now_ms):
            if outcome.readings:
                batches.append(len(outcome.readings))

    p = Pipeline(fake_stages(FakeAlerts()), start_ms=0, listeners=[Sizes()])
    src = QueueSource()
    r = EmbeddedRunner(p, src, config=RunnerConfig(tick_interval_ms=10**9))
    # queued before the evaluator starts: one batch of all of them
    for i in range(50):
        r.deliver(msg(f"E1/T{i}=1".encode(), 1000 + i))
    r.start()
    assert _wait(lambda: sum(batches) == 50)
    assert batches == [50]
    # a lone message is evaluated at once, not held back for company
    t0 = time.monotonic()
    src.deliver(msg(b"E1/T1=2", 2000))
    assert _wait(lambda: len(batches) == 2)
    assert time.monotonic() - t0 < 1.0
    r.stop()
    assert batches == [50, 1]
