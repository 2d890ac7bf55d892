"""`hazardwatch ingest deadletters` against the real Mosquitto: an operator watching the
dead-letter topic sees each rejected message with its reason."""

from __future__ import annotations

import json
import threading

import pytest

from hazardwatch.cli import main
from ingest.codec import encode_dead_letter
from ingest.model import DeadLetter, RejectReason
from ingest.mqtt import MqttConfig, MqttPublisher

pytestmark = pytest.mark.integration


def test_deadletters_command_prints_reason_and_detail(
    mosquitto, unique, monkeypatch, capsys, clean_env
):
    topic = f"hwt{unique}/_deadletter"
    for k, v in {
        "HW_MQTT__HOST": mosquitto.host,
        "HW_MQTT__PORT": str(mosquitto.port),
        "HW_MQTT__USERNAME": mosquitto.username,
        "HW_MQTT__PASSWORD": mosquitto.password,
        "HW_MQTT__DEAD_LETTER_TOPIC": topic,
    }.items():
        monkeypatch.setenv(k, v)
    rc: list[int] = []
    t = threading.Thread(
        target=lambda: rc.append(main(["ingest", "deadletters", "-n", "1", "--timeout", "20"]))
    )
    t.start()
    dl = DeadLetter(
        RejectReason.UNKNOWN_TAG,
        "tag 'X' is not registered",
        "hw/E/G/data",
        1_795_910_400_000,
        b'{"tag": "X"}',
        3,
    )
    cfg = MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.username,
        password=mosquitto.password,
        client_id=f"dlpub-{unique}",
    )
    with MqttPublisher(cfg) as pub:
        # the command subscribes asynchronously: publish until it has seen one
        while t.is_alive():
            pub.publish(topic, encode_dead_letter(dl))
            t.join(0.3)
    assert rc == [0]
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    assert first["reason"] == "unknown_tag" and first["index"] == 3
    assert first["detail"] == "tag 'X' is not registered"
    assert first["payload"] == '{"tag": "X"}'
    assert first["received"] == "2026-11-29T00:00:00.000Z"
