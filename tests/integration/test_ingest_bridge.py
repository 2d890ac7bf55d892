"""Distributed mode end to end on the real services: a batch published over MQTT goes
through the bridge into Kafka (normalised, keyed by enterprise, rejects on the dead-letter
topic), from Kafka into InfluxDB; messages published while the bridge is stopped arrive
after it restarts."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from influxdb_client import InfluxDBClient

from ingest.bridge import BridgeConfig, BridgeError, KafkaBridge
from ingest.codec import decode_dead_letter, decode_readings
from ingest.influx import InfluxConfig, InfluxWriter
from ingest.lineprotocol import reading_line
from ingest.model import RejectReason
from ingest.mqtt import MqttConfig, MqttPublisher
from ingest.normalize import NormalizeConfig, Normalizer
from ingest.registry import parse_registry

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "ingest"


class BridgeThread:
    """Runs a KafkaBridge on its own event loop, as `hazardwatch` runs it in a process."""

    def __init__(self, bridge: KafkaBridge) -> None:
        self.bridge = bridge
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(self.bridge.run())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> KafkaBridge:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.bridge.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.bridge.ready.is_set() and self.bridge.source.wait_ready(10), self.error
        return self.bridge

    def __exit__(self, *exc: object) -> None:
        self.bridge.stop()
        self.thread.join(30)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


async def consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    got = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(msgs)
    finally:
        await consumer.stop()
    return got


def test_mqtt_batch_to_kafka_to_influxdb(mosquitto, kafka_bootstrap, influx, unique, tmp_path):
    ent = f"Q{unique}"
    text = (DATA / "registry.csv").read_text(encoding="utf-8").replace("QJ001", ent)
    reg = parse_registry(text.encode(), "registry.csv")
    prefix = f"hwb{unique}"
    mqtt = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.username,
        password=mosquitto.password,
        client_id=f"bridge-{unique}",
        topic_prefix=prefix,
        session_expiry_s=300,
    )
    kafka = BridgeConfig(
        bootstrap_servers=kafka_bootstrap,
        readings_topic=f"r.{unique}",
        deadletter_topic=f"dl.{unique}",
        client_id=f"bridge-{unique}",
    )
    normalizer = Normalizer(reg, NormalizeConfig(topic_prefix=prefix))
    t = int(time.time() * 1000) - 5000
    batch = {
        "ts": t,
        "data": [
            {"tag": "AT-1101", "v": 12.5},
            {"tag": "AT-1102", "v": 10, "u": "ppm"},
            {"tag": "PT-1101", "v": 1600, "u": "kPa", "q": 1},
            {"tag": "GHOST", "v": 1},
        ],
    }
    with MqttPublisher(mqtt, client_id=f"pub-{unique}") as pub:
        with BridgeThread(KafkaBridge(mqtt, kafka, normalizer)):
            pub.publish(f"{prefix}/{ent}/GW01/data", json.dumps(batch).encode())
            msgs = asyncio.run(consume(kafka_bootstrap, kafka.readings_topic, 1))
            dls = asyncio.run(consume(kafka_bootstrap, kafka.deadletter_topic, 1))
        # the bridge is down: these wait in the broker for its session
        for k in range(20):
            pub.publish(
                f"{prefix}/{ent}/GW01/data",
                json.dumps({"tag": "AT-1101", "ts": t + 1 + k, "v": k}).encode(),
            )
        with BridgeThread(KafkaBridge(mqtt, kafka, normalizer)):
            later = asyncio.run(consume(kafka_bootstrap, kafka.readings_topic, 21))

    assert len(msgs) == 1
    assert msgs[0].key == ent.encode()
    readings = decode_readings(msgs[0].value)
    got = {r.tag: r for r in readings}
    assert set(got) == {"AT-1101", "AT-1102", "PT-1101"}
    assert got["PT-1101"].value == pytest.approx(1.6) and got["PT-1101"].unit == "MPa"
    assert got["AT-1102"].value == pytest.approx(10 * 17.03 / 24.04)
    assert got["PT-1101"].quality == 1
    (dl_msg,) = dls
    dl = decode_dead_letter(dl_msg.value)
    assert dl.reason is RejectReason.UNKNOWN_TAG and dl.index == 3
    assert dict(dl_msg.headers)["reason"] == b"unknown_tag"

    restarted = [r for m in later[1:] for r in decode_readings(m.value)]
    assert [r.value for r in restarted] == [float(k) for k in range(20)]  # all, in order

    # Kafka -> InfluxDB (what the time-series sink of distributed mode does)
    w = InfluxWriter(
        InfluxConfig(
            url=influx.url,
            token=influx.token,
            org=influx.org,
            bucket=influx.bucket,
            spill_dir=tmp_path / "spill",
        )
    )
    all_readings = readings + restarted
    w.write_lines([reading_line(r, reg.get(r.enterprise_code, r.tag)) for r in all_readings])
    assert w.flush(20)
    w.close()
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        tables = client.query_api().query(
            f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "reading" and r.enterprise == "{ent}" '
            f'and r._field == "value")'
        )
    rows = {
        (rec.values["tag"], rec.values["unit"], round(rec.get_value(), 9))
        for tb in tables
        for rec in tb.records
    }
    assert ("PT-1101", "MPa", 1.6) in rows
    assert len(rows) == len({(r.tag, r.ts_ms) for r in all_readings})


class FakeProducer:
    """Stands in for AIOKafkaProducer: `fail=True` makes every send's delivery fail, as
    when Kafka loses the partition leader for good."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def send(self, topic, value, key=None, headers=None):
        fut = asyncio.get_running_loop().create_future()
        if self.fail:
            fut.set_exception(RuntimeError("KafkaTimeoutError: delivery timed out"))
        else:
            self.sent.append((topic, key, value))
            fut.set_result(None)
        return fut


