"""End-to-end benchmark of the run modes through the real Mosquitto (and Kafka):

1. sustained readings/s in EMBEDDED mode with batch payloads (50 readings per gateway message),
   against a reference measured in the same run: a bare paho subscriber that only JSON-decodes
   the same messages (the ceiling MQTT + Python give on this machine);
2. p50/p99 reading-to-notification latency at 1,000 readings/s (embedded), measured at the
   local platform receiver from the reading's timestamp;
3. the same two figures for the distributed mode with one and with two Faust workers.

    .venv/bin/python bench/e2e/run.py [--readings 400000] [--skip-faust]

Needs the local services (`deploy/local/services up`). Prints figures and ratios; the target
is 93,000 readings/s on 2 cores (DESIGN.md) and p99 < 100 ms at city load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

PER_MSG = 100  # readings per gateway upload (--per-message)
# CPU seconds of the measuring process per reading while the flood ran, by run: with the
# machine shared, wall-clock rates swing 2x; CPU per reading is steadier for comparisons.
CPU_US_PER_READING: dict[str, float] = {}
HMAC = "bench-platform-secret-0123456789"


def local_env() -> dict[str, str]:
    """The HW_* settings of the local services (as the tests read them)."""
    from tests.conftest import LOCAL_ENV

    return dict(LOCAL_ENV)


def write_registry(
    path: Path, enterprises: int, gateways: int, per: int
) -> list[tuple[str, str, list[str]]]:
    """NH3 detectors (standard-pack limits, no on-delay), `per` per gateway."""
    rows = [
        "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
        "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,"
        "lat,lon"
    ]
    gws = []
    for e in range(enterprises):
        ent = f"B{e:03d}"
        for g in range(gateways):
            gw = f"G{g:02d}"
            tags = [f"AT-{g:02d}-{i:03d}" for i in range(per)]
            gws.append((ent, gw, tags))
            for t in tags:
                rows.append(
                    f"{ent},{ent},hazchem,潜江,{ent}-MH{g},2,Z{g},{gw},{t},gas.NH3,mg/m3,"
                    "0,100,,,,,3600,,"
                )
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return gws


def mqtt_cfg(env: dict[str, str], client_id: str):
    from ingest.mqtt import MqttConfig

    return MqttConfig(
        host=env["HW_MQTT__HOST"],
        port=int(env["HW_MQTT__PORT"]),
        username=env["HW_MQTT__USERNAME"],
        password=env["HW_MQTT__PASSWORD"],
        client_id=client_id,
    )


# ------------------------------------------------------------------------------------------------
# Publishers (in their own process: the second core).


def _flood(env, prefix, gws, total, ready, done) -> None:
    """Publish `total` readings as fast as the broker takes them (QoS 1, deep in-flight)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-flood-{uuid.uuid4().hex[:6]}")
    c.username_pw_set(env["HW_MQTT__USERNAME"], env["HW_MQTT__PASSWORD"])
    c.max_inflight_messages_set(2000)
    c.max_queued_messages_set(0)
    c.connect(env["HW_MQTT__HOST"], int(env["HW_MQTT__PORT"]))
    c.loop_start()
    ready.wait()
    n, i = 0, 0
    base = int(time.time() * 1000)
    infos = []
    while n < total:
        ent, gw, tags = gws[i % len(gws)]
        ts = base + i // len(gws) * 1000  # one upload per gateway per simulated second
        body = {
            "ts": ts,
            "data": [{"tag": t, "v": 3.0 + (i + k) % 5 * 0.1} for k, t in enumerate(tags)],
        }
        infos.append(c.publish(f"{prefix}/{ent}/{gw}/data", json.dumps(body), qos=1))
        n += len(tags)
        i += 1
        if len(infos) >= 1000:
            infos[0].wait_for_publish(30)
            infos = infos[-500:]
    for inf in infos:
        inf.wait_for_publish(60)
    done.set()
    c.disconnect()
    c.loop_stop()


