"""`hazardwatch replay`, `hazardwatch rules diff` and `hazardwatch rules test` end to end on a
small registry (tests/data/replay): exit codes, files written, and what the user reads."""

from __future__ import annotations

import json
import shutil

import pytest

from hazardwatch.cli import main

from .rt_factory import REPO

DATA = REPO / "tests/data/replay"
REG = str(DATA / "registry.csv")
HIST = str(DATA / "history.csv")


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# --------------------------------------------------------------------------- replay


def test_replay_writes_alarm_events_and_prints_the_summary(tmp_path, capsys):
    out = tmp_path / "alarms.jsonl"
    warn = tmp_path / "warnings.jsonl"
    rc, text, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(out),
        "--warnings-out",
        str(warn),
    )
    assert rc == 0, err
    recs = records(out)
    firing = [(r["ts"], r["tag"], r["kind"], r["level"]) for r in recs if r["state"] == "firing"]
    assert firing[:3] == [
        ("2026-11-29T00:00:10.000Z", "AT-BZ-1", "limit", "L1"),  # benzene AL 3 mg/m3 (amended)
        ("2026-11-29T00:00:10.000Z", "AT-CH4-1", "limit", "L1"),  # 30 %LEL > 25
        ("2026-11-29T00:00:10.000Z", "AT-NH3-1", "limit", "L1"),  # 30 ppm = 21.3 mg/m3 > 20
    ]
    assert ("2026-11-29T00:00:20.000Z", "AT-NH3-1", "limit", "L2") in firing
    assert ("2026-11-29T00:00:30.000Z", "AT-CH4-1", "limit", "L2") in firing
    # the contract's fields, with the pack and threshold that produced each alarm
    assert set(recs[0]) >= {
        "ts",
        "enterprise_code",
        "hazard_code",
        "zone",
        "tag",
        "parameter",
        "kind",
        "level",
        "state",
        "value",
        "threshold",
        "unit",
        "rule",
        "alarm_id",
        "pack",
        "pack_version",
    }
    assert recs[0]["pack"] == "gbt50493" and recs[0]["threshold"] == 3.0
    assert "Alarms per rule" in text and "gbt50493.gas" in text
    assert "ISA-18.2 per operator area" in text and "Top bad actors" in text
    assert "wrote 14 alarm events" in text
    assert "warnings: 1 raised, highest colour reached: 红/red 1" in text
    assert "Enterprise dynamic risk at the end" in text
    # bad rows are reported with their line, and skipped
    assert "2 bad row(s)" in err and "line 28: point RPL01/XX-999 is not in the registry" in err
    assert "line 29: value: expected a number, got 'lots'" in err
    colours = [w["colour"] for w in records(warn)]
    assert colours[0] == "blue" and "red" in colours


def test_replay_json_summary(tmp_path, capsys):
    rc, text, _ = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "a.jsonl"),
        "--json-summary",
    )
    assert rc == 0
    s = json.loads(text)
    assert s["input"]["readings"] == 27 and s["input"]["bad_rows"] == 2
    assert s["alarms"]["by_level"]["L2"] == 2
    assert s["alarms"]["by_point"]["RPL01/AT-CH4-1"] == 2
    assert s["isa18"]["rates"][0]["enterprise"] == "RPL01"
    assert s["isa18"]["bad_actors"][0]["annunciations"] == 2
    assert s["time_in_alarm_s"]["RPL01/AT-CH4-1"] == 30.0
    # a red warning is open at the end, and only 1 of 4 points still reports
    assert s["warnings"]["raised"] == 1 and s["warnings"]["by_colour"] == {"red": 1}
    (risk,) = s["risk"]
    assert risk["enterprise"] == "RPL01" and risk["colour"] == "red"
    assert any("online rate 25.0%" in x for x in risk["reasons"])