def test_kafka_failure_stops_the_bridge_without_acking_so_nothing_is_lost(mosquitto, unique):
    reg = parse_registry((DATA / "registry.csv").read_bytes(), "registry.csv")
    prefix = f"hwf{unique}"
    mqtt = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.username,
        password=mosquitto.password,
        client_id=f"bridge-{unique}",
        topic_prefix=prefix,
        session_expiry_s=300,
    )
    kafka = BridgeConfig(bootstrap_servers="unused:1")
    payload = json.dumps({"tag": "AT-1101", "ts": int(time.time() * 1000), "v": 3}).encode()
    broken = FakeProducer(fail=True)
    bridge = KafkaBridge(
        mqtt,
        kafka,
        Normalizer(reg, NormalizeConfig(topic_prefix=prefix)),
        producer_factory=lambda: broken,
    )
    runner = BridgeThread(bridge)
    with MqttPublisher(mqtt, client_id=f"pub-{unique}") as pub:
        runner.thread.start()
        deadline = time.monotonic() + 30
        while not bridge.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        pub.publish(f"{prefix}/QJ001/GW01/data", payload)
        runner.thread.join(30)
    assert not runner.thread.is_alive()
    assert "Kafka did not accept" in str(runner.error)

    good = FakeProducer(fail=False)
    bridge2 = KafkaBridge(
        mqtt,
        kafka,
        Normalizer(reg, NormalizeConfig(topic_prefix=prefix)),
        producer_factory=lambda: good,
    )
    with BridgeThread(bridge2):
        deadline = time.monotonic() + 20
        while not good.sent and time.monotonic() < deadline:
            time.sleep(0.05)
    # the message the failed bridge never acknowledged was redelivered to the next one
    (topic, key, value) = good.sent[0]
    assert topic == kafka.readings_topic and key == b"QJ001"
    assert [r.value for r in decode_readings(value)] == [3.0]


def test_unreachable_kafka_is_a_clear_error(mosquitto, unique):
    reg = parse_registry((DATA / "registry.csv").read_bytes(), "registry.csv")
    mqtt = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.username,
        password=mosquitto.password,
        client_id=f"bridge-{unique}",
    )
    bridge = KafkaBridge(mqtt, BridgeConfig(bootstrap_servers="127.0.0.1:1"), Normalizer(reg))
    with pytest.raises(BridgeError, match=r"cannot start the Kafka producer for 127\.0\.0\.1:1"):
        asyncio.run(bridge.run())
