"""The guarded clock (hazardwatch/clock.py) weighing the gateways' timestamps: a held step of
the system clock is adopted at once when enough distinct gateways corroborate it (forward or
backward), never on fewer or on gateways that agree with the guarded clock; one vote per
gateway, votes expire with the window. And what feeds it (the normaliser, one witness per
payload) and what a backward adoption must not stall (the embedded runner's timing)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hazardwatch.clock import ClockCollector, GuardedClock
from hazardwatch.metrics import Metrics
from hazardwatch.runner import EmbeddedRunner, Pipeline, RunnerConfig
from ingest.model import Industry, Point, Registry
from ingest.normalize import NormalizeConfig, Normalizer

from .fakes import FakeAlerts, FakeEngine, fake_stages

S = 1_000_000_000  # ns per second
T0 = 1_795_910_400 * S  # 2026-11-29T00:00:00Z


class FakeTime:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 5 * S

    def run(self, seconds: float) -> None:
        self.mono += int(seconds * S)
        self.wall += int(seconds * S)

    def step(self, seconds: float) -> None:
        self.wall += int(seconds * S)


def clock(ft: FakeTime, **kw: object) -> GuardedClock:
    c = GuardedClock(wall_ns=lambda: ft.wall, mono_ns=lambda: ft.mono, **kw)  # type: ignore[arg-type]
    c.now_ns()
    return c


def held_step(step_s: float, **kw: object) -> tuple[FakeTime, GuardedClock]:
    """A clock that refused a step of `step_s` (the system clock moved, the guarded did not)."""
    ft = FakeTime()
    c = clock(ft, **kw)
    ft.run(1)
    ft.step(step_s)
    ft.run(0.1)
    c.now_ns()
    assert c.steps == 1 and c.held
    return ft, c


def on_system(ft: FakeTime, c: GuardedClock, gw: str, lag_s: float = 0.5) -> None:
    """A payload stamped by a gateway whose clock agrees with the SYSTEM clock."""
    received = c.now_ms()
    c.witness("E1", gw, ft.wall // 1_000_000 - int(lag_s * 1000), received)


def on_guarded(ft: FakeTime, c: GuardedClock, gw: str) -> None:
    """A payload stamped by a gateway whose clock agrees with the GUARDED clock."""
    received = c.now_ms()
    c.witness("E1", gw, received - 500, received)


@pytest.mark.parametrize("step_s", [600.0, -600.0, 1_795_910_400.0], ids=["fwd", "back", "1970"])
def test_a_step_three_gateways_corroborate_is_adopted_at_once(step_s, caplog):
    caplog.set_level(logging.WARNING, logger="hazardwatch.clock")
    ft, c = held_step(step_s)
    before = c.now_ns()
    on_system(ft, c, "G1")
    on_system(ft, c, "G2")
    assert c.adopted == 0 and c.held  # two of three
    on_system(ft, c, "G3")
    assert c.adopted == 1 and not c.held
    after = c.now_ns()
    assert after == ft.wall and c.offset_ms == 0.0
    assert (after - before) / S == pytest.approx(step_s, abs=0.01)  # back too, if it was
    assert c.last_adopted_ms == pytest.approx(step_s * 1000, abs=10)
    for _ in range(20):  # follows the system clock exactly from then on
        ft.run(0.5)
        assert c.now_ns() == ft.wall
    assert c.steps == 1 and c.adopted == 1
    msgs = [r.getMessage() for r in caplog.records]
    adopted = [m for m in msgs if m.startswith("adopted the host clock step")]
    assert len(adopted) == 1 and len(msgs) == 2, msgs
    # what was left of the step after 0.1 s of slewing at 1000 ppm
    assert (
        f"adopted the host clock step of {c.last_adopted_ms / 1000:+.3f} s: 3 gateways "
        in (adopted[0])
    )
    assert "corroborate (of 3 heard" in adopted[0]


def test_gateways_agreeing_with_the_guarded_clock_keep_the_step_refused():
    """The fault suite's case: the host's clock jumped, the gateways kept the right time."""
    ft, c = held_step(600)
    for _ in range(90):
        for gw in ("G1", "G2", "G3", "G4", "G5"):
            on_guarded(ft, c, gw)
        ft.run(1)
        c.now_ns()
    assert c.adopted == 0 and c.held
    assert c.offset_ms == pytest.approx(600_000 - 91, abs=2)  # still slewing at 1000 ppm


def test_a_minority_does_not_move_the_clock():
    ft, c = held_step(-600)
    for _ in range(120):  # two say "system", three say "guarded", for two windows
        for gw in ("G1", "G2"):
            on_system(ft, c, gw)
        for gw in ("G3", "G4", "G5"):
            on_guarded(ft, c, gw)
        ft.run(1)
        c.now_ns()
    assert c.adopted == 0 and c.held


def test_three_for_and_two_against_is_not_a_clear_majority_but_four_to_one_is():
    ft, c = held_step(600)
    for gw in ("G4", "G5"):
        on_guarded(ft, c, gw)
    for gw in ("G1", "G2", "G3"):
        on_system(ft, c, gw)
    assert c.adopted == 0  # 3 of 5 heard: short of two thirds
    ft.run(1.5)
    c.now_ns()
    on_system(ft, c, "G5")  # G5's clock was set right: it changes its vote
    assert c.adopted == 1


def test_one_gateway_counts_once_however_many_payloads_it_sends():
    ft, c = held_step(600)
    for _ in range(30):
        for _ in range(50):
            on_system(ft, c, "G1")
        on_system(ft, c, "G2")
        ft.run(1)
        c.now_ns()
    on_guarded(ft, c, "G3")
    assert c.adopted == 0  # two gateways for, however many payloads; one against


def test_a_small_site_adopts_when_every_gateway_it_has_corroborates_for_a_window():
    ft, c = held_step(600)
    for _ in range(59):
        on_system(ft, c, "G1")
        on_system(ft, c, "G2")
        ft.run(1)
        c.now_ns()
    assert c.adopted == 0  # fewer than 3 gateways: wait a whole window for the others
    ft.run(1.5)
    on_system(ft, c, "G1")
    assert c.adopted == 1 and c.now_ns() == ft.wall


def test_votes_expire_with_the_window():
    ft, c = held_step(600)
    on_guarded(ft, c, "G4")
    on_guarded(ft, c, "G5")
    ft.run(61)  # G4 and G5 fell silent: their votes are forgotten
    c.now_ns()
    for gw in ("G1", "G2", "G3"):
        on_system(ft, c, gw)
    assert c.adopted == 1


def test_witnesses_that_agree_with_neither_abstain_but_count_as_heard():
    """A backlog (old timestamps) or a gateway with its own wrong clock proves nothing."""
    ft, c = held_step(600)
    received = c.now_ms()
    for gw in ("G4", "G5"):
        c.witness("E1", gw, received - 3_600_000, received)
    for gw in ("G1", "G2", "G3"):
        on_system(ft, c, gw)
    assert c.adopted == 0  # 3 of 5 heard
    on_system(ft, c, "G6")
    on_system(ft, c, "G7")
    assert c.adopted == 1  # 5 of 7


def test_same_gateway_code_in_two_enterprises_is_two_gateways():
    ft, c = held_step(600)
    received = c.now_ms()
    for ent in ("E1", "E2", "E3"):
        c.witness(ent, "G1", ft.wall // 1_000_000, received)
    assert c.adopted == 1


def test_no_step_held_no_votes_kept():
    ft = FakeTime()
    c = clock(ft)
    for gw in ("G1", "G2", "G3"):
        c.witness("E1", gw, c.now_ms() + 600_000, c.now_ms())
    assert not c.held and c.adopted == 0 and not c._votes
    # the refused step converged: nothing is held any more, old votes are gone
    ft2, c2 = held_step(2.0, max_slew=0.5)
    on_guarded(ft2, c2, "G1")
    ft2.run(10)
    c2.now_ns()
    assert not c2.held and not c2._votes


def test_tolerance_gateways_and_window_are_settings_with_named_errors():
    ft, c = held_step(600, witness_gateways=1, witness_tolerance_ms=1000)
    on_system(ft, c, "G1", lag_s=2)  # 2 s off the system clock: outside 1 s, abstains
    assert c.adopted == 0
    ft.run(1.5)
    c.now_ns()
    on_system(ft, c, "G1", lag_s=0.2)  # its next payload, within 1 s: one gateway suffices
    assert c.adopted == 1
    for kw, msg in [
        ({"witness_tolerance_ms": 0}, "witness tolerance must be > 0"),
        ({"witness_gateways": 0}, "witness gateways must be >= 1"),
        ({"witness_window_ms": -1}, "witness window must be > 0"),
    ]:
        with pytest.raises(ValueError, match=msg):
            GuardedClock(**kw)  # type: ignore[arg-type]


def test_settings_configure_the_process_clock(monkeypatch):
    from hazardwatch import clock as mod
    from hazardwatch.settings import Settings
    from hazardwatch.wiring import clock_witness

    c = GuardedClock()
    monkeypatch.setattr(mod, "CLOCK", c)
    s = Settings(clock={"witness_tolerance_s": 5, "witness_gateways": 7, "witness_window_s": 90})
    fn = clock_witness(s)
    assert fn == c.witness
    assert (c.tolerance_ms, c.min_gateways, c.window_ns) == (5000, 7, 90 * S)
    d = Settings().clock
    assert (d.witness_tolerance_s, d.witness_gateways, d.witness_window_s) == (30, 3, 60)


def test_metrics_count_adopted_steps():
    ft, c = held_step(-600)
    for gw in ("G1", "G2", "G3"):
        on_system(ft, c, gw)
    reg = CollectorRegistry()
    reg.register(ClockCollector(c))
    text = generate_latest(reg).decode()
    assert "hw_clock_steps_adopted_total 1.0" in text
    assert "hw_clock_steps_total 1.0" in text
    assert "hw_clock_offset_ms 0.0" in text


def test_witnesses_from_threads_adopt_once():
    ft, c = held_step(600)
    barrier = threading.Barrier(6)

    def work(gw: str) -> None:
        barrier.wait()
        for _ in range(200):
            on_system(ft, c, gw)

    threads = [threading.Thread(target=work, args=(f"G{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.adopted == 1


# -- what feeds the clock: the normaliser, one witness per payload -------------------------------


def registry() -> Registry:
    return Registry(
        [
            Point(
                enterprise_code="E1",
                enterprise_name="x",
                industry=Industry.HAZCHEM,
                district="d",
                hazard_code="HZ1",
                hazard_level=2,
                zone="Z1",
                gateway_code=gw,
                tag=f"T-{gw}{i}",
                parameter="gas.NH3",
                unit="ppm",
                range_low=0.0,
                range_high=100.0,
            )
            for gw in ("G1", "G2")
            for i in range(3)
        ],
        version="t",
    )


def test_the_normaliser_feeds_one_witness_per_payload_even_when_it_rejects_every_reading():
    seen: list[tuple[str, str, int, int]] = []
    n = Normalizer(registry(), witness=lambda *a: seen.append(a))
    prefix = NormalizeConfig().topic_prefix
    recv = T0 // 1_000_000
    ahead = recv + 600_000  # 10 min ahead of the receive time: rejected as clock_skew
    batch = {"ts": ahead, "data": [{"tag": f"T-G1{i}", "v": 1.0, "q": 0} for i in range(3)]}
    res = n.normalize(f"{prefix}/E1/G1/data", json.dumps(batch).encode(), recv)
    assert not res.readings and {str(r.reason) for r in res.rejects} == {"clock_skew"}
    single = {"tag": "T-G20", "ts": recv - 1000, "v": 2.0, "q": 0}
    res = n.normalize(f"{prefix}/E1/G2/data", json.dumps(single).encode(), recv)
    assert len(res.readings) == 1
    n.normalize(f"{prefix}/E1/G2/data", b"not json", recv)  # no timestamp: no witness
    assert seen == [("E1", "G1", ahead, recv), ("E1", "G2", recv - 1000, recv)]
    n2 = n.with_registry(registry())  # a registry reload keeps feeding the clock
    n2.normalize(f"{prefix}/E1/G1/data", json.dumps(batch).encode(), recv + 1)
    assert seen[-1] == ("E1", "G1", ahead, recv + 1)


def test_the_normaliser_feeds_the_guarded_clock_to_adoption():
    """End to end in one process: the host was 10 min behind, NTP stepped it right, the
    gateways' payloads (rejected as from the future so far) make the clock adopt the step."""
    ft = FakeTime()
    ft.step(-600)  # started before NTP synchronised
    c = clock(ft)
    n = Normalizer(registry(), witness=c.witness)
    prefix = NormalizeConfig().topic_prefix
    true_ms = T0 // 1_000_000

    def send(gw: str) -> int:
        batch = {"ts": true_ms, "data": [{"tag": f"T-{gw}0", "v": 1.0, "q": 0}]}
        return len(
            n.normalize(f"{prefix}/E1/{gw}/data", json.dumps(batch).encode(), c.now_ms()).readings
        )

    assert send("G1") == 0  # 600 s in the future of the (wrong) host clock
    ft.step(600)  # NTP
    ft.run(0.1)
    c.now_ns()
    assert c.held
    # only two gateways here: a window later, both corroborating, the step is adopted
    for _ in range(61):
        ft.run(1)
        true_ms += 1000
        send("G1")
        send("G2")
    assert c.adopted == 1
    ft.run(1)
    true_ms += 1000
    assert send("G1") == 1


