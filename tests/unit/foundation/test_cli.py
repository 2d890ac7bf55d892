"""The console script: version, usage errors, one-line errors with hints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hazardwatch import __version__
from hazardwatch.cli import main


def test_version(capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"hazardwatch {__version__}"


def test_bad_config_file_is_one_clear_line(tmp_path: Path, capsys, clean_env):
    bad = tmp_path / "hw.toml"
    bad.write_text("[mqtt]\nport = 'x'\n")
    assert main(["--config", str(bad), "config", "show"]) == 2
    err = capsys.readouterr().err
    assert "error: invalid settings" in err and "mqtt.port" in err
    assert "Traceback" not in err


def test_unknown_command_is_a_usage_error(capsys):
    assert main(["no-such-verb"]) == 2


def test_console_script_runs_as_a_process():
    out = subprocess.run(
        [sys.executable, "-m", "hazardwatch", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("hazardwatch ")


def test_services_status_reports_a_down_service(capsys, clean_env, monkeypatch):
    # Nothing listens on port 1 of loopback: the probe must say "down" and exit 1.
    monkeypatch.setenv("HW_INFLUX__URL", "http://127.0.0.1:1")
    monkeypatch.setenv("HW_INFLUX__TOKEN", "u:p")
    assert main(["services", "status", "--timeout", "1"]) == 1
    out = capsys.readouterr().out
    assert "influxdb" in out and "down" in out
