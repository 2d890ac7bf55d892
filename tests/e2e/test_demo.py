"""`hazardwatch demo` end to end, as a newcomer runs it: no service, one command, a report
that shows every injected incident detected and the notifications the receivers accepted."""

from __future__ import annotations

import json

import pytest

from hazardwatch.cli import main

pytestmark = pytest.mark.e2e


def test_demo_detects_every_incident_and_delivers_notifications(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--no-live", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "every injected incident detected" in printed
    report = json.loads((out / "report.json").read_text())
    score = report["score"]
    # every incident kind the simulator knows was injected, and each was detected
    kinds = {r["kind"] for r in score["results"]}
    assert kinds >= {
        "leak",
        "overfill",
        "overfill_no_interlock",
        "detector_fault",
        "frozen",
        "gateway_outage",
        "chatter",
        "over_quota",
        "backfill",
    }
    assert score["missed"] == 0 and score["detected"] == len(score["results"])
    assert all(r["time_to_detect_s"] is not None for r in score["results"])
    # notifications really went over HTTP to the verifying receivers, each key once
    assert report["delivered"]["platform"] > 0
    assert report["delivered"]["wecom"] > 0 and report["delivered"]["aliyun_sms"] > 0
    assert sum(report["duplicates"].values()) == 0
    assert report["outbox_left"] == 0
    # the alarm file is the replay contract and names the ruleset that produced each alarm
    alarms = [json.loads(x) for x in (out / "alarms.jsonl").read_text().splitlines()]
    assert alarms and all(a["ruleset"] and a["alarm_id"] for a in alarms)
    assert list((out / "var" / "lineprotocol").glob("*.lp"))


def test_demo_too_short_is_one_clear_error(tmp_path, capsys):
    rc = main(["demo", "--no-live", "--minutes", "20", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error:" in err and "too short" in err and "hint:" in err
