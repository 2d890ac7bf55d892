"""Distributed mode's front door (I/O): MQTT -> normalise -> Kafka. Normalised readings go to
the readings topic keyed by enterprise code, so one enterprise's readings stay on one
partition and in order; rejects go to the Kafka dead-letter topic.

Delivery is at least once end to end: the producer is idempotent with `acks="all"`, and an
MQTT message is acknowledged to the broker only after Kafka has confirmed everything it
produced (acks in arrival order, as MQTT requires). If Kafka fails for good the bridge stops
without acknowledging, so the broker redelivers to the next bridge; the normaliser of the
consumer side drops the duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ingest.codec import encode_dead_letter, encode_readings
from ingest.metrics import IngestMetrics
from ingest.mqtt import MqttConfig, MqttSource
from ingest.normalize import Normalizer

log = logging.getLogger(__name__)

READINGS_CONTENT_TYPE = b"application/vnd.hazardwatch.readings+json"
DEAD_LETTER_CONTENT_TYPE = b"application/vnd.hazardwatch.deadletter+json"


class BridgeError(Exception):
    """The bridge stopped because Kafka could not take what it produced."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    bootstrap_servers: str
    readings_topic: str = "hw.readings"
    deadletter_topic: str = "hw.deadletter"
    client_id: str = "hazardwatch-bridge"
    linger_ms: int = 5
    # Messages waiting between the MQTT thread and the producer; when full, the MQTT thread
    # waits, the broker's in-flight window fills, and MQTT flow control slows the gateways.
    max_pending: int = 2000


class KafkaBridge:
    """Run with `await bridge.run()`; stop with `bridge.stop()` (thread-safe)."""

    def __init__(
        self,
        mqtt: MqttConfig,
        kafka: BridgeConfig,
        normalizer: Normalizer,
        metrics: IngestMetrics | None = None,
        producer_factory: Callable[..., object] | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.mqtt_config = mqtt
        # Receive time (epoch ms) for the skew check; hazardwatch passes its guarded clock.
        self._clock = clock
        self.config = kafka
        self.normalizer = normalizer
        self.metrics = metrics or IngestMetrics()
        self._producer_factory = producer_factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._queue: asyncio.Queue | None = None
        self.source: MqttSource | None = None
        self.ready = asyncio.Event()  # set once subscribed to MQTT (or gave up waiting)
        self._closing = False

    def reload(self, normalizer: Normalizer) -> None:
        self.normalizer = normalizer

    def stop(self) -> None:
        loop, ev = self._loop, self._stop
        if loop is not None and ev is not None:
            loop.call_soon_threadsafe(ev.set)

    def _on_mqtt(
        self, topic: str, payload: bytes, received_ms: int, ack: Callable[[], None]
    ) -> None:
        # paho's network thread: hand over and wait for room (backpressure to the broker).
        if self._closing:
            return  # not acknowledged: the broker redelivers it to the next session
        assert self._loop is not None and self._queue is not None
        fut = asyncio.run_coroutine_threadsafe(
            self._queue.put((topic, payload, received_ms, ack)), self._loop
        )
        fut.result()

    def _make_producer(self):
        if self._producer_factory is not None:
            return self._producer_factory()
        from aiokafka import AIOKafkaProducer

        return AIOKafkaProducer(
            bootstrap_servers=self.config.bootstrap_servers,
            client_id=self.config.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=self.config.linger_ms,
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._queue = asyncio.Queue(self.config.max_pending)
        acks: asyncio.Queue = asyncio.Queue()
        producer = self._make_producer()
        try:
            await producer.start()
        except Exception as exc:  # aiokafka's errors, translated
            await producer.stop()  # releases its client even though start failed
            raise BridgeError(
                f"cannot start the Kafka producer for {self.config.bootstrap_servers}: {exc!r}"
            ) from exc
        failure: list[BaseException] = []
        clock = {} if self._clock is None else {"clock": self._clock}
        self.source = MqttSource(self.mqtt_config, self._on_mqtt, defer_ack=True, **clock)
        self.source.start()

        async def acker() -> None:
            # Await each message's sends in arrival order, then acknowledge it to MQTT.
            while True:
                futs, ack = await acks.get()
                try:
                    for f in futs:
                        await f
                except Exception as exc:  # noqa: BLE001 - any send failure stops the bridge
                    failure.append(exc)
                    self._stop.set()  # type: ignore[union-attr]
                    return
                ack()
                acks.task_done()

        async def pump() -> None:
            q = self._queue
            assert q is not None
            cfg = self.config
            while True:
                topic, payload, received_ms, ack = await q.get()
                res = self.normalizer.normalize(topic, payload, received_ms)
                self.metrics.message(len(res.readings), res.rejects, res.duplicates)
                futs = []
                if res.readings:
                    key = res.readings[0].enterprise_code.encode()
                    futs.append(
                        await producer.send(
                            cfg.readings_topic,
                            encode_readings(res.readings),
                            key=key,
                            headers=[
                                ("content-type", READINGS_CONTENT_TYPE),
                                ("registry-version", self.normalizer.registry.version.encode()),
                            ],
                        )
                    )
                for dl in res.rejects:
                    futs.append(
                        await producer.send(
                            cfg.deadletter_topic,
                            encode_dead_letter(dl),
                            key=dl.topic.encode(),
                            headers=[
                                ("content-type", DEAD_LETTER_CONTENT_TYPE),
                                ("reason", str(dl.reason).encode()),
                            ],
                        )
                    )
                await acks.put((futs, ack))

        tasks = [asyncio.create_task(pump()), asyncio.create_task(acker())]
        await self._loop.run_in_executor(None, self.source.wait_ready, 30.0)
        self.ready.set()
        try:
            stopper = asyncio.create_task(self._stop.wait())
            done, _ = await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and t.exception() is not None:
                    failure.append(t.exception())  # type: ignore[arg-type]
            if not failure:
                # Clean stop: take nothing new, finish what is queued and acknowledge it while
                # still connected, then disconnect (the session stays for the next bridge).
                self._closing = True
                while not self._queue.empty():
                    await asyncio.sleep(0.01)
                await asyncio.wait_for(acks.join(), timeout=30)
                self.source.stop()
        finally:
            for t in tasks:
                t.cancel()
            if self.source is not None:
                self.source.stop()
            await producer.stop()
        if failure:
            raise BridgeError(
                f"Kafka did not accept what the bridge produced: {failure[0]!r}"
            ) from failure[0]