def _paced(env, prefix, gws, rate, seconds, ready, done, toggle_every=10) -> None:
    """`rate` readings/s for `seconds`, all normal except every `toggle_every`-th message,
    which goes to the first gateway with its first detector alternately at 30 and 4 mg/m3
    (above/below the first level): at 1,000 readings/s in uploads of 100, an alarm raised or
    cleared once a second (every 10th) or twice (every 5th)."""
    from ingest.mqtt import MqttPublisher

    per = len(gws[0][2])
    msgs_per_s = rate / per
    with MqttPublisher(mqtt_cfg(env, f"bench-paced-{uuid.uuid4().hex[:6]}")) as pub:
        ready.wait()
        t0 = time.monotonic()
        i = toggles = 0
        while time.monotonic() - t0 < seconds:
            due = t0 + i / msgs_per_s
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if i % toggle_every == 0:
                ent, gw, tags = gws[0]
                first = 30.0 if toggles % 2 == 0 else 4.0
                toggles += 1
            else:
                ent, gw, tags = gws[1 + i % (len(gws) - 1)]
                first = 4.0
            now = int(time.time() * 1000)
            body = {
                "ts": now,
                "data": [{"tag": t, "v": first if k == 0 else 4.0} for k, t in enumerate(tags)],
            }
            pub.publish(f"{prefix}/{ent}/{gw}/data", json.dumps(body).encode(), timeout_s=5)
            i += 1
    done.set()


def start(target, *args, **kwargs):
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    p = ctx.Process(target=target, args=(*args, ready, done), kwargs=kwargs, daemon=True)
    p.start()
    return p, ready, done


# ------------------------------------------------------------------------------------------------
# Reference: a bare subscriber.


def bare_subscriber(env, prefix, gws, total) -> float:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got = [0]
    first = [0.0]
    finished = threading.Event()

    cpu = [0.0, 0.0]

    def on_message(c, u, msg):
        if not first[0]:
            first[0] = time.perf_counter()
            cpu[0] = time.process_time()
        got[0] += len(json.loads(msg.payload)["data"])
        if got[0] >= total and not finished.is_set():
            cpu[1] = time.process_time()
            finished.set()

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:6]}")
    c.username_pw_set(env["HW_MQTT__USERNAME"], env["HW_MQTT__PASSWORD"])
    c.on_message = on_message
    c.connect(env["HW_MQTT__HOST"], int(env["HW_MQTT__PORT"]))
    c.subscribe(f"{prefix}/+/+/data", qos=1)
    c.loop_start()
    time.sleep(1)
    p, ready, _done = start(_flood, env, prefix, gws, total)
    ready.set()
    finished.wait(600)
    rate = got[0] / (time.perf_counter() - first[0])
    CPU_US_PER_READING["reference"] = (cpu[1] - cpu[0]) * 1e6 / max(got[0], 1)
    c.disconnect()
    c.loop_stop()
    p.join(30)
    return rate


# ------------------------------------------------------------------------------------------------
# Embedded.


