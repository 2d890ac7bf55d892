"""The fault suite's private services: a second Mosquitto/Kafka/InfluxDB instance on its own
ports and folder (deploy/local/services with HW_LOCAL_DIR and port overrides), so faults can
stop and restart them without touching the shared services other tests use."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy/local/services"

# Ports of nothing else in tests/ (grep before changing): 21883/29092/28086 are
# test_local_services.py's, 11883/19092/18086 the shared instance's.
PORTS = {
    "HW_LOCAL_MQTT_PORT": 22883,
    "HW_LOCAL_KAFKA_PORT": 29192,
    "HW_LOCAL_KAFKA_CONTROLLER_PORT": 29193,
    "HW_LOCAL_INFLUX_PORT": 28186,
    "HW_LOCAL_INFLUX_RPC_PORT": 28188,
}
MQTT_USER, MQTT_PASSWORD = "hazardwatch", "hw-local-dev"
INFLUX_TOKEN = "hw:hw-local-dev"
INFLUX_DB = "hazardwatch"


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class PrivateStack:
    """One private instance. `folder` None = a fresh folder removed by `down()`; a given
    folder (HW_FAULTS_STACK_DIR, for iterating on the suite) is reused and kept."""

    folder: Path | None = None
    keep: bool = False
    events: list[str] = field(default_factory=list)  # what was restarted, for the report

    def __post_init__(self) -> None:
        if self.folder is None:
            # Under the checkout, not /tmp/pytest-of-*: Mosquitto drops to its own user,
            # which must reach its data folder (see test_local_services.py).
            self.folder = REPO / ".local" / f"faults-{uuid.uuid4().hex[:8]}"
        else:
            self.keep = True
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("HW_")},
            "HW_LOCAL_DIR": str(self.folder),
            "HW_LOCAL_CACHE_DIR": str(REPO / ".local"),  # the jars and influxd already built
            **{k: str(v) for k, v in PORTS.items()},
        }

    # -- addresses ---------------------------------------------------------------------
    mqtt_host = "127.0.0.1"
    mqtt_port = PORTS["HW_LOCAL_MQTT_PORT"]
    kafka_bootstrap = f"127.0.0.1:{PORTS['HW_LOCAL_KAFKA_PORT']}"
    influx_url = f"http://127.0.0.1:{PORTS['HW_LOCAL_INFLUX_PORT']}"

    # -- control -----------------------------------------------------------------------
    def services(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if r.returncode != 0 and args[0] != "status":
            raise AssertionError(
                f"deploy/local/services {' '.join(args)} failed ({r.returncode}):\n{r.stderr}"
            )
        return r

    def up(self) -> PrivateStack:
        if not self.keep:
            busy = [p for p in PORTS.values() if port_open(p)]
            assert not busy, f"fault suite ports already in use: {busy} (another run?)"
        self.services("up")
        return self

    def down(self) -> None:
        if self.keep:
            return
        self.services("down")
        shutil.rmtree(self.folder, ignore_errors=True)

    def status(self) -> dict[str, str]:
        out = self.services("status").stdout.splitlines()[1:]
        return {ln.split()[0]: ln.split()[1] for ln in out}

    def stop(self, name: str) -> None:
        self.events.append(f"stop {name}")
        self.services("stop", name)

    def start(self, name: str) -> None:
        self.events.append(f"start {name}")
        self.services("start", name)

    def restart(self, name: str) -> None:
        self.events.append(f"restart {name}")
        self.services("restart", name)

    # -- InfluxDB ----------------------------------------------------------------------
    def influx_query(self, q: str) -> dict:
        """InfluxQL over HTTP (epoch ms); raises when InfluxDB does not answer."""
        data = urllib.parse.urlencode({"q": q, "db": INFLUX_DB, "epoch": "ms"}).encode()
        user, _, pw = INFLUX_TOKEN.partition(":")
        req = urllib.request.Request(f"{self.influx_url}/query", data=data, method="POST")
        req.add_header("Authorization", "Basic " + _b64(f"{user}:{pw}"))
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def wait_ready(self, name: str, timeout: float = 120) -> None:
        port = {
            "mosquitto": self.mqtt_port,
            "kafka": PORTS["HW_LOCAL_KAFKA_PORT"],
            "influxdb": PORTS["HW_LOCAL_INFLUX_PORT"],
        }[name]
        deadline = time.monotonic() + timeout
        while not port_open(port):
            assert time.monotonic() < deadline, f"{name} not back on {port} within {timeout} s"
            time.sleep(0.2)


def _b64(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()
