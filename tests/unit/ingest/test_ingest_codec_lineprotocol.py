"""Wire codecs and the line-protocol encoder."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest

from ingest.codec import (
    CodecError,
    decode_dead_letter,
    decode_readings,
    encode_dead_letter,
    encode_readings,
)
from ingest.lineprotocol import LineProtocolError, encode, reading_line
from ingest.model import DeadLetter, Reading, RejectReason
from ingest.registry import load_registry

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"
NOW = 1_795_910_400_000


def test_readings_round_trip_including_event_nan():
    rs = [
        Reading("QJ001", "AT-1101", NOW, 12.5, 1, "ppm", NOW + 3, True),
        Reading("QJ002", "EV-01", NOW, math.nan, 0, "", NOW, False, "smoke", "烟雾"),
    ]
    back = decode_readings(encode_readings(rs))
    assert back[0] == rs[0]
    assert math.isnan(back[1].value) and back[1].text == "烟雾"


@pytest.mark.parametrize("data", [b"nope", b'[{"tag": 1}]', b"{}"])
def test_bad_readings_bytes(data):
    with pytest.raises(CodecError, match="readings"):
        decode_readings(data)


def test_dead_letter_json_is_readable_and_round_trips():
    dl = DeadLetter(
        RejectReason.NOT_FINITE,
        "value nan at $.data[2].v",
        "hw/E/G/data",
        NOW,
        b'{"v": NaN}\xff',
        2,
    )
    raw = encode_dead_letter(dl)
    obj = json.loads(raw)
    assert obj["reason"] == "not_finite" and obj["index"] == 2
    assert obj["received"] == "2026-11-29T00:00:00.000Z"
    assert base64.b64decode(obj["payload_b64"]) == b'{"v": NaN}\xff'
    assert decode_dead_letter(raw) == dl


def test_reading_line_follows_the_schema():
    reg = load_registry(DATA / "registry.csv")
    p = reg.get("QJ001", "AT-1101")
    line = reading_line(Reading("QJ001", "AT-1101", NOW, 12.5, 0, "ppm", NOW, False), p)
    assert line == (
        "reading,district=潜江经济开发区,enterprise=QJ001,gateway=GW01,hazard=HZ-QJ001-01,"
        "parameter=gas.NH3,tag=AT-1101,unit=ppm,zone=Z-TANK-A "
        f"value=12.5,quality=0i,backfill=false {NOW}"
    )
    ev = reg.get("QJ002", "EV-01")
    line = reading_line(
        Reading("QJ002", "EV-01", NOW, math.nan, 0, "", NOW, True, "smoke", 'said "hi"\nbye'), ev
    )
    assert ' quality=0i,backfill=true,event_type="smoke",text="said \\"hi\\"\\nbye" ' in line
    assert "value=" not in line and "\n" not in line


@pytest.mark.parametrize(
    ("tags", "fields", "expected"),
    [
        ({"a": "x y"}, {"f": 1.0}, "m,a=x\\ y f=1.0 5"),
        ({"a": "x,y=z"}, {"f": 1}, "m,a=x\\,y\\=z f=1i 5"),
        ({"b": "2", "a": "1", "c": ""}, {"f": True}, "m,a=1,b=2 f=true 5"),
        ({}, {"s": 'q"\\'}, 'm s="q\\"\\\\" 5'),
        ({}, {"x": math.nan, "y": 2.5}, "m y=2.5 5"),
        ({"k k": "v"}, {"f f": None, "g": False}, "m,k\\ k=v g=false 5"),
    ],
)
def test_encode_escaping(tags, fields, expected):
    assert encode("m", tags, fields, 5) == expected


def test_encode_measurement_escaping_and_errors():
    assert encode("a b,c", {}, {"f": 1}, 1).startswith("a\\ b\\,c ")
    with pytest.raises(LineProtocolError, match="no field"):
        encode("m", {}, {"x": math.inf}, 1)
    with pytest.raises(LineProtocolError, match="expected float, int, bool or str"):
        encode("m", {}, {"x": [1]}, 1)
    with pytest.raises(LineProtocolError, match="empty measurement"):
        encode("", {}, {"x": 1}, 1)
