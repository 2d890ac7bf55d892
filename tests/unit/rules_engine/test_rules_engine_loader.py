"""Loading rule files and packs: every problem at once with file, line, key path, what was
expected and what came (golden messages for 30 bad files); packs, versions and precedence;
the published JSON Schema is the one the models generate."""

from __future__ import annotations

import shutil
from pathlib import Path

import jsonschema
import pytest
import yaml

from ingest.registry import load_registry
from rules.engine import Engine
from rules.loader import RuleFileError, load_ruleset
from rules.model import Level
from rules.schema import json_schema, json_schema_text

from .conftest import point

DATA = Path(__file__).resolve().parents[2] / "data" / "rules"
BAD = DATA / "bad"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def plant_csv():
    return load_registry(DATA / "plant.csv")


def _golden() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (BAD / "expected-messages.txt").read_text("utf-8").splitlines():
        name = line.split(":", 1)[0]
        out.setdefault(name, []).append(line)
    return out


BAD_FILES = sorted(p.name for p in BAD.glob("*.rules.yaml"))


def test_there_are_at_least_twenty_bad_files_each_with_a_golden_message():
    assert len(BAD_FILES) >= 20
    assert set(_golden()) == set(BAD_FILES)


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_rule_file_gives_its_specific_message(tmp_path, plant_csv, name):
    shutil.copy(BAD / name, tmp_path / name)
    with pytest.raises(RuleFileError) as err:
        load_ruleset(tmp_path, plant_csv)
    got = [p.message.replace(f"{tmp_path}/", "") for p in err.value.problems]
    assert got == _golden()[name]
    for p in err.value.problems:
        assert p.file.endswith(name) and p.expected and p.got


def test_every_problem_in_every_file_is_reported_at_once(tmp_path, plant_csv):
    for name in BAD_FILES:
        shutil.copy(BAD / name, tmp_path / name)
    with pytest.raises(RuleFileError) as err:
        load_ruleset(tmp_path, plant_csv)
    files = {Path(p.file).name for p in err.value.problems}
    # Pack-version problems stop compilation, so reference checks of other files wait for
    # the next run; every file with a schema-level problem is named in this one.
    schema_level = {
        n
        for n, msgs in _golden().items()
        if not any(
            s in m
            for m in msgs
            for s in ("match", "valve", "unit:", "levels: expected levels", "packs.", "rule name")
        )
    }
    assert schema_level <= files
    assert len(files) >= 20


def test_a_bad_file_never_replaces_a_loaded_good_ruleset(tmp_path, plant_csv):
    (tmp_path / "site.rules.yaml").write_text(
        "rules:\n  - {name: tank, kind: limit, match: {tag: LT-101}, for: 2s}\n"
    )
    good = load_ruleset(tmp_path, plant_csv)
    engine = Engine(good, plant_csv)
    (tmp_path / "site.rules.yaml").write_text(
        "rules:\n  - {name: tank, kind: limit, match: {tag: LT-101}, for: two seconds}\n"
    )
    current = good
    with pytest.raises(RuleFileError):
        current = load_ruleset(tmp_path, plant_csv)
    assert current is good
    assert engine.ruleset.points["E1/LT-101"].limit.for_ms == 2000


def test_sidecar_tests_and_warning_model_are_not_rule_files(tmp_path, plant_csv):
    (tmp_path / "site.rules_test.yaml").write_text("this: is not a rule file\n")
    (tmp_path / "warnings.yaml").write_text("first_levels: [L1]\n")
    rs = load_ruleset(tmp_path, plant_csv)
    assert rs.files == ()


def test_thresholds_carry_their_pack_version_and_unit(plant_csv):
    rs = load_ruleset(None, plant_csv)
    nh3 = rs.thresholds_for("E1/AT-NH3")
    # GB/T 50493: NH3 AL/AH 20/40 mg/m3, published in ppm: x 24.04 / 17.03
    assert [(t.level, round(t.value, 2), t.unit) for t in nh3] == [
        (Level.L1, 28.23, "ppm"),
        (Level.L2, 56.47, "ppm"),
    ]
    assert {(t.pack, t.pack_version, t.rule) for t in nh3} == {
        ("gbt50493", "2019-amend1", "gbt50493.gas")
    }
    ch4 = rs.thresholds_for("E1/AT-CH4-1")
    assert [(t.level, t.value) for t in ch4] == [(Level.L1, 25.0), (Level.L2, 50.0)]
    o2 = rs.thresholds_for("E1/AT-O2")
    assert [(t.level, t.value, t.pack) for t in o2] == [
        (Level.L, 19.5, "oxygen"),
        (Level.H, 23.5, "oxygen"),
    ]
    tank = rs.thresholds_for("E1/LT-101")
    assert [(t.level, t.value, t.pack) for t in tank] == [
        (Level.LL, 0.5, "registry"),
        (Level.L, 1.0, "registry"),
        (Level.H, 8.0, "registry"),
        (Level.HH, 9.0, "registry"),
    ]
    warehouse = rs.thresholds_for("E2/TT-W1")
    assert [(t.level, t.value, t.pack) for t in warehouse] == [
        (Level.H, 32.0, "fireworks"),
        (Level.HH, 35.0, "fireworks"),
    ]
    assert [(t.level, t.value) for t in rs.thresholds_for("E2/RH-W1")] == [(Level.H, 75.0)]
    assert [(t.level, t.value) for t in rs.thresholds_for("E2/NP-W2")] == [(Level.H, 3.0)]
    assert rs.thresholds_for("E1/XV-101") == ()
    assert rs.thresholds_for("nope/nope") == ()


