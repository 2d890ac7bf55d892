"""Point registry: a good file loads; a bad one reports every problem at once, with lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.model import Industry
from ingest.registry import RegistryError, load_registry, parse_registry, summary

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"


def test_good_csv_loads_with_attrs_units_and_version():
    reg = load_registry(DATA / "registry.csv")
    assert len(reg) == 10
    p = reg.get("QJ001", "AT-1101")
    assert p is not None
    assert p.parameter == "gas.NH3" and p.unit == "ppm"
    assert (p.range_low, p.range_high) == (0.0, 100.0)
    assert (p.ll, p.l, p.h, p.hh) == (None, None, None, None)  # rules fill gas set points
    assert p.expected_interval_s == 10.0
    assert p.attrs["vendor"] == "honeywell"
    assert p.hazard_level == 2
    lt = reg.get("QJ001", "LT-1101")
    assert (lt.ll, lt.l, lt.h, lt.hh) == (1.0, 2.0, 10.0, 11.0)
    occ = reg.get("QJ002", "RY-01")
    assert occ.unit == "persons" and occ.h == 3 and occ.industry is Industry.FIREWORKS
    assert reg.get("QJ001", "TT-1101").unit == "°C"
    assert len(reg.version) == 12
    assert summary(reg)["QJ001"]["gas.NH3"] == 2


def test_columns_in_any_order():
    text = "tag,unit,parameter,enterprise_code,gateway_code\nA-1,MPa,pressure,E1,G1\n"
    reg = parse_registry(text.encode(), "r.csv")
    assert reg.get("E1", "A-1").unit == "MPa"
    assert reg.get("E1", "A-1").expected_interval_s == 60.0


EXPECTED_BAD = [
    (3, "parameter", "unknown gas 'gas.XYZ'"),
    (4, "unit", "'kPa' does not fit level"),
    (5, "hh", "limits out of order: H 10 > HH 9"),
    (6, "hh", "HH 13 is above the measuring range [0, 12]"),
    (7, "tag", "duplicate tag 'AT-1' in enterprise 'QJ001' (first on line 2)"),
    (8, "lat", "latitude 95 is outside [-90, 90]"),
    (9, "expected_interval_s", "expected seconds > 0, got '-5'"),
    (10, "industry", "expected hazchem or fireworks, got 'chemical'"),
    (10, "hazard_level", "expected 1, 2, 3, 4 or empty, got '5'"),
    (11, "unit", "'%LEL' does not fit gas.Cl2"),
    (12, "range_high", "expected a number, got 'abc'"),
    (13, "range_high", "measuring range is empty"),
    (14, "lon", "lat and lon must be given together"),
    (15, "enterprise_code", "required, but empty"),
    (16, "tag", "must not contain '/'"),
    (17, "", "3 cells but the header has 20 columns"),
]


def test_bad_csv_reports_every_problem_with_its_line():
    with pytest.raises(RegistryError) as ei:
        load_registry(DATA / "registry_bad.csv")
    err = ei.value
    got = [(p.line, p.column, p.message) for p in err.problems]
    for line, col, fragment in EXPECTED_BAD:
        assert any(gl == line and gc == col and fragment in gm for gl, gc, gm in got), (
            f"missing problem line {line} {col}: {fragment}\n got: {got}"
        )
    assert len(got) == len(EXPECTED_BAD)
    text = str(err)
    assert text.startswith(f"{DATA / 'registry_bad.csv'}: {len(EXPECTED_BAD)} problem(s)")
    assert f"{DATA / 'registry_bad.csv'}:line 4: unit:" in text


def test_yaml_loads_and_reports_problems_with_yaml_lines():
    with pytest.raises(RegistryError) as ei:
        load_registry(DATA / "registry.yaml")
    (problem,) = ei.value.problems
    # `h: 13` is on line 39 of the YAML file: the problem points at the key, not the row
    assert (problem.line, problem.column) == (39, "h")
    assert "above the measuring range" in problem.message


def test_yaml_good_rows():
    text = (DATA / "registry.yaml").read_text(encoding="utf-8").replace("h: 13", "h: 11")
    reg = parse_registry(text.encode(), "r.yaml")
    assert reg.get("QJ001", "LT-1102").hh is None
    assert reg.get("QJ001", "AT-1101").attrs["vendor"] == "honeywell"
    assert reg.get("QJ001", "LT-1101").hh == 11.0


@pytest.mark.parametrize(
    ("content", "name", "fragment"),
    [
        (b"", "r.csv", "empty file"),
        (b"tag,unit\nA,m\n", "r.csv", "missing required column(s) enterprise_code, parameter"),
        (b"enterprise_code,tag,tag,parameter,unit\n", "r.csv", "column appears twice"),
        (b"\xff\xfe", "r.csv", "not UTF-8"),
        (b"points: [", "r.yaml", "not valid YAML"),
        (b"points: 3", "r.yaml", "expected a list of points"),
        (b"x", "r.txt", "unknown registry format 'txt'"),
    ],
)
def test_file_level_problems(content, name, fragment):
    with pytest.raises(RegistryError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_registry(content, name)


def test_missing_file_is_a_registry_error(tmp_path):
    with pytest.raises(RegistryError, match="cannot read file"):
        load_registry(tmp_path / "nope.csv")


def test_occupancy_quota_must_be_whole_persons():
    text = (
        "enterprise_code,tag,parameter,unit,gateway_code,h\n"
        "E1,RY-1,occupancy,人,G1,3\n"
        "E1,RY-2,occupancy,人,G1,2.5\n"
    )
    with pytest.raises(RegistryError) as ei:
        parse_registry(text.encode(), "r.csv")
    (p,) = ei.value.problems
    assert (p.line, p.column) == (3, "h") and "whole number of persons" in p.message
