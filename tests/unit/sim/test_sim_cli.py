"""`hazardwatch simulate` and `hazardwatch sim score` as a user runs them: files a replay can
read, clear errors for bad options, and exit codes that say whether everything was found."""

from __future__ import annotations

import json

import pytest

from hazardwatch.cli import main
from hazardwatch.sim.truth import read_truth
from ingest.registry import load_registry
from rules.model import AlarmEvent, AlarmState, Kind

START = "2026-11-29T00:00:00Z"


def test_simulate_writes_registry_readings_and_truth(tmp_path, capsys) -> None:
    reg, rd, tr = tmp_path / "R.csv", tmp_path / "X.csv", tmp_path / "T.jsonl"
    rc = main(
        [
            "simulate",
            "--points",
            "150",
            "--duration",
            "1h",
            "--seed",
            "3",
            "--start",
            START,
            "--incidents",
            "leak,gateway_outage",
            "--registry-out",
            str(reg),
            "--readings-out",
            str(rd),
            "--truth-out",
            str(tr),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "points: 150" in out and "hazardwatch sim score" in out
    registry = load_registry(reg)
    assert len(registry) == 150
    truth = read_truth(tr)
    assert sorted(i.kind for i in truth) == ["gateway_outage", "leak"]
    from rules.replay import parse_csv

    parsed = parse_csv(rd.read_text(encoding="utf-8"), registry, str(rd))
    assert parsed.bad_row_count == 0
    rows = rd.read_text(encoding="utf-8").splitlines()
    assert rows[0] == "ts,enterprise_code,tag,value,unit,quality"
    assert len(parsed.readings) == len(rows) - 1 > 10_000
    assert {r.ts_ms for r in parsed.readings} and min(r.ts_ms for r in parsed.readings) >= (
        1_795_910_400_000
    )


def test_simulate_iso_times_and_json_summary(tmp_path, capsys) -> None:
    rd = tmp_path / "X.csv"
    rc = main(
        [
            "simulate",
            "--points",
            "20",
            "--duration",
            "10m",
            "--start",
            START,
            "--incidents",
            "none",
            "--readings-out",
            str(rd),
            "--iso",
            "--json",
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["points"] == 20 and summary["incidents"] == 0
    assert summary["readings"] == len(rd.read_text(encoding="utf-8").splitlines()) - 1
    first = rd.read_text(encoding="utf-8").splitlines()[1]
    assert first.startswith("2026-11-29T00:00:") and first.split(",")[0].endswith("Z")


def test_simulate_on_demand_injection(tmp_path) -> None:
    tr = tmp_path / "T.jsonl"
    rc = main(
        [
            "simulate",
            "--points",
            "150",
            "--duration",
            "1h",
            "--start",
            START,
            "--incidents",
            "none",
            "--inject",
            "over_quota@20m",
            "--truth-out",
            str(tr),
        ]
    )
    assert rc == 0
    (inc,) = read_truth(tr)
    assert inc.kind == "over_quota" and inc.start_ms == 1_795_910_400_000 + 20 * 60_000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "1h"], "nothing to do"),
        (["--duration", "soon", "--score"], "--duration 'soon' is not a duration"),
        (["--incidents", "flood", "--score"], "unknown kind 'flood'"),
        (["--rate", "100", "--score"], "apply to --mqtt only"),
        (["--speed", "60", "--score"], "--speed paces --mqtt or --readings-out"),
        (["--duration", "10m", "--incidents", "frozen", "--score"], "too short"),
        (["--start", "yesterday", "--score"], "not an ISO 8601 time"),
        (["--start", "2026-11-29T00:00:00", "--score"], "has no UTC offset"),
        (["--inject", "quake@5m", "--score"], "unknown kind 'quake'"),
        (["--incidents", "none", "--inject", "frozen@30m", "--score"], "after the run ends"),
    ],
)
def test_simulate_bad_options_say_what_is_wrong(args, message, capsys) -> None:
    rc = main(["simulate", "--points", "50", *args])
    assert rc == 2
    assert message in capsys.readouterr().err


def _alarm(ts_ms: int, tag: str, kind: Kind, state: str = "firing") -> dict:
    return AlarmEvent(
        ts_ms=ts_ms,
        enterprise_code="",
        hazard_code="",
        zone="",
        tag=tag,
        parameter="",
        kind=kind,
        level=None,
        state=AlarmState(state),
        value=None,
        threshold=None,
        unit="",
        rule="r",
        alarm_id=f"{tag}-{ts_ms}",
    ).to_record()


