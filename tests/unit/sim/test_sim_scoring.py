"""Scoring alarms against the ground truth, with hand-made alarm events: what is detected,
by which alarm and when; what is missed; what counts as a false alarm and its rate."""

from __future__ import annotations

import json

import pytest

from hazardwatch.sim.incidents import Expect, Incident, IncidentKind
from hazardwatch.sim.scoring import AlarmFileError, read_alarms, score
from hazardwatch.sim.truth import TruthFileError, read_truth, write_truth
from rules.model import AlarmEvent, AlarmState, Kind, Level

T0 = 1_795_910_400_000
S = 1000
MIN = 60 * S
H = 60 * MIN

LEAK = Incident(
    id="inc-1",
    kind=IncidentKind.LEAK,
    enterprise_code="E1",
    start_ms=T0,
    end_ms=T0 + 10 * MIN,
    tags=("AT-1", "AT-2", "AT-3"),
    zone="Z1",
    gateway="GW1",
    expect=(Expect("limit", "L1"), Expect("limit", "L2"), Expect("vote")),
)
OUTAGE = Incident(
    id="inc-2",
    kind=IncidentKind.GATEWAY_OUTAGE,
    enterprise_code="E1",
    start_ms=T0 + H,
    end_ms=T0 + H + 15 * MIN,
    tags=("AT-7", "AT-8"),
    gateway="GW2",
    expect=(Expect("gateway"),),
    params={"zones": ["Z2"]},
)


def alarm(
    ts,
    tag,
    kind=Kind.LIMIT,
    level=None,
    *,
    ent="E1",
    zone="Z1",
    state="firing",
    aid=None,
    value=None,
):
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code=ent,
        hazard_code="",
        zone=zone,
        tag=tag,
        parameter="gas.Cl2",
        kind=kind,
        level=level,
        state=AlarmState(state),
        value=value,
        threshold=None,
        unit="mg/m3",
        rule="r",
        alarm_id=aid or f"{ent}-{tag}-{kind}-{ts}",
    )


def test_detected_by_the_first_expected_alarm_with_its_time_to_detect() -> None:
    alarms = [
        alarm(T0 + 20 * S, "AT-1", level=Level.L1, aid="a1"),
        alarm(T0 + 35 * S, "AT-1", level=Level.L2, aid="a1"),  # level change: same episode
        alarm(T0 + 40 * S, "Z1", Kind.VOTE, aid="v1"),
        alarm(T0 + 9 * MIN, "AT-1", state="cleared", aid="a1"),
    ]
    s = score([LEAK], alarms, point_days=1000.0)
    (r,) = s.results
    assert r.detected and r.time_to_detect_s == 20.0
    assert (r.detected_by.tag, r.detected_by.level) == ("AT-1", Level.L1)
    assert r.missing == () and r.episodes == 2
    assert s.false_alarms == () and s.false_per_1000_point_days == 0.0
    assert s.all_detected and s.all_expectations_met and s.episodes == 2


def test_missing_expectations_are_named_even_when_detected() -> None:
    s = score([LEAK], [alarm(T0 + 20 * S, "AT-2", level=Level.L1)])
    (r,) = s.results
    assert r.detected
    assert r.missing == (Expect("limit", "L2"), Expect("vote"))
    assert s.all_detected and not s.all_expectations_met


def test_wrong_kind_place_or_time_is_not_a_detection_and_counts_as_false() -> None:
    alarms = [
        alarm(T0 + 20 * S, "AT-1", Kind.STUCK, aid="k"),  # explained, but not expected: no hit
        alarm(T0 + 20 * S, "AT-9", level=Level.L1, aid="p"),  # another point
        alarm(T0 + 20 * S, "AT-1", level=Level.L1, ent="E2", aid="e"),  # another enterprise
        alarm(T0 - 5 * S, "AT-1", level=Level.L1, aid="b"),  # before the incident
        alarm(T0 + 10 * MIN + 16 * MIN, "AT-1", level=Level.L1, aid="g"),  # after the grace
    ]
    s = score([LEAK], alarms, point_days=500.0)
    assert not s.results[0].detected and s.missed == 1 and not s.all_detected
    assert {a.alarm_id for a in s.false_alarms} == {"p", "e", "b", "g"}
    assert s.false_per_1000_point_days == pytest.approx(8.0)
    assert s.results[0].episodes == 1  # the stuck alarm belongs to the incident


