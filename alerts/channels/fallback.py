"""A channel that wraps a primary and a fallback: while the primary keeps failing (retryable
failures, without a single success) for longer than a configured time, notifications go to the
fallback instead; every `probe_every_s` the primary is tried again, and one success switches
back. A message the primary *rejects* (bad number, unknown robot) is not a sign the primary is
down, so it neither counts towards switching nor goes to the fallback.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import msgspec

from alerts.channels.base import Channel, Clock
from alerts.model import Notification, Verdict

log = logging.getLogger("alerts.channels.fallback")

Reroute = Callable[[Notification], Notification | None]


def same_notification(channel_name: str) -> Reroute:
    """The default reroute: the same notification, addressed to the fallback channel."""

    def reroute(n: Notification) -> Notification:
        return msgspec.structs.replace(n, channel=channel_name)

    return reroute


class FallbackChannel:
    """`primary` until it has failed for `switch_after_s`, then `fallback`.

    `reroute` turns a notification for the primary into one for the fallback (a WeCom robot
    name has no meaning to SMS, so a real wiring maps recipients); returning None means "no
    fallback for this one" and the primary's verdict stands. The idempotency key is kept, so a
    message never reaches the same receiver twice however often the wrapper switches.
    """

    def __init__(
        self,
        primary: Channel,
        fallback: Channel,
        *,
        switch_after_s: float,
        probe_every_s: float = 60.0,
        reroute: Reroute | None = None,
        clock: Clock = time.time,
        name: str | None = None,
    ) -> None:
        if switch_after_s < 0 or probe_every_s <= 0:
            raise ValueError("switch_after_s must be >= 0 and probe_every_s > 0")
        self.primary = primary
        self.fallback = fallback
        self.name = name or primary.name
        self.rate_limit = primary.rate_limit
        self.switch_after_s = switch_after_s
        self.probe_every_s = probe_every_s
        self.reroute = reroute or same_notification(fallback.name)
        self.clock = clock
        self._failing_since: float | None = None
        self._last_probe = float("-inf")
        self._lock = threading.Lock()

    @property
    def using_fallback(self) -> bool:
        with self._lock:
            return self._switched(self.clock())

    def _switched(self, now: float) -> bool:
        return self._failing_since is not None and now - self._failing_since >= self.switch_after_s

    def send(self, n: Notification) -> Verdict:
        now = self.clock()
        with self._lock:
            switched = self._switched(now)
            probe = switched and now - self._last_probe >= self.probe_every_s
            if probe:
                self._last_probe = now
        if not switched or probe:
            v = self.primary.send(n)
            with self._lock:
                self._last_probe = now  # any try of the primary tells us as much as a probe
                if v.ok:
                    if self._failing_since is not None:
                        log.info("%s: primary %s recovered", self.name, self.primary.name)
                    self._failing_since = None
                elif v.retryable and self._failing_since is None:
                    self._failing_since = now
                switched_now = self._switched(now)
            if v.ok or not v.retryable or not switched_now:
                return v
        alt = self.reroute(n)
        if alt is None:
            return Verdict.retry(
                f"{self.primary.name} failing since {self._failing_since:.0f} and no fallback "
                f"for recipient of {n.id}"
            )
        fv = self.fallback.send(alt)
        if fv.ok:
            return Verdict(
                ok=True,
                status=fv.status,
                reason=f"delivered via fallback {self.fallback.name} "
                f"({self.primary.name} failing for {now - (self._failing_since or now):.0f} s)",
            )
        return Verdict(
            ok=False,
            retryable=fv.retryable,
            status=fv.status,
            retry_after_s=fv.retry_after_s,
            reason=f"fallback {self.fallback.name}: {fv.reason}",
        )
