"""Smoke test: QoS 1 publish/subscribe through the real Mosquitto with paho-mqtt 2.x, and a
persistent session that keeps QoS 1 messages for a subscriber that was away."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

pytestmark = pytest.mark.integration


def _client(conn, client_id: str = "", clean: bool = True, expiry: int = 0) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    c.username_pw_set(conn.username, conn.password)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    connected = threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.connect(conn.host, conn.port, keepalive=10, clean_start=clean, properties=props)
    c.loop_start()
    assert connected.wait(5), "no CONNACK from mosquitto"
    return c


def test_qos1_round_trip(mosquitto, unique):
    topic = f"hw/SMOKE{unique}/GW1/data"
    got: list[bytes] = []
    done = threading.Event()
    sub = _client(mosquitto)

    def on_message(client, userdata, msg):
        got.append(msg.payload)
        if len(got) == 10:
            done.set()

    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe(topic, qos=1)
    assert subscribed.wait(5)
    pub = _client(mosquitto)
    for i in range(10):
        pub.publish(topic, f'{{"tag":"AT-1","ts":{i},"v":{i}}}', qos=1).wait_for_publish(5)
    assert done.wait(5), f"only {len(got)} of 10 messages arrived"
    assert got == [f'{{"tag":"AT-1","ts":{i},"v":{i}}}'.encode() for i in range(10)]
    for c in (sub, pub):
        c.disconnect()
        c.loop_stop()


def test_persistent_session_keeps_messages_while_away(mosquitto, unique):
    topic = f"hw/SMOKE{unique}/GW1/data"
    cid = f"smoke-{unique}"
    sub = _client(mosquitto, cid, clean=True, expiry=300)
    ok = threading.Event()
    sub.on_subscribe = lambda *a: ok.set()
    sub.subscribe(topic, qos=1)
    assert ok.wait(5)
    sub.disconnect()
    sub.loop_stop()

    pub = _client(mosquitto)
    for i in range(5):
        pub.publish(topic, str(i), qos=1).wait_for_publish(5)
    pub.disconnect()
    pub.loop_stop()

    got: list[bytes] = []
    back = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    back.username_pw_set(mosquitto.username, mosquitto.password)
    back.on_message = lambda c, u, m: got.append(m.payload)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 300
    back.connect(mosquitto.host, mosquitto.port, clean_start=False, properties=props)
    back.loop_start()
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    back.disconnect()
    back.loop_stop()
    assert got == [b"0", b"1", b"2", b"3", b"4"]


def test_wrong_password_is_refused(mosquitto):
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set(mosquitto.username, "not-the-password")
    codes = []
    done = threading.Event()

    def on_connect(client, userdata, flags, rc, props):
        codes.append(rc)
        done.set()

    c.on_connect = on_connect
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    assert done.wait(5)
    c.loop_stop()
    assert codes[0].is_failure