# -- a backward adoption must not stall the embedded runner's timing -----------------------------


def test_pipeline_timers_run_right_after_the_clock_went_back():
    calls: list[int] = []
    eng = FakeEngine()
    orig = eng.tick
    eng.tick = lambda st, now: (calls.append(now), orig(st, now))[1]
    alerts = FakeAlerts()
    p = Pipeline(fake_stages(alerts, engine=eng), start_ms=0, alerts_tick_ms=1000)
    p.tick(700_000, min_engine_gap_ms=500)
    assert calls == [700_000] and alerts.ticks == 1
    p.tick(100_000, min_engine_gap_ms=500)  # the clock adopted a -600 s step
    assert calls == [700_000, 100_000] and alerts.ticks == 2
    p.tick(100_300, min_engine_gap_ms=500)  # and from there paces itself as before
    assert calls == [700_000, 100_000] and alerts.ticks == 2
    p.tick(101_000, min_engine_gap_ms=500)
    assert calls == [700_000, 100_000, 101_000] and alerts.ticks == 3


def test_runner_keeps_ticking_and_committing_after_the_clock_went_back(tmp_path):
    from hazardwatch.engine_store import EngineStore

    alerts = FakeAlerts()
    store = EngineStore(tmp_path / "s.db")
    p = Pipeline(fake_stages(alerts), start_ms=0, metrics=Metrics(), store=store)
    now = [700_000]

    class Idle:
        stopped = False

        def start(self, deliver):
            pass

        def stop(self):
            self.stopped = True

    r = EmbeddedRunner(
        p,
        Idle(),
        clock=lambda: now[0],
        config=RunnerConfig(tick_interval_ms=1000, commit_interval_ms=1000),
    )
    saves: list[int] = []
    orig_save = store.save
    store.save = lambda *a, **kw: (saves.append(now[0]), orig_save(*a, **kw))[1]

    def wait(cond, timeout=5.0):
        deadline = time.monotonic() + timeout
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.01)
        return cond()

    r.start()
    try:
        now[0] = 701_000
        assert wait(lambda: alerts.ticks >= 1)
        p._dirty = True  # something to commit
        now[0] = 702_000
        assert wait(lambda: alerts.ticks >= 2 and saves)
        ticks, n_saves = alerts.ticks, len(saves)
        now[0] = 102_000  # adopted a -600 s step: the next tick and commit are due now,
        p._dirty = True  # not in 600 s
        assert wait(lambda: alerts.ticks > ticks and len(saves) > n_saves), (alerts.ticks, saves)
        ticks = alerts.ticks
        now[0] = 103_000
        assert wait(lambda: alerts.ticks > ticks)
    finally:
        r.stop()