def test_replay_with_rules_dir_and_pack_version(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(out),
        "--rules",
        str(DATA / "rules"),
        "--pack",
        "gbt50493=2019",
    )
    assert rc == 0, err
    recs = records(out)
    # the original 2019 set points: benzene AL 6 mg/m3, so 4.5 does not alarm
    assert not any(r["tag"] == "AT-BZ-1" and r["kind"] == "limit" for r in recs)
    # the site's own rule for the tank level (H 8.5 after 20 s)
    lt = [r for r in recs if r["tag"] == "LT-101" and r["kind"] == "limit"]
    assert lt[0]["rule"] == "site.tank-level" and lt[0]["ts"] == "2026-11-29T00:00:30.000Z"


def test_replay_strict_exits_1_on_bad_rows(tmp_path, capsys):
    rc, _, _ = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "a.jsonl"),
        "--strict",
        "--json-summary",
    )
    assert rc == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--readings", "nope.csv"], "nope.csv: no such file"),
        (["--readings", HIST, "--rules", "no/such/dir"], "is neither a rules directory"),
        (["--readings", HIST, "--pack", "gbt50493"], "expected NAME=VERSION"),
        ([], "give exactly one input"),
        (["--from-influx"], "--from-influx needs --start and --stop"),
        (["--from-influx", "--start", "yesterday", "--stop", "1"], "--start: expected epoch"),
    ],
)
def test_replay_errors_are_one_clear_line(tmp_path, capsys, args, message):
    rc, _, err = run(capsys, "replay", "--registry", REG, "--out", str(tmp_path / "a.jsonl"), *args)
    assert rc == 2
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_replay_bad_registry_lists_its_problems(tmp_path, capsys):
    bad = tmp_path / "reg.csv"
    bad.write_text("enterprise_code,tag\nE1,\n")
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        str(bad),
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "a.jsonl"),
    )
    assert rc == 2 and "problem(s)" in err and str(bad) in err


def test_replay_bad_rule_file_names_file_and_key(tmp_path, capsys):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "bad.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: x\n    kind: limit\n    levels: {H: high}\n"
    )
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "a.jsonl"),
        "--rules",
        str(d),
    )
    assert rc == 2
    assert "bad.rules.yaml" in err and "levels" in err
    # a single rule file is loaded alone; its problems name the user's file
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "a.jsonl"),
        "--rules",
        str(d / "bad.rules.yaml"),
    )
    assert rc == 2
    assert f"{d / 'bad.rules.yaml'}:5: rules[0].levels.H: expected a number, got 'high'" in err


# --------------------------------------------------------------------------- rules diff


def test_diff_benzene_amendment_removes_nothing_but_adds_alarms(capsys):
    # OLD: the 2019 set points; NEW: the amendment (benzene AL 3 instead of 6 mg/m3).
    rc, text, err = run(
        capsys,
        "rules",
        "diff",
        "@defaults",
        "@defaults",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--old-pack",
        "gbt50493=2019",
        "--new-pack",
        "gbt50493=2019-amend1",
    )
    assert rc == 0, err + text  # default fail-on: removed, later:60 -- none of those
    assert "1 added, 0 removed" in text
    assert "RPL01/AT-BZ-1 limit L1" in text
    assert "no regressions" in text


def test_diff_fails_on_added_when_asked_and_prints_json(capsys):
    rc, text, _ = run(
        capsys,
        "rules",
        "diff",
        "@defaults",
        "@defaults",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--old-pack",
        "gbt50493=2019",
        "--fail-on",
        "added",
        "--json",
    )
    assert rc == 1
    d = json.loads(text)
    assert [a["alarm"] for a in d["added"]] == ["RPL01/AT-BZ-1 limit L1"]
    assert d["regressions"][0].startswith("alarm added: RPL01/AT-BZ-1 limit L1")
    assert d["kpi"]["new"]["annunciations"] == d["kpi"]["old"]["annunciations"] + 1


def _rules_dir(tmp_path, name, for_s):
    d = tmp_path / name
    d.mkdir()
    (d / "tank.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: site.tank\n    kind: limit\n    match: {tag: LT-101}\n"
        f"    levels: {{H: 8.5}}\n    for: {for_s}s\n"
    )
    return str(d)


