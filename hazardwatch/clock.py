"""The process's wall clock for the live pipeline: a guarded clock that never steps. It
advances with elapsed time and follows the system wall clock only at a bounded slew rate, so
an NTP step or an operator's `date -s` cannot flood or stall alarms.

Why (measured with tests/faults/env.py ClockControl on `hazardwatch run`, before this module):
"now" is compared with the gateways' own timestamps. A +10 min step of the host's clock made
every gateway look silent at the next tick (gateway alarms firing and clearing every second,
as each new reading cleared what the tick raised); a -10 min step made ingest dead-letter
every reading as `clock_skew` ("600 s ahead of the receive time") and stalled every timer for
10 minutes, so a gateway that really stopped went unnoticed. Both are worse than a wrong
clock: the first buries the duty officer, the second hides real outages.

What is right for an alarm system: a step of the host clock means it was wrong before or is
wrong now, and the host cannot tell which. The gateways' timestamps agreed with it before the
step (otherwise ingest would already have rejected or back-filled them), so the evidence says
the host is the one that moved. Timeouts (offline, gateway, escalation, outbox retries) are
durations and must keep meaning elapsed time. So this clock:

- follows the system clock exactly while the two agree (NTP's own slewing, at most 500 ppm,
  stays inside the slew allowance);
- on a step (the disagreement changes by >= `step_ms` between two readings) logs one WARNING
  with its size, counts it (`hw_clock_steps_total`, and `hw_clock_offset_ms` shows the
  remaining disagreement), and keeps running on the monotonic clock;
- then converges towards the system clock at no more than `max_slew` (default 1000 ppm,
  3.6 s per hour): every timer runs within 0.1 % of real elapsed time, so no reading that
  arrives on schedule can look late, and a gateway that really stops is detected within its
  timeout (+0.1 %) of elapsed time;
- never goes backwards, and is one instance per process, shared by all threads.

Elapsed time is CLOCK_BOOTTIME: the monotonic clock, but counting while the host is
suspended, so a resume (when real time did pass) is followed like any agreement, not refused.

The price: if the step was a correction (the host's clock was wrong before: a VM paused by
its hypervisor and stepped by NTP on resume, or the whole site re-synchronised), the
gateways' timestamps disagree with this clock until it has converged: ingest rejects
readings more than 60 s ahead as `clock_skew`, and offline alarms follow. The WARNING says
so: restarting the process adopts the system clock at once (the engine state is durable),
the operator's deliberate decision rather than the clock's silent one. Telling the two
cases apart automatically needs evidence this module does not get yet: the gateways'
timestamps (a step they corroborate could be adopted at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: 1000 ppm: twice what NTP itself ever slews (500 ppm), so its normal corrections are
#: followed exactly, while a step is absorbed at 3.6 s per hour.
DEFAULT_MAX_SLEW = 0.001
#: A change of the disagreement this large between two readings is a step, not drift.
DEFAULT_STEP_MS = 1000


def _elapsed_ns() -> int:
    """Elapsed time that never steps and, unlike CLOCK_MONOTONIC, keeps counting while the
    host is suspended: after a resume the wall clock's jump is real time that passed, and
    must not be taken for a step (gateways' readings of that time would look in the future)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


if not hasattr(time, "CLOCK_BOOTTIME"):  # not Linux
    _elapsed_ns = time.monotonic_ns


class GuardedClock:
    """Epoch time that follows `wall_ns` but never steps (see the module doc). Thread-safe.

    `wall_ns`/`mono_ns` are injectable so tests can step a fake system clock."""

    def __init__(
        self,
        *,
        max_slew: float = DEFAULT_MAX_SLEW,
        step_ms: int = DEFAULT_STEP_MS,
        wall_ns: Callable[[], int] = time.time_ns,
        mono_ns: Callable[[], int] = _elapsed_ns,
    ) -> None:
        if not 0 <= max_slew < 1:
            raise ValueError(f"GuardedClock: max_slew must be in [0, 1), got {max_slew}")
        if step_ms <= 0:
            raise ValueError(f"GuardedClock: step_ms must be > 0, got {step_ms}")
        self.max_slew = max_slew
        self.step_ns = step_ms * 1_000_000
        self._wall = wall_ns
        self._mono = mono_ns
        self._lock = threading.Lock()
        self._t: int | None = None  # last value given out (epoch ns)
        self._m = 0  # monotonic reading at that moment
        self._err = 0  # system clock minus `_t` at that moment (ns)
        self.steps = 0
        self.last_step_ms = 0.0

    def now_ns(self) -> int:
        with self._lock:
            m = self._mono()
            w = self._wall()
            if self._t is None:
                self._t, self._m = w, m
                return w
            dm = max(0, m - self._m)
            predicted = self._t + dm
            err = w - predicted
            jump = err - self._err  # how much the disagreement changed since the last reading
            allowance = int(dm * self.max_slew)
            out = predicted + max(-allowance, min(allowance, err))
            self._t, self._m, self._err = out, m, w - out
            stepped = abs(jump) >= self.step_ns
            if stepped:
                self.steps += 1
                self.last_step_ms = jump / 1e6
            offset_ms = self._err / 1e6
        if stepped:
            log.warning(
                "system clock stepped %+.3f s; hazardwatch keeps elapsed time and converges "
                "at most %.1f s per hour (%+.3f s to go). If the new time is right for the "
                "gateways too, restart the process to adopt it at once",
                jump / 1e9,
                self.max_slew * 3600,
                offset_ms / 1000,
            )
        return out

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    @property
    def offset_ms(self) -> float:
        """System clock minus this clock at the last reading: what is left to converge."""
        with self._lock:
            return self._err / 1e6


#: The one clock of this process: the runner, the Faust worker and their sources read it.
CLOCK = GuardedClock()


def wall_ms() -> int:
    """Epoch milliseconds of the live pipeline (guarded, see the module doc)."""
    return CLOCK.now_ns() // 1_000_000


def wall_s() -> float:
    """The same in seconds, for the channels' signed request timestamps: a receiver checks
    them against its own clock, which did not step with ours."""
    return CLOCK.now_ns() / 1e9


class ClockCollector:
    """Prometheus collector: `hw_clock_steps_total` and `hw_clock_offset_ms` of a clock,
    read at scrape time. Register it on a process's CollectorRegistry."""

    def __init__(self, clock: GuardedClock = CLOCK) -> None:
        self.clock = clock

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily(
            "hw_clock_steps",
            "System wall clock steps the guarded clock refused to follow",
            value=self.clock.steps,
        )
        yield GaugeMetricFamily(
            "hw_clock_offset_ms",
            "System wall clock minus the pipeline's guarded clock (ms), still to converge",
            value=self.clock.offset_ms,
        )
