"""What the fault suite's clock-step primitive costs an idle Faust worker.

tests/faults/env.py `ClockControl` steps a subprocess's wall clock with libfaketime. How often
the child re-reads the offset file decides the cost: libfaketime also intercepts
`pthread_cond_timedwait`, which CPython's GIL hand-over calls every few milliseconds, and with
`FAKETIME_NO_CACHE=1` it reads the file there too. This starts one idle `hazardwatch worker`
three ways (without libfaketime: the reference; re-reading on every call; re-reading at most
once a second, `forward_only=True`) and prints the CPU each uses while idle, as a share of a
core and as a ratio to the reference.

    deploy/local/services up
    .venv/bin/python bench/faketime/run.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from alerts.channels.receivers import PlatformReceiver  # noqa: E402
from tests.conftest import MqttConn  # noqa: E402
from tests.e2e.pipeline_helpers import HMAC_SECRET, wait_for  # noqa: E402
from tests.e2e.test_runner_distributed_e2e import Distributed, ready_count  # noqa: E402
from tests.faults.env import ClockControl  # noqa: E402

HEADER = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,lat,lon"
)


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(mode: str, seconds: float, env: dict[str, str]) -> float:
    """Share of a core an idle worker uses over `seconds`, after it is ready."""
    u = uuid.uuid4().hex[:10]
    tmp = Path(tempfile.mkdtemp(prefix=f"hw-faketime-{mode}-"))
    ent = f"E{u[:5]}"
    reg = tmp / "registry.csv"
    rows = [
        f"{ent},x,hazchem,d,{ent}-MH1,2,Z1,G1,AT-G1{i},gas.NH3,mg/m3,0,100,,,,,2,," for i in (1, 2)
    ]
    reg.write_text("\n".join([HEADER, *rows]) + "\n")
    mqtt = MqttConn(
        host="127.0.0.1",
        port=int(env.get("HW_LOCAL_MQTT_PORT", "11883")),
        username="hazardwatch",
        password="hw-local-dev",
    )
    kafka = f"127.0.0.1:{env.get('HW_LOCAL_KAFKA_PORT', '19092')}"
    rcv = PlatformReceiver(HMAC_SECRET).start()
    d = Distributed(tmp, mqtt, kafka, u, reg, rcv)
    if mode != "plain":
        clock = ClockControl(tmp / "clock", forward_only=mode == "once-a-second")
        d.env.update(clock.env())
    try:
        w = d.worker("w1")
        wait_for(lambda: ready_count(w) >= 1, 120, "the worker to be ready", [w])
        time.sleep(5)  # past the start-up work
        c0, t0 = cpu_s(w.p.pid), time.monotonic()
        time.sleep(seconds)
        return (cpu_s(w.p.pid) - c0) / (time.monotonic() - t0)
    finally:
        d.close()
        rcv.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    env = dict(os.environ)
    ref = idle_cpu("plain", a.seconds, env)
    print(f"idle worker, no libfaketime (reference):        {100 * ref:5.1f} % of a core")
    for mode, what in (
        ("every-call", "libfaketime, re-read on every call:   "),
        ("once-a-second", "libfaketime, re-read once a second:  "),
    ):
        got = idle_cpu(mode, a.seconds, env)
        print(
            f"idle worker, {what}  {100 * got:5.1f} % of a core = {got / ref:4.1f}x the reference"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