def test_diff_removed_and_later_alarms_are_regressions(tmp_path, capsys):
    # NEW waits 20 s before the tank level H (OLD fires at once), and with the 2019 pack the
    # amendment's benzene alarm disappears.
    old = _rules_dir(tmp_path, "old", 0)
    new = _rules_dir(tmp_path, "new", 20)
    rc, text, _ = run(
        capsys,
        "rules",
        "diff",
        old,
        new,
        "--registry",
        REG,
        "--readings",
        HIST,
        "--new-pack",
        "gbt50493=2019",
        "--fail-on",
        "removed,later:10",
    )
    assert rc == 1
    assert "1 removed, 1 shifted" in text
    assert "Removed (only OLD fires them)" in text and "RPL01/AT-BZ-1 limit L1" in text
    assert "Shifted firings" in text and "+20 s" in text
    assert "2 regression(s):" in text
    assert "alarm removed: RPL01/AT-BZ-1 limit L1 at 2026-11-29T00:00:10.000Z" in text
    assert (
        "alarm later by 20 s (> 10 s): RPL01/LT-101 limit H at 2026-11-29T00:00:30.000Z "
        "instead of 2026-11-29T00:00:10.000Z"
    ) in text
    # within the allowed shift, and removals not counted: passes
    rc, text, _ = run(
        capsys,
        "rules",
        "diff",
        old,
        new,
        "--registry",
        REG,
        "--readings",
        HIST,
        "--fail-on",
        "later:30",
    )
    assert rc == 0 and "no regressions" in text


def test_diff_bad_fail_on_spec(capsys):
    rc, _, err = run(
        capsys,
        "rules",
        "diff",
        "@defaults",
        "@defaults",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--fail-on",
        "sooner",
    )
    assert rc == 2 and "--fail-on 'sooner'" in err


# --------------------------------------------------------------------------- rules test


def test_rules_test_passes_on_the_sidecar_beside_the_rules(capsys):
    rc, text, _ = run(capsys, "rules", "test", str(DATA / "rules"))
    assert rc == 0, text
    assert "SUCCESS" in text and "4/4 tests passed in 1 file(s)" in text
    assert "ok     NH3 published in ppm against mg/m3 set points" in text


def test_rules_test_failure_is_readable(capsys):
    rc, text, _ = run(capsys, "rules", "test", str(DATA / "failing"))
    assert rc == 1
    assert "FAILED expects L2 where the standard gives L1" in text
    assert "missing:    +10s  AT-CH4-1 limit L2 firing" in text
    assert "unexpected: +10s  AT-CH4-1 limit L1 firing  (value 30, threshold 25 %LEL" in text
    assert "ok     this one passes" in text
    assert "FAILED: 1/2 tests passed" in text


def test_rules_test_with_no_sidecars(tmp_path, capsys):
    rc, _, err = run(capsys, "rules", "test", str(tmp_path))
    assert rc == 2 and "no *.rules_test.yaml files under" in err


def test_rules_test_with_registry_option(tmp_path, capsys):
    d = tmp_path / "r"
    shutil.copytree(DATA / "rules", d)
    text = (d / "site.rules_test.yaml").read_text().replace("registry: ../registry.csv\n", "")
    (d / "site.rules_test.yaml").write_text(text)
    rc, out, _ = run(capsys, "rules", "test", str(d))
    assert rc == 1 and "no `registry:` in the file and no --registry given" in out
    rc, out, _ = run(capsys, "rules", "test", str(d), "--registry", REG)
    assert rc == 0, out


def test_replay_uses_the_rules_dirs_warning_override_and_jsonl_input(tmp_path, capsys):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "warnings.yaml").write_text(
        "orange:\n  second_level: false\n  zone_points: 0\n"
        "red:\n  second_level_points: 0\n"
        "  toxic_with_excursion: false\n"
    )
    hist = tmp_path / "h.jsonl"
    hist.write_text(
        '{"ts": "2026-11-29T08:00:00Z", "enterprise_code": "RPL01", "tag": "AT-CH4-1", "v": 60}\n'
    )
    warn = tmp_path / "w.jsonl"
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        str(hist),
        "--rules",
        str(d),
        "--out",
        str(tmp_path / "a.jsonl"),
        "--warnings-out",
        str(warn),
    )
    assert rc == 0, err
    # second level alone no longer makes it orange under this site's warning model
    assert [w["colour"] for w in records(warn)] == ["blue"]


