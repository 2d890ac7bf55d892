"""Shared by the end-to-end tests of the run modes: a small plant registry, a scenario of MQTT
batch payloads with an on-delay and open alarms, hazardwatch processes started as real
subprocesses (`run`, `worker`, `bridge`) against the local services, and the platform
receiver that counts idempotency keys."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alerts.channels.receivers import PlatformReceiver
from ingest.mqtt import MqttConfig, MqttPublisher

REPO = Path(__file__).resolve().parents[2]
HMAC_SECRET = "e2e-platform-secret-0123456789"

_HEADER = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,"
    "lat,lon"
)


def write_registry(path: Path, enterprises: list[str]) -> Path:
    """Per enterprise: an NH3 detector (standard-pack limits) and a tank level with H/HH
    (the tank-farm pack evaluates H with a 5 s on-delay)."""
    rows = [_HEADER]
    for e in enterprises:
        rows.append(f"{e},{e}化工,hazchem,潜江,{e}-MH1,2,Z1,G1,AT-1,gas.NH3,mg/m3,0,100,,,,,600,,")
        rows.append(f"{e},{e}化工,hazchem,潜江,{e}-MH1,2,T1,G1,LT-1,level,m,0,20,,,15,19,600,,")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@dataclass(frozen=True)
class Scenario:
    """MQTT payloads in event time from `t0`: what a gateway of each enterprise sends."""

    prefix: str
    enterprises: list[str]
    t0: int

    def payload(self, ent: str, dt_s: float, nh3: float, level: float) -> tuple[str, bytes]:
        ts = self.t0 + int(dt_s * 1000)
        body = {
            "ts": ts,
            "data": [{"tag": "AT-1", "v": nh3, "q": 0}, {"tag": "LT-1", "v": level, "q": 0}],
        }
        return f"{self.prefix}/{ent}/G1/data", json.dumps(body).encode()

    def part1(self) -> list[tuple[str, bytes]]:
        """NH3 rises past the first level (fires at once), the level passes H (on-delay 5 s
        starts but does not complete within this part)."""
        out = []
        for e in self.enterprises:
            out += [
                self.payload(e, 0, 5.0, 10.0),
                self.payload(e, 1, 30.0, 16.0),
                self.payload(e, 2, 31.0, 16.2),
            ]
        return out

    def part2(self) -> list[tuple[str, bytes]]:
        """The level stays above H past its on-delay (H fires), NH3 reaches the second level,
        then everything returns to normal (both clear)."""
        out = []
        for e in self.enterprises:
            out += [
                self.payload(e, 4, 32.0, 16.4),
                self.payload(e, 7, 45.0, 16.6),
                self.payload(e, 9, 46.0, 16.7),
                self.payload(e, 12, 5.0, 10.0),
                self.payload(e, 13, 5.0, 10.0),
            ]
        return out

    def expected(self) -> dict[str, list[tuple[str, str | None, str]]]:
        """Per enterprise: (tag, level, state) transitions the scenario must produce."""
        return {
            e: [
                ("AT-1", "L1", "firing"),
                ("LT-1", "H", "firing"),
                ("AT-1", "L2", "firing"),
                ("AT-1", None, "cleared"),
                ("LT-1", None, "cleared"),
            ]
            for e in self.enterprises
        }


def publisher_config(mosquitto, unique: str) -> MqttConfig:
    return MqttConfig(
        host=mosquitto.host,
        port=mosquitto.port,
        username=mosquitto.username,
        password=mosquitto.password,
        client_id=f"hw-e2e-pub-{unique}",
    )


def publish(mqtt: MqttConfig, messages: list[tuple[str, bytes]], client_id: str) -> None:
    with MqttPublisher(mqtt, client_id=client_id) as pub:
        for topic, payload in messages:
            pub.publish(topic, payload)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The process environment with OUR HW_* settings only (CI exports the local services')."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HW_")}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Proc:
    """A hazardwatch subprocess with its output in a file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.log = args, log
        self._f = log.open("ab")
        self.p = subprocess.Popen(
            [sys.executable, "-m", "hazardwatch", *args],
            env=env,
            stdout=self._f,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )

    def kill9(self) -> None:
        self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
        self._f.close()
        return self.p.returncode

    def output(self) -> str:
        self._f.flush()
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(cond: Callable[[], bool], timeout: float, what: str, procs: list[Proc] = ()) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        for p in procs:
            if p.p.poll() is not None:
                raise AssertionError(
                    f"{p.args[0]} exited ({p.p.returncode}) while waiting for {what}:\n{p.output()}"
                )
        time.sleep(0.1)
    logs = "\n".join(f"--- {p.args[0]}:\n{p.output()}" for p in procs)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{logs}")


def alarm_notifications(receiver: PlatformReceiver) -> list[tuple]:
    """Every alarm notification the platform accepted (first copy of each idempotency key):
    (enterprise, event time, tag, kind, level, state, alarm_id, event type), sorted. Offline
    and gateway alarms are left out: when they fire depends on the wall clock."""
    seen: set[str] = set()
    rows = []
    for a in list(receiver.accepted):
        if a.key in seen or a.doc.get("subject_kind") != "alarm":
            continue
        seen.add(a.key)
        al = a.doc["alarm"]
        if al["kind"] in ("offline", "gateway"):
            continue
        rows.append(
            (
                al["enterprise_code"],
                al["event_at"],
                al["tag"],
                al["kind"],
                al["level"] if al["state"] == "firing" else None,
                al["state"],
                al["alarm_id"],
                a.doc["event_type"],
            )
        )
    return sorted(rows)


def limit_transitions(rows: list[tuple]) -> dict[str, list[tuple]]:
    """Per enterprise, the (tag, level, state) of its limit alarms in event-time order."""
    out: dict[str, list[tuple]] = {}
    for ent, _at, tag, kind, level, state, _aid, _et in rows:
        if kind == "limit":
            out.setdefault(ent, []).append((tag, level, state))
    return out


def platform_receiver() -> PlatformReceiver:
    # A wide window: notifications delivered after a restart carry their original timestamps.
    return PlatformReceiver(HMAC_SECRET, tolerance_s=3600).start()