def test_benzene_amendment_is_a_second_pack_version(plant_csv):
    old = load_ruleset(None, plant_csv, pack_versions={"gbt50493": "2019"})
    new = load_ruleset(None, plant_csv, pack_versions={"gbt50493": "2019-amend1"})
    assert [t.value for t in old.thresholds_for("E1/AT-BZ")] == [6.0, 12.0]
    assert [t.value for t in new.thresholds_for("E1/AT-BZ")] == [3.0, 6.0]
    assert old.packs["gbt50493"] == "2019" and old.version != new.version


def test_precedence_pack_then_registry_then_user_file(tmp_path):
    from ingest.model import Registry

    reg = Registry([point("AT-NH3", "gas.NH3", "ppm", h=20.0), point("AT-NH3-B", "gas.NH3", "ppm")])
    rs = load_ruleset(None, reg)
    assert next((t.level, t.value, t.pack) for t in rs.thresholds_for("E1/AT-NH3")) == (
        Level.L1,
        20.0,
        "registry",
    )
    (tmp_path / "a.rules.yaml").write_text(
        "rules:\n  - name: nh3-site\n    kind: limit\n    match: {tag: AT-NH3-B}\n"
        "    unit: mg/m3\n    levels: {L1: 10, L2: 20}\n    for: 3s\n"
    )
    rs = load_ruleset(tmp_path, reg)
    ths = rs.thresholds_for("E1/AT-NH3-B")
    assert [round(t.value, 3) for t in ths] == [14.116, 28.233]
    assert {(t.pack, t.rule) for t in ths} == {("", "nh3-site")}
    assert rs.points["E1/AT-NH3-B"].limit.for_ms == 3000


def test_a_rule_can_switch_a_kind_off_for_some_points(tmp_path, plant_csv):
    (tmp_path / "a.rules.yaml").write_text(
        "rules:\n  - {name: no-rate, kind: rate, match: {tag: LT-101}, enabled: false}\n"
    )
    rs = load_ruleset(tmp_path, plant_csv)
    assert rs.points["E1/LT-101"].rate is None
    assert load_ruleset(None, plant_csv).points["E1/LT-101"].rate is not None


def test_published_schema_is_current_and_validates_the_examples():
    published = (REPO / "rules" / "schema" / "rules.schema.json").read_text("utf-8")
    assert published == json_schema_text(), "regenerate: hazardwatch rules schema -o ..."
    schema = json_schema()
    for f in sorted((REPO / "examples" / "rules").glob("*.rules.yaml")):
        jsonschema.validate(yaml.safe_load(f.read_text("utf-8")), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rules": [{"name": "x", "kind": "limit", "fro": "5s"}]}, schema)


# Files the published JSON Schema alone rejects (the others need the registry, the packs or
# cross-field checks that only the loader makes).
SCHEMA_LEVEL = [
    "01-unknown-top-key",
    "02-unknown-kind",
    "03-missing-name",
    "04-missing-kind",
    "05-bad-duration",
    "06-negative-deadband",
    "08-unknown-level",
    "09-level-not-a-number",
    "22-vote-k-zero",
    "25-future-format",
    "26-offline-multiple-too-small",
    "27-bad-rule-name",
    "28-match-typo",
    "30-rules-not-a-list",
]


@pytest.mark.parametrize("name", SCHEMA_LEVEL)
def test_the_published_schema_rejects_what_the_loader_rejects(name):
    data = yaml.safe_load((BAD / f"{name}.rules.yaml").read_text("utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, json_schema())


def test_the_published_schema_accepts_every_good_file():
    for path in [*(DATA / "prop").glob("*.yaml"), *(DATA / "prop-wide").glob("*.yaml")]:
        jsonschema.validate(yaml.safe_load(path.read_text("utf-8")), json_schema())
