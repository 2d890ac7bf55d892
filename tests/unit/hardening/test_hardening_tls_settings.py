"""The API's TLS settings as users give them: environment variables, the key password from a
chmod-600 file, and never shown by `hazardwatch config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hazardwatch.cli import main
from hazardwatch.settings import SettingsError, load_settings
from hazardwatch.tls import tls_enabled


def test_tls_settings_from_the_environment_and_the_password_masked(
    tmp_path: Path, clean_env, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HW_API__TLS_CERT_FILE", "/etc/hazardwatch/api.crt")
    monkeypatch.setenv("HW_API__TLS_KEY_FILE", "/etc/hazardwatch/api.key")
    monkeypatch.setenv("HW_API__TLS_KEY_PASSWORD", "pem-pass-SECRET")
    assert main(["config", "show", "--json"]) == 0
    api = json.loads(capsys.readouterr().out)["api"]
    assert api["tls_cert_file"] == "/etc/hazardwatch/api.crt"
    assert api["tls_key_password"] == "********"
    assert tls_enabled(load_settings(None))


def test_key_password_file_must_be_private(tmp_path: Path, clean_env, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "pem-pass"
    f.write_text("pem-pass-SECRET\n")
    f.chmod(0o640)
    env = {"HW_API__TLS_KEY_PASSWORD_FILE": str(f)}
    with pytest.raises(SettingsError, match="expected chmod 600") as e:
        load_settings(None, environ=env)
    assert "SECRET" not in str(e.value)
    f.chmod(0o600)
    s = load_settings(None, environ=env)
    assert s.api.tls_key_password is not None
    assert s.api.tls_key_password.get_secret_value() == "pem-pass-SECRET"
