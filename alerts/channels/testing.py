"""The fake `Channel` for unit tests and the demo: records every attempt and answers from a
verdict script, so outbox, escalation and fallback logic can be tested without a network."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable

from alerts.model import Notification, Verdict

Script = Iterable[Verdict] | Callable[[Notification, int], Verdict]


class RecordingChannel:
    """Answers each `send` with the next verdict of `script` (then `Verdict.delivered()`), or
    with `script(notification, attempt_number)` when it is a function.

    `attempts` holds every notification tried, `delivered` those that got an ok verdict, in
    order; `by_key` counts deliveries per idempotency key, so `duplicates` shows any message
    delivered twice.
    """

    def __init__(
        self,
        name: str = "recording",
        script: Script = (),
        *,
        rate_limit: tuple[int, float] | None = None,
    ) -> None:
        self.name = name
        self.rate_limit = rate_limit
        self._fn = script if callable(script) else None
        self._queue = [] if callable(script) else list(script)
        self.attempts: list[Notification] = []
        self.delivered: list[Notification] = []
        self.verdicts: list[Verdict] = []
        self.by_key: Counter[str] = Counter()
        self._lock = threading.Lock()

    def then(self, *verdicts: Verdict) -> RecordingChannel:
        """Append verdicts to the script (chainable)."""
        with self._lock:
            self._queue.extend(verdicts)
        return self

    def fail(self, times: int, reason: str = "scripted failure", retryable: bool = True):
        v = Verdict.retry(reason) if retryable else Verdict.give_up(reason)
        return self.then(*([v] * times))

    def send(self, n: Notification) -> Verdict:
        with self._lock:
            self.attempts.append(n)
            if self._fn is not None:
                v = self._fn(n, len(self.attempts))
            elif self._queue:
                v = self._queue.pop(0)
            else:
                v = Verdict.delivered()
            self.verdicts.append(v)
            if v.ok:
                self.delivered.append(n)
                self.by_key[n.id] += 1
            return v

    @property
    def duplicates(self) -> int:
        return sum(c - 1 for c in self.by_key.values() if c > 1)

    def delivered_ids(self) -> list[str]:
        return [n.id for n in self.delivered]
