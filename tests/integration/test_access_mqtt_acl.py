"""MQTT access control end to end: `hazardwatch mqtt acl` writes the ACL and password files
from a registry, a PRIVATE Mosquitto (deploy/local/services on its own folder and port, with
HW_LOCAL_MQTT_ACL_FILE/HW_LOCAL_MQTT_PASSWD_FILE) runs with them, and the broker itself refuses
a gateway that publishes under another enterprise's code (MQTT 5 PUBACK 'Not authorized', the
subscriber never sees it) while the gateway's own topic works."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hazardwatch.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.integration

PORT = 21890
PASSWORDS = {
    "hazardwatch": "svc-pass-71f3",
    "E1.GW1": "e1-gw1-pass-0b2c",
    "E1.GW2": "e1-gw2-pass-93aa",
    "E2.GW1": "e2-gw1-pass-5d10",
}
HEADER = "enterprise_code,enterprise_name,industry,district,zone,gateway_code,tag,parameter,unit"
ROWS = [
    "E1,甲化工,hazchem,D1,Z1,GW1,AT-1,gas.NH3,mg/m3",
    "E1,甲化工,hazchem,D1,Z1,GW1,AT-2,gas.NH3,mg/m3",
    "E1,甲化工,hazchem,D1,Z2,GW2,LT-1,level,m",
    "E2,乙化工,hazchem,D1,Z1,GW1,AT-1,gas.Cl2,mg/m3",
]


def _open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _services(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "deploy/local/services"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def acl_files(tmp_path_factory) -> Path:
    """`hazardwatch mqtt acl` run the way an operator runs it (passwords from a 600 file)."""
    d = tmp_path_factory.mktemp("acl")
    (d / "registry.csv").write_text("\n".join([HEADER, *ROWS]) + "\n", encoding="utf-8")
    pw = d / "passwords"
    pw.write_text("".join(f"{u}:{p}\n" for u, p in PASSWORDS.items()))
    pw.chmod(0o600)
    saved = dict(os.environ)
    cwd = os.getcwd()
    try:
        for k in list(os.environ):
            if k.startswith("HW_"):
                del os.environ[k]
        os.chdir(d)  # no hazardwatch.toml of the checkout
        rc = main(
            [
                "mqtt",
                "acl",
                "-r",
                str(d / "registry.csv"),
                "-o",
                str(d / "out"),
                "--passwords",
                str(pw),
            ]
        )
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(saved)
    assert rc == 0
    return d / "out"


@pytest.fixture(scope="module")
def broker(acl_files: Path):
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is needed: deploy/local/services up mosquitto installs it")
    assert not _open(PORT), f"test port {PORT} already in use"
    # Under the checkout, not /tmp/pytest-of-root (mode 0700): Mosquitto drops privileges to
    # its own user, which must reach its folder.
    inst = REPO / ".local" / f"test-instance-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "HW_LOCAL_DIR": str(inst),
        "HW_LOCAL_MQTT_PORT": str(PORT),
        "HW_LOCAL_MQTT_ACL_FILE": str(acl_files / "acl"),
        "HW_LOCAL_MQTT_PASSWD_FILE": str(acl_files / "passwd"),
    }
    try:
        up = _services(env, "up", "mosquitto")
        assert up.returncode == 0, up.stderr
        yield inst
    finally:
        down = _services(env, "down", "mosquitto")
        shutil.rmtree(inst, ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert not _open(PORT)


class Client:
    """An MQTT 5 client that records CONNACK, PUBACK reason codes and received messages."""

    def __init__(self, user: str, password: str) -> None:
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"acl-{user}-{uuid.uuid4().hex[:6]}",
            protocol=mqtt.MQTTv5,
        )
        self.c.username_pw_set(user, password)
        self.connack: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.pubacks: dict[int, mqtt.ReasonCode] = {}
        self.subacks: list[list[mqtt.ReasonCode]] = []
        self.got: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.c.on_connect = self._on_connect
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = lambda c, u, mid, rcs, props: self.subacks.append(list(rcs))
        self.c.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = rc
        self.connected.set()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        with self._lock:
            self.pubacks[mid] = rc

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.got.append((msg.topic, msg.payload))

    def connect(self) -> Client:
        self.c.connect("127.0.0.1", PORT)
        self.c.loop_start()
        assert self.connected.wait(5), "no CONNACK"
        return self

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        info = self.c.publish(topic, payload, qos=1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with self._lock:
                if info.mid in self.pubacks:
                    return self.pubacks[info.mid]
            time.sleep(0.01)
        raise AssertionError(f"no PUBACK for {topic}")

    def subscribe(self, topic: str) -> list[mqtt.ReasonCode]:
        n = len(self.subacks)
        self.c.subscribe(topic, qos=1)
        deadline = time.monotonic() + 5
        while len(self.subacks) == n:
            assert time.monotonic() < deadline, "no SUBACK"
            time.sleep(0.01)
        return self.subacks[-1]

    def wait_for(self, payload: bytes, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(p == payload for _, p in self.got):
                    return
            time.sleep(0.02)
        raise AssertionError(f"{payload!r} never arrived; got {self.got}")

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_generated_files_are_private_and_hold_no_plain_password(acl_files: Path):
    for name in ("acl", "passwd"):
        assert (acl_files / name).stat().st_mode & 0o777 == 0o600
    text = (acl_files / "passwd").read_text()
    assert not any(p in text for p in PASSWORDS.values())
    assert sorted(line.split(":")[0] for line in text.splitlines()) == sorted(PASSWORDS)
    acl = (acl_files / "acl").read_text()
    assert "user E1.GW1\ntopic write hw/E1/GW1/#\n" in acl
    assert "pattern" not in acl.replace("no `pattern`", "")


def test_gateway_cannot_publish_under_another_enterprise(broker):
    watcher = Client("hazardwatch", PASSWORDS["hazardwatch"]).connect()
    gw = Client("E1.GW1", PASSWORDS["E1.GW1"]).connect()
    try:
        assert all(not rc.is_failure for rc in watcher.subscribe("hw/#"))

        # Its own topic works: PUBACK success and the service receives it.
        rc = gw.publish("hw/E1/GW1/data", b'{"tag":"AT-1","ts":1,"v":1.0}')
        assert not rc.is_failure, rc
        watcher.wait_for(b'{"tag":"AT-1","ts":1,"v":1.0}')

        # Another enterprise's code (and another gateway of its own enterprise): refused by
        # the broker, with the MQTT 5 reason, and never delivered.
        forged = b'{"tag":"AT-1","ts":2,"v":999.0}'
        for topic in ("hw/E2/GW1/data", "hw/E1/GW2/data", "hw/E2/GW1/event", "other/E1/GW1"):
            rc = gw.publish(topic, forged)
            assert rc.is_failure and rc.value == 0x87, (topic, rc)
            assert rc.getName() == "Not authorized"
        # A marker on its own topic after the forged ones arrives: had the broker passed a
        # forged message on, it would have arrived before it.
        gw.publish("hw/E1/GW1/data", b"marker")
        watcher.wait_for(b"marker")
        assert not any(p == forged for _, p in watcher.got), watcher.got

        # The service user writes dead letters, and cannot pose as a gateway.
        assert not watcher.publish("hw/_deadletter", b"dl").is_failure
        watcher.wait_for(b"dl")
        assert watcher.publish("hw/E2/GW1/data", forged).value == 0x87
    finally:
        gw.close()
        watcher.close()


def test_gateway_reads_nothing_and_wrong_passwords_are_refused(broker):
    spy = Client("E1.GW1", PASSWORDS["E1.GW1"]).connect()
    other = Client("E2.GW1", PASSWORDS["E2.GW1"]).connect()
    try:
        spy.subscribe("hw/#")
        assert not other.publish("hw/E2/GW1/data", b"e2-private").is_failure
        other.publish("hw/E2/GW1/data", b"e2-marker")
        time.sleep(0.5)
        assert spy.got == [], "a gateway must not read other enterprises' data"
    finally:
        spy.close()
        other.close()
    # A gateway's password does not open another gateway's login; no password is refused too.
    for user, pw in (("E2.GW1", PASSWORDS["E1.GW1"]), ("nobody", "x"), ("E1.GW1", "")):
        c = Client(user, pw)
        c.c.connect("127.0.0.1", PORT)
        c.c.loop_start()
        try:
            assert c.connected.wait(5)
            assert c.connack is not None and c.connack.is_failure, (user, c.connack)
        finally:
            c.c.loop_stop()


@pytest.mark.parametrize("shared_group", ["", "hw-ingest"])
def test_hazardwatch_ingest_works_under_the_generated_acl(broker, shared_group):
    """hazardwatch's own MQTT source, logged in as the generated service user (also with a
    shared subscription, as several ingest processes use), gets its subscriptions granted and
    receives a gateway's data and events but never a forged topic."""
    from ingest.mqtt import MqttConfig, MqttSource

    got: list[tuple[str, bytes]] = []
    cfg = MqttConfig(
        host="127.0.0.1",
        port=PORT,
        username="hazardwatch",
        password=PASSWORDS["hazardwatch"],
        client_id=f"acl-ingest-{uuid.uuid4().hex[:6]}",
        shared_group=shared_group,
        session_expiry_s=0,
    )
    src = MqttSource(cfg, lambda topic, payload, received: got.append((topic, payload)))
    gw = Client("E2.GW1", PASSWORDS["E2.GW1"]).connect()
    try:
        src.start()
        assert src.wait_ready(10), f"subscriptions not granted: {src.last_error}"
        assert not gw.publish("hw/E2/GW1/data", b"e2-own").is_failure
        assert gw.publish("hw/E1/GW1/data", b"e2-forged").value == 0x87
        assert not gw.publish("hw/E2/GW1/event", b"e2-event").is_failure
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(got) == [("hw/E2/GW1/data", b"e2-own"), ("hw/E2/GW1/event", b"e2-event")]
    finally:
        gw.close()
        src.stop()
