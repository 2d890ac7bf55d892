"""The embedded runner as users run it (`hazardwatch run`, a real process) on the real
Mosquitto: a scenario published over MQTT produces the expected alarms and notifications at a
local platform receiver, and a `kill -9` in the middle of it (an on-delay pending, alarms open),
then another one after the alerts stage sent everything but before the engine's group commit
(so the broker redelivers all of it), loses nothing and duplicates nothing."""

from __future__ import annotations

import signal
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


def _influx_count(influx, measurement: str, enterprise: str) -> int:
    from influxdb_client import InfluxDBClient

    q = (
        f'from(bucket: "{influx.bucket}") |> range(start: -30m) '
        f'|> filter(fn: (r) => r._measurement == "{measurement}" and r.enterprise == '
        f'"{enterprise}") |> count()'
    )
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as c:
        tables = c.query_api().query(q, org=influx.org)
    return sum(int(rec.get_value()) for t in tables for rec in t.records)


def _readings_in(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0  # not serving yet
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("hw_readings_in_total")
    )


def test_embedded_run_survives_kill_9_mid_scenario(mosquitto, influx, unique, tmp_path):
    prefix = f"hwe2e{unique}"
    ents = [f"E{unique[:5]}A", f"E{unique[:5]}B"]
    registry = write_registry(tmp_path / "registry.csv", ents)
    receiver = platform_receiver()
    port, api_port = free_port(), free_port()
    env = base_env(
        {
            "HW_MODE": "embedded",
            "HW_MQTT__ENABLED": "true",
            "HW_MQTT__HOST": mosquitto.host,
            "HW_MQTT__PORT": str(mosquitto.port),
            "HW_MQTT__USERNAME": mosquitto.username,
            "HW_MQTT__PASSWORD": mosquitto.password,
            "HW_MQTT__TOPIC_PREFIX": prefix,
            "HW_MQTT__CLIENT_ID": f"hw-e2e-{unique}",
            "HW_MQTT__DEAD_LETTER_TOPIC": f"{prefix}/_deadletter",
            "HW_RULES__REGISTRY": str(registry),
            "HW_STORAGE__DATA_DIR": str(tmp_path / "var"),
            "HW_PLATFORM__URL": receiver.url,
            "HW_PLATFORM__HMAC_SECRET": HMAC_SECRET,
            "HW_METRICS__PORT": str(port),
            "HW_API__PORT": str(api_port),
            "HW_API__LINK_SECRET": "e2e-link-secret-value",
            "HW_API__PUBLIC_URL": f"http://127.0.0.1:{api_port}",
            "HW_INFLUX__URL": influx.url,
            "HW_INFLUX__TOKEN": influx.token,
            "HW_INFLUX__ORG": influx.org,
            "HW_INFLUX__BUCKET": influx.bucket,
        }
    )
    pub_cfg = publisher_config(mosquitto, unique)
    log = tmp_path / "run.log"
    procs: list[Proc] = []
    try:
        run = Proc(["run"], env, log)
        procs.append(run)
        wait_for(
            lambda: "hazardwatch embedded:" in log.read_text(errors="replace"),
            60,
            "the runner to subscribe",
            procs,
        )
        sc = Scenario(prefix, ents, int(time.time() * 1000))
        publish(pub_cfg, sc.part1(), f"hw-e2e-pub1-{unique}")

        def first_level_raised() -> bool:
            got = limit_transitions(alarm_notifications(receiver))
            return all(got.get(e, [])[:1] == [("AT-1", "L1", "firing")] for e in ents)

        wait_for(first_level_raised, 20, "the first-level NH3 alarms", procs)
        time.sleep(0.6)  # > the 200 ms commit interval: state with the pending on-delay is on disk
        assert time.time() * 1000 < sc.t0 + 6000, "too slow: the on-delay would have completed"
        run.kill9()
        assert run.p.returncode == -9

        # While it is down the gateways keep publishing: the broker queues for the session.
        publish(pub_cfg, sc.part2(), f"hw-e2e-pub2-{unique}")
        # This run commits its engine state only once a minute: it raises and clears every
        # remaining alarm (committed and sent by the alerts stage), and is killed before its
        # group commit, so none of its input may have been acked.
        run = Proc(["run"], {**env, "HW_STORAGE__COMMIT_INTERVAL_MS": "60000"}, log)
        procs.append(run)
        expected = sc.expected()
        wait_for(
            lambda: limit_transitions(alarm_notifications(receiver)) == expected,
            60,
            "every expected transition after the restart",
            [run],
        )
        run.kill9()
        sent = len(receiver.accepted)
        # The next run gets all of part 2 again from the broker (nothing was acked), re-does
        # it from the state of the first run's last commit, and sends nothing twice.
        run = Proc(["run"], env, log)
        procs.append(run)
        redelivered = 5 * 2 * len(ents)  # part 2: five uploads of two readings per enterprise
        wait_for(lambda: _readings_in(port) >= redelivered, 30, "part 2 redelivered", [run])
        time.sleep(1.5)  # room for a duplicate to show up, if the restart were to cause one
        assert len(receiver.accepted) == sent

        rows = alarm_notifications(receiver)
        assert limit_transitions(rows) == expected
        # Each alarm fired once: one `raised` per (alarm, level), no key delivered twice.
        assert receiver.duplicates == 0, receiver.by_key.most_common(3)
        raised = [(r[6], r[4]) for r in rows if r[7] == "raised" and r[3] == "limit"]
        assert len(raised) == len(set(raised)) == 3 * len(ents)
        # The pending on-delay survived: the level alarm's event time is t0+1 s + 5 s.
        for ent, at, tag, kind, level, state, _aid, _et in rows:
            if tag == "LT-1" and kind == "limit" and state == "firing":
                assert at.startswith(time.strftime("%Y-%m-%dT", time.gmtime(sc.t0 / 1000)))

        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "hw_readings_in_total" in text and 'hw_alarms_total{kind="limit"' in text
        # the acknowledge/dispose link in a notification opens the page the API serves
        link = next(a.doc["link"] for a in receiver.accepted if a.doc["subject_kind"] == "alarm")
        assert link.startswith(f"http://127.0.0.1:{api_port}/a/") and "?t=" in link
        assert httpx.get(link, timeout=10).status_code == 200
        r = httpx.post(f"http://127.0.0.1:{port}/-/reload", timeout=30)
        assert r.status_code == 200 and r.json()["ok"] is True
        run.p.send_signal(signal.SIGHUP)  # the operator's way: validated, swapped, counted

        def reloads_ok() -> float:
            for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text.splitlines():
                if line.startswith('hw_rule_reloads_total{result="ok"}'):
                    return float(line.split()[1])
            return 0.0

        wait_for(lambda: reloads_ok() >= 2, 20, "the SIGHUP reload", [run])
        assert run.terminate() == 0, run.output()
        # the same batches reached InfluxDB, off the alarm path: readings and alarm rows
        for ent in ents:
            assert _influx_count(influx, "reading", ent) > 0
            assert _influx_count(influx, "alarm", ent) > 0
    finally:
        for p in procs:
            p.terminate(5)
        receiver.stop()
