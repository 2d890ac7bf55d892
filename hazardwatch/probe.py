"""Reachability probes for the configured external services (`hazardwatch services status`).

Each probe speaks the service's own protocol through the client the product uses, so "up"
means hazardwatch could really work with it, not merely that a port is open.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Literal

from hazardwatch.settings import Settings

State = Literal["up", "down", "not configured"]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    service: str
    address: str
    state: State
    detail: str


def probe_mqtt(s: Settings, timeout: float) -> ProbeResult:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    addr = f"{s.mqtt.host}:{s.mqtt.port}"
    if not s.mqtt.enabled:
        return ProbeResult("mqtt", addr, "not configured", "mqtt.enabled is false")
    done = threading.Event()
    outcome: dict[str, str] = {}

    def on_connect(client, userdata, flags, reason_code, properties):
        outcome["rc"] = str(reason_code)
        outcome["ok"] = "1" if not reason_code.is_failure else ""
        done.set()

    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id="",
        protocol=mqtt.MQTTv5 if s.mqtt.protocol == "5" else mqtt.MQTTv311,
    )
    if s.mqtt.username:
        c.username_pw_set(
            s.mqtt.username, s.mqtt.password.get_secret_value() if s.mqtt.password else None
        )
    if s.mqtt.tls:
        c.tls_set(ca_certs=str(s.mqtt.ca_file) if s.mqtt.ca_file else None)
    c.on_connect = on_connect
    try:
        c.connect(s.mqtt.host, s.mqtt.port, keepalive=10)
    except OSError as exc:
        return ProbeResult("mqtt", addr, "down", f"cannot connect: {exc.strerror or exc}")
    c.loop_start()
    try:
        if not done.wait(timeout):
            return ProbeResult("mqtt", addr, "down", f"no CONNACK within {timeout:g}s")
        if not outcome.get("ok"):
            return ProbeResult(
                "mqtt", addr, "down", f"broker refused the connection: {outcome['rc']}"
            )
        return ProbeResult("mqtt", addr, "up", f"MQTT {s.mqtt.protocol} connected")
    finally:
        c.disconnect()
        c.loop_stop()


def probe_kafka(s: Settings, timeout: float) -> ProbeResult:
    addr = s.kafka.bootstrap_servers
    if not addr:
        return ProbeResult("kafka", "-", "not configured", "embedded mode (in-process queue)")

    async def go() -> ProbeResult:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=addr, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(admin.start(), timeout)
            meta = await asyncio.wait_for(admin.describe_cluster(), timeout)
            return ProbeResult(
                "kafka",
                addr,
                "up",
                f"cluster {meta.get('cluster_id')}, {len(meta.get('brokers', []))} broker(s)",
            )
        except Exception as exc:  # noqa: BLE001 - any failure means down, with its reason
            return ProbeResult("kafka", addr, "down", f"{type(exc).__name__}: {exc}".strip(": "))
        finally:
            await admin.close()

    return asyncio.run(go())


def probe_influx(s: Settings, timeout: float) -> ProbeResult:
    addr = s.influx.url
    if not addr:
        return ProbeResult("influxdb", "-", "not configured", "writing line-protocol files")
    from influxdb_client import InfluxDBClient

    token = s.influx.token.get_secret_value() if s.influx.token else ""
    with InfluxDBClient(url=addr, token=token, org=s.influx.org, timeout=int(timeout * 1000)) as c:
        try:
            if not c.ping():
                return ProbeResult("influxdb", addr, "down", "no answer to /ping")
            q = f'from(bucket: "{s.influx.bucket}") |> range(start: -1m) |> limit(n: 1)'
            c.query_api().query(q, org=s.influx.org)
        except Exception as exc:  # noqa: BLE001 - any failure means down, with its reason
            return ProbeResult("influxdb", addr, "down", _influx_reason(exc))
        return ProbeResult("influxdb", addr, "up", f"bucket {s.influx.bucket} readable via Flux")


def _influx_reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status == 401:
        return "authentication failed (check influx.token)"
    if status == 404:
        return "bucket not found (check influx.bucket)"
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def probe_all(s: Settings, timeout: float = 3.0) -> list[ProbeResult]:
    return [probe_mqtt(s, timeout), probe_kafka(s, timeout), probe_influx(s, timeout)]
