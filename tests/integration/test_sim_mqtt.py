"""The simulator publishing to the real Mosquitto: every batch payload arrives, the ingest
normaliser accepts all of it, and `hazardwatch simulate --mqtt` keeps to its bounds."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from hazardwatch.cli import main
from hazardwatch.sim import Simulation, generate_registry
from hazardwatch.sim.publish import MqttSink, PublishError, publish_simulation
from ingest.normalize import NormalizeConfig, Normalizer

pytestmark = pytest.mark.integration

T0 = 1_795_910_400_000


class Collector:
    """Subscribes to `<prefix>/#` and keeps every message."""

    def __init__(self, conn, prefix: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sim-test-{prefix}")
        c.username_pw_set(conn.username, conn.password)
        c.on_connect = lambda cl, *_: cl.subscribe(f"{prefix}/#", qos=1)
        c.on_subscribe = lambda *_: self._ready.set()
        c.on_message = self._on_message
        c.connect(conn.host, conn.port)
        c.loop_start()
        assert self._ready.wait(10), "subscription not acknowledged"
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload))

    def wait_for(self, n: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_published_payloads_all_arrive_and_normalise(mosquitto, unique) -> None:
    prefix = f"hwsim{unique}"
    reg = generate_registry(150, 2)
    sim = Simulation(reg, seed=2, start_ms=T0, topic_prefix=prefix)
    sim.inject("leak", T0 + 60_000)
    expected = [
        m
        for s in Simulation(
            reg, seed=2, start_ms=T0, topic_prefix=prefix, incidents=sim.incidents
        ).stream(T0 + 600_000)
        for m in s.messages
    ]
    col = Collector(mosquitto, prefix)
    try:
        sink = MqttSink(
            mosquitto.host,
            mosquitto.port,
            username=mosquitto.username,
            password=mosquitto.password,
            client_id=f"sim-pub-{unique}",
        )
        stats = publish_simulation(sim, T0 + 600_000, sink, rate=20_000)
        sink.close()
        col.wait_for(len(expected))
    finally:
        col.close()
    assert stats.messages == len(expected) and stats.stopped_by == "end"
    assert sorted(col.messages) == sorted(expected)
    norm = Normalizer(reg, NormalizeConfig(topic_prefix=prefix))
    readings = rejects = 0
    for topic, payload in col.messages:
        res = norm.normalize(topic, payload, T0 + 600_000)
        readings += len(res.readings)
        rejects += len(res.rejects)
    assert rejects == 0 and readings == stats.readings
    peak = max(
        item["v"]
        for topic, payload in col.messages
        for item in json.loads(payload)["data"]
        if item["tag"] == sim.incidents[0].tags[0] and sim.incidents[0].enterprise_code in topic
    )
    assert peak > 1.0  # the leak went over MQTT too


def test_simulate_command_publishes_within_its_bounds(
    mosquitto, unique, monkeypatch, capsys
) -> None:
    prefix = f"hwsim{unique}"
    for k, v in {
        "HW_MQTT__HOST": mosquitto.host,
        "HW_MQTT__PORT": str(mosquitto.port),
        "HW_MQTT__USERNAME": mosquitto.username,
        "HW_MQTT__PASSWORD": mosquitto.password,
        "HW_MQTT__TOPIC_PREFIX": prefix,
        "HW_MQTT__CLIENT_ID": f"sim-cli-{unique}",
    }.items():
        monkeypatch.setenv(k, v)
    col = Collector(mosquitto, prefix)
    try:
        rc = main(
            [
                "simulate",
                "--points",
                "1000",
                "--duration",
                "1h",
                "--incidents",
                "none",
                "--mqtt",
                "--interval-scale",
                "0.005",  # ~12,700 readings/s in real time: 5,000/s stays behind the clock
                "--rate",
                "5000",
                "--max-readings",
                "3000",
                "--json",
            ]
        )
        out = json.loads(capsys.readouterr().out)
        col.wait_for(out["mqtt"]["messages"])
    finally:
        col.close()
    assert rc == 0
    m = out["mqtt"]
    assert m["stopped_by"] == "max_readings" and 3000 <= m["readings"] < 3300
    assert m["seconds"] >= 0.5  # 3,000 readings at 5,000/s
    assert len(col.messages) == m["messages"]
    assert mosquitto.password not in json.dumps(out)


def test_wrong_password_is_one_clear_error(mosquitto) -> None:
    with pytest.raises(PublishError, match="refused the connection") as exc:
        MqttSink(
            mosquitto.host,
            mosquitto.port,
            username=mosquitto.username,
            password="not-the-password",
            connect_timeout_s=5,
        )
    assert "not-the-password" not in str(exc.value)
