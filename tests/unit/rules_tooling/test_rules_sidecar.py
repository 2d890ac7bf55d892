"""Sidecar rule-test files: the promtool series notation, and bad sidecar files reported
with the file, the key path and what was expected (never a traceback)."""

from __future__ import annotations

import re

import pytest

from rules.ruletest import SidecarError, discover, expand_series, load_sidecar, run_sidecar

from .rt_factory import REPO

DATA = REPO / "tests/data/replay"


@pytest.mark.parametrize(
    ("series", "values"),
    [
        ("1 2 3", [1, 2, 3]),
        ("5x3", [5, 5, 5, 5]),  # promtool: axN is N+1 values
        ("1+2x3", [1, 3, 5, 7]),
        ("10-2.5x2", [10, 7.5, 5]),
        ("0 _ 1 _x1 2", [0, None, 1, None, None, 2]),
        ("-1.5e1 .5", [-15, 0.5]),
        ("", []),
    ],
)
def test_series_notation(series, values):
    assert expand_series(series) == values


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("10s", 10_000),
        ("1m30s", 90_000),
        ("1h5m", 3_900_000),
        ("250ms", 250),
        (1.5, 1500),
        ("2m0.5s", 120_500),
    ],
)
def test_durations_including_promtool_compound_ones(text, ms):
    from rules.ruletest import _dur

    assert _dur(text) == ms


