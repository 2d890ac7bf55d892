"""Ingest counters: messages, readings, duplicates, dead letters per reason, and the InfluxDB
writer's written/failed/spilled/dropped. Plain thread-safe counters that tests read directly;
`to_prometheus()` exposes the same numbers on a prometheus-client registry when one is wanted.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from ingest.model import DeadLetter, RejectReason


class Counters:
    """A set of named monotonic counters, safe to bump from MQTT callback threads."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter({n: 0 for n in names})

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._c[name] += n

    def get(self, name: str) -> int:
        with self._lock:
            return self._c[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)


class IngestMetrics:
    """What the ingest stage counts. `rejects` is per `RejectReason`; every reason is present
    (zero until seen) so dashboards show a flat line instead of no data."""

    def __init__(self) -> None:
        self.counters = Counters(
            ("messages", "readings", "duplicates", "dead_letters_published", "dead_letters_failed")
        )
        self.rejects = Counters(r.value for r in RejectReason)

    def message(self, readings: int, rejects: Iterable[DeadLetter], duplicates: int = 0) -> None:
        c = self.counters
        c.inc("messages")
        if readings:
            c.inc("readings", readings)
        if duplicates:
            c.inc("duplicates", duplicates)
        for dl in rejects:
            self.rejects.inc(str(dl.reason))

    def reject(self, reason: RejectReason) -> None:
        self.rejects.inc(str(reason))

    def snapshot(self) -> dict[str, object]:
        return {**self.counters.snapshot(), "rejects": self.rejects.snapshot()}


def to_prometheus(sources: Mapping[str, Counters], registry=None):
    """Register a collector that reads `sources` (prefix -> Counters) at scrape time, e.g.
    `{"hw_ingest": metrics.counters, "hw_ingest_rejects": metrics.rejects}`. Returns the
    prometheus-client registry (a new one unless given)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily

    reg = registry if registry is not None else CollectorRegistry()

    class _Collector:
        def collect(self):
            for prefix, counters in sources.items():
                snap = counters.snapshot()
                if prefix.endswith("_rejects"):
                    fam = CounterMetricFamily(
                        prefix, "dead-lettered readings by reason", labels=["reason"]
                    )
                    for k, v in sorted(snap.items()):
                        fam.add_metric([k], v)
                    yield fam
                else:
                    for k, v in sorted(snap.items()):
                        yield CounterMetricFamily(f"{prefix}_{k}", f"{prefix} {k}", value=v)

    reg.register(_Collector())
    return reg
