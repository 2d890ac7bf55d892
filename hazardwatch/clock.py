"""The process's wall clock for the live pipeline: a guarded clock that steps only when the
gateways' timestamps corroborate the step. Otherwise it advances with elapsed time and
follows the system wall clock at a bounded slew rate, so an NTP step or an operator's
`date -s` cannot flood or stall alarms.

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
- never goes backwards except by an adopted backward step (below), and is one instance per
  process, shared by all threads.

Elapsed time is CLOCK_BOOTTIME: the monotonic clock, but counting while the host is
suspended, so a resume (when real time did pass) is followed like any agreement, not refused.

The price of refusing, and the evidence that lifts it: if the step was a correction (the
host's clock was wrong before: a service started at boot before NTP synchronised, a VM paused
by its hypervisor and stepped on resume, a board without RTC starting at 1970), refusing it
would leave this clock behind (readings dead-lettered as `clock_skew`, then offline alarms)
or ahead (every on-time reading a late back-fill, every point looking silent) for hours. So
while a step is held (|system - guarded| >= `step_ms`), the gateways' own timestamps are the
evidence: `witness(enterprise, gateway, ts_ms, received_ms)` is fed one payload's event
time and its receive time on this clock (by the normaliser in `run` and `bridge`, by the
readings records in each `worker`: every process weighs what it sees, for its own clock).
A payload votes FOR the step when `ts` agrees with the system clock at receipt (within
`tolerance_ms`) and not with this one, AGAINST when it agrees with this one, and abstains
otherwise (a gateway that is itself wrong, or a backlog). Only each gateway's
latest vote within `window_ms` counts, and at most one per gateway per second. When at least
`min_gateways` distinct gateways vote for it (or, once the step has been held a whole
window, every gateway heard in it, if fewer were heard) and they are at least two thirds of
the gateways heard in the window, the clock ADOPTS the system time at once, forward or
backward, logs one WARNING ("adopted the host clock step of X s: N gateways corroborate"),
counts it (`hw_clock_steps_adopted_total`) and follows the system clock again. Gateways that
agree with this clock (the host's clock is the one that jumped) keep the step refused and
slewed. A step nobody corroborates is still fixed by a restart (the engine state is durable).

A backward adoption makes this clock go BACK by the step, once. What that means for timers:
deadlines set before it on the old time scale (outbox retry times, escalation deadlines,
shelve expiry, on-delays armed on receive times) fall due up to the step later than meant
(and, after a forward adoption, up to the step earlier: at once). The engine's offline and
gateway timers run on the gateways' event times, which were right all along, so they become
right again. Loops that pace themselves by the difference of successive readings (the
embedded runner's tick, commit and alerts-tick timing, the worker's engine tick) treat a
reading earlier than the last one as "due now" rather than waiting out the step. Without
witnesses (nothing fed) the clock never goes back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)

#: 1000 ppm: twice what NTP itself ever slews (500 ppm), so its normal corrections are
#: followed exactly, while a step is absorbed at 3.6 s per hour.
DEFAULT_MAX_SLEW = 0.001
#: A change of the disagreement this large between two readings is a step, not drift.
DEFAULT_STEP_MS = 1000
#: A gateway's timestamp "agrees" with a clock within 30 s: twice the 15 s a gateway's own
#: NTP-less RTC may drift in a day plus its buffering, and well inside the 60 s skew bound
#: ingest rejects beyond, yet far below the steps worth adopting (minutes to decades).
DEFAULT_WITNESS_TOLERANCE_MS = 30_000
#: Distinct gateways that must corroborate a step: one gateway with a wrong clock must not
#: move the whole site's time; three independent ones agreeing with the host is evidence.
DEFAULT_WITNESS_GATEWAYS = 3
#: Votes older than this are forgotten: gateways report every few seconds to a minute.
DEFAULT_WITNESS_WINDOW_MS = 60_000
#: At most one vote per gateway per second: a 500-point site sends many payloads a second.
_RESAMPLE_NS = 1_000_000_000


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
        witness_tolerance_ms: int = DEFAULT_WITNESS_TOLERANCE_MS,
        witness_gateways: int = DEFAULT_WITNESS_GATEWAYS,
        witness_window_ms: int = DEFAULT_WITNESS_WINDOW_MS,
    ) -> None:
        if not 0 <= max_slew < 1:
            raise ValueError(f"GuardedClock: max_slew must be in [0, 1), got {max_slew}")
        if step_ms <= 0:
            raise ValueError(f"GuardedClock: step_ms must be > 0, got {step_ms}")
        self.max_slew = max_slew
        self.step_ns = step_ms * 1_000_000
        self.configure_witnesses(
            tolerance_ms=witness_tolerance_ms,
            min_gateways=witness_gateways,
            window_ms=witness_window_ms,
        )
        self._wall = wall_ns
        self._mono = mono_ns
        self._lock = threading.Lock()
        self._t: int | None = None  # last value given out (epoch ns)
        self._m = 0  # monotonic reading at that moment
        self._err = 0  # system clock minus `_t` at that moment (ns)
        self.steps = 0
        self.last_step_ms = 0.0
        self.adopted = 0  # steps adopted on the gateways' evidence
        self.last_adopted_ms = 0.0
        # Witness state, only used while a step is held (`_held`).
        self._held = False
        self._held_since = 0  # monotonic ns
        # (enterprise, gateway) -> (monotonic ns, vote), oldest first
        self._votes: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()
        self._tally = [0, 0, 0]  # votes against, abstaining, for (index vote + 1)

    def configure_witnesses(self, *, tolerance_ms: int, min_gateways: int, window_ms: int) -> None:
        """Set how the gateways' evidence is weighed (see the module doc)."""
        if tolerance_ms <= 0:
            raise ValueError(f"GuardedClock: witness tolerance must be > 0 ms, got {tolerance_ms}")
        if min_gateways < 1:
            raise ValueError(f"GuardedClock: witness gateways must be >= 1, got {min_gateways}")
        if window_ms <= 0:
            raise ValueError(f"GuardedClock: witness window must be > 0 ms, got {window_ms}")
        self.tolerance_ms = tolerance_ms
        self.min_gateways = min_gateways
        self.window_ns = window_ms * 1_000_000

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
            held = abs(self._err) >= self.step_ns
            if held != self._held:
                self._held = held
                self._held_since = m
                self._forget_votes()
            stepped = abs(jump) >= self.step_ns
            if stepped:
                self.steps += 1
                self.last_step_ms = jump / 1e6
            offset_ms = self._err / 1e6
        if stepped:
            log.warning(
                "system clock stepped %+.3f s; hazardwatch keeps elapsed time and converges "
                "at most %.1f s per hour (%+.3f s to go). If the gateways' timestamps "
                "corroborate the new time it is adopted at once; otherwise, if it is right, "
                "restart the process to adopt it",
                jump / 1e9,
                self.max_slew * 3600,
                offset_ms / 1000,
            )
        return out

    def now_ms(self) -> int:
        return self.now_ns() // 1_000_000

    @property
    def held(self) -> bool:
        """A step of the system clock is held (refused, not yet converged): witnesses count."""
        return self._held

    def witness(self, enterprise: str, gateway: str, ts_ms: int, received_ms: int) -> None:
        """One payload's evidence: its enterprise and gateway, its event time and its receive
        time on this clock. O(1), and nothing at all while no step is held (the common case)."""
        if self._held:
            self._weigh((enterprise, gateway), ts_ms, received_ms)

    def _forget_votes(self) -> None:
        self._votes.clear()
        self._tally = [0, 0, 0]

    def _weigh(self, gateway: tuple[str, str], ts_ms: int, received_ms: int) -> None:
        adopted: tuple[float, int, int] | None = None
        with self._lock:
            if not self._held:
                return
            m = self._mono()
            votes, tally = self._votes, self._tally
            old = votes.get(gateway)
            if old is not None and m - old[0] < _RESAMPLE_NS:
                return
            tol = self.tolerance_ms
            on_ours = abs(ts_ms - received_ms) <= tol
            on_system = abs(ts_ms - (received_ms + self._err / 1e6)) <= tol
            vote = -1 if on_ours else (1 if on_system else 0)
            if old is not None:
                tally[old[1] + 1] -= 1
                del votes[gateway]
            votes[gateway] = (m, vote)  # newest last: expiry pops from the front
            tally[vote + 1] += 1
            horizon = m - self.window_ns
            while votes:
                gw, (seen, v) = next(iter(votes.items()))
                if seen >= horizon:
                    break
                del votes[gw]
                tally[v + 1] -= 1
            heard = len(votes)
            ayes = tally[2]
            need = self.min_gateways
            if m - self._held_since >= self.window_ns:
                need = min(need, heard)  # a small site: every gateway it has
            if ayes >= need and 3 * ayes >= 2 * heard:
                w = self._wall()
                guarded = self._t + max(0, m - self._m)
                self._t, self._m, self._err = w, m, 0
                self._held = False
                self._forget_votes()
                self.adopted += 1
                self.last_adopted_ms = (w - guarded) / 1e6
                adopted = (self.last_adopted_ms, ayes, heard)
        if adopted is not None:
            log.warning(
                "adopted the host clock step of %+.3f s: %d gateways corroborate (of %d heard "
                "in the last %.0f s); hazardwatch follows the system clock again",
                adopted[0] / 1000,
                adopted[1],
                adopted[2],
                self.window_ns / 1e9,
            )

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


def witness(enterprise: str, gateway: str, ts_ms: int, received_ms: int) -> None:
    """Feed one payload's evidence to the process's clock (see `GuardedClock.witness`)."""
    CLOCK.witness(enterprise, gateway, ts_ms, received_ms)


class ClockCollector:
    """Prometheus collector: `hw_clock_steps_total`, `hw_clock_steps_adopted_total` and
    `hw_clock_offset_ms` of a clock,
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
        yield CounterMetricFamily(
            "hw_clock_steps_adopted",
            "System wall clock steps adopted because the gateways' timestamps corroborated them",
            value=self.clock.adopted,
        )
        yield GaugeMetricFamily(
            "hw_clock_offset_ms",
            "System wall clock minus the pipeline's guarded clock (ms), still to converge",
            value=self.clock.offset_ms,
        )