def test_sim_score_table_exit_codes_and_json(tmp_path, capsys) -> None:
    tr = tmp_path / "T.jsonl"
    assert (
        main(
            [
                "simulate",
                "--points",
                "150",
                "--duration",
                "1h",
                "--start",
                START,
                "--incidents",
                "gateway_outage",
                "--truth-out",
                str(tr),
            ]
        )
        == 0
    )
    (inc,) = read_truth(tr)
    hit = _alarm(inc.start_ms + 30_000, inc.gateway, Kind.GATEWAY)
    hit["enterprise_code"] = inc.enterprise_code
    false = _alarm(inc.start_ms, "AT-1011", Kind.STUCK)
    false["enterprise_code"] = "JHCA01"
    alarms = tmp_path / "alarms.jsonl"
    alarms.write_text(json.dumps(hit) + "\n" + json.dumps(false) + "\n", encoding="utf-8")
    capsys.readouterr()
    rc = main(
        [
            "sim",
            "score",
            "--truth",
            str(tr),
            "--alarms",
            str(alarms),
            "--points",
            "150",
            "--duration",
            "1h",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    assert "1/1 incidents detected" in out and "30 s" in out
    assert "1 false alarm(s) = 160 per 1,000 point-days" in out
    rc = main(["sim", "score", "--truth", str(tr), "--alarms", str(alarms), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["false_alarms"] == 1 and data["false_per_1000_point_days"] is None
    alarms.write_text(json.dumps(false) + "\n", encoding="utf-8")
    assert main(["sim", "score", "--truth", str(tr), "--alarms", str(alarms)]) == 1
    assert "MISSED" in capsys.readouterr().out


def test_sim_score_bad_file_is_one_line(tmp_path, capsys) -> None:
    bad = tmp_path / "a.jsonl"
    bad.write_text("{oops\n", encoding="utf-8")
    tr = tmp_path / "T.jsonl"
    tr.write_text("", encoding="utf-8")
    assert main(["sim", "score", "--truth", str(tr), "--alarms", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: not an alarm event" in err and "Traceback" not in err


def test_simulate_speed_writes_the_file_live_and_same_rows(tmp_path) -> None:
    import time

    fast, live = tmp_path / "fast.csv", tmp_path / "live.csv"
    common = [
        "simulate",
        "--points",
        "50",
        "--duration",
        "20s",
        "--start",
        START,
        "--incidents",
        "none",
    ]
    assert main([*common, "--readings-out", str(fast)]) == 0
    t = time.monotonic()
    assert main([*common, "--readings-out", str(live), "--speed", "40"]) == 0
    assert time.monotonic() - t >= 0.45  # 20 simulated seconds at 40x
    assert live.read_text(encoding="utf-8") == fast.read_text(encoding="utf-8")


def test_simulate_a_users_registry_and_say_which_kind_it_cannot_host(tmp_path, capsys) -> None:
    from hazardwatch.sim import generate_registry, write_registry_csv

    reg = write_registry_csv(generate_registry(12, 1), tmp_path / "cl2.csv")  # Cl2 zones only
    tr = tmp_path / "T.jsonl"
    rc = main(
        [
            "simulate",
            "--registry",
            str(reg),
            "--duration",
            "1h",
            "--start",
            START,
            "--incidents",
            "leak,detector_fault",
            "--truth-out",
            str(tr),
        ]
    )
    assert rc == 0 and {i.kind for i in read_truth(tr)} == {"leak", "detector_fault"}
    rc = main(
        [
            "simulate",
            "--registry",
            str(reg),
            "--duration",
            "1h",
            "--start",
            START,
            "--incidents",
            "over_quota",
            "--truth-out",
            str(tr),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "no subject for an incident of kind over_quota: it needs an occupancy point" in err
    missing = tmp_path / "nope.csv"
    assert main(["simulate", "--registry", str(missing), "--score"]) == 2


def test_live_mqtt_refuses_timestamps_from_the_future(capsys) -> None:
    rc = main(["simulate", "--points", "1000", "--incidents", "none", "--mqtt", "--rate", "93000"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "63.5 readings/s in real time" in err and "in the future" in err
    assert "more --points (reporting intervals stay >= 0.1 s)" in err
    rc = main(["simulate", "--points", "1000", "--incidents", "none", "--mqtt", "--rate", "5000"])
    assert rc == 2 and "add --interval-scale 0.0127" in capsys.readouterr().err


def test_interval_scale_makes_gateways_poll_faster(tmp_path) -> None:
    from hazardwatch.sim.city import generate_registry, scale_intervals

    reg = generate_registry(100, 1)
    fast = scale_intervals(reg, 0.1)
    assert [p.expected_interval_s for p in fast] == [
        max(0.1, round(p.expected_interval_s * 0.1, 3)) for p in reg
    ]
    out = tmp_path / "R.csv"
    assert (
        main(
            [
                "simulate",
                "--points",
                "100",
                "--interval-scale",
                "0.1",
                "--incidents",
                "none",
                "--registry-out",
                str(out),
            ]
        )
        == 0
    )
    assert {p.expected_interval_s for p in load_registry(out)} <= {1.0, 1.5, 3.0, 6.0}
    with pytest.raises(ValueError, match="must be > 0"):
        scale_intervals(reg, 0)


def test_simulate_score_in_process_finds_every_incident(capsys) -> None:
    rc = main(
        [
            "simulate",
            "--points",
            "150",
            "--duration",
            "4h",
            "--seed",
            "5",
            "--start",
            START,
            "--score",
            "--json",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert rc == 0
    sc = summary["score"]
    assert (sc["incidents"], sc["detected"], sc["missed"], sc["false_alarms"]) == (9, 9, 0, 0)
    assert sc["rejects"] == 0 and sc["false_per_1000_point_days"] == 0.0
    assert all(r["time_to_detect_s"] is not None for r in sc["results"])
