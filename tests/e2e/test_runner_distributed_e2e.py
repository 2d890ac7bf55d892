"""The distributed pipeline as users run it — `hazardwatch bridge` and `hazardwatch worker`
processes on the real Mosquitto and Kafka — against the embedded runner: identical input gives
identical alarms and notifications; two workers give the same as one; `kill -9` of a worker
mid-scenario (an on-delay pending, alarms open) moves its partitions to the other with nothing
lost or repeated (whether or not its state was written to the changelog yet), and its own
outbox is delivered when it comes back."""

from __future__ import annotations

import time

import httpx
import pytest

from .pipeline_helpers import (
    HMAC_SECRET,
    Proc,
    Scenario,
    alarm_notifications,
    base_env,
    free_port,
    limit_transitions,
    platform_receiver,
    publish,
    publisher_config,
    wait_for,
    write_registry,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def _mqtt_env(m, prefix: str, client_id: str) -> dict[str, str]:
    return {
        "HW_MQTT__ENABLED": "true",
        "HW_MQTT__HOST": m.host,
        "HW_MQTT__PORT": str(m.port),
        "HW_MQTT__USERNAME": m.username,
        "HW_MQTT__PASSWORD": m.password,
        "HW_MQTT__TOPIC_PREFIX": prefix,
        "HW_MQTT__CLIENT_ID": client_id,
        "HW_MQTT__DEAD_LETTER_TOPIC": f"{prefix}/_deadletter",
    }


def _kafka_env(bootstrap: str, u: str) -> dict[str, str]:
    return {
        "HW_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "HW_KAFKA__READINGS_TOPIC": f"hw.readings.{u}",
        "HW_KAFKA__ALARMS_TOPIC": f"hw.transitions.{u}",
        "HW_KAFKA__DEADLETTER_TOPIC": f"hw.deadletter.{u}",
        "HW_KAFKA__APP_ID": f"hw-e2e-{u}",
        "HW_KAFKA__PARTITIONS": "4",
    }


class Distributed:
    """Workers and a bridge sharing one environment; logs under tmp_path."""

    def __init__(self, tmp_path, mosquitto, bootstrap, u, registry, receiver) -> None:
        self.tmp, self.procs = tmp_path, []
        self.env = base_env(
            {
                **_mqtt_env(mosquitto, f"hwd{u}", f"hw-e2e-bridge-{u}"),
                **_kafka_env(bootstrap, u),
                "HW_RULES__REGISTRY": str(registry),
                "HW_STORAGE__DATA_DIR": str(tmp_path / "dvar"),
                "HW_PLATFORM__URL": receiver.url,
                "HW_PLATFORM__HMAC_SECRET": HMAC_SECRET,
                "HW_METRICS__PORT": "0",
            }
        )

    def worker(self, wid: str, metrics_port: int = 0) -> Proc:
        env = {**self.env, "HW_METRICS__PORT": str(metrics_port)}
        p = Proc(["worker", "--id", wid], env, self.tmp / f"{wid}.log")
        self.procs.append(p)
        return p

    def bridge(self) -> Proc:
        p = Proc(["bridge"], self.env, self.tmp / "bridge.log")
        self.procs.append(p)
        wait_for(
            lambda: (
                "hazardwatch bridge:" in p.log.read_text(errors="replace")
                and "MQTT connected" in p.log.read_text(errors="replace")
            ),
            60,
            "the bridge to connect",
            [p],
        )
        time.sleep(1.0)  # the subscription follows the connect
        return p

    def close(self) -> None:
        for p in self.procs:
            p.terminate(10)


def ready_count(p: Proc) -> int:
    return p.log.read_text(errors="replace").count("ready: readings partitions")


def partitions_of(p: Proc) -> str:
    lines = [
        x
        for x in p.log.read_text(errors="replace").splitlines()
        if "ready: readings partitions" in x
    ]
    return lines[-1].split("partitions", 1)[1].strip() if lines else ""


def test_distributed_equals_embedded_for_identical_input(
    mosquitto, kafka_bootstrap, unique, tmp_path
):
    ents = [f"D{unique[:5]}A", f"D{unique[:5]}B", f"D{unique[:5]}C"]
    registry = write_registry(tmp_path / "registry.csv", ents)
    rcv_d, rcv_e = platform_receiver(), platform_receiver()
    d = Distributed(tmp_path, mosquitto, kafka_bootstrap, unique, registry, rcv_d)
    emb_env = base_env(
        {
            "HW_MODE": "embedded",
            **_mqtt_env(mosquitto, f"hwe{unique}", f"hw-e2e-emb-{unique}"),
            "HW_RULES__REGISTRY": str(registry),
            "HW_STORAGE__DATA_DIR": str(tmp_path / "evar"),
            "HW_API__PORT": str(free_port()),
            "HW_PLATFORM__URL": rcv_e.url,
            "HW_PLATFORM__HMAC_SECRET": HMAC_SECRET,
            "HW_METRICS__PORT": "0",
        }
    )
    emb = Proc(["run"], emb_env, tmp_path / "run.log")
    try:
        metrics_port = free_port()
        w1 = d.worker("w1", metrics_port)
        wait_for(lambda: ready_count(w1) >= 1, 90, "worker w1 ready", [w1])
        d.bridge()
        wait_for(lambda: "hazardwatch embedded:" in emb.output(), 60, "the embedded runner", [emb])
        t0 = int(time.time() * 1000)
        cfg = publisher_config(mosquitto, unique)
        # the same payload bytes to both modes (only the topic prefix differs)
        for prefix in (f"hwd{unique}", f"hwe{unique}"):
            sc = Scenario(prefix, ents, t0)
            publish(cfg, sc.part1() + sc.part2(), f"hw-e2e-pub-{prefix}")
        expected = sc.expected()
        for rcv, procs, name in ((rcv_d, d.procs, "distributed"), (rcv_e, [emb], "embedded")):
            wait_for(
                lambda rcv=rcv: limit_transitions(alarm_notifications(rcv)) == expected,
                60,
                f"the expected transitions ({name})",
                procs,
            )
        time.sleep(1.0)
        # identical alarms (ids, kinds, levels, event times) and notification events
        assert alarm_notifications(rcv_d) == alarm_notifications(rcv_e)
        assert rcv_d.duplicates == 0 and rcv_e.duplicates == 0
        # the worker's Prometheus endpoint: readings in, alarms, and Kafka consumer lag
        # (consumer lag is sampled by a 5 s timer once partitions are assigned: wait for it)
        deadline = time.monotonic() + 20
        while True:
            text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            if "hw_kafka_consumer_lag{" in text or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert f"hw_readings_in_total {2 * 8 * len(ents)}.0" in text
        assert 'hw_alarms_total{kind="limit",level="L1",state="firing"}' in text
        assert "hw_kafka_consumer_lag{" in text
    finally:
        emb.terminate(10)
        d.close()
        rcv_d.stop()
        rcv_e.stop()


def test_two_workers_kill_9_one_mid_scenario(mosquitto, kafka_bootstrap, unique, tmp_path):
    ents = [f"K{unique[:5]}{c}" for c in "ABCDEF"]
    registry = write_registry(tmp_path / "registry.csv", ents)
    rcv = platform_receiver()
    d = Distributed(tmp_path, mosquitto, kafka_bootstrap, unique, registry, rcv)
    try:
        w1, w2 = d.worker("w1"), d.worker("w2")
        # both serve: the partitions are split between them
        wait_for(
            lambda: (
                ready_count(w1) >= 1
                and ready_count(w2) >= 1
                and partitions_of(w1) != "[0, 1, 2, 3]"
                and partitions_of(w2) != "[0, 1, 2, 3]"
            ),
            120,
            "two workers sharing",
            [w1, w2],
        )
        d.bridge()
        sc = Scenario(f"hwd{unique}", ents, int(time.time() * 1000))
        cfg = publisher_config(mosquitto, unique)
        publish(cfg, sc.part1(), f"hw-e2e-pub1-{unique}")

        def first_level_everywhere() -> bool:
            got = limit_transitions(alarm_notifications(rcv))
            return all(got.get(e, [])[:1] == [("AT-1", "L1", "firing")] for e in ents)

        wait_for(first_level_everywhere, 60, "first-level alarms from both workers", d.procs)
        # Killed at once: w1's part-1 state is in memory, maybe written to the changelog
        # (every 0.5 s), its offsets maybe committed. w2 re-reads what was not committed and
        # must neither lose a transition nor repeat one (a record the recovered state already
        # includes is skipped, not re-applied as late data).
        before = partitions_of(w1)
        w1.kill9()
        publish(cfg, sc.part2(), f"hw-e2e-pub2-{unique}")
        # w2 takes every partition over, recovers the state from the changelogs and goes on
        wait_for(lambda: partitions_of(w2) == "[0, 1, 2, 3]", 90, "w2 taking over", [w2])
        expected = sc.expected()
        wait_for(
            lambda: limit_transitions(alarm_notifications(rcv)) == expected,
            60,
            "every expected transition after the failover",
            [w2],
        )
        # the killed worker comes back: whatever its own outbox still held is delivered
        w1b = d.worker("w1")
        wait_for(lambda: ready_count(w1b) >= 2, 90, "w1 back and rebalanced", [w1b, w2])
        time.sleep(2.0)
        rows = alarm_notifications(rcv)
        assert limit_transitions(rows) == expected
        raised = [(r[6], r[4]) for r in rows if r[7] == "raised" and r[3] == "limit"]
        assert len(raised) == len(set(raised)) == 3 * len(ents)  # each alarm fired once
        # At-least-once between workers: a transition re-processed after the failover is
        # re-sent under the SAME idempotency key, which the platform drops; nothing new.
        assert set(rcv.by_key) == {a.key for a in rcv.accepted}
        assert before  # w1 did own partitions when it was killed
    finally:
        d.close()
        rcv.stop()
