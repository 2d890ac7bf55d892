"""`hazardwatch rules check` and `rules schema` as a user runs them: exit codes and what is
printed, including the compliance lint (set points above GB/T 50493, uncovered points)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hazardwatch.cli import main
from rules.schema import json_schema_text

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "rules"
HEADER = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,"
    "lat,lon\n"
)


@pytest.fixture(autouse=True)
def _no_settings_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no hazardwatch.toml here
    for k in ("HW_CONFIG", "HW_RULES__REGISTRY", "HW_RULES__RULES_DIR"):
        monkeypatch.delenv(k, raising=False)


def registry(tmp_path: Path, rows: str) -> Path:
    p = tmp_path / "registry.csv"
    p.write_text(HEADER + rows, encoding="utf-8")
    return p


def test_the_example_rule_directory_checks_clean(capsys):
    rc = main(
        ["rules", "check", "--registry", str(EXAMPLE / "registry.csv"), "--rules", str(EXAMPLE)]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "rules OK: 13 points, 1 rule file(s)" in out and "gbt50493 2019-amend1" in out


def test_a_bad_rule_file_exits_1_naming_file_line_and_key(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(REPO / "tests/data/rules/bad/05-bad-duration.rules.yaml", rules)
    rc = main(
        [
            "rules",
            "check",
            "--registry",
            str(REPO / "tests/data/rules/plant.csv"),
            "--rules",
            str(rules),
        ]
    )
    cap = capsys.readouterr()
    assert rc == 1
    assert (
        f"{rules}/05-bad-duration.rules.yaml:5: rules[0].for: expected a duration like "
        "10s, 5m, 1h or 250ms, got '10 sec'"
    ) in cap.out
    assert "1 problem(s)" in cap.err


def test_json_output_lists_each_problem_with_its_parts(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(REPO / "tests/data/rules/bad/15-unknown-tag.rules.yaml", rules)
    rc = main(
        [
            "rules",
            "check",
            "--registry",
            str(REPO / "tests/data/rules/plant.csv"),
            "--rules",
            str(rules),
            "--json",
        ]
    )
    data = json.loads(capsys.readouterr().out)
    assert rc == 1 and data["ok"] is False and data["ruleset"] is None
    (p,) = data["problems"]
    assert p["path"] == "rules[0].match.tag" and p["got"] == "'LT-999'"
    assert p["expected"].startswith("a registered tag")


def test_gas_set_points_above_the_standard_are_flagged(tmp_path, capsys):
    reg = registry(
        tmp_path,
        "E1,e,hazchem,d,H1,2,Z1,G1,AT-1,gas.NH3,ppm,0,100,,,40,60,10,,\n"
        "E1,e,hazchem,d,H1,2,Z1,G1,AT-2,gas.CH4,%LEL,0,100,,,,,10,,\n",
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.rules.yaml").write_text(
        "rules:\n  - name: ch4-lax\n    kind: limit\n    match: {tag: AT-2}\n"
        "    levels: {L1: 30, L2: 50}\n"
    )
    rc = main(["rules", "check", "--registry", str(reg), "--rules", str(rules)])
    out = capsys.readouterr().out
    assert rc == 1
    assert (
        f"{reg}: E1/AT-1.L1: expected L1 <= 28.23 ppm (GB/T 50493 2019-amend1), got 40 ppm "
        "from registry column h"
    ) in out
    assert "E1/AT-1.L2: expected L2 <= 56.47 ppm" in out
    assert (
        f"{rules}/a.rules.yaml: E1/AT-2.L1: expected L1 <= 25 %LEL (GB/T 50493 2019-amend1), "
        "got 30 %LEL from rule ch4-lax"
    ) in out
    assert "E1/AT-2.L2" not in out  # 50 %LEL is allowed


def test_points_without_a_limit_or_an_offline_rule_are_flagged(tmp_path, capsys):
    reg = registry(
        tmp_path,
        "E1,e,hazchem,d,H1,2,Z1,G1,TT-1,temperature,°C,0,300,,,,,10,,\n"
        "E1,e,hazchem,d,H1,2,Z1,G1,PT-1,pressure,MPa,0,4,,,2,3,10,,\n",
    )
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.rules.yaml").write_text(
        "rules:\n  - {name: no-offline, kind: offline, match: {tag: PT-1}, enabled: false}\n"
    )
    rc = main(["rules", "check", "--registry", str(reg), "--rules", str(rules)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"{reg}: E1/TT-1: expected a limit rule covering the point" in out
    assert f"{reg}: E1/PT-1: expected an offline rule covering the point" in out
    assert "E1/PT-1: expected a limit rule" not in out


def test_pack_versions_can_be_chosen_on_the_command_line(capsys):
    args = ["rules", "check", "--registry", str(REPO / "tests/data/rules/plant.csv")]
    assert main([*args, "--pack", "gbt50493=2019"]) == 0
    assert "gbt50493 2019," in capsys.readouterr().out
    assert main([*args, "--pack", "gbt50493=1999", "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["problems"][0]["path"] == "packs.gbt50493"
    assert main([*args, "--pack", "nonsense"]) == 2
    assert "expected NAME=VERSION" in capsys.readouterr().err


def test_without_a_registry_it_says_how_to_give_one(capsys):
    assert main(["rules", "check"]) == 2
    err = capsys.readouterr().err
    assert "no point registry given" in err and "--registry" in err


def test_schema_prints_the_published_json_schema(tmp_path, capsys):
    assert main(["rules", "schema"]) == 0
    out = capsys.readouterr().out
    assert out == json_schema_text()
    assert json.loads(out)["title"] == "hazardwatch rule file"
    assert main(["rules", "schema", "--out", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").read_text("utf-8") == out


def test_oxygen_set_points_less_protective_than_the_standard_are_flagged(tmp_path, capsys):
    reg = registry(
        tmp_path,
        "E1,e,hazchem,d,H1,2,Z1,G1,AT-O2,gas.O2,%vol,0,30,,18,24,,10,,\n"
        "E1,e,hazchem,d,H1,2,Z1,G1,AT-O2B,gas.O2,%vol,0,30,,19.8,23,,10,,\n",
    )
    rc = main(["rules", "check", "--registry", str(reg)])
    out = capsys.readouterr().out
    assert rc == 1
    assert (
        f"{reg}: E1/AT-O2.L: expected L at or above 19.5 %vol (oxygen gbt50493-2019), "
        "got 18 %vol from registry column l"
    ) in out
    assert "E1/AT-O2.H: expected H at or below 23.5 %vol" in out
    assert "AT-O2B" not in out  # stricter than the standard is fine
