"""Issue 9: faults injected into the running distributed stack one at a time and combined,
each case balanced afterwards — every reading stored or dead-lettered with its reason, every
expected alarm raised exactly once, every notification delivered exactly once at the
receivers. A case fails when its row of the ledger does not balance (the table is printed at
the end of the run)."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import case_enterprises
from tests.faults.env import ClockControl, full_disk
from tests.faults.ledger import RESULTS, Row, balance, progress
from tests.faults.scenario import Gateways

pytestmark = [pytest.mark.integration, pytest.mark.faults, pytest.mark.timeout(600)]

# How long InfluxDB stays down in its case (the issue: "minutes"; 2 in CI). The variable is
# for iterating on the suite only.
INFLUX_DOWN_S = float(os.environ.get("HW_FAULTS_INFLUX_DOWN_S", "120"))
# Alarm latency (event time to the platform's acceptance) that counts as normal on a loaded
# 2-core machine: the outage cases assert it (the table shows every case's).
NORMAL_ALARM_LATENCY_S = 8.0
SETTLE_S = 120.0  # how long a case may take to complete after the gateways finish
QUIET_S = 1.5  # after completion: late duplicates would show within this

_index = iter(range(100))


def run_case(
    name: str,
    dep,
    stack,
    fault: Callable[[Gateways], None] = lambda gw: None,
    *,
    first: tuple[str, ...] = (),
    after: Callable[[], None] = lambda: None,
    settle_s: float = SETTLE_S,
) -> Row:
    """Publish the scenario for fresh enterprises, inject `fault` on its schedule, wait until
    the `first` parts of the ledger are complete, run `after`, wait until every part is
    complete (or `settle_s`), then a quiet period, and balance."""
    idx = next(_index)
    ents = case_enterprises(idx)
    dep.supervise()
    dep.events.clear()
    dep.handover_lines()  # what earlier cases logged is theirs
    stack.events.clear()
    gw = Gateways(stack.mqtt_host, stack.mqtt_port, dep.prefix, ents, f"gw-{dep.sid}-{idx}")
    gw.start()
    fault(gw)
    published = gw.finish()

    def wait(parts: tuple[str, ...]) -> dict[str, bool]:
        deadline = time.monotonic() + settle_s
        while True:
            dep.supervise()
            state = progress(dep, stack, ents, published)
            if all(state[p] for p in parts or state) or time.monotonic() > deadline:
                return state
            time.sleep(0.5)

    if first:
        wait(first)
    after()
    state = wait(())
    time.sleep(QUIET_S)
    row = balance(name, dep, stack, ents, published)
    handover = dep.handover_lines()
    if not row.balanced:  # what the workers did with the partitions, to trace it
        row.notes.extend(handover)
    if not all(state.values()):
        row.notes.append(f"still incomplete after {settle_s:g} s: {state}")
    RESULTS.append(row)
    return row


def check(row: Row) -> None:
    assert row.balanced, row.explain()


# ------------------------------------------------------------------------------ one at a time


def test_baseline_without_faults_balances(faults_deployment, faults_stack):
    # Its alarm latency is in the table (the first case also pays the workers' warm-up).
    check(run_case("none (baseline)", faults_deployment, faults_stack))


def test_kill_9_of_the_bridge(faults_deployment, faults_stack):
    dep = faults_deployment

    def fault(gw: Gateways) -> None:
        gw.wait_until(4.0)
        dep.kill9_bridge()
        dep.events.append(f"bridge killed -9 at {gw.elapsed_s():.1f} s")
        time.sleep(1.0)
        dep.start_bridge()

    check(run_case("kill -9 bridge", dep, faults_stack, fault))


def test_kill_9_of_a_worker_then_restarted(faults_deployment, faults_stack):
    dep = faults_deployment

    def fault(gw: Gateways) -> None:
        gw.wait_until(4.0)
        dep.kill9_worker("w1")
        gw.wait_until(13.0)
        dep.restart_worker("w1")

    row = run_case("kill -9 worker (restarted)", dep, faults_stack, fault, after=dep.wait_serving)
    check(row)


def test_mosquitto_restart(faults_deployment, faults_stack):
    def fault(gw: Gateways) -> None:
        gw.wait_until(4.0)
        faults_stack.restart("mosquitto")
        assert faults_stack.status()["mosquitto"] == "up"

    check(run_case("Mosquitto restart", faults_deployment, faults_stack, fault))


def test_kafka_broker_restart(faults_deployment, faults_stack):
    dep = faults_deployment

    def fault(gw: Gateways) -> None:
        gw.wait_until(4.0)
        faults_stack.restart("kafka")

    check(run_case("Kafka broker restart", dep, faults_stack, fault, after=dep.wait_serving))


def test_influxdb_down_for_minutes(faults_deployment, faults_stack):
    """The writer spills while InfluxDB is down and replays afterwards; alarms are not held
    up meanwhile (their latency during the outage stays normal)."""
    dep = faults_deployment
    down_at = [0.0]

    def fault(gw: Gateways) -> None:
        gw.wait_until(0.5)
        faults_stack.stop("influxdb")
        down_at[0] = time.monotonic()
        assert faults_stack.status()["influxdb"] == "down"

    def after() -> None:
        # Alarms and messages are complete while InfluxDB is still down: their latency now.
        assert faults_stack.status()["influxdb"] == "down", "the outage ended too early"
        time.sleep(max(0.0, down_at[0] + INFLUX_DOWN_S - time.monotonic()))
        faults_stack.start("influxdb")

    row = run_case(
        f"InfluxDB stopped {INFLUX_DOWN_S / 60:g} min", dep, faults_stack, fault, after=after
    )
    # The ledger was balanced after InfluxDB came back: wait for the spill to be replayed.
    check(row)
    assert row.max_alarm_latency_s < NORMAL_ALARM_LATENCY_S, row.max_alarm_latency_s


def test_platform_answering_500(faults_deployment, faults_stack):
    dep = faults_deployment

    def fault(gw: Gateways) -> None:
        gw.wait_until(1.5)
        dep.platform.fail_next(15, status=500)

    row = run_case("platform answers 500 (x15)", dep, faults_stack, fault)
    check(row)
    assert dep.platform.faults_served == 15


def test_wecom_rate_limited_45009(faults_deployment, faults_stack):
    dep = faults_deployment
    before = dep.wecom.rate_limited

    def fault(gw: Gateways) -> None:
        gw.wait_until(1.5)
        dep.wecom.rate_limit_next(10)

    check(run_case("WeCom 45009 rate limit (x10)", dep, faults_stack, fault))
    assert dep.wecom.rate_limited - before == 10


def test_sms_gateway_timing_out(faults_deployment, faults_stack):
    dep = faults_deployment
    before = dep.sms.faults_served

    def fault(gw: Gateways) -> None:
        gw.wait_until(1.5)
        # Longer than the SMS channel's 10 s timeout: the client gives up, then retries.
        dep.sms.hang_next(2, seconds=12.0)

    check(run_case("SMS timing out (x2)", dep, faults_stack, fault))
    assert dep.sms.faults_served - before == 2


# ------------------------------------------------------------------------------ environment
# The primitives are the env-faults helper's (tests/faults/env.py).

FULL_DISK_INFLUX_DOWN_S = 10.0
CLOCK_STEP_S = 600.0  # an NTP step / VM resume of 10 minutes


def test_full_disk_under_the_spill_folder(faults_deployment, faults_stack, tmp_path):
    """InfluxDB down and the spill folder full: the writers keep the lines in memory (well
    under their bound here) and write them all once InfluxDB is back."""
    dep, stack = faults_deployment, faults_stack
    held = contextlib.ExitStack()
    down_at = [0.0]

    def fault(gw: Gateways) -> None:
        disk = held.enter_context(full_disk(dep.spill_dir, 256 * 1024))
        dep.events.append(f"spill folder full ({disk!s})")
        gw.wait_until(0.5)
        stack.stop("influxdb")
        down_at[0] = time.monotonic()

    def after() -> None:
        time.sleep(max(0.0, down_at[0] + FULL_DISK_INFLUX_DOWN_S - time.monotonic()))
        stack.start("influxdb")

    with held:
        row = run_case(
            "full disk under spill + InfluxDB down",
            dep,
            stack,
            fault,
            first=("alarms", "people"),
            after=after,
        )
    check(row)
    assert row.max_alarm_latency_s < NORMAL_ALARM_LATENCY_S, row.max_alarm_latency_s


# ------------------------------------------------------------------------------ combined

COMBINED_INFLUX_DOWN_S = 30.0


def test_combined_worker_kill_influx_down_platform_500_mosquitto_restart(
    faults_deployment, faults_stack
):
    """w1 is killed -9 with readings it acknowledged only in its spill files (InfluxDB is
    down), and stays dead until the ledger's readings are complete: w2, sharing the spill
    folder, must replay the files w1 left (`spill_adopt_after_s`), or they are lost."""
    dep, stack = faults_deployment, faults_stack
    influx_back: list[threading.Timer] = []

    def fault(gw: Gateways) -> None:
        gw.wait_until(1.0)
        stack.stop("influxdb")
        t = threading.Timer(COMBINED_INFLUX_DOWN_S, stack.start, args=("influxdb",))
        t.start()
        influx_back.append(t)
        dep.platform.fail_next(10, status=500)
        gw.wait_until(3.0)
        dep.kill9_worker("w1")
        dep.events.append(f"worker w1 killed -9 at {gw.elapsed_s():.1f} s, restarted last")
        gw.wait_until(5.0)
        stack.restart("mosquitto")

    def after() -> None:
        dep.restart_worker("w1")
        dep.wait_serving()

    try:
        row = run_case(
            "combined: worker kill+Influx down+platform 500+Mosquitto restart",
            dep,
            stack,
            fault,
            first=("alarms", "people", "stored"),
            after=after,
        )
    finally:
        for t in influx_back:
            t.join()
    check(row)


def test_combined_bridge_kill_kafka_restart_wecom_429_sms_timeout(faults_deployment, faults_stack):
    dep, stack = faults_deployment, faults_stack

    def fault(gw: Gateways) -> None:
        gw.wait_until(1.0)
        dep.wecom.rate_limit_next(8)
        dep.sms.hang_next(2, seconds=12.0)
        gw.wait_until(3.0)
        dep.kill9_bridge()
        dep.events.append(f"bridge killed -9 at {gw.elapsed_s():.1f} s")
        time.sleep(1.0)
        dep.start_bridge()
        gw.wait_until(6.0)
        stack.restart("kafka")

    row = run_case(
        "combined: bridge kill+Kafka restart+WeCom 45009+SMS timeout",
        dep,
        stack,
        fault,
        after=dep.wait_serving,
    )
    check(row)


# ------------------------------------------------------------------------------ last: clock


def test_clock_jump_of_a_worker(faults_deployment, faults_stack, tmp_path):
    """Worker w1 runs under libfaketime; mid-scenario its wall clock steps 10 minutes
    forward. Nothing is lost, nothing repeated, and no offline or gateway alarm floods."""
    dep, stack = faults_deployment, faults_stack
    clock = ClockControl(tmp_path / "clock", forward_only=True)  # see ClockControl: CPU
    dep.restart_worker("w1", clock.env(), graceful=True)
    dep.wait_serving()

    def fault(gw: Gateways) -> None:
        gw.wait_until(4.0)
        clock.jump(CLOCK_STEP_S)
        dep.events.append(f"w1 wall clock stepped +{CLOCK_STEP_S:g} s at {gw.elapsed_s():.1f} s")

    # The last case of the module: w1 keeps its stepped clock to the end of the session.
    check(run_case("clock jump +10 min (worker)", dep, stack, fault))
