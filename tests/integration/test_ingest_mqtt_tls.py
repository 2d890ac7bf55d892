"""MQTT over TLS with username/password: the test starts its own Mosquitto with a TLS
listener and a throwaway CA (the shared broker has no TLS listener), then checks that the
source connects, verifies the server certificate and receives; a wrong CA or password is
refused."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ingest.mqtt import MqttConfig, MqttPublisher, MqttSource
from tests.pki import ca_and_server_cert

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_ca_and_cert(d: Path, name: str) -> tuple[Path, Path, Path]:
    pki = ca_and_server_cert(d, name)
    return pki["ca"], pki["cert"], pki["key"]


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tls-broker")
    for tool in ("mosquitto", "mosquitto_passwd", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is needed for the MQTT TLS test (deploy/local installs "
                "mosquitto; openssl comes with the OS)",
                pytrace=False,
            )
    ca, crt, key = _make_ca_and_cert(tmp_path, "server")
    other_ca, _, _ = _make_ca_and_cert(tmp_path, "other")
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "gw", "tls-pass"],
        check=True,
        capture_output=True,
    )
    port = _free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user root\nallow_anonymous false\npassword_file {tmp_path / 'passwd'}\n"
        f"persistence false\nlog_dest stderr\n"
        f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\nkeyfile {key}\n"
        "tls_version tlsv1.2\n"
    )
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    (tmp_path / "passwd").chmod(0o600)
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"test mosquitto exited: {proc.stderr.read().decode()[-500:]}")
                time.sleep(0.05)
        yield port, ca, other_ca
    finally:
        proc.terminate()
        proc.wait(10)


def _cfg(port: int, ca: Path, password: str = "tls-pass", **kw) -> MqttConfig:
    return MqttConfig(
        host="127.0.0.1",
        port=port,
        username="gw",
        password=password,
        tls=True,
        ca_file=ca,
        client_id=f"tls-{time.time_ns()}",
        topic_prefix="hw",
        **kw,
    )


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_tls_with_password(tls_broker, protocol):
    port, ca, _ = tls_broker
    got: list = []
    done = threading.Event()

    def handler(topic, payload, received_ms):
        got.append(json.loads(payload))
        done.set()

    with MqttSource(_cfg(port, ca, protocol=protocol), handler) as src:
        assert src.wait_ready(10)
        with MqttPublisher(_cfg(port, ca, protocol=protocol)) as pub:
            pub.publish("hw/QJ001/GW01/data", b'{"tag": "AT-1101", "v": 1}')
        assert done.wait(10)
    assert got == [{"tag": "AT-1101", "v": 1}]


def test_server_certificate_from_another_ca_is_refused(tls_broker):
    port, _, other_ca = tls_broker
    src = MqttSource(_cfg(port, other_ca), lambda *a: None)
    src.start()
    try:
        assert not src.wait_ready(3)
        assert src.counters.get("connects") == 0
        assert src.counters.get("connect_failures") >= 1
        assert src.last_error == f"cannot connect to 127.0.0.1:{port}"
    finally:
        src.stop()


def test_wrong_password_is_refused(tls_broker):
    port, ca, _ = tls_broker
    src = MqttSource(_cfg(port, ca, password="wrong"), lambda *a: None)
    src.start()
    try:
        assert not src.wait_ready(3)
        assert src.counters.get("connects") == 0
        assert "refused by the broker" in src.last_error
        assert "wrong" not in src.last_error
    finally:
        src.stop()
