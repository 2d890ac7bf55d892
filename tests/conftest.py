"""Shared fixtures. Integration tests use the real local services that `scripts/test`
starts (deploy/local/services up); if one is not reachable the test FAILS naming it --
an integration suite that skips itself in CI proves nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _local_env() -> dict[str, str]:
    """HW_* settings for the local services, as `deploy/local/services env` prints them."""
    out = subprocess.run(
        [str(REPO / "deploy/local/services"), "env"], capture_output=True, text=True, check=True
    ).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export ") :].partition("=")
            env[k] = v
    return env


LOCAL_ENV = _local_env()


@dataclass(frozen=True)
class Service:
    name: str
    host: str
    port: int

    def require(self) -> None:
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return
        except OSError as exc:
            pytest.fail(
                f"{self.name} is not reachable at {self.host}:{self.port} ({exc}); "
                f"start it with `deploy/local/services up {self.name}`",
                pytrace=False,
            )


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host.replace("http://", "").replace("//", ""), int(port)


MOSQUITTO = Service("mosquitto", LOCAL_ENV["HW_MQTT__HOST"], int(LOCAL_ENV["HW_MQTT__PORT"]))
KAFKA = Service("kafka", *_hostport(LOCAL_ENV["HW_KAFKA__BOOTSTRAP_SERVERS"]))
INFLUXDB = Service("influxdb", *_hostport(LOCAL_ENV["HW_INFLUX__URL"]))


@dataclass(frozen=True)
class MqttConn:
    host: str
    port: int
    username: str
    password: str


@dataclass(frozen=True)
class InfluxConn:
    url: str
    token: str
    org: str
    bucket: str


@pytest.fixture
def mosquitto() -> MqttConn:
    MOSQUITTO.require()
    return MqttConn(
        LOCAL_ENV["HW_MQTT__HOST"],
        int(LOCAL_ENV["HW_MQTT__PORT"]),
        LOCAL_ENV["HW_MQTT__USERNAME"],
        LOCAL_ENV["HW_MQTT__PASSWORD"],
    )


@pytest.fixture
def kafka_bootstrap() -> str:
    KAFKA.require()
    return LOCAL_ENV["HW_KAFKA__BOOTSTRAP_SERVERS"]


@pytest.fixture
def influx() -> InfluxConn:
    INFLUXDB.require()
    return InfluxConn(
        LOCAL_ENV["HW_INFLUX__URL"],
        LOCAL_ENV["HW_INFLUX__TOKEN"],
        LOCAL_ENV["HW_INFLUX__ORG"],
        LOCAL_ENV["HW_INFLUX__BUCKET"],
    )


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, groups and measurements, so tests never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove HW_* variables so settings tests see only what they set."""
    for k in list(os.environ):
        if k.startswith("HW_"):
            monkeypatch.delenv(k)
