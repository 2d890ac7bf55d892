"""deploy/local/services per-service control, which the fault cases use to restart one
service of their private instance (the cases themselves check `status` after stop/restart):
a name is required, so a slip never stops every service, and unknown names are refused."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.faults.stack import SCRIPT

pytestmark = pytest.mark.faults


def _services(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HW_LOCAL_DIR": str(tmp_path / "instance")}
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("cmd", ["stop", "start", "restart"])
def test_per_service_commands_need_a_name(tmp_path, cmd):
    r = _services(tmp_path, cmd)
    assert r.returncode == 1
    assert f"usage: deploy/local/services {cmd} mosquitto|kafka|influxdb" in r.stderr


def test_per_service_commands_refuse_unknown_names(tmp_path):
    r = _services(tmp_path, "restart", "redis")
    assert r.returncode == 1
    assert "unknown service 'redis'" in r.stderr


def test_stop_of_a_service_this_instance_did_not_start_touches_nothing(tmp_path):
    r = _services(tmp_path, "stop", "influxdb")
    assert r.returncode == 0
    assert "influxdb was not started by deploy/local" in r.stderr
