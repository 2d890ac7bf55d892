"""The dashboards and report commands as a user runs them: build output and `--check`,
one-line errors for bad input, and the provisioning files agreeing with what push sends."""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.push import InfluxSource, datasource_model
from hazardwatch.cli import main

REPO = Path(__file__).resolve().parents[3]
REGISTRY = REPO / "dashboards" / "golden" / "registry.csv"
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"


def test_build_writes_sorted_json_and_check_reports_drift(tmp_path, clean_env, capsys):
    out = tmp_path / "dash"
    assert main(["dashboards", "build", "--registry", str(REGISTRY), "--out", str(out)]) == 0
    assert "5 dashboards in" in capsys.readouterr().out
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.json"))
    assert files == [
        "Alarms/hw-alarms.json",
        "City/hw-overview.json",
        "Enterprises/hw-ent-QJHG01.json",
        "Enterprises/hw-ent-QJYH01.json",
        "Operations/hw-pipeline.json",
    ]
    args = ["dashboards", "build", "--registry", str(REGISTRY), "--out", str(out), "--check"]
    assert main(args) == 0
    (out / "City/hw-overview.json").write_text("{}", encoding="utf-8")
    assert main(args) == 1
    assert "differs: City/hw-overview.json" in capsys.readouterr().out


def test_build_errors_are_one_line(tmp_path, clean_env, capsys):
    assert main(["dashboards", "build", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no point registry given" in err and "--registry" in err

    bad = tmp_path / "bad.csv"
    bad.write_text("enterprise_code,tag,parameter,unit\nE1,T1,level,\n", encoding="utf-8")
    assert main(["dashboards", "build", "--registry", str(bad), "--out", str(tmp_path)]) == 2
    assert "problem(s) in the point registry" in capsys.readouterr().err

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: x\n    kind: nope\n", encoding="utf-8"
    )
    args = [
        "dashboards",
        "build",
        "--registry",
        str(REGISTRY),
        "--rules",
        str(rules),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "x.rules.yaml" in err and "Traceback" not in err


def test_report_rejects_a_bad_date_and_an_unknown_district(
    tmp_path, clean_env, monkeypatch, capsys
):
    monkeypatch.setenv("HW_INFLUX__URL", "http://127.0.0.1:9")
    base = ["report", "daily", "--registry", str(REGISTRY), "--out", str(tmp_path)]
    assert main([*base, "--date", "28/11/2026"]) == 2
    assert "--date: '28/11/2026' is not a date" in capsys.readouterr().err
    assert main([*base, "--date", "2026-11-28", "--district", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "'nowhere' is not a district" in err and "潜江经济开发区" in err
    assert main([*base, "--date", "2026-11-28", "--db", str(tmp_path / "none.db")]) == 2
    assert "alert store not found" in capsys.readouterr().err


def test_report_without_influx_says_so(tmp_path, clean_env, capsys):
    args = [
        "report",
        "daily",
        "--date",
        "2026-11-28",
        "--registry",
        str(REGISTRY),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "no InfluxDB configured" in capsys.readouterr().err


def test_report_with_influx_down_is_one_line(tmp_path, clean_env, monkeypatch, capsys):
    monkeypatch.setenv("HW_INFLUX__URL", "http://127.0.0.1:9")
    monkeypatch.setenv("HW_INFLUX__TOKEN", "u:secret-pw")
    args = [
        "report",
        "daily",
        "--date",
        "2026-11-28",
        "--registry",
        str(REGISTRY),
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Flux query at http://127.0.0.1:9 failed" in err
    assert "secret-pw" not in err and "Traceback" not in err


def test_provisioned_datasource_matches_what_push_sends():
    doc = yaml.safe_load((PROVISIONING / "datasources" / "hazardwatch.yaml").read_text("utf-8"))
    (ds,) = doc["datasources"]
    want = datasource_model(
        InfluxSource("${HW_INFLUX_URL}", "${HW_INFLUX_ORG}", "${HW_INFLUX_BUCKET}")
    )
    assert {k: ds[k] for k in want} == want
    assert ds["secureJsonData"] == {"token": "${HW_INFLUX_TOKEN}"}  # no secret in the file
    prov = yaml.safe_load((PROVISIONING / "dashboards" / "hazardwatch.yaml").read_text("utf-8"))
    (provider,) = prov["providers"]
    assert provider["options"]["foldersFromFilesStructure"] is True
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/hazardwatch"