def embedded(env, tmp: Path, registry: Path, gws, total: int, latency_s: float):
    """Throughput when `total` > 0, else latency at 1,000 readings/s for `latency_s`."""
    from alerts.channels.receivers import PlatformReceiver
    from hazardwatch.settings import load_settings
    from hazardwatch.wiring import build_embedded, mqtt_source

    prefix = f"bench{uuid.uuid4().hex[:6]}"
    # The platform is another machine in production: its HTTP server gets its own process
    # here, so it does not compete for the GIL of the process being measured.
    rcv = (
        _RemoteReceiver()
        if latency_s and not total
        else PlatformReceiver(HMAC, tolerance_s=3600).start()
    )
    s = load_settings(
        environ={
            "HW_MODE": "embedded",
            "HW_MQTT__ENABLED": "true",
            "HW_MQTT__HOST": env["HW_MQTT__HOST"],
            "HW_MQTT__PORT": env["HW_MQTT__PORT"],
            "HW_MQTT__USERNAME": env["HW_MQTT__USERNAME"],
            "HW_MQTT__PASSWORD": env["HW_MQTT__PASSWORD"],
            "HW_MQTT__TOPIC_PREFIX": prefix,
            "HW_MQTT__CLIENT_ID": f"bench-emb-{prefix}",
            "HW_RULES__REGISTRY": str(registry),
            "HW_STORAGE__DATA_DIR": str(tmp / prefix),
            "HW_PLATFORM__URL": rcv.url,
            "HW_PLATFORM__HMAC_SECRET": HMAC,
        }
    )
    src = mqtt_source(s)
    emb = build_embedded(s, source=src, metrics_port=0, watch_interval_s=0)
    # Counted by a pipeline listener (the evaluation thread calls it per batch): polling
    # `Metrics.figures()` collects the whole Prometheus registry (and queries the outbox
    # depth) and at 100 polls a second took a fifth of the GIL from the run it measured.
    count = _Count(total)
    emb.pipeline.listeners.append(count)
    emb.runner.start()
    src.wait_ready(30)
    try:
        if total:
            p, ready, _done = start(_flood, env, prefix, gws, total)
            ready.set()
            if not count.done.wait(600):
                raise SystemExit(f"embedded: only {count.n:,} of {total:,} readings in 600 s")
            p.join(30)
            # CPU until everything these readings cause is done: the time-series feed is
            # asynchronous and may still be writing, so the runner is stopped (which drains
            # and flushes it) before the CPU clock is read.
            emb.runner.stop()
            CPU_US_PER_READING["embedded"] = (
                (time.process_time() - count.c_first) * 1e6 / max(count.n - count.n_first, 1)
            )
            return (count.n - count.n_first) / (count.t_done - count.t_first)
        p, ready, done = start(_paced, env, prefix, gws, 1000, latency_s, toggle_every=5)
        ready.set()
        done.wait(latency_s + 30)
        time.sleep(2)
        rcv.stop()
        return _latencies(rcv, 0)
    finally:
        emb.runner.stop()
        rcv.stop()


def _receiver_main(secret: str, conn) -> None:
    from alerts.channels.receivers import PlatformReceiver

    rcv = PlatformReceiver(secret, tolerance_s=3600).start()
    conn.send(rcv.url)
    conn.recv()  # asked to stop: hand back what was accepted, with its arrival times
    rcv.stop()
    conn.send([(a.at, a.doc) for a in rcv.accepted])


class _RemoteReceiver:
    """A `PlatformReceiver` in its own process; `accepted` is filled by `stop()`."""

    def __init__(self) -> None:
        from types import SimpleNamespace

        self._ns = SimpleNamespace
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._p = ctx.Process(target=_receiver_main, args=(HMAC, child), daemon=True)
        self._p.start()
        self.url = self._conn.recv()
        self.accepted: list = []
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._conn.send("stop")
        self.accepted = [self._ns(at=at, doc=doc) for at, doc in self._conn.recv()]
        self._p.join(10)