def test_the_embedded_process_and_the_bridge_feed_the_process_clock(tmp_path):
    from hazardwatch.clock import CLOCK
    from hazardwatch.settings import load_settings
    from hazardwatch.wiring import BridgeProcess, build_embedded

    from .test_runner_real_cores import REG

    reg = tmp_path / "registry.csv"
    reg.write_text(REG, encoding="utf-8")
    s = load_settings(
        environ={
            "HW_RULES__REGISTRY": str(reg),
            "HW_STORAGE__DATA_DIR": str(tmp_path / "var"),
            "HW_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",  # never contacted here
        }
    )

    class Idle:
        def start(self, deliver):
            pass

        def stop(self):
            pass

    emb = build_embedded(s, source=Idle(), metrics_port=0)
    emb.runner.start()
    try:
        assert emb.pipeline.stages.normalizer.witness == CLOCK.witness
    finally:
        emb.runner.stop()
    own = build_embedded(s, source=Idle(), metrics_port=0, clock=lambda: 0)
    own.runner.start()
    try:  # a test's own clock: nothing to feed
        assert own.pipeline.stages.normalizer.witness is None
    finally:
        own.runner.stop()
    bridge = BridgeProcess(s)
    assert bridge.bridge.normalizer.witness == CLOCK.witness


def test_the_worker_engine_tick_runs_right_after_the_clock_went_back(tmp_path):
    from hazardwatch.faust_app import LiveStates

    from .test_runner_faust_core import PLAN_EB, T0, _core, _readings

    core = _core(tmp_path)
    live = LiveStates(core, lambda key: (None, None, None))
    eng = core.engine("EB")
    ticks: list[int] = []
    orig = eng.tick
    eng.tick = lambda s, now: (ticks.append(now), orig(s, now))[1]
    (rs,) = _readings(core, "EB", PLAN_EB[:1])
    live.process("EB", rs, T0 + 600_100)  # the worker's clock was 600 s ahead
    live.tick("EB", T0 + 100_200)  # it adopted the -600 s step: the tick is due, not in 600 s
    assert ticks == [T0 + 100_200]
    live.tick("EB", T0 + 100_700)
    assert ticks == [T0 + 100_200]  # and paces itself as before from there
    live.tick("EB", T0 + 101_300)
    assert ticks == [T0 + 100_200, T0 + 101_300]