def test_replay_bad_warning_override_and_unwritable_out(tmp_path, capsys):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "warnings.yaml").write_text("yellow:\n  repeat_count: one\n")
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--rules",
        str(d),
        "--out",
        str(tmp_path / "a.jsonl"),
    )
    assert rc == 2 and "yellow.repeat_count" in err and "warnings.yaml" in err
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(tmp_path / "no" / "dir" / "a.jsonl"),
        "--json-summary",
    )
    assert rc == 2 and "cannot write" in err


def test_default_pack_scenarios_in_the_rule_authors_terms(capsys):
    # 2oo3 with a faulted head, interlock failure and success, head-count over quota, an
    # event in a 1.1 zone, the benzene amendment both ways, one alarm for a silent gateway
    rc, text, _ = run(capsys, "rules", "test", str(DATA / "scenarios"))
    assert rc == 0, text
    assert "SUCCESS: 9/9 tests passed in 2 file(s)" in text


def test_replay_summary_shows_floods_and_chattering(tmp_path, capsys):
    # AT-CH4-1 toggles across 25 %LEL every 10 s for 10 minutes: 30 annunciations, a flood
    # for the operator area and a chattering alarm.
    hist = tmp_path / "chatter.csv"
    lines = ["ts,enterprise_code,tag,value"]
    for i in range(60):
        t = 1_795_939_200_000 + i * 10_000
        lines.append(f"{t},RPL01,AT-CH4-1,{30 if i % 2 else 5}")
        for tag, v in (("AT-NH3-1", 1), ("AT-BZ-1", 0.5), ("LT-101", 5)):
            lines.append(f"{t},RPL01,{tag},{v}")
    hist.write_text("\n".join(lines) + "\n")
    rc, text, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        str(hist),
        "--out",
        str(tmp_path / "a.jsonl"),
    )
    assert rc == 0, err
    assert "Flood episodes" in text and "Chattering (>= 3 in 60 s)" in text
    assert "RPL01/AT-CH4-1 limit (gbt50493.gas)" in text
    rc, text, _ = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        str(hist),
        "--out",
        str(tmp_path / "a.jsonl"),
        "--json-summary",
    )
    s = json.loads(text)
    assert s["alarms"]["firing"] == 30
    assert len(s["isa18"]["flood_episodes"]) == 1
    assert s["isa18"]["flood_episodes"][0]["start"] == "2026-11-29T08:03:30.000Z"  # 11th alarm
    assert s["isa18"]["chattering"][0]["max_in_60s"] == 3


def test_replay_window_clips_the_start_and_runs_timers_to_the_stop(tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    rc, text, _ = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(out),
        "--json-summary",
        "--start",
        "2026-11-29T08:00:20+08:00",
        "--stop",
        "2026-11-29T08:10:00+08:00",
    )
    assert rc == 0
    s = json.loads(text)
    assert (s["input"]["start"], s["input"]["end"]) == (
        "2026-11-29T00:00:20.000Z",
        "2026-11-29T00:10:00.000Z",
    )
    assert s["input"]["readings"] == 19  # the 8 readings before the start are left out
    recs = records(out)
    # the gateway goes silent again after the last reading (00:03:00) and the timers run on
    assert recs[-1]["tag"] == "GW1" and recs[-1]["state"] == "firing"
    assert recs[-1]["ts"] == "2026-11-29T00:03:30.000Z"
    rc, _, err = run(
        capsys,
        "replay",
        "--registry",
        REG,
        "--readings",
        HIST,
        "--out",
        str(out),
        "--start",
        "2026-11-29T09:00:00+08:00",
        "--stop",
        "2026-11-29T08:00:00+08:00",
    )
    assert rc == 2 and "must be after --start" in err
