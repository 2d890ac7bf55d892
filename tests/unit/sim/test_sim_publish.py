"""Publisher pacing and bounds with a fake clock and a recording sink (no broker)."""

from __future__ import annotations

import pytest

from hazardwatch.sim import Simulation, generate_registry
from hazardwatch.sim.publish import publish_simulation

T0 = 1_795_910_400_000


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s
        self.slept += s


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def publish(self, topic: str, payload: bytes) -> None:
        self.messages.append((topic, payload))

    def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def registry():
    return generate_registry(200, 6)


def test_rate_paces_by_readings(registry) -> None:
    clock, sink = FakeClock(), Recorder()
    st = publish_simulation(
        Simulation(registry, seed=6, start_ms=T0),
        T0 + 600_000,
        sink,
        rate=1000,
        clock=clock,
        sleep=clock.sleep,
    )
    assert st.stopped_by == "end" and st.messages == len(sink.messages)
    assert st.seconds == pytest.approx(st.readings / 1000, rel=0.01)
    assert st.readings_per_s == pytest.approx(1000, rel=0.01)


def test_speed_paces_by_simulated_time(registry) -> None:
    clock, sink = FakeClock(), Recorder()
    st = publish_simulation(
        Simulation(registry, seed=6, start_ms=T0),
        T0 + 600_000,
        sink,
        speed=60,
        clock=clock,
        sleep=clock.sleep,
    )
    assert st.simulated_ms == 600_000 and st.seconds == pytest.approx(10.0, abs=0.05)


def test_bounded_by_count_and_by_wall_time(registry) -> None:
    clock = FakeClock()
    st = publish_simulation(
        Simulation(registry, seed=6, start_ms=T0),
        T0 + 3_600_000,
        Recorder(),
        rate=100,
        max_readings=500,
        clock=clock,
        sleep=clock.sleep,
    )
    assert st.stopped_by == "max_readings" and 500 <= st.readings < 600
    clock = FakeClock()
    st = publish_simulation(
        Simulation(registry, seed=6, start_ms=T0),
        T0 + 3_600_000,
        Recorder(),
        rate=100,
        max_seconds=3,
        clock=clock,
        sleep=clock.sleep,
    )
    assert st.stopped_by == "max_seconds" and 3 <= st.seconds < 4


def test_as_fast_as_possible_never_sleeps_and_sends_everything(registry) -> None:
    clock, sink = FakeClock(), Recorder()
    st = publish_simulation(
        Simulation(registry, seed=6, start_ms=T0),
        T0 + 300_000,
        sink,
        clock=clock,
        sleep=clock.sleep,
    )
    expected = [
        m
        for s in Simulation(registry, seed=6, start_ms=T0).stream(T0 + 300_000)
        for m in s.messages
    ]
    assert clock.slept == 0 and sink.messages == expected
    assert st.messages == len(expected) and st.stopped_by == "end"


@pytest.mark.parametrize(
    ("kw", "msg"), [({"rate": 0}, "rate must be > 0"), ({"speed": -1}, "speed must be > 0")]
)
def test_bad_pacing_is_refused(registry, kw, msg) -> None:
    with pytest.raises(ValueError, match=msg):
        publish_simulation(Simulation(registry, start_ms=T0), T0 + 1000, Recorder(), **kw)
