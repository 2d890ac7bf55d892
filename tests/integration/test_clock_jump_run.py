"""`hazardwatch run` (a real embedded process on the real Mosquitto) whose wall clock steps
10 minutes forward or back while its gateways keep reporting (tests/faults/env.py
ClockControl, libfaketime): no offline or gateway alarm, no reading dead-lettered as from the
future, the step is logged and counted; and a gateway that then really stops raises its
outage alarm within its timeout of elapsed time."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from alerts.channels.receivers import PlatformReceiver
from ingest.mqtt import MqttPublisher
from tests.e2e.pipeline_helpers import (
    HMAC_SECRET,
    Proc,
    base_env,
    free_port,
    publisher_config,
    wait_for,
)
from tests.faults.env import ClockControl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HEADER = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,lat,lon"
)
INTERVAL_S = 2  # registered reporting interval: offline and gateway timeouts are 3x = 6 s


class Gateways:
    """Publishes a batch for each live gateway every second, stamped with the real time."""

    def __init__(self, cfg, prefix: str, ent: str, client_id: str) -> None:
        self.cfg, self.prefix, self.ent, self.client_id = cfg, prefix, ent, client_id
        self.live = {"G1", "G2"}
        self.stopped_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Gateways:
        self._thread.start()
        return self

    def kill(self, gw: str) -> None:
        self.live.discard(gw)
        self.stopped_at[gw] = time.monotonic()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with MqttPublisher(self.cfg, client_id=self.client_id) as pub:
            while not self._stop.is_set():
                now = int(time.time() * 1000)
                for gw in sorted(self.live):
                    data = [{"tag": f"AT-{gw}{i}", "v": 5.0, "q": 0} for i in (1, 2)]
                    body = json.dumps({"ts": now, "data": data}).encode()
                    pub.publish(f"{self.prefix}/{self.ent}/{gw}/data", body)
                self._stop.wait(1.0)


def logged_steps(log_text: str) -> list[float]:
    """The steps the process logged, in seconds. Measured between two clock reads, so a
    preemption between the monotonic and the wall read shows as a millisecond or so."""
    return [float(x) for x in re.findall(r"system clock stepped ([+-]\d+\.\d+) s", log_text)]


def metrics(port: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
        if line.startswith("hw_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def quality_alarms(receiver) -> list[tuple[str, str, str]]:
    """(kind, tag, state) of every offline/gateway alarm notification, first copy of a key."""
    seen, rows = set(), []
    for a in list(receiver.accepted):
        if a.key in seen or a.doc.get("subject_kind") != "alarm":
            continue
        seen.add(a.key)
        al = a.doc["alarm"]
        if al["kind"] in ("offline", "gateway"):
            rows.append((al["kind"], al["tag"], al["state"]))
    return rows


def _embedded_env(mosquitto, prefix, client_id, tmp_path, receiver, metrics_port, clock):
    """`hazardwatch run` (embedded) on the shared Mosquitto, with this test's registry, data
    folder, platform receiver and libfaketime clock."""
    return base_env(
        {
            "HW_MODE": "embedded",
            "HW_MQTT__ENABLED": "true",
            "HW_MQTT__HOST": mosquitto.host,
            "HW_MQTT__PORT": str(mosquitto.port),
            "HW_MQTT__USERNAME": mosquitto.username,
            "HW_MQTT__PASSWORD": mosquitto.password,
            "HW_MQTT__TOPIC_PREFIX": prefix,
            "HW_MQTT__CLIENT_ID": client_id,
            "HW_MQTT__DEAD_LETTER_TOPIC": f"{prefix}/_deadletter",
            "HW_RULES__REGISTRY": str(tmp_path / "registry.csv"),
            "HW_STORAGE__DATA_DIR": str(tmp_path / "var"),
            "HW_PLATFORM__URL": receiver.url,
            "HW_PLATFORM__HMAC_SECRET": HMAC_SECRET,
            "HW_METRICS__PORT": str(metrics_port),
            "HW_API__PORT": str(free_port()),
            **clock.env(),
        }
    )


@pytest.mark.parametrize("step_s", [600, -600], ids=["forward", "backward"])
def test_clock_step_raises_nothing_and_a_real_outage_still_fires(
    step_s, mosquitto, unique, tmp_path: Path
):
    prefix, ent = f"hwcj{unique}", f"E{unique[:5]}"
    rows = [HEADER] + [
        f"{ent},x,hazchem,d,{ent}-MH1,2,Z1,{gw},AT-{gw}{i},gas.NH3,mg/m3,0,100,,,,,{INTERVAL_S},,"
        for gw in ("G1", "G2")
        for i in (1, 2)
    ]
    (tmp_path / "registry.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    clock = ClockControl(tmp_path / "clock")
    # The platform checks X-HW-Timestamp within 300 s of ITS clock, which did not step.
    receiver = PlatformReceiver(HMAC_SECRET).start()
    port = free_port()
    env = _embedded_env(mosquitto, prefix, f"hw-cj-{unique}", tmp_path, receiver, port, clock)
    log = tmp_path / "run.log"
    run = Proc(["run"], env, log)
    gws = Gateways(publisher_config(mosquitto, unique), prefix, ent, f"hw-cj-gw-{unique}")
    try:
        wait_for(
            lambda: "hazardwatch embedded:" in log.read_text(errors="replace"),
            60,
            "the runner to subscribe",
            [run],
        )
        gws.start()
        wait_for(
            lambda: metrics(port).get("hw_readings_in_total", 0) >= 8,
            30,
            "the first readings",
            [run],
        )
        time.sleep(2)
        assert quality_alarms(receiver) == []

        clock.jump(step_s)
        before = metrics(port).get("hw_readings_in_total", 0)
        time.sleep(3 * INTERVAL_S + 4)  # well past every timeout
        m = metrics(port)
        assert quality_alarms(receiver) == [], run.output()
        assert m["hw_readings_in_total"] >= before + 30, m  # still accepted, all of them
        assert not any(k.startswith("hw_rejects_total") and v for k, v in m.items()), m
        assert m["hw_clock_steps_total"] == 1
        assert abs(m["hw_clock_offset_ms"] - step_s * 1000) < 1000
        text = log.read_text(errors="replace")
        assert [round(x) for x in logged_steps(text)] == [step_s], text

        gws.kill("G2")  # a real outage: G2 stops, G1 goes on
        wait_for(
            lambda: quality_alarms(receiver), 3 * INTERVAL_S + 10, "the G2 outage alarm", [run]
        )
        took = time.monotonic() - gws.stopped_at["G2"]
        # its last batch went out <= 1 s before the stop; 6 s timeout, 1 s tick, delivery
        assert 3 * INTERVAL_S - 1.5 <= took <= 3 * INTERVAL_S + 3, took
        time.sleep(2)
        assert quality_alarms(receiver) == [("gateway", "G2", "firing")]
    finally:
        gws.close()
        run.terminate(10)
        receiver.stop()


def test_a_correction_the_gateways_corroborate_is_adopted_and_readings_flow_again(
    mosquitto, unique, tmp_path: Path
):
    """The host started 10 min behind (a board booting before NTP synchronised): every
    reading is dead-lettered as from the future and the gateways look silent. NTP then steps
    the clock right: three gateways' timestamps corroborate the step, the guarded clock adopts
    it at once, readings are accepted again, and no offline/gateway alarm fires after it (the
    600 s the clock moved forward at once must not look like 600 s of silence)."""
    gateways = ("G1", "G2", "G3")
    prefix, ent = f"hwca{unique}", f"E{unique[:5]}"
    rows = [HEADER] + [
        f"{ent},x,hazchem,d,{ent}-MH1,2,Z1,{gw},AT-{gw}{i},gas.NH3,mg/m3,0,100,,,,,{INTERVAL_S},,"
        for gw in gateways
        for i in (1, 2)
    ]
    (tmp_path / "registry.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    clock = ClockControl(tmp_path / "clock", forward_only=True)  # see ClockControl: CPU
    clock.jump(-600)  # from its start, the process's clock is 10 min behind the gateways'
    receiver = PlatformReceiver(HMAC_SECRET).start()
    port = free_port()
    env = _embedded_env(mosquitto, prefix, f"hw-ca-{unique}", tmp_path, receiver, port, clock)
    log = tmp_path / "run.log"
    run = Proc(["run"], env, log)
    gws = Gateways(publisher_config(mosquitto, unique), prefix, ent, f"hw-ca-gw-{unique}")
    gws.live = set(gateways)

    def skew_rejects() -> float:
        return sum(
            v for k, v in metrics(port).items() if k.startswith("hw_rejects_total") and "skew" in k
        )

    try:
        wait_for(
            lambda: "hazardwatch embedded:" in log.read_text(errors="replace"),
            60,
            "the runner to subscribe",
            [run],
        )
        gws.start()
        wait_for(lambda: skew_rejects() >= 12, 30, "readings rejected as from the future", [run])
        time.sleep(3 * INTERVAL_S + 2)  # blind: the gateways look silent, their alarms fire
        m = metrics(port)
        assert m.get("hw_readings_in_total", 0) == 0, m
        # Never-seen points do not alarm on a fresh start; a restart would show the alarms
        # of points heard before. Whatever the blind spell raised must clear below.
        blind = quality_alarms(receiver)

        clock.jump(600)  # NTP steps the host clock right
        stepped_at = time.monotonic()
        wait_for(
            lambda: metrics(port).get("hw_clock_steps_adopted_total", 0) == 1,
            20,
            "the step to be adopted",
            [run],
        )
        took = time.monotonic() - stepped_at
        assert took < 10, took  # the next round of payloads from three gateways
        text = log.read_text(errors="replace")
        assert [round(x) for x in logged_steps(text)] == [600], text
        assert "adopted the host clock step of +59" in text or "step of +600" in text, text
        assert "3 gateways corroborate" in text
        rejects_then = skew_rejects()
        in_then = metrics(port).get("hw_readings_in_total", 0)
        n_notes = len(receiver.accepted)
        time.sleep(3 * INTERVAL_S + 4)  # past every timeout on the adopted time
        m = metrics(port)
        assert m["hw_readings_in_total"] >= in_then + 3 * 2 * 8, m  # accepted, all of them
        assert skew_rejects() <= rejects_then + 6, m  # at most the round in flight
        assert abs(m["hw_clock_offset_ms"]) < 1000 and m["hw_clock_steps_total"] == 1, m
        after = [
            (a.doc["alarm"]["kind"], a.doc["alarm"]["tag"], a.doc["alarm"]["state"])
            for a in list(receiver.accepted)[n_notes:]
            if a.doc.get("subject_kind") == "alarm"
            and a.doc["alarm"]["kind"] in ("offline", "gateway")
        ]
        assert all(state != "firing" for _, _, state in after), after  # no new alarm
        cleared = {(k, t) for k, t, s in after}
        assert {(k, t) for k, t, _ in blind} <= cleared, (blind, after)  # all cleared
    finally:
        gws.close()
        run.terminate(10)
        receiver.stop()


@pytest.mark.e2e
def test_distributed_bridge_and_worker_each_adopt_a_corroborated_correction(
    mosquitto, kafka_bootstrap, unique, tmp_path: Path
):
    """The same correction in distributed mode: the bridge (whose receive times decide what is
    from the future) and the worker (whose clock runs the timers) each weigh the gateways'
    timestamps they see and adopt the step; readings reach the worker again, and no quality
    alarm fires after the adoption."""
    from tests.e2e.test_runner_distributed_e2e import Distributed, ready_count

    gateways = ("G1", "G2", "G3")
    ent = f"E{unique[:5]}"
    rows = [HEADER] + [
        f"{ent},x,hazchem,d,{ent}-MH1,2,Z1,{gw},AT-{gw}{i},gas.NH3,mg/m3,0,100,,,,,{INTERVAL_S},,"
        for gw in gateways
        for i in (1, 2)
    ]
    registry = tmp_path / "registry.csv"
    registry.write_text("\n".join(rows) + "\n", encoding="utf-8")
    clock = ClockControl(tmp_path / "clock", forward_only=True)  # see ClockControl: CPU
    clock.jump(-600)  # bridge and worker start with the host's clock 10 min behind
    receiver = PlatformReceiver(HMAC_SECRET).start()
    d = Distributed(tmp_path, mosquitto, kafka_bootstrap, unique, registry, receiver)
    d.env.update(clock.env())
    port = free_port()
    gws = Gateways(publisher_config(mosquitto, unique), f"hwd{unique}", ent, f"hw-cd-gw-{unique}")
    gws.live = set(gateways)
    try:
        w = d.worker("w1", metrics_port=port)
        wait_for(lambda: ready_count(w) >= 1, 120, "worker w1 ready", [w])
        b = d.bridge()

        def served() -> bool:
            try:
                return "hw_clock_steps_total" in metrics(port)
            except httpx.HTTPError:
                return False

        wait_for(served, 60, "the worker's metrics", [w])
        gws.start()
        time.sleep(3)  # every payload is 600 s in the bridge's future: dead-lettered
        assert metrics(port).get("hw_readings_in_total", 0) == 0

        clock.jump(600)  # NTP steps the host clock right
        wait_for(
            lambda: all(
                "3 gateways corroborate" in p.log.read_text(errors="replace") for p in (b, w)
            ),
            30,
            "the bridge and the worker to adopt the step",
            [b, w],
        )
        in_then = metrics(port).get("hw_readings_in_total", 0)
        time.sleep(3 * INTERVAL_S + 4)
        m = metrics(port)
        assert m["hw_readings_in_total"] >= in_then + 3 * 2 * 8, m
        assert m["hw_clock_steps_adopted_total"] == 1 and abs(m["hw_clock_offset_ms"]) < 1000, m
        # What the blind spell raised (the worker's engine saw no readings) was refused by the
        # platform then (its timestamps 600 s off); after the adoption only clearing follows.
        after = quality_alarms(receiver)
        assert all(state != "firing" for _, _, state in after), (after, w.output())
    finally:
        gws.close()
        d.close()
        receiver.stop()