def test_bad_duration_names_what_came():
    from rules.ruletest import _dur

    with pytest.raises(
        ValueError,
        match=r"expected a duration like 10s, 5m, 1m30s or 250ms, "
        r"got '1x'",
    ):
        _dur("1x")


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ("1 two", "series term 'two': expected a number"),
        ("1+2", "a step needs a count, like 1+2x3"),
        ("_+1x2", "a gap '_' cannot have a step"),
        ("5x", "series term '5x'"),
    ],
)
def test_bad_series(series, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        expand_series(series)


def _sidecar(tmp_path, body: str):
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    f = d / "t.rules_test.yaml"
    f.write_text(f"registry: {DATA / 'registry.csv'}\n" + body)
    return f


@pytest.mark.parametrize(
    ("body", "messages"),
    [
        ("tests: []\n", ["tests: List should have at least 1 item"]),
        ("tests:\n  - name: x\n    inptu: []\n", ["tests.0.inptu: Extra inputs are not permitted"]),
        (
            "tests:\n  - name: x\n    interval: soon\n",
            ["tests.0.interval: expected a duration like 10s"],
        ),
        (
            "tests:\n  - name: x\n    start: '2026-01-01T00:00:00'\n",
            ["tests.0.start: ISO time '2026-01-01T00:00:00' has no UTC offset"],
        ),
        (
            "tests:\n  - name: x\n    expect: [{at: 1s, tag: A, kind: limt}]\n",
            ["tests.0.expect.0.kind: Input should be 'limit'"],
        ),
        (
            "tests:\n  - name: x\n    expect: [{at: 1s, tag: A, kind: limit, level: L3}]\n",
            ["tests.0.expect.0.level:"],
        ),
        (
            "colour: red\ntests:\n  - {name: x, input: [{tag: A, quality: 9, values: '1'}]}\n",
            [
                "colour: Extra inputs are not permitted",
                "tests.0.input.0.quality: Input should be less than or equal to 3",
            ],
        ),
    ],
)
def test_bad_sidecar_files_name_the_key_path(tmp_path, body, messages):
    f = _sidecar(tmp_path, body)
    with pytest.raises(SidecarError) as ei:
        load_sidecar(f)
    assert len(ei.value.problems) == len(messages)
    assert all(p.startswith(f"{f}: ") for p in ei.value.problems)
    for m in messages:
        assert any(m in p for p in ei.value.problems), m


def test_not_yaml_and_not_a_mapping(tmp_path):
    f = tmp_path / "x.rules_test.yaml"
    f.write_text("tests: [\n")
    with pytest.raises(SidecarError, match=r"x.rules_test.yaml:2: not valid YAML"):
        load_sidecar(f)
    f.write_text("- 1\n")
    with pytest.raises(SidecarError, match="expected a mapping with `tests:`, got list"):
        load_sidecar(f)


@pytest.mark.parametrize(
    ("inp", "message"),
    [
        ("{tag: NOPE, values: '1'}", "point RPL01/NOPE is not in the registry"),
        ("{point: RPL01, values: '1'}", "point: expected <enterprise>/<tag>, got 'RPL01'"),
        ("{tag: AT-CH4-1}", "expected exactly one of `values` or `events`"),
        ("{values: '1'}", "expected `tag` or `point`"),
        ("{tag: AT-CH4-1, values: '1 x'}", "values: series term 'x'"),
        ("{tag: AT-CH4-1, unit: kPa, values: '1'}", "unit: unit 'kPa' does not fit"),
    ],
)
def test_bad_inputs_fail_the_case_with_where_and_what(tmp_path, inp, message):
    f = _sidecar(tmp_path, f"tests:\n  - name: case one\n    input: [{inp}]\n    expect: []\n")
    res = run_sidecar(f)
    (case,) = res.cases
    assert not case.passed
    assert case.failures[0].startswith("t.rules_test.yaml: tests[0] (case one).input[0]")
    assert message in case.failures[0]


def test_rules_that_do_not_load_make_the_file_fail(tmp_path):
    f = _sidecar(tmp_path, "tests:\n  - {name: x, expect: []}\n")
    (f.parent / "bad.rules.yaml").write_text("rules: [{name: a, kind: nope}]\n")
    res = run_sidecar(f)
    assert not res.passed and res.errors[0].endswith("the rules under test do not load:")
    assert "bad.rules.yaml" in res.errors[1]


def test_expect_empty_means_no_alarm_of_any_kind(tmp_path):
    # a point that never reports goes offline: `expect: []` catches that
    f = _sidecar(
        tmp_path,
        "tests:\n  - name: quiet\n    input: [{tag: AT-CH4-1, "
        "values: '1 1 1 1 1 1'}]\n    expect: []\n",
    )
    (case,) = run_sidecar(f).cases
    assert not case.passed
    assert any("unexpected:" in x and "AT-NH3-1 offline firing" in x for x in case.failures)


def test_discover_finds_sidecars_recursively_and_rejects_missing_paths(tmp_path):
    found = discover([DATA])
    assert [str(p.relative_to(DATA)) for p in found] == [
        "failing/wrong.rules_test.yaml",
        "rules/site.rules_test.yaml",
        "scenarios/defaults.rules_test.yaml",
        "scenarios/gbt50493-2019.rules_test.yaml",
    ]
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        discover([tmp_path / "missing"])


def test_the_sidecar_example_under_help_passes(tmp_path):
    import hazardwatch.cli  # noqa: F401 - command modules load through the CLI
    from hazardwatch.commands.replay import SIDECAR_EXAMPLE as example

    (tmp_path / "registry.csv").write_text(
        "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
        "gateway_code,tag,parameter,unit,range_low,range_high,expected_interval_s\n"
        "E1,E,hazchem,D,HZ1,2,Z,GW,AT-1101,gas.NH3,mg/m3,0,200,10\n"
    )
    d = tmp_path / "rules"
    d.mkdir()
    (d / "nh3.rules_test.yaml").write_text(example)
    res = run_sidecar(d / "nh3.rules_test.yaml")
    assert res.passed, res.errors + [f for c in res.cases for f in c.failures]


def test_unquoted_yaml_start_time_and_strict_types(tmp_path):
    # YAML reads an unquoted timestamp as a datetime; it must still work as `start`
    f = _sidecar(
        tmp_path,
        "tests:\n  - name: t\n    start: 2026-11-29T08:00:00+08:00\n"
        "    input: [{tag: AT-CH4-1, values: '5 30 5'}]\n"
        "    expect_kinds: [limit]\n    expect:\n"
        "      - {at: 10s, tag: AT-CH4-1, kind: limit, level: L1}\n"
        "      - {at: 20s, tag: AT-CH4-1, kind: limit, state: cleared}\n",
    )
    res = run_sidecar(f)
    assert res.passed, res.errors + [x for c in res.cases for x in c.failures]
    assert res.cases[0].alarms[0].ts_ms == 1_795_910_410_000  # 2026-11-29T00:00:10Z
    f = _sidecar(tmp_path, "tests:\n  - {name: t, input: [{tag: A, quality: '2', values: '1'}]}\n")
    with pytest.raises(SidecarError, match="quality: Input should be a valid integer, got '2'"):
        load_sidecar(f)
