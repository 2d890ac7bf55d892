"""The distributed hazardwatch under test, as an operator runs it on the private stack: one
`hazardwatch bridge` and two `hazardwatch worker` processes, and the receivers standing in
for the bureau's platform, a WeCom robot per enterprise and Aliyun SMS to each enterprise's
operator. It is shared by every case (each case has its own enterprises, registered up
front); the harness restarts a process that exits, as systemd's Restart=always would, and
records it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from alerts.channels.receivers import AliyunSmsReceiver, PlatformReceiver, WecomReceiver
from tests.e2e.pipeline_helpers import Proc, base_env, wait_for
from tests.faults.scenario import write_registry
from tests.faults.stack import INFLUX_TOKEN, MQTT_PASSWORD, MQTT_USER, PrivateStack

HMAC_SECRET = "faults-platform-secret-0123456789"
SMS_ID, SMS_SECRET = "LTAI-faults", "faults-sms-secret"
PLATFORM_TIMEOUT_S = 3.0  # a hung platform costs the outbox this much per attempt


def robot_key(ent: str) -> str:
    return f"robot-key-{ent}"


def phone(n: int) -> str:
    return f"+86138{n:08d}"


def write_routing(path: Path, enterprises: list[str]) -> dict[str, str]:
    """Every alarm colour reaches the enterprise's operator by SMS and its duty robot on
    WeCom (and the platform): three deliveries per transition. Short retry backoff so a case
    sees its retries. Returns enterprise -> operator phone."""
    phones = {e: phone(i + 1) for i, e in enumerate(enterprises)}
    doc = {
        "version": 1,
        "enterprises": {
            e: {
                "name": f"{e}化工",
                "duty_robot": f"duty-{e}",
                "operator": {"name": "操作负责人", "phone": phones[e]},
            }
            for e in enterprises
        },
        "ladder": {c: ["operator", "enterprise_duty"] for c in ("blue", "yellow", "orange", "red")},
        "channels": {"person": ["aliyun_sms"], "robot": ["wecom"], "platform": True},
        "delivery": {"base_backoff_s": 0.5, "max_backoff_s": 2.0},
    }
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return phones


class Deployment:
    def __init__(self, stack: PrivateStack, tmp: Path, enterprises: list[str], sid: str):
        self.stack, self.tmp, self.sid = stack, tmp, sid
        self.enterprises = enterprises
        self.prefix = f"hwf{sid}"
        self.readings_topic = f"hw.readings.{sid}"
        self.deadletter_topic = f"hw.deadletter.{sid}"
        self.events: list[str] = []  # restarts the harness did on its own
        registry = tmp / "registry.csv"
        write_registry(registry, enterprises)
        self.phones = write_routing(tmp / "routing.yaml", enterprises)
        self.platform = PlatformReceiver(HMAC_SECRET, tolerance_s=3600).start()
        self.wecom = WecomReceiver([robot_key(e) for e in enterprises]).start()
        self.sms = AliyunSmsReceiver({SMS_ID: SMS_SECRET}, daily_cap=10_000).start()
        robots = {f"duty-{e}": robot_key(e) for e in enterprises}
        self.env = base_env(
            {
                "HW_MQTT__ENABLED": "true",
                "HW_MQTT__HOST": stack.mqtt_host,
                "HW_MQTT__PORT": str(stack.mqtt_port),
                "HW_MQTT__USERNAME": MQTT_USER,
                "HW_MQTT__PASSWORD": MQTT_PASSWORD,
                "HW_MQTT__TOPIC_PREFIX": self.prefix,
                "HW_MQTT__CLIENT_ID": f"hw-faults-{sid}",
                "HW_MQTT__DEAD_LETTER_TOPIC": f"{self.prefix}/_deadletter",
                "HW_KAFKA__BOOTSTRAP_SERVERS": stack.kafka_bootstrap,
                "HW_KAFKA__READINGS_TOPIC": self.readings_topic,
                "HW_KAFKA__ALARMS_TOPIC": f"hw.transitions.{sid}",
                "HW_KAFKA__DEADLETTER_TOPIC": self.deadletter_topic,
                "HW_KAFKA__APP_ID": f"hw-faults-{sid}",
                "HW_KAFKA__PARTITIONS": "4",
                "HW_INFLUX__URL": stack.influx_url,
                "HW_INFLUX__TOKEN": INFLUX_TOKEN,
                "HW_INFLUX__ORG": "-",
                "HW_INFLUX__BUCKET": "hazardwatch/autogen",
                "HW_INFLUX__FLUSH_INTERVAL_MS": "200",
                "HW_RULES__REGISTRY": str(registry),
                "HW_STORAGE__DATA_DIR": str(tmp / "var"),
                "HW_PLATFORM__URL": self.platform.url,
                "HW_PLATFORM__HMAC_SECRET": HMAC_SECRET,
                "HW_PLATFORM__TIMEOUT_S": str(PLATFORM_TIMEOUT_S),
                "HW_CHANNELS__ROUTING_FILE": str(tmp / "routing.yaml"),
                "HW_CHANNELS__WECOM__BASE_URL": self.wecom.url,
                "HW_CHANNELS__WECOM__ROBOT_KEYS": json.dumps(robots),
                "HW_CHANNELS__ALIYUN_SMS__ENDPOINT": self.sms.base_url + "/",
                "HW_CHANNELS__ALIYUN_SMS__ACCESS_KEY_ID": SMS_ID,
                "HW_CHANNELS__ALIYUN_SMS__ACCESS_KEY_SECRET": SMS_SECRET,
                "HW_CHANNELS__ALIYUN_SMS__SIGN_NAME": "潜江应急",
                "HW_CHANNELS__ALIYUN_SMS__TEMPLATE_CODE": "SMS_0001",
                "HW_METRICS__PORT": "0",
            }
        )
        self.workers: dict[str, Proc] = {}
        self.bridge: Proc | None = None
        self._n = 0

    # -- processes ---------------------------------------------------------------------
    @property
    def procs(self) -> list[Proc]:
        return [*self.workers.values(), *([self.bridge] if self.bridge else [])]

    def start_worker(self, wid: str, extra_env: dict[str, str] | None = None) -> Proc:
        # One log per incarnation: "ready" lines of a killed process must not count.
        self._n += 1
        env = {**self.env, **(extra_env or {})}
        p = Proc(["worker", "--id", wid], env, self.tmp / f"{wid}.{self._n}.log")
        self.workers[wid] = p
        return p

    def start_bridge(self) -> Proc:
        self._n += 1
        p = self.bridge = Proc(["bridge"], self.env, self.tmp / f"bridge.{self._n}.log")
        wait_for(
            lambda: "MQTT connected" in p.log.read_text(errors="replace"),
            60,
            "the bridge to connect",
            [p],
        )
        time.sleep(1.0)  # the subscription follows the connect
        return p

    def start(self) -> Deployment:
        for wid in ("w1", "w2"):
            self.start_worker(wid)
        self.wait_serving()
        self.start_bridge()
        return self

    def wait_serving(self, timeout: float = 120) -> None:
        """Both workers up and the readings partitions split between them."""
        w1, w2 = self.workers["w1"], self.workers["w2"]

        def split() -> bool:
            a, b = partitions_of(w1), partitions_of(w2)
            return bool(a) and bool(b) and a != "[]" and b != "[]" and _disjoint_cover(a, b)

        wait_for(split, timeout, "two workers sharing the partitions", [w1, w2])

    def kill9_worker(self, wid: str) -> None:
        self.workers[wid].kill9()

    def restart_worker(
        self, wid: str, extra_env: dict[str, str] | None = None, graceful: bool = False
    ) -> Proc:
        """Start the worker again (after kill -9 unless `graceful`: SIGTERM, which hands its
        partitions over at once), optionally with extra environment."""
        old = self.workers[wid]
        if old.p.poll() is None and not graceful:
            old.kill9()
        old.terminate(30)
        return self.start_worker(wid, extra_env)

    def kill9_bridge(self) -> None:
        assert self.bridge is not None
        self.bridge.kill9()
        self.bridge.terminate(1)

    @property
    def spill_dir(self) -> Path:
        """The InfluxDB spill folder (storage.data_dir/spill, shared by both workers)."""
        return self.tmp / "var" / "spill"

    #: Worker log lines about the hand-over of transitions partitions (hazardwatch/
    #: faust_app.py) that go into a case's notes, so a row that does not balance says what
    #: the workers did.
    HANDOVER_MARKS = (
        "rules: readings partition",
        "alerts: transitions partition",
        ") skipped: ",
        "did not land",
        "before a restart landed",
        "no receipt",
        "rules: partition",  # hazardwatch/read_guard.py: a hole, and the read after the seek
        "alerts: partition",
        "fetched before the rebalance",
        "reading again from the committed offsets",
    )

    def handover_lines(self) -> list[str]:
        """Hand-over lines of every worker log not reported before."""
        seen = self.__dict__.setdefault("_handover_seen", set())
        out = []
        for log in sorted(self.tmp.glob("w*.log")):
            for ln in log.read_text(errors="replace").splitlines():
                if any(m in ln for m in self.HANDOVER_MARKS) and (log.name, ln) not in seen:
                    seen.add((log.name, ln))
                    out.append(f"{log.stem}: {ln.strip()[:200]}")
        return out

    def supervise(self) -> None:
        """Restart what exited (systemd's Restart=always), and say so in the case's notes."""
        for wid, p in list(self.workers.items()):
            if p.p.poll() is not None:
                self.events.append(f"worker {wid} exited ({p.p.returncode}); restarted")
                p.terminate(1)
                self.start_worker(wid)
        if self.bridge is not None and self.bridge.p.poll() is not None:
            self.events.append(f"bridge exited ({self.bridge.p.returncode}); restarted")
            self.bridge.terminate(1)
            self.start_bridge()

    def close(self) -> None:
        for p in self.procs:
            p.terminate(15)
        for r in (self.platform, self.wecom, self.sms):
            r.stop()


def partitions_of(p: Proc) -> str:
    """The partitions the worker's last 'ready' line lists, since this process started."""
    lines = [
        ln
        for ln in p.log.read_text(errors="replace").splitlines()
        if "ready: readings partitions" in ln
    ]
    return lines[-1].split("partitions", 1)[1].strip() if lines else ""


def ready_count(p: Proc) -> int:
    return p.log.read_text(errors="replace").count("ready: readings partitions")


def _disjoint_cover(a: str, b: str) -> bool:
    try:
        sa, sb = set(json.loads(a)), set(json.loads(b))
    except ValueError:
        return False
    return not (sa & sb) and sa | sb == {0, 1, 2, 3}
