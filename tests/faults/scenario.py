"""The fault suite's deterministic input and its ground truth: per enterprise a gateway sending
a batch of 10 readings every 250 ms in real time (NH3 detector, tank temperature and level,
7 temperatures), with an alarm story (NH3 first then second level, the tank temperature above
H past its 5 s on-delay, then both back to normal) and three deliberately malformed messages.
The publisher behaves
like a gateway with store-and-forward: QoS 1 on a persistent session, so a broker restart
delays messages but the gateway keeps them until the broker acknowledges them."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TICK_MS = 250
TICKS = 56  # 14 s of readings (the story ends at 12 s)
TEMPS = [f"TT-{i}" for i in range(1, 8)]
TAGS = ["AT-1", "TT-0", "LT-1", *TEMPS]

_HEADER = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,"
    "lat,lon"
)

# The malformed messages each gateway sends (tick -> payload maker) and the dead-letter
# reason each must get. One message = one unit of the readings ledger.
MALFORMED_TICKS = {5: "malformed_json", 15: "unknown_tag", 25: "wrong_type"}


def registry_rows(ent: str) -> list[str]:
    """An NH3 detector (standard-pack limits), a tank temperature with H/HH (the tank-farm
    pack's 5 s on-delay on H), a tank level and seven temperatures without limits. The alarm
    story avoids the level (its rate-of-change rule would fire on a stepped test signal). A
    600 s expected interval: no point goes offline within a case, so an offline alarm is a
    defect."""
    rows = [
        f"{ent},{ent}化工,hazchem,潜江,{ent}-MH1,2,Z1,G1,AT-1,gas.NH3,mg/m3,0,100,,,,,600,,",
        f"{ent},{ent}化工,hazchem,潜江,{ent}-MH1,2,T1,G1,TT-0,temperature,degC,-20,150,,,60,90,600,,",
        f"{ent},{ent}化工,hazchem,潜江,{ent}-MH1,2,T1,G1,LT-1,level,m,0,20,,,,,600,,",
    ]
    rows += [
        f"{ent},{ent}化工,hazchem,潜江,{ent}-MH1,2,T1,G1,{t},temperature,degC,-20,150,,,,,600,,"
        for t in TEMPS
    ]
    return rows


def write_registry(path, enterprises: list[str]) -> None:
    rows = [_HEADER]
    for e in enterprises:
        rows += registry_rows(e)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def story(t_s: float) -> tuple[float, float]:
    """(NH3 mg/m3, tank temperature degC) at `t_s` seconds into the case."""
    if t_s < 2:
        return 5.0, 25.0
    if t_s < 9:
        return 30.0, 70.0
    if t_s < 12:
        return 45.0, 71.0
    return 5.0, 25.0


# (tag, level, state) transitions the story must produce, per enterprise.
EXPECTED_TRANSITIONS = [
    ("AT-1", "L1", "firing"),
    ("TT-0", "H", "firing"),
    ("AT-1", "L2", "firing"),
    ("AT-1", None, "cleared"),
    ("TT-0", None, "cleared"),
]
# (colour, event type) of the installation's warning (DOMAIN.md §4, warning-defaults pack):
# blue at the first first-level alarm, red when NH3 reaches its second level while the tank
# temperature is still above H. It stays open (a duty officer closes it), so no clear.
EXPECTED_WARNINGS = [("blue", "raised"), ("red", "raised")]


@dataclass
class Published:
    """What the gateways handed to the broker and the broker acknowledged."""

    valid: set[tuple[str, str, int]] = field(default_factory=set)  # (enterprise, tag, ts)
    malformed: dict[tuple[str, int], str] = field(default_factory=dict)  # (ent, tick) -> reason
    unacked: int = 0  # messages the broker never acknowledged (still counted as published)
    messages: int = 0

    @property
    def units(self) -> int:
        return len(self.valid) + len(self.malformed)


class Gateways:
    """All gateways of one case on one MQTT connection, publishing on a real-time schedule
    from `t0` in a thread. `ts` is the measuring time (the schedule), as a gateway stamps it."""

    def __init__(self, host: str, port: int, prefix: str, enterprises: list[str], cid: str):
        self.prefix, self.enterprises = prefix, enterprises
        self.published = Published()
        self._infos: list[tuple[mqtt.MQTTMessageInfo, list, tuple | None]] = []
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        c.username_pw_set("hazardwatch", "hw-local-dev")
        c.max_queued_messages_set(0)  # unbounded: keep everything while the broker is away
        c.reconnect_delay_set(0.2, 1.0)
        self._connected = threading.Event()
        c.on_connect = lambda *a: self._connected.set()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect(host, port, clean_start=False, properties=props)
        c.loop_start()
        assert self._connected.wait(10), "gateway publisher could not connect"
        self.client = c
        self.t0 = 0
        self._thread: threading.Thread | None = None

    def payloads(self, ent: str, i: int) -> list[tuple[bytes, list, tuple | None]]:
        """The messages of one enterprise at tick `i`: (payload, valid readings, malformed)."""
        ts = self.t0 + i * TICK_MS
        nh3, temp = story(i * TICK_MS / 1000)
        data = [
            {"tag": "AT-1", "v": nh3, "q": 0},
            {"tag": "TT-0", "v": temp, "q": 0},
            {"tag": "LT-1", "v": round(10 + i * 0.001, 3), "q": 0},  # slow: no rate alarm,
        ]
        data += [
            {"tag": t, "v": round(20 + k + (i % 7) * 0.1, 2), "q": 0} for k, t in enumerate(TEMPS)
        ]
        out = [
            (
                json.dumps({"ts": ts, "data": data}).encode(),
                [(ent, d["tag"], ts) for d in data],
                None,
            )
        ]
        reason = MALFORMED_TICKS.get(i)
        if reason == "malformed_json":
            out.append((b'{"ts": ' + str(ts).encode() + b', "data": [', [], (ent, i, reason)))
        elif reason == "unknown_tag":
            body = {"tag": "XX-404", "ts": ts + 1, "v": 1.0, "q": 0}
            out.append((json.dumps(body).encode(), [], (ent, i, reason)))
        elif reason == "wrong_type":
            body = {"tag": "TT-1", "ts": ts + 1, "v": "hot", "q": 0}
            out.append((json.dumps(body).encode(), [], (ent, i, reason)))
        return out

    def start(self, t0_ms: int | None = None) -> Gateways:
        now = int(time.time() * 1000)
        self.t0 = t0_ms if t0_ms is not None else now - now % 1000 + 1000
        self._thread = threading.Thread(target=self._run, name="gateways", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        for i in range(TICKS):
            due = (self.t0 + i * TICK_MS) / 1000
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            for ent in self.enterprises:
                for payload, valid, bad in self.payloads(ent, i):
                    topic = f"{self.prefix}/{ent}/G1/data"
                    # Queued by paho even while disconnected; re-sent after a reconnect.
                    info = self.client.publish(topic, payload, qos=1)
                    self._infos.append((info, valid, bad))

    def elapsed_s(self) -> float:
        return time.time() - self.t0 / 1000

    def wait_until(self, t_s: float) -> None:
        """Sleep until `t_s` seconds after t0 (faults are injected on the schedule)."""
        delay = self.t0 / 1000 + t_s - time.time()
        if delay > 0:
            time.sleep(delay)

    def finish(self, timeout: float = 120) -> Published:
        """Wait for the schedule to end and every message to be acknowledged."""
        assert self._thread is not None
        self._thread.join()
        deadline = time.monotonic() + timeout
        for info, _v, _b in self._infos:
            while not _acked(info) and time.monotonic() < deadline:
                time.sleep(0.05)
        p = self.published
        for info, valid, bad in self._infos:
            p.messages += 1
            # Counted as published either way: a message the broker never acknowledged is
            # still one the gateway sent, and is lost unless it was stored.
            p.unacked += not _acked(info)
            p.valid.update(valid)
            if bad is not None:
                p.malformed[(bad[0], bad[1])] = bad[2]
        self.client.disconnect()
        self.client.loop_stop()
        return p


def _acked(info: mqtt.MQTTMessageInfo) -> bool:
    """PUBACK received. `is_published()` raises for a message queued while disconnected
    (rc NO_CONN) even though paho keeps it and sends it after the reconnect."""
    with info._condition:
        return bool(info._published)
