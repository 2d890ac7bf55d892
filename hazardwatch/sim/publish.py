"""Publish a simulation to an MQTT broker (paho-mqtt 2.x): one batch payload per gateway
upload, at a target rate in readings/s, or at a speed-up of simulated time, bounded by a
wall-clock limit and a reading count. This is the load and soak driver of `hazardwatch
simulate --mqtt`; the pacing and bookkeeping are separate from paho so tests can inject a
fake client.
"""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hazardwatch.sim.simulation import Simulation


class PublishError(RuntimeError):
    """The broker refused us or went away; the message says which broker and why."""


class MessageSink(Protocol):
    def publish(self, topic: str, payload: bytes) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PublishStats:
    readings: int
    messages: int
    bytes: int
    seconds: float  # wall clock
    simulated_ms: int  # simulated time covered
    stopped_by: str  # "end" | "max_seconds" | "max_readings"

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds > 0 else 0.0


class MqttSink:
    """A paho-mqtt 2.x publisher. QoS as configured; waits for every QoS 1 acknowledgement
    on `close()` so a finished run means the broker has everything."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str = "",
        qos: int = 1,
        protocol: str = "5",
        tls: bool = False,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        connect_timeout_s: float = 10.0,
        max_inflight: int = 1000,
    ) -> None:
        import paho.mqtt.client as mqtt

        self._address = f"{host}:{port}"
        self.qos = qos
        proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"hazardwatch-sim-{os.getpid()}",
            protocol=proto,
        )
        if username:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(
                ca_certs=ca_file,
                certfile=cert_file,
                keyfile=key_file,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._client.max_inflight_messages_set(max_inflight)
        self._client.max_queued_messages_set(0)
        self._connected: Any = None
        self._client.on_connect = self._on_connect
        self._last: Any = None
        try:
            self._client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise PublishError(f"cannot connect to MQTT broker {self._address}: {exc}") from None
        self._client.loop_start()
        deadline = time.monotonic() + connect_timeout_s
        while self._connected is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if self._connected is not True:
            self._client.loop_stop()
            why = self._connected or f"no answer within {connect_timeout_s:g} s"
            raise PublishError(f"MQTT broker {self._address} refused the connection: {why}")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._connected = True if not reason.is_failure else str(reason)

    def publish(self, topic: str, payload: bytes) -> None:
        info = self._client.publish(topic, payload, qos=self.qos)
        if info.rc != 0:
            import paho.mqtt.client as mqtt

            raise PublishError(f"publish to {self._address} failed: {mqtt.error_string(info.rc)}")
        self._last = info

    def close(self, timeout_s: float = 30.0) -> None:
        try:
            if self._last is not None:
                self._last.wait_for_publish(timeout=timeout_s)
        finally:
            self._client.disconnect()
            self._client.loop_stop()


def publish_simulation(
    sim: Simulation,
    end_ms: int,
    sink: MessageSink,
    *,
    rate: float | None = None,
    speed: float | None = None,
    max_seconds: float | None = None,
    max_readings: int | None = None,
    step_ms: int = 1000,
    progress: Callable[[PublishStats], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PublishStats:
    """Publish `sim` until `end_ms` (simulated) to `sink`.

    `rate` paces by readings: after n readings, at least n / rate seconds have passed.
    `speed` paces by simulated time (60 = one simulated minute per second). Neither: as fast
    as the sink takes them. The run also stops after `max_seconds` of wall time or
    `max_readings` readings, whichever comes first.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be > 0 readings/s, got {rate}")
    if speed is not None and speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    t0 = clock()
    sim0 = sim.generated_until
    readings = messages = nbytes = 0
    now_ms = sim0
    stopped_by = "end"
    last_report = t0
    for step in sim.stream(end_ms, step_ms=step_ms):
        now_ms = step.now_ms
        for (topic, payload), count in zip(step.messages, step.counts, strict=True):
            if rate is not None:  # pace every message, so the broker sees an even rate
                wait = t0 + readings / rate - clock()
                if wait > 0:
                    sleep(wait)
            sink.publish(topic, payload)
            nbytes += len(payload)
            messages += 1
            readings += count
            if max_readings is not None and readings >= max_readings:
                stopped_by = "max_readings"
                break
        if stopped_by != "end":
            break
        if speed is not None:
            wait = t0 + (now_ms - sim0) / 1000.0 / speed - clock()
            if wait > 0:
                sleep(wait)
        elapsed = clock() - t0
        if progress is not None and clock() - last_report >= 1.0:
            last_report = clock()
            progress(PublishStats(readings, messages, nbytes, elapsed, now_ms - sim0, ""))
        if max_seconds is not None and elapsed >= max_seconds:
            stopped_by = "max_seconds"
            break
    return PublishStats(readings, messages, nbytes, clock() - t0, now_ms - sim0, stopped_by)
