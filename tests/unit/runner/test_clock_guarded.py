"""The guarded clock (hazardwatch/clock.py) on a fake system clock: it follows the system
clock while they agree, refuses steps forward and backward (one WARNING and one count per
step), converges at no more than its slew bound, and never goes backwards."""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from hazardwatch.clock import CLOCK, ClockCollector, GuardedClock, wall_ms

S = 1_000_000_000  # ns per second
T0 = 1_795_910_400 * S  # 2026-11-29T00:00:00Z


class FakeTime:
    """A system wall clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.wall = T0
        self.mono = 5 * S

    def run(self, seconds: float, wall_rate: float = 1.0) -> None:
        self.mono += int(seconds * S)
        self.wall += int(seconds * S * wall_rate)

    def step(self, seconds: float) -> None:
        self.wall += int(seconds * S)


def clock(ft: FakeTime, **kw: object) -> GuardedClock:
    c = GuardedClock(wall_ns=lambda: ft.wall, mono_ns=lambda: ft.mono, **kw)  # type: ignore[arg-type]
    assert c.now_ns() == ft.wall
    return c


def test_follows_the_system_clock_exactly_while_they_agree_even_under_ntp_slew(caplog):
    ft = FakeTime()
    c = clock(ft)
    for _ in range(100):
        ft.run(0.5, wall_rate=1.0005)  # NTP slewing at its 500 ppm maximum
        assert c.now_ns() == ft.wall
    assert c.steps == 0 and c.offset_ms == 0.0 and not caplog.records


@pytest.mark.parametrize("step_s", [600.0, -600.0])
def test_a_step_is_refused_logged_once_and_counted(step_s, caplog):
    caplog.set_level(logging.WARNING, logger="hazardwatch.clock")
    ft = FakeTime()
    c = clock(ft)
    ft.run(1)
    before = c.now_ns()
    ft.step(step_s)
    ft.run(1)
    after = c.now_ns()
    # One second passed: the clock moved one second (+/- its 0.1 % slew), not ten minutes.
    assert S - S // 1000 <= after - before <= S + S // 1000
    assert c.steps == 1 and c.last_step_ms == pytest.approx(step_s * 1000)
    assert c.offset_ms == pytest.approx(step_s * 1000, abs=2)
    for _ in range(50):
        ft.run(0.2)
        c.now_ns()
    assert c.steps == 1
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and f"{step_s:+.3f} s" in warnings[0], warnings
    assert "restart the process to adopt it" in warnings[0]


@pytest.mark.parametrize("step_s", [600.0, -600.0])
def test_converges_at_the_slew_bound_and_then_follows_again(step_s):
    ft = FakeTime()
    c = clock(ft, max_slew=0.05)
    ft.step(step_s)
    prev = c.now_ns()
    elapsed = 0.0
    while c.offset_ms != 0.0:
        ft.run(10)
        elapsed += 10
        now = c.now_ns()
        # per 10 s of elapsed time, between 9.5 and 10.5 s: timers stay within 5 %
        assert 9.5 * S - 1 <= now - prev <= 10.5 * S + 1
        prev = now
        assert elapsed < 20_000
    assert elapsed == pytest.approx(abs(step_s) / 0.05, abs=10)  # 600 s / 5 % = 12,000 s
    ft.run(3)
    assert c.now_ns() == ft.wall and c.steps == 1


def test_a_real_outage_is_still_measured_in_elapsed_time_after_a_backward_step():
    """What the engine sees: a gateway silent for its 180 s timeout, right after the system
    clock stepped back 10 minutes, is 180 s (within 0.1 %) old on this clock."""
    ft = FakeTime()
    c = clock(ft)
    ft.run(1)
    last_reading = c.now_ms()
    ft.step(-600)
    ft.run(180)
    age_ms = c.now_ms() - last_reading
    assert 180_000 * 0.999 <= age_ms <= 180_000 * 1.001


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 5),  # elapsed seconds
            st.floats(-900, 900) | st.just(0.0),  # a step of the system clock
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from([0.0, 0.001, 0.05]),
)
def test_never_goes_back_and_never_runs_outside_the_slew_bound(moves, max_slew):
    ft = FakeTime()
    c = clock(ft, max_slew=max_slew)
    prev = c.now_ns()
    for elapsed, step in moves:
        ft.step(step)
        ft.run(elapsed)
        now = c.now_ns()
        dm = int(elapsed * S)
        assert now >= prev
        assert dm * (1 - max_slew) - 1 <= now - prev <= dm * (1 + max_slew) + 1
        prev = now


def test_values_given_to_threads_never_go_back():
    c = GuardedClock()
    seen: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(2000):
            with lock:  # the order values were handed out in
                seen.append(c.now_ns())

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == sorted(seen)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="max_slew must be in"):
        GuardedClock(max_slew=1.5)
    with pytest.raises(ValueError, match="step_ms must be > 0"):
        GuardedClock(step_ms=0)


def test_process_clock_reads_the_system_clock_and_metrics_show_steps():
    import time

    assert abs(wall_ms() - time.time() * 1000) < 1000 + abs(CLOCK.offset_ms)
    ft = FakeTime()
    c = clock(ft)
    ft.step(-30)
    ft.run(1)
    c.now_ns()
    reg = CollectorRegistry()
    reg.register(ClockCollector(c))
    text = generate_latest(reg).decode()
    assert "hw_clock_steps_total 1.0" in text
    offset = next(ln for ln in text.splitlines() if ln.startswith("hw_clock_offset_ms "))
    assert float(offset.split()[1]) == pytest.approx(-30_000, abs=2)


def test_elapsed_time_counts_a_suspend_of_the_host(monkeypatch):
    """A resume after a suspend is real time passing, not a step: on Linux the clock's elapsed
    time is CLOCK_BOOTTIME, which keeps counting while suspended (CLOCK_MONOTONIC stops)."""
    import time

    from hazardwatch import clock as mod

    assert GuardedClock()._mono is mod._elapsed_ns
    asked: list[int] = []
    monkeypatch.setattr(time, "clock_gettime_ns", lambda cid: asked.append(cid) or 42)
    assert mod._elapsed_ns() == 42 and asked == [time.CLOCK_BOOTTIME]
