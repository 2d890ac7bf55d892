"""Settings: TOML + HW_* environment, strict validation, secrets never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hazardwatch.cli import main
from hazardwatch.settings import SettingsError, load_settings

SECRETS = {
    "HW_MQTT__PASSWORD": "mqtt-Secret-41d",
    "HW_INFLUX__TOKEN": "hw:influx-Secret-77a",
    "HW_PLATFORM__HMAC_SECRET": "hmac-Secret-0f3",
    "HW_CHANNELS__ALIYUN_SMS__ACCESS_KEY_SECRET": "aliyun-Secret-9bc",
    "HW_CHANNELS__TENCENT_SMS__SECRET_KEY": "tencent-Secret-5e2",
    "HW_GRAFANA__TOKEN": "glsa_grafana-Secret-123",
}


def test_defaults_are_embedded_mode(clean_env):
    s = load_settings(environ={})
    assert s.effective_mode == "embedded"
    assert s.mqtt.topic_prefix == "hw"


def test_toml_then_env_precedence(tmp_path: Path, clean_env):
    cfg = tmp_path / "hw.toml"
    cfg.write_text(
        '[mqtt]\nhost = "broker.example"\nport = 8883\n[kafka]\nbootstrap_servers = "k:9092"\n'
    )
    s = load_settings(cfg, environ={"HW_MQTT__PORT": "1884"})
    assert s.mqtt.host == "broker.example"
    assert s.mqtt.port == 1884  # environment wins over the file
    assert s.effective_mode == "distributed"


def test_every_problem_reported_at_once(tmp_path: Path, clean_env):
    cfg = tmp_path / "hw.toml"
    cfg.write_text("[mqtt]\nport = 70000\nqos = 2\nbogus = 1\n[influx]\nbatch_size = 0\n")
    with pytest.raises(SettingsError) as ei:
        load_settings(cfg, environ={})
    msg = str(ei.value)
    assert "4 problem(s)" in msg
    for where in ("mqtt.port", "mqtt.qos", "mqtt.bogus", "influx.batch_size"):
        assert where in msg


def test_unknown_env_section_is_an_error(clean_env):
    with pytest.raises(SettingsError, match="HW_MQQT__HOST"):
        load_settings(environ={"HW_MQQT__HOST": "x"})


def test_bad_toml_names_the_file(tmp_path: Path, clean_env):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[mqtt\nhost = 1\n")
    with pytest.raises(SettingsError, match=r"broken\.toml: not valid TOML"):
        load_settings(cfg, environ={})


def test_secret_file_must_be_private(tmp_path: Path, clean_env):
    f = tmp_path / "hmac"
    f.write_text("from-a-file-secret\n")
    f.chmod(0o644)
    with pytest.raises(SettingsError, match="readable by group or others"):
        load_settings(environ={"HW_PLATFORM__HMAC_SECRET_FILE": str(f)})
    f.chmod(0o600)
    s = load_settings(environ={"HW_PLATFORM__HMAC_SECRET_FILE": str(f)})
    assert s.platform.hmac_secret.get_secret_value() == "from-a-file-secret"


def test_invalid_secret_value_is_not_echoed(clean_env):
    env = {"HW_WECOM_UNUSED": "1"} if False else {}
    env["HW_CHANNELS__WECOM__ROBOT_KEYS"] = "not-a-json-object-SECRETKEY"
    with pytest.raises(SettingsError) as ei:
        load_settings(environ=env)
    assert "SECRETKEY" not in str(ei.value)


def test_config_show_masks_every_secret(monkeypatch, capsys, clean_env):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("HW_CHANNELS__WECOM__ROBOT_KEYS", '{"duty": "robot-Secret-key-8d"}')
    for args in (["config", "show"], ["config", "show", "--json"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "********" in out
        for secret in [*SECRETS.values(), "robot-Secret-key-8d", "influx-Secret-77a"]:
            assert secret not in out, f"{secret} leaked by {' '.join(args)}"
        assert "mqtt" in out and "effective_mode" in out


def test_env_is_restored_after_loading(clean_env):
    before = dict(os.environ)
    load_settings(environ={"HW_MQTT__PORT": "1999"})
    assert dict(os.environ) == before


def test_a_file_setting_is_not_taken_for_a_secret_file(clean_env):
    s = load_settings(environ={"HW_CHANNELS__ROUTING_FILE": "/etc/hazardwatch/routing.yaml"})
    assert str(s.channels.routing_file) == "/etc/hazardwatch/routing.yaml"


def test_numbers_from_the_environment_are_coerced(clean_env):
    s = load_settings(environ={"HW_MQTT__QOS": "0", "HW_MQTT__PORT": "8883"})
    assert (s.mqtt.qos, s.mqtt.port) == (0, 8883)
    with pytest.raises(SettingsError, match=r"mqtt\.qos"):
        load_settings(environ={"HW_MQTT__QOS": "2"})


def test_every_command_package_is_distributed():
    """A non-editable install must carry the area commands (demo, replay, ...)."""
    import tomllib

    from tests.conftest import REPO

    packages = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    tops = {"hazardwatch", "ingest", "rules", "alerts", "dashboards"}
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in REPO.glob("*/**/*.py")
        if p.parent.relative_to(REPO).parts[0] in tops and "__pycache__" not in p.parts
    }
    assert on_disk <= packages, f"packages missing from pyproject: {sorted(on_disk - packages)}"


def test_given_environment_is_used_and_the_process_environment_left_alone(monkeypatch):
    monkeypatch.setenv("HW_MQTT__PORT", "1999")
    assert load_settings(environ={}).mqtt.port == 1883  # only what we were given
    assert load_settings(environ={"HW_MQTT__PORT": "2001"}).mqtt.port == 2001
    assert os.environ["HW_MQTT__PORT"] == "1999"
    assert load_settings().mqtt.port == 1999  # default: the process environment