def test_zone_and_gateway_alarms_belong_to_their_incident() -> None:
    alarms = [
        alarm(T0 + H + 40 * S, "GW2", Kind.GATEWAY, zone="", aid="gw"),
        alarm(T0 + H + 45 * S, "Z2", Kind.VOTE_DEGRADED, zone="Z2", aid="vd"),
        alarm(T0 + H + 50 * S, "Z9", Kind.VOTE_DEGRADED, zone="Z9", aid="other-zone"),
    ]
    s = score([LEAK, OUTAGE], alarms)
    assert [r.detected for r in s.results] == [False, True]
    assert s.results[1].time_to_detect_s == 40.0
    assert [a.alarm_id for a in s.false_alarms] == ["other-zone"]


def test_without_point_days_there_is_no_rate() -> None:
    assert score([LEAK], []).false_per_1000_point_days is None


def test_to_dict_is_plain_json() -> None:
    s = score([LEAK], [alarm(T0 + 20 * S, "AT-1", level=Level.L1)], point_days=7000.0)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["detected"] == 1 and d["results"][0]["time_to_detect_s"] == 20.0
    assert d["results"][0]["detected_by"]["tag"] == "AT-1"


def test_alarm_file_as_replay_writes_it(tmp_path) -> None:
    a = alarm(T0 + 20 * S, "AT-1", level=Level.L1, value=1.5)
    path = tmp_path / "alarms.jsonl"
    path.write_text(json.dumps(a.to_record()) + "\n\n", encoding="utf-8")
    assert read_alarms(path) == [a]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line|:1: not an alarm event"),
        ("[1, 2]", "expected a JSON object"),
        ('{"ts": 5}', "expected 'ts' as ISO 8601 text"),
        ('{"ts": "2026-11-29T00:00:00Z", "tag": "x"}', "not an alarm event"),
    ],
)
def test_bad_alarm_lines_are_named(tmp_path, line, message) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(AlarmFileError, match=message.split("|")[-1]) as exc:
        read_alarms(path)
    assert f"{path}:1:" in str(exc.value)


def test_truth_round_trips_and_bad_lines_are_named(tmp_path) -> None:
    path = write_truth(tmp_path / "t.jsonl", [LEAK, OUTAGE])
    assert read_truth(path) == [LEAK, OUTAGE]
    rec = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert rec["start"] == "2026-11-29T00:00:00.000Z" and rec["kind"] == "leak"
    assert rec["expect"][2] == {"kind": "vote", "level": None}
    path.write_text(path.read_text(encoding="utf-8") + '{"id": 3}\n', encoding="utf-8")
    with pytest.raises(TruthFileError, match=r"t.jsonl:3: not a ground-truth incident"):
        read_truth(path)
    with pytest.raises(TruthFileError, match="cannot read"):
        read_truth(tmp_path / "missing.jsonl")


def test_report_table_shows_what_a_person_needs_in_80_columns() -> None:
    from rich.console import Console

    from hazardwatch.sim.report import score_table

    s = score(
        [LEAK, OUTAGE],
        [alarm(T0 + 20 * S, "AT-1", level=Level.L1), alarm(T0 + 50, "AT-9", Kind.STUCK)],
        point_days=7000.0,
    )
    console = Console(width=80, record=True)
    console.print(score_table(s))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "20 s" in text and "MISSED" in text and "missing" in text
    assert "limit/L2" in text and "vote" in text  # what the leak still lacked
    assert "False alarms" in text and "AT-9" in text
    assert "1/2 incidents detected, 1 missed; 1 false alarm(s) = 0.143 per 1,000" in text
