"""`hazardwatch dashboards push` against a recording Grafana HTTP API: the right calls on the
first run, no writes on the second, only the changed dashboard after a threshold change, and
one clear line (never the token) on a bad token or an unreachable Grafana."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboards.fake_grafana import FakeGrafana
from dashboards.push import DATASOURCE_NAME, InfluxSource, PushError, connect, push
from hazardwatch.cli import main

REGISTRY = Path(__file__).resolve().parents[3] / "dashboards" / "golden" / "registry.csv"
TOKEN = "glsa_test_TOKEN_d0n0tpr1nt"
INFLUX_TOKEN = "hw:influx-secret-pw"


@pytest.fixture
def grafana():
    with FakeGrafana(TOKEN) as g:
        yield g


@pytest.fixture
def env(monkeypatch, clean_env, grafana):
    monkeypatch.setenv("HW_GRAFANA__URL", grafana.url)
    monkeypatch.setenv("HW_GRAFANA__TOKEN", TOKEN)
    monkeypatch.setenv("HW_INFLUX__URL", "http://influx.example:8086")
    monkeypatch.setenv("HW_INFLUX__TOKEN", INFLUX_TOKEN)
    monkeypatch.setenv("HW_INFLUX__BUCKET", "hazardwatch/autogen")


def _push(*extra: str) -> int:
    return main(["dashboards", "push", "--registry", str(REGISTRY), *extra])


def test_first_push_creates_datasource_folders_and_dashboards(env, grafana, capsys):
    assert _push() == 0
    out = capsys.readouterr()
    assert grafana.writes() == [
        ("POST", "/api/datasources"),
        ("POST", "/api/folders"),
        ("POST", "/api/folders"),
        ("POST", "/api/folders"),
        ("POST", "/api/folders"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
        ("POST", "/api/dashboards/db"),
    ]
    assert {f["title"] for f in grafana.folders.values()} == {
        "City",
        "Enterprises",
        "Alarms",
        "Operations",
    }
    placed = {uid: d["folderUid"] for uid, d in grafana.dashboards.items()}
    assert placed == {
        "hw-overview": "hw-folder-city",
        "hw-alarms": "hw-folder-alarms",
        "hw-pipeline": "hw-folder-operations",
        "hw-ent-QJHG01": "hw-folder-enterprises",
        "hw-ent-QJYH01": "hw-folder-enterprises",
    }
    ds = grafana.datasources["hazardwatch-influx"]
    assert ds["jsonData"]["version"] == "Flux"
    assert ds["jsonData"]["defaultBucket"] == "hazardwatch/autogen"
    assert ds["secureJsonData"] == {"token": INFLUX_TOKEN}
    assert "created dashboard hw-overview" in out.out
    assert "10 change(s), 0 unchanged" in out.out
    assert TOKEN not in out.out + out.err and INFLUX_TOKEN not in out.out + out.err


def test_second_push_changes_nothing(env, grafana, capsys):
    assert _push() == 0
    before = len(grafana.calls)
    versions = {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()}
    assert _push() == 0
    second = grafana.calls[before:]
    assert all(method == "GET" for method, _ in second), second
    assert {uid: d["dashboard"]["version"] for uid, d in grafana.dashboards.items()} == versions
    assert "0 change(s), 10 unchanged" in capsys.readouterr().out


def test_a_changed_threshold_updates_only_its_dashboard(env, grafana, tmp_path, capsys):
    assert _push() == 0
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: site.tank-level\n    kind: limit\n"
        "    match: {tag: LT-101}\n    levels: {L: 10, H: 75, HH: 88}\n",
        encoding="utf-8",
    )
    before = len(grafana.calls)
    assert _push("--rules", str(rules)) == 0
    writes = [c for c in grafana.calls[before:] if c[0] != "GET"]
    assert writes == [("POST", "/api/dashboards/db")]
    assert grafana.dashboards["hw-ent-QJHG01"]["dashboard"]["version"] == 2
    assert "updated dashboard hw-ent-QJHG01" in capsys.readouterr().out


def test_bad_token_is_one_clear_error_without_the_token(env, grafana, monkeypatch, capsys):
    monkeypatch.setenv("HW_GRAFANA__TOKEN", "glsa_wrong_SECRET_value")
    assert _push() == 2
    err = capsys.readouterr().err
    assert "rejected the token" in err and "HTTP 401" in err
    assert grafana.url in err
    assert "glsa_wrong_SECRET_value" not in err and TOKEN not in err
    assert "Traceback" not in err
    assert grafana.writes() == []


def test_unreachable_grafana_is_one_clear_error(env, monkeypatch, capsys):
    monkeypatch.setenv("HW_GRAFANA__URL", "http://127.0.0.1:9")
    assert _push() == 2
    err = capsys.readouterr().err
    assert "cannot reach Grafana at http://127.0.0.1:9" in err
    assert TOKEN not in err


def test_missing_url_or_token_is_named():
    with pytest.raises(PushError, match=r"no Grafana URL configured \(grafana.url"):
        connect("", "t")
    with pytest.raises(PushError, match=r"no Grafana token configured \(grafana.token"):
        connect("http://x", "")


def test_datasource_drift_is_repaired_and_a_renamed_folder_is_kept(grafana):
    from dashboards.generate import build_all
    from ingest.registry import load_registry
    from rules.loader import load_ruleset

    reg = load_registry(REGISTRY)
    dashboards = build_all(reg, load_ruleset(None, reg))
    src = InfluxSource("http://influx:8086", "-", "hazardwatch/autogen", "u:p")
    api = connect(grafana.url, TOKEN)
    push(api, dashboards, src)
    grafana.datasources["hazardwatch-influx"]["url"] = "http://elsewhere:8086"
    grafana.folders["hw-folder-city"]["title"] = "城市总览"  # renamed in the UI: matched by uid
    report = push(api, dashboards, src)
    assert [a for a in report.actions if a[0] != "unchanged"] == [
        ("updated", "datasource", DATASOURCE_NAME)
    ]
    assert grafana.datasources["hazardwatch-influx"]["url"] == "http://influx:8086"