class _Count:
    """Readings evaluated: the time of the first batch and of the one reaching `total`."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.n = self.n_first = 0
        self.t_first = self.t_done = self.c_first = 0.0
        self.done = threading.Event()

    def on_batch(self, outcome, now_ms: int) -> None:
        if not outcome.readings:
            return
        self.n += len(outcome.readings)
        if not self.t_first:
            self.t_first, self.n_first = time.perf_counter(), self.n
            self.c_first = time.process_time()
        if self.total and self.n >= self.total and not self.done.is_set():
            self.t_done = time.perf_counter()
            self.done.set()


def _latencies(rcv, skip: int) -> list[float]:
    out = []
    for a in rcv.accepted[skip:]:
        doc = a.doc
        if doc.get("subject_kind") != "alarm" or doc["event_type"] not in ("raised", "cleared"):
            continue
        from datetime import datetime

        ev = datetime.fromisoformat(doc["alarm"]["event_at"].replace("Z", "+00:00"))
        out.append((a.at - ev.timestamp()) * 1000)
    return out


# ------------------------------------------------------------------------------------------------
# Distributed.


def distributed(env, tmp: Path, registry: Path, gws, total: int, latency_s: float, workers: int):
    import httpx

    from alerts.channels.receivers import PlatformReceiver

    u = uuid.uuid4().hex[:8]
    rcv = PlatformReceiver(HMAC, tolerance_s=3600).start()
    ports = [_free_port() for _ in range(workers)]
    base = {k: v for k, v in os.environ.items() if not k.startswith("HW_")}
    base.update(
        {
            "HW_MQTT__ENABLED": "true",
            "HW_MQTT__HOST": env["HW_MQTT__HOST"],
            "HW_MQTT__PORT": env["HW_MQTT__PORT"],
            "HW_MQTT__USERNAME": env["HW_MQTT__USERNAME"],
            "HW_MQTT__PASSWORD": env["HW_MQTT__PASSWORD"],
            "HW_MQTT__TOPIC_PREFIX": f"bd{u}",
            "HW_MQTT__CLIENT_ID": f"bench-bridge-{u}",
            "HW_KAFKA__BOOTSTRAP_SERVERS": env["HW_KAFKA__BOOTSTRAP_SERVERS"],
            "HW_KAFKA__READINGS_TOPIC": f"bench.readings.{u}",
            "HW_KAFKA__ALARMS_TOPIC": f"bench.transitions.{u}",
            "HW_KAFKA__DEADLETTER_TOPIC": f"bench.dl.{u}",
            "HW_KAFKA__APP_ID": f"bench-{u}",
            "HW_KAFKA__PARTITIONS": "4",
            "HW_RULES__REGISTRY": str(registry),
            "HW_STORAGE__DATA_DIR": str(tmp / f"d{u}"),
            "HW_PLATFORM__URL": rcv.url,
            "HW_PLATFORM__HMAC_SECRET": HMAC,
        }
    )
    procs = []
    try:
        for i in range(workers):
            env_w = {**base, "HW_METRICS__PORT": str(ports[i])}
            log = (tmp / f"w{i}-{u}.log").open("wb")
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "hazardwatch", "worker", "--id", f"w{i}"],
                    env=env_w,
                    stdout=log,
                    stderr=log,
                    cwd=REPO,
                )
            )
        _wait(lambda: all(_ready(tmp / f"w{i}-{u}.log", workers) for i in range(workers)), 180)
        blog = (tmp / f"bridge-{u}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "hazardwatch", "bridge"],
                env={**base, "HW_METRICS__PORT": "0"},
                stdout=blog,
                stderr=blog,
                cwd=REPO,
            )
        )
        _wait(lambda: "MQTT connected" in (tmp / f"bridge-{u}.log").read_text(errors="replace"), 60)
        time.sleep(1.5)

        def _cpu_s(pid: int) -> float:
            """User + system CPU seconds of a process so far (Linux /proc)."""
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        def readings_in() -> float:
            n = 0.0
            for port in ports:
                try:
                    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                except httpx.HTTPError:
                    continue  # a worker's endpoint starts with its first agent task
                for line in text.splitlines():
                    if line.startswith("hw_readings_in_total"):
                        n += float(line.split()[1])
            return n

        p, ready, done = start(_flood, env, f"bd{u}", gws, total)
        ready.set()
        t_first = n_first = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            n = readings_in()
            if t_first is None and n > 0:
                t_first, n_first = time.perf_counter(), n
                cpu_first = [_cpu_s(pr.pid) for pr in procs]
            if n >= total:
                break
            time.sleep(0.2)
        rate = (n - n_first) / (time.perf_counter() - t_first)
        # CPU per reading of the workers together and of the bridge (steadier than readings/s
        # on the shared machine; a second worker should not raise the workers' figure much)
        cpu = [_cpu_s(pr.pid) - c for pr, c in zip(procs, cpu_first, strict=True)]
        print(
            f"  {workers} worker(s): {sum(cpu[:workers]) * 1e6 / (n - n_first):.1f} us CPU per "
            f"reading in the workers, {cpu[workers] * 1e6 / (n - n_first):.1f} in the bridge"
        )
        p.join(30)
        before = len(rcv.accepted)
        # an alarm raised or cleared twice a second: 60 samples in 30 s, as the embedded run
        p, ready, done = start(_paced, env, f"bd{u}", gws, 1000, latency_s, toggle_every=5)
        ready.set()
        done.wait(latency_s + 30)
        time.sleep(3)
        return rate, _latencies(rcv, before)
    finally:
        for pr in procs:
            pr.terminate()
        for pr in procs:
            try:
                pr.wait(20)
            except subprocess.TimeoutExpired:
                pr.kill()
        rcv.stop()


def _ready(log: Path, workers: int) -> bool:
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [x for x in text.splitlines() if "ready: readings partitions" in x]
    if not lines:
        return False
    last = lines[-1].split("partitions", 1)[1]
    return workers == 1 or last.strip() != "[0, 1, 2, 3]"


def _wait(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit("timed out starting the distributed pipeline")
        time.sleep(0.2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readings", type=int, default=400_000)
    ap.add_argument("--enterprises", type=int, default=20)
    ap.add_argument("--gateways", type=int, default=5)
    ap.add_argument("--per-message", type=int, default=PER_MSG)
    ap.add_argument("--latency-seconds", type=float, default=15.0)
    ap.add_argument("--skip-faust", action="store_true")
    ap.add_argument("--skip-embedded", action="store_true")
    args = ap.parse_args()
    env = local_env()
    tmp = Path(tempfile.mkdtemp(prefix="hw-bench-e2e-"))
    try:
        registry = tmp / "registry.csv"
        per = args.per_message
        gws = write_registry(registry, args.enterprises, args.gateways, per)
        city = tmp / "city.csv"
        city_gws = write_registry(city, 20, 1, per)  # 2,000 points: city scale (DOMAIN.md §3)
        print(
            f"registry: {len(gws) * per:,} points, {len(gws)} gateways, {per} readings per "
            f"message; latency on a city of {len(city_gws) * per:,} points"
        )
        ref = bare_subscriber(env, f"bare{uuid.uuid4().hex[:6]}", gws, args.readings)
        print(
            f"reference (bare paho subscriber, json.loads only): {ref:,.0f} readings/s, "
            f"{CPU_US_PER_READING['reference']:.2f} us CPU per reading"
        )
        if not args.skip_embedded:
            rate = embedded(env, tmp, registry, gws, args.readings, 0)
            cpu = CPU_US_PER_READING["embedded"]
            print(
                f"embedded: {rate:,.0f} readings/s sustained through Mosquitto "
                f"= {rate / ref:.2f}x the bare subscriber, {rate / 93_000:.2f}x the "
                f"93,000/s target; {cpu:.2f} us CPU per reading = "
                f"{cpu / CPU_US_PER_READING['reference']:.2f}x the bare subscriber's"
            )
            lat = embedded(env, tmp, city, city_gws, 0, args.latency_seconds)
            print(
                f"embedded latency at 1,000 readings/s: p50 {pct(lat, 0.5):.1f} ms, "
                f"p99 {pct(lat, 0.99):.1f} ms (max {max(lat, default=float('nan')):.1f} ms) "
                f"over {len(lat)} notifications"
            )
        if not args.skip_faust:
            for w in (1, 2):
                rate_w, lat_w = distributed(
                    env, tmp, registry, gws, min(args.readings, 200_000), args.latency_seconds, w
                )
                print(
                    f"distributed, {w} worker(s): {rate_w:,.0f} readings/s "
                    f"= {rate_w / ref:.2f}x the bare subscriber; latency at 1,000 readings/s "
                    f"p50 {pct(lat_w, 0.5):.1f} ms, p99 {pct(lat_w, 0.99):.1f} ms "
                    f"over {len(lat_w)} notifications"
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
