"""Replay input readers: CSV and JSON lines into readings in the point's unit, with every bad
row reported by line number and reason, and whole-file problems as one clear error."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.model import Industry, Point, Registry
from rules.replay import (
    ReplayInputError,
    flux_history_query,
    parse_csv,
    parse_jsonl,
    read_readings,
)

from .rt_factory import point

REG = Registry(
    [
        point("AT-NH3", "gas.NH3", unit="mg/m3"),
        point("AT-CH4", "gas.CH4", unit="%LEL"),
        point("TT-1", "temperature", unit="°C"),
        Point(
            enterprise_code="F1",
            enterprise_name="F",
            industry=Industry.FIREWORKS,
            district="D",
            hazard_code="",
            hazard_level=None,
            zone="W1",
            gateway_code="G",
            tag="EV-1",
            parameter="event",
            unit="",
        ),
    ]
)


def test_csv_epoch_and_iso_times_sorted_and_unit_defaults_to_the_point_unit():
    text = (
        "ts,enterprise_code,tag,value\n"
        "2026-11-29T16:00:01+08:00,E1,AT-CH4,12.5\n"
        "1795939200000,E1,TT-1,30\n"
    )
    inp = parse_csv(text, REG)
    assert inp.bad_rows == []
    assert [(r.tag, r.ts_ms, r.value, r.unit, r.quality) for r in inp.readings] == [
        ("TT-1", 1795939200000, 30.0, "°C", 0),
        ("AT-CH4", 1795939201000, 12.5, "%LEL", 0),
    ]
    assert (inp.start_ms, inp.end_ms) == (1795939200000, 1795939201000)


def test_iso_time_with_offset_is_converted_to_utc_epoch_ms():
    inp = parse_csv("ts,enterprise_code,tag,value\n2026-11-29T16:00:00+08:00,E1,TT-1,1\n", REG)
    assert inp.readings[0].ts_ms == 1795939200000  # 2026-11-29T08:00:00Z


def test_units_are_converted_nh3_ppm_to_mg_m3():
    inp = parse_csv(
        "ts,enterprise_code,tag,value,unit,quality\n1000,E1,AT-NH3,28.2329,ppm,1\n"
        "2000,E1,TT-1,300,K,\n",
        REG,
    )
    nh3, tt = inp.readings
    assert nh3.value == pytest.approx(20.0, rel=1e-4) and nh3.unit == "mg/m3"
    assert nh3.quality == 1
    assert tt.value == pytest.approx(26.85)


def test_csv_columns_in_any_order_and_event_points():
    inp = parse_csv(
        "tag,value,ts,enterprise_code,event_type,text\n"
        "EV-1,,5000,F1,vehicle_in_zone,truck at 1.1 store\n",
        REG,
    )
    (r,) = inp.readings
    assert math.isnan(r.value) and r.event_type == "vehicle_in_zone"
    assert r.text == "truck at 1.1 store"


BAD_CSV = (
    "ts,enterprise_code,tag,value,unit,quality\n"
    "1000,E1,AT-CH4,10,,\n"  # 2 good
    "abc,E1,AT-CH4,10,,\n"  # 3
    "2026-11-29T08:00:00,E1,AT-CH4,10,,\n"  # 4 no offset
    "1000,E9,AT-CH4,10,,\n"  # 5 unknown point
    "1000,E1,AT-CH4,ten,,\n"  # 6
    "1000,E1,AT-CH4,nan,,\n"  # 7
    "1000,E1,AT-CH4,10,,7\n"  # 8
    "1000,E1,AT-CH4,10,kPa,\n"  # 9 unit of another quantity
    "1000,E1,AT-CH4,10\n"  # 10 short row
    "1000,E1,AT-CH4,,,\n"  # 11 empty value
    "1000,F1,EV-1,,,\n"  # 12 event without a type
    "1000,E1,AT-CH4,10,furlongs,\n"  # 13 unknown unit
)


def test_every_bad_csv_row_is_reported_with_line_and_reason():
    inp = parse_csv(BAD_CSV, REG, "hist.csv")
    assert len(inp.readings) == 1 and inp.bad_row_count == 11
    got = {b.line: b.message for b in inp.bad_rows}
    assert got[3] == "ts: expected epoch milliseconds or ISO 8601 with offset, got 'abc'"
    assert "has no UTC offset" in got[4]
    assert got[5].startswith("point E9/AT-CH4 is not in the registry")
    assert got[6] == "value: expected a number, got 'ten'"
    assert got[7] == "value: expected a finite number, got 'nan'"
    assert got[8].startswith("quality: expected 0 (good), 1 (uncertain), 2 (fault) or 3")
    assert "'kPa' does not fit gas parameter gas.CH4" in got[9]
    assert "registered in %LEL" in got[9]
    assert got[10] == "expected 6 fields like the header, got 4"
    assert got[11] == "value: expected a number, got an empty value"
    assert got[12].startswith("event_type: point F1/EV-1 is an event point")
    assert "unknown unit 'furlongs'" in got[13]
    assert str(inp.bad_rows[0]) == f"line 3: {got[3]}"


def test_line_numbers_count_quoted_multiline_fields():
    text = 'ts,enterprise_code,tag,value,event_type,text\n5,F1,EV-1,,x,"two\nlines"\n7,E1,XX,1,,\n'
    inp = parse_csv(text, REG)
    assert [b.line for b in inp.bad_rows] == [4]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("ts,tag,value\n", "header lacks column(s) enterprise_code"),
        ("ts,enterprise_code,tag,value,colour\n", "unknown column(s) colour"),
        ("ts,enterprise_code,tag,value,value\n", "column(s) value appear twice"),
    ],
)
def test_whole_file_problems(text, message):
    with pytest.raises(ReplayInputError) as ei:
        parse_csv(text, REG, "x.csv")
    assert str(ei.value).startswith("x.csv: ") and message in str(ei.value)


def test_jsonl_fields_aliases_and_bad_lines():
    text = "\n".join(
        [
            '{"ts": 1000, "enterprise_code": "E1", "tag": "AT-NH3", "value": 28.2329, '
            '"unit": "ppm"}',
            '{"ts": "2026-11-29T08:00:00Z", "enterprise_code": "E1", "tag": "TT-1", '
            '"v": 5, "q": 2}',
            "",
            '{"ts": 1000, "enterprise_code": "E1", "tag": "TT-1", "value": 1',
            "[1, 2]",
            '{"ts": 1000, "enterprise_code": "E1", "tag": "TT-1", "value": 1, "colour": "red"}',
            '{"enterprise_code": "E1", "tag": "TT-1", "value": 1}',
            '{"ts": 1.5, "enterprise_code": "E1", "tag": "TT-1", "value": 1}',
            '{"ts": 1000, "enterprise_code": "F1", "tag": "EV-1", "type": "static_missed"}',
        ]
    )
    inp = parse_jsonl(text, REG)
    assert [(r.tag, r.quality) for r in inp.readings] == [("AT-NH3", 0), ("EV-1", 0), ("TT-1", 2)]
    assert inp.readings[0].value == pytest.approx(20.0, rel=1e-4)
    got = {b.line: b.message for b in inp.bad_rows}
    assert got[4].startswith("not valid JSON")
    assert got[5] == "expected a JSON object, got list"
    assert got[6].startswith("unknown field(s) colour")
    assert got[7] == "ts: missing"
    assert got[8] == "ts: expected whole epoch milliseconds, got 1.5"


def test_read_readings_picks_the_format_by_suffix(tmp_path):
    c = tmp_path / "h.csv"
    c.write_text("ts,enterprise_code,tag,value\n1,E1,TT-1,2\n")
    j = tmp_path / "h.jsonl"
    j.write_text('{"ts": 1, "enterprise_code": "E1", "tag": "TT-1", "value": 2}\n')
    assert read_readings(c, REG).readings == read_readings(j, REG).readings
    with pytest.raises(ReplayInputError, match=r"unknown readings format '\.xlsx'"):
        read_readings(tmp_path / "h.xlsx", REG)
    with pytest.raises(ReplayInputError, match="no such file"):
        read_readings(tmp_path / "missing.csv", REG)


def test_flux_query_escapes_and_filters_enterprise():
    q = flux_history_query("hazardwatch/autogen", "0", "1", 'E"1')
    assert 'from(bucket: "hazardwatch/autogen")' in q
    assert 'r.enterprise == "E\\"1"' in q
    assert 'r._measurement == "reading"' in q


row_st = st.tuples(
    st.sampled_from(["AT-NH3", "AT-CH4", "TT-1"]),
    st.integers(0, 10**13),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([None, "", "own", "alt"]),
    st.sampled_from([None, 0, 1, 2, 3]),
    st.booleans(),  # ISO time instead of epoch ms
)
ALT = {"AT-NH3": "ppm", "AT-CH4": "%vol", "TT-1": "K"}


@settings(max_examples=60, deadline=None)
@given(st.lists(row_st, max_size=30))
def test_fast_paths_equal_the_checked_normaliser(rows):
    from datetime import UTC, datetime

    from rules.replay import _Normaliser

    norm = _Normaliser(REG)
    csv_lines = ["ts,enterprise_code,tag,value,unit,quality"]
    json_lines = []
    expected = []
    for tag, ts, v, unit_kind, q, iso in rows:
        p = REG.get("E1", tag)
        unit = {None: None, "": "", "own": p.unit, "alt": ALT[tag]}[unit_kind]
        t = datetime.fromtimestamp(ts / 1000, UTC).isoformat() if iso else ts
        expected.append(norm.reading(t, "E1", tag, repr(v), unit, q))
        csv_lines.append(f"{t},E1,{tag},{v!r},{unit or ''},{'' if q is None else q}")
        obj = {"ts": t, "enterprise_code": "E1", "tag": tag, "value": v}
        if unit is not None:
            obj["unit"] = unit
        if q is not None:
            obj["quality"] = q
        json_lines.append(json.dumps(obj))
    expected.sort(key=lambda r: r.ts_ms)
    assert parse_csv("\n".join(csv_lines) + "\n", REG).readings == expected
    assert parse_jsonl("\n".join(json_lines), REG).readings == expected
