"""The ingest stage as one object: message in, readings and dead letters out, everything
counted. Transport-free (the MQTT source, the Kafka bridge and tests all feed it), so the
order of the stage reads in one place: normalise -> count -> dead letters -> readings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ingest.metrics import IngestMetrics
from ingest.model import DeadLetter, Reading, Registry
from ingest.normalize import Normalizer, NormalizeResult

log = logging.getLogger(__name__)


class Ingestor:
    """`handle(topic, payload, received_ms)` never raises for bad input: rejects go to
    `on_dead_letter` and are counted per reason; accepted readings go to `on_readings` in one
    call per message (one batch stays together, in order)."""

    def __init__(
        self,
        normalizer: Normalizer,
        on_readings: Callable[[list[Reading]], None],
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
        metrics: IngestMetrics | None = None,
    ) -> None:
        self.normalizer = normalizer
        self.on_readings = on_readings
        self.on_dead_letter = on_dead_letter
        self.metrics = metrics or IngestMetrics()

    def handle(self, topic: str, payload: bytes, received_ms: int) -> NormalizeResult:
        res = self.normalizer.normalize(topic, payload, received_ms)
        self.metrics.message(len(res.readings), res.rejects, res.duplicates)
        for dl in res.rejects:
            log.info("dead letter %s on %s: %s", dl.reason, dl.topic, dl.detail)
            if self.on_dead_letter is not None:
                self.on_dead_letter(dl)
        if res.readings:
            self.on_readings(res.readings)
        return res

    def reload(self, registry: Registry) -> None:
        """Swap in a new registry version (the duplicate memory is kept). Atomic for callers
        on other threads: they see the old or the new normaliser, never a mix."""
        self.normalizer = self.normalizer.with_registry(registry)
        log.info("registry reloaded: version %s, %d points", registry.version, len(registry))
