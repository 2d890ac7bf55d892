"""The run commands' errors: one clear line and a hint, before anything starts."""

from __future__ import annotations

import pytest

from hazardwatch.cli import main


@pytest.mark.parametrize(
    ("argv", "env", "message", "hint"),
    [
        (["run"], {}, "mqtt.enabled is false", "hazardwatch demo"),
        (
            ["run"],
            {"HW_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            "distributed mode",
            "hazardwatch worker",
        ),
        (["run"], {"HW_MQTT__ENABLED": "true"}, "rules.registry is not set", "HW_RULES__REGISTRY"),
        (["worker"], {}, "kafka.bootstrap_servers is empty", "hazardwatch run"),
        (["bridge"], {}, "kafka.bootstrap_servers is empty", "HW_KAFKA__BOOTSTRAP_SERVERS"),
    ],
)
def test_misconfigured_run_commands_fail_with_one_line(
    clean_env, monkeypatch, capsys, argv, env, message, hint, tmp_path
):
    monkeypatch.chdir(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err or message in err.splitlines()[0]
    assert "hint:" in err and hint in err
    assert "Traceback" not in err


def test_run_with_a_broken_registry_names_the_file(clean_env, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "registry.csv"
    bad.write_text("enterprise_code,tag\nE1,\n", encoding="utf-8")
    monkeypatch.setenv("HW_MQTT__ENABLED", "true")
    monkeypatch.setenv("HW_MQTT__PORT", "1")
    monkeypatch.setenv("HW_RULES__REGISTRY", str(bad))
    monkeypatch.setenv("HW_STORAGE__DATA_DIR", str(tmp_path / "var"))
    assert main(["run"]) == 2
    err = capsys.readouterr().err
    assert "cannot load the rules" in err and "missing required column" in err
    assert "Traceback" not in err


def test_run_simulate_needs_no_service_and_writes_time_series(
    clean_env, monkeypatch, capsys, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HW_STORAGE__DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("HW_METRICS__PORT", "0")
    assert main(["run", "--simulate", "300", "--for", "8", "--no-api"]) == 0
    assert "hazardwatch embedded: 300 points" in capsys.readouterr().err
    lines = "".join(p.read_text() for p in (tmp_path / "var" / "lineprotocol").glob("*.lp"))
    assert "\nreading," in lines and "\npipeline," in lines
    assert (tmp_path / "var" / "embedded-engine.db").exists()
