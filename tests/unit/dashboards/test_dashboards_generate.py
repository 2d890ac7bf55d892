"""Generated dashboards: schema-valid, identical to the committed golden files, limit lines
taken from the rules (a changed threshold moves exactly that line), and the panels, links and
variables a duty officer relies on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dashboards.generate import (
    GenerateError,
    build_all,
    dumps,
    enterprise_uid,
    limit_steps,
)
from dashboards.validate import validate
from hazardwatch.cli import main
from ingest.registry import load_registry
from rules.loader import Threshold, load_ruleset
from rules.model import Level

GOLDEN = Path(__file__).resolve().parents[3] / "dashboards" / "golden"
REGISTRY = GOLDEN / "registry.csv"


@pytest.fixture(scope="module")
def built():
    registry = load_registry(REGISTRY)
    return registry, build_all(registry, load_ruleset(None, registry))


def _panel(model: dict, title_start: str) -> dict:
    return next(p for p in model["panels"] if p.get("title", "").startswith(title_start))


def test_every_dashboard_validates_against_the_sdk_schema(built):
    _, dashboards = built
    assert [g.uid for g in dashboards] == [
        "hw-alarms",
        "hw-overview",
        "hw-ent-QJHG01",
        "hw-ent-QJYH01",
        "hw-pipeline",
    ]
    for g in dashboards:
        assert validate(g.model) == []


def test_matches_the_committed_golden_files(built):
    """Regenerate with: hazardwatch dashboards build --registry dashboards/golden/registry.csv
    --out dashboards/golden"""
    _, dashboards = built
    for g in dashboards:
        golden = GOLDEN / g.path
        assert golden.is_file(), f"missing golden {golden}"
        assert dumps(g.model) == golden.read_text(encoding="utf-8"), f"{g.path} changed"


def test_build_is_deterministic(built):
    registry, first = built
    again = build_all(registry, load_ruleset(None, registry))
    assert [dumps(g.model) for g in again] == [dumps(g.model) for g in first]


def test_schema_validation_catches_unknown_keys_and_panel_types(built):
    _, dashboards = built
    model = copy.deepcopy(dashboards[0].model)
    model["panels"][0]["fieldConfig"]["defaults"]["tresholds"] = {}
    model["panels"][1]["type"] = "piechartt"
    del model["uid"]
    problems = "\n".join(validate(model))
    assert "tresholds: not in the Grafana 11 dashboard schema" in problems
    assert "unknown panel plugin 'piechartt'" in problems
    assert "uid: required, missing" in problems


def _limit_lines(model: dict, tag: str) -> list[tuple[float | None, str]]:
    panel = _panel(model, f"{tag} ")
    assert panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    return [
        (s["value"], s["color"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    ]


def test_limit_lines_come_from_the_rule_set(built):
    _, dashboards = built
    ent = next(g.model for g in dashboards if g.uid == "hw-ent-QJHG01")
    # Registry limits of the tank (L 10, H 80, HH 85).
    assert _limit_lines(ent, "LT-101") == [
        (None, "orange"),
        (10.0, "green"),
        (80.0, "orange"),
        (85.0, "red"),
    ]
    # H2S has no registered limits: the GB/T 50493 pack's AL/AH (10 / 20 mg/m3).
    assert _limit_lines(ent, "AT-1011") == [(None, "green"), (10.0, "orange"), (20.0, "red")]
    desc = _panel(ent, "AT-1011 ")["description"]
    assert "L1 10 mg/m3 (gbt50493 2019-amend1)" in desc
    # Oxygen: deficiency below 19.5, enrichment above 23.5 (% vol).
    assert _limit_lines(ent, "AT-2011") == [(None, "orange"), (19.5, "green"), (23.5, "orange")]


def test_changing_a_rule_threshold_moves_that_limit_line_in_the_output(tmp_path, built):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "site.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: site.tank-level\n    kind: limit\n"
        "    match: {tag: LT-101}\n    levels: {L: 10, H: 75, HH: 88}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "dashboards",
                "build",
                "--registry",
                str(REGISTRY),
                "--rules",
                str(rules),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    changed = {
        p.relative_to(out).as_posix()
        for p in out.rglob("*.json")
        if p.read_text(encoding="utf-8") != (GOLDEN / p.relative_to(out)).read_text("utf-8")
    }
    assert changed == {"Enterprises/hw-ent-QJHG01.json"}
    new = json.loads((out / "Enterprises/hw-ent-QJHG01.json").read_text(encoding="utf-8"))
    old = json.loads((GOLDEN / "Enterprises/hw-ent-QJHG01.json").read_text(encoding="utf-8"))
    assert _limit_lines(new, "LT-101") == [
        (None, "orange"),
        (10.0, "green"),
        (75.0, "orange"),
        (88.0, "red"),
    ]
    # Every other panel is untouched.
    others = [p for p in new["panels"] if not p.get("title", "").startswith("LT-101 ")]
    assert others == [p for p in old["panels"] if not p.get("title", "").startswith("LT-101 ")]


@pytest.mark.parametrize(
    ("levels", "steps"),
    [
        ({"H": 80, "HH": 85}, [(None, "green"), (80.0, "orange"), (85.0, "red")]),
        ({"L1": 25, "L2": 50}, [(None, "green"), (25.0, "orange"), (50.0, "red")]),
        ({"LL": 5, "L": 10}, [(None, "red"), (5.0, "orange"), (10.0, "green")]),
        (
            {"LL": 5, "L": 10, "H": 80, "HH": 90},
            [(None, "red"), (5.0, "orange"), (10.0, "green"), (80.0, "orange"), (90.0, "red")],
        ),
        ({"L": 19.5, "H": 23.5}, [(None, "orange"), (19.5, "green"), (23.5, "orange")]),
        ({}, [(None, "green")]),
    ],
)
def test_limit_steps_colour_each_band(levels, steps):
    th = [Threshold(Level(k), float(v), "u", "r", "p", "1") for k, v in levels.items()]
    assert [(s.value, s.color) for s in limit_steps(th)] == steps


def test_overview_has_the_duty_officer_panels_and_links_to_drill_downs(built):
    _, dashboards = built
    ov = next(g.model for g in dashboards if g.uid == "hw-overview")
    titles = [p["title"] for p in ov["panels"]]
    for want in (
        "Enterprises:",
        "Online rate",
        "Open warnings by district and colour",
        "Alarm timeline",
        "Newest alarms",
    ):
        assert any(t.startswith(want) for t in titles), want
    assert [v["name"] for v in ov["templating"]["list"]] == [
        "district",
        "enterprise",
        "installation",
    ]
    geo = _panel(ov, "Enterprises:")
    link = geo["fieldConfig"]["defaults"]["links"][0]["url"]
    assert link.startswith("/d/hw-ent-${__data.fields.enterprise}")
    # Every drill-down the link can reach exists (uid = hw-ent-<enterprise>).
    uids = {g.uid for g in dashboards}
    registry, _ = built
    assert {enterprise_uid(e) for e in registry.enterprises()} <= uids
    assert ov["links"][0]["tags"] == ["hazardwatch-enterprise"]


def test_drill_down_has_every_point_zone_status_and_alarm_annotations(built):
    registry, dashboards = built
    ent = next(g.model for g in dashboards if g.uid == "hw-ent-QJHG01")
    titles = [p["title"] for p in ent["panels"]]
    for p in registry.enterprise("QJHG01"):
        assert any(t.startswith(f"{p.tag} ") for t in titles), p.tag
    assert "Status per zone" in titles
    assert ent["annotations"]["list"][0]["target"]["query"].count('"QJHG01"') == 1
    inst = ent["templating"]["list"][0]
    assert inst["name"] == "installation"
    assert inst["query"] == "QJHG01-MH1,none"  # from the registry: one installation + outside
    rows = [p["title"] for p in ent["panels"] if p["type"] == "row"]
    assert rows == ["Outside installations", "Installation QJHG01-MH1"]


def test_alarm_management_and_pipeline_panels(built):
    _, dashboards = built
    alarms = next(g.model for g in dashboards if g.uid == "hw-alarms")
    assert {p["title"] for p in alarms["panels"]} == {
        "Alarms per 10 min",
        "Flood intervals",
        "Mean time to acknowledge",
        "Mean time to dispose",
        "Chattering (most alarms of one point in a minute)",
        "Top bad actors",
        "Overdue dispositions",
    }
    pipe = next(g.model for g in dashboards if g.uid == "hw-pipeline")
    assert {p["title"] for p in pipe["panels"]} == {
        "Readings per second",
        "Rejects by reason",
        "Evaluation lag",
        "Outbox depth",
        "InfluxDB write errors",
        "Notifications by channel and result",
    }


def test_enterprise_code_that_cannot_be_a_uid_is_a_clear_error():
    with pytest.raises(GenerateError, match="enterprise code 'A/B' cannot be part of a Grafana"):
        enterprise_uid("A/B")
