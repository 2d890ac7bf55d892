"""Normaliser: what comes out of a message — readings in the point's unit, or dead letters
with a specific reason and a detail that names the place in the payload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ingest.model import RejectReason as R
from ingest.normalize import NormalizeConfig, Normalizer
from ingest.registry import load_registry

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"
NOW = 1_795_910_400_000  # 2026-11-29T00:00:00Z
TOPIC = "hw/QJ001/GW01/data"


@pytest.fixture(scope="module")
def registry():
    return load_registry(DATA / "registry.csv")


@pytest.fixture
def norm(registry):
    return Normalizer(registry)


def j(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def test_single_reading(norm):
    res = norm.normalize(TOPIC, j({"tag": "AT-1101", "ts": NOW, "v": 31.9, "q": 0}), NOW + 5)
    assert res.rejects == []
    (r,) = res.readings
    assert (r.enterprise_code, r.tag, r.ts_ms, r.value, r.quality, r.unit) == (
        "QJ001",
        "AT-1101",
        NOW,
        31.9,
        0,
        "ppm",
    )
    assert r.received_ms == NOW + 5 and r.backfill is False


def test_batch_with_units_iso_times_and_quality(norm):
    payload = j(
        {
            "ts": "2026-11-29T08:00:00+08:00",
            "data": [
                {"tag": "AT-1101", "v": 5},
                {"tag": "AT-1102", "v": 28.2325, "u": "ppm"},  # point is in mg/m3
                {"tag": "PT-1101", "v": 1600, "u": "kPa", "q": 1},  # point is in MPa
                {"tag": "LT-1101", "v": 1500, "u": "mm", "ts": "2026-11-29T00:00:01Z"},
                {"tag": "AT-1103", "v": 1.25, "u": "%vol", "q": 3},  # point is in %LEL (CH4)
            ],
        }
    )
    res = norm.normalize(TOPIC, payload, NOW + 1000)
    assert res.rejects == []
    got = {r.tag: r for r in res.readings}
    assert got["AT-1101"].ts_ms == NOW and got["AT-1101"].value == 5.0
    assert got["AT-1102"].unit == "mg/m3"
    assert got["AT-1102"].value == pytest.approx(28.2325 * 17.03 / 24.04)
    assert got["PT-1101"].value == pytest.approx(1.6) and got["PT-1101"].quality == 1
    assert got["LT-1101"].value == pytest.approx(1.5) and got["LT-1101"].ts_ms == NOW + 1000
    assert got["AT-1103"].value == pytest.approx(25.0) and got["AT-1103"].quality == 3


def test_a_bad_reading_in_a_batch_does_not_lose_the_good_ones(norm):
    data = [{"tag": "AT-1101", "v": i} for i in range(3)]
    data[1] = {"tag": "AT-1102", "v": "high"}
    data[2]["tag"] = "AT-1103"
    res = norm.normalize(TOPIC, j({"ts": NOW, "data": data}), NOW)
    assert [r.tag for r in res.readings] == ["AT-1101", "AT-1103"]
    (dl,) = res.rejects
    assert dl.reason is R.WRONG_TYPE and dl.index == 1
    assert "$.data[1].v" in dl.detail
    assert json.loads(dl.payload) == {"tag": "AT-1102", "v": "high"}
    assert dl.topic == TOPIC and dl.received_ms == NOW


def test_provincial_format_is_recognised_and_read_as_beijing_time(norm):
    payload = j({"tnm": "AT-1101", "ts": "2026-11-29 08:00:00", "val": "27.20"})
    (r,) = norm.normalize(TOPIC, payload, NOW).readings
    assert r.ts_ms == NOW and r.value == 27.2
    batch = j(
        [
            {"tnm": "AT-1101", "ts": "2026-11-29 08:00:01", "val": "1"},
            {"tnm": "AT-1102", "ts": "2026-11-29 08:00:01", "val": "2.5"},
        ]
    )
    assert [r.value for r in norm.normalize(TOPIC, batch, NOW).readings] == [1.0, 2.5]


def test_decoder_chosen_per_gateway(registry):
    cfg = NormalizeConfig(decoder="canonical", decoders={"QJ001/GW01": "provincial"})
    n = Normalizer(registry, cfg)
    payload = j({"tnm": "AT-1101", "ts": "2026-11-29 08:00:00", "val": "3"})
    assert len(n.normalize(TOPIC, payload, NOW).readings) == 1
    res = n.normalize("hw/QJ001/GW02/data", j({"tag": "TT-1101", "ts": NOW, "v": 3}), NOW)
    assert len(res.readings) == 1


def test_unknown_format_name_is_a_config_error():
    with pytest.raises(KeyError, match=r"unknown payload format 'vendorx'.*canonical"):
        NormalizeConfig(decoder="vendorx")


def test_event_message(norm):
    res = norm.normalize(
        "hw/QJ002/GW01/event",
        j(
            {
                "tag": "EV-01",
                "ts": NOW,
                "type": "static_discharge_missed",
                "text": "人员未触摸静电释放球",
            }
        ),
        NOW,
    )
    (r,) = res.readings
    assert math.isnan(r.value) and r.event_type == "static_discharge_missed"
    assert r.text == "人员未触摸静电释放球"


def test_backfill_flag_and_future_skew(norm):
    old = NOW - 301_000
    res = norm.normalize(
        TOPIC,
        j(
            {
                "ts": NOW,
                "data": [
                    {"tag": "AT-1101", "v": 1, "ts": old},
                    {"tag": "AT-1102", "v": 1, "ts": NOW + 59_000},
                    {"tag": "AT-1103", "v": 1, "ts": NOW + 61_000},
                ],
            }
        ),
        NOW,
    )
    assert [(r.tag, r.backfill) for r in res.readings] == [("AT-1101", True), ("AT-1102", False)]
    (dl,) = res.rejects
    assert dl.reason is R.CLOCK_SKEW and "61.0 s ahead" in dl.detail


def test_duplicates_are_dropped_and_counted_and_memory_survives_reload(registry, norm):
    payload = j({"ts": NOW, "data": [{"tag": "AT-1101", "v": 1}, {"tag": "AT-1102", "v": 2}]})
    assert len(norm.normalize(TOPIC, payload, NOW).readings) == 2
    again = norm.normalize(TOPIC, payload, NOW + 10)  # QoS 1 redelivery
    assert again.readings == [] and again.rejects == [] and again.duplicates == 2
    reloaded = norm.with_registry(registry)
    assert reloaded.normalize(TOPIC, payload, NOW + 20).duplicates == 2
    # an older reading that was never seen is not a duplicate
    older = j({"tag": "AT-1101", "v": 1, "ts": NOW - 1000})
    assert len(reloaded.normalize(TOPIC, older, NOW).readings) == 1
    assert reloaded.normalize(TOPIC, older, NOW).duplicates == 1


def test_duplicates_can_be_dead_lettered(registry):
    n = Normalizer(registry, NormalizeConfig(dead_letter_duplicates=True))
    payload = j({"tag": "AT-1101", "v": 1, "ts": NOW})
    n.normalize(TOPIC, payload, NOW)
    (dl,) = n.normalize(TOPIC, payload, NOW).rejects
    assert dl.reason is R.DUPLICATE


def test_dedupe_memory_is_bounded(registry):
    n = Normalizer(registry, NormalizeConfig(dedupe_capacity=100))
    for k in range(1000):
        n.normalize(TOPIC, j({"tag": "AT-1101", "v": 1, "ts": NOW - 100_000 + k}), NOW)
    assert len(n._dedupe) <= 100 + 1


def test_hot_reload_picks_up_new_points(registry):
    from dataclasses import replace

    from ingest.model import Registry

    n = Normalizer(registry)
    payload = j({"tag": "NEW-1", "v": 1, "ts": NOW})
    assert n.normalize(TOPIC, payload, NOW).rejects[0].reason is R.UNKNOWN_TAG
    new = Registry([*registry, replace(registry.get("QJ001", "AT-1101"), tag="NEW-1")], "v2")
    assert len(n.with_registry(new).normalize(TOPIC, payload, NOW).readings) == 1


# ---------------------------------------------------------------------------- bad inputs

T = TOPIC
OK = {"tag": "AT-1101", "ts": NOW, "v": 1.0}


def item(**kw):
    return j({"ts": NOW, "data": [{**OK, **kw}]})


BAD_INPUTS = [
    # (name, topic, payload, reason, fragment of the detail)
    ("not json", T, b"{nope", R.MALFORMED_JSON, "malformed"),
    ("truncated json", T, b'{"tag": "AT-1101", "v": 1', R.MALFORMED_JSON, "truncated"),
    ("empty payload", T, b"", R.MALFORMED_JSON, "truncated"),
    ("binary garbage", T, b"\x00\xff\x10", R.UNKNOWN_FORMAT, "payload is not JSON"),
    ("csv from a gateway", T, b"AT-1101,31.9,2026-11-29", R.UNKNOWN_FORMAT, "known formats"),
    ("top level array", T, b"[1, 2]", R.SCHEMA, "expected a JSON object at $"),
    ("top level string", T, b'"hello"', R.SCHEMA, "got string"),
    ("empty object", T, b"{}", R.SCHEMA, "missing 'tag'"),
    ("missing value", T, j({"tag": "AT-1101", "ts": NOW}), R.SCHEMA, "missing 'v'"),
    ("data not a list", T, j({"ts": NOW, "data": {"tag": "x"}}), R.SCHEMA, "$.data"),
    ("batch item not an object", T, j({"ts": NOW, "data": [5]}), R.WRONG_TYPE, "$.data[0]"),
    ("item without tag", T, j({"ts": NOW, "data": [{"v": 1}]}), R.SCHEMA, "`tag` at $.data[0]"),
    ("value as string", T, item(v="31.9"), R.WRONG_TYPE, "$.data[0].v"),
    ("value as bool", T, item(v=True), R.WRONG_TYPE, "got `bool` at $.data[0].v"),
    ("value null", T, item(v=None), R.WRONG_TYPE, "$.data[0].v"),
    ("value object", T, item(v={"x": 1}), R.WRONG_TYPE, "$.data[0].v"),
    ("tag as number", T, item(tag=1101), R.WRONG_TYPE, "$.data[0].tag"),
    (
        "NaN token",
        T,
        b'{"ts": %d, "data": [{"tag": "AT-1101", "v": NaN}]}' % NOW,
        R.NOT_FINITE,
        "$.data[0].v",
    ),
    (
        "Infinity token",
        T,
        b'{"tag": "AT-1101", "ts": %d, "v": -Infinity}' % NOW,
        R.NOT_FINITE,
        "not a finite number",
    ),
    (
        "number overflow",
        T,
        b'{"ts": %d, "data": [{"tag": "AT-1101", "v": 1e999}]}' % NOW,
        R.NOT_FINITE,
        "$.data[0].v",
    ),
    ("quality out of range", T, item(q=7), R.BAD_QUALITY, "quality code 7"),
    ("negative quality", T, item(q=-1), R.BAD_QUALITY, "quality code -1"),
    ("quality as float", T, item(q=1.5), R.BAD_QUALITY, "$.data[0].q"),
    ("quality as string", T, item(q="good"), R.BAD_QUALITY, "$.data[0].q"),
    ("missing time", T, j({"data": [{"tag": "AT-1101", "v": 1}]}), R.BAD_TIME, "missing 'ts'"),
    ("time without offset", T, item(ts="2026-11-29T08:00:00"), R.BAD_TIME, "no UTC offset"),
    ("time not a date", T, item(ts="yesterday"), R.BAD_TIME, "not epoch milliseconds or ISO"),
    ("time as float", T, item(ts=1.7959104e12), R.BAD_TIME, "$.data[0].ts"),
    ("epoch seconds", T, item(ts=NOW // 1000), R.BAD_TIME, "looks like epoch seconds"),
    ("time before 2000", T, item(ts=1000), R.BAD_TIME, "before 2000-01-01"),
    ("absurd time", T, item(ts=10**15), R.BAD_TIME, "not a plausible epoch-milliseconds"),
    (
        "bad batch time",
        T,
        j({"ts": "soon", "data": [{"tag": "AT-1101", "v": 1}]}),
        R.BAD_TIME,
        "at $.ts",
    ),
    ("future time", T, item(ts=NOW + 3_600_000), R.CLOCK_SKEW, "3600.0 s ahead"),
    ("unknown tag", T, item(tag="ZZ-9"), R.UNKNOWN_TAG, "'ZZ-9' is not registered"),
    ("tag of another gateway", T, item(tag="TT-1101"), R.GATEWAY_MISMATCH, "gateway 'GW02'"),
    ("unknown enterprise", "hw/QJ999/GW01/data", item(), R.UNKNOWN_ENTERPRISE, "'QJ999'"),
    ("unknown unit", T, item(u="furlong"), R.UNKNOWN_UNIT, "unknown unit 'furlong'"),
    (
        "unit of another quantity",
        T,
        item(tag="LT-1101", u="kPa"),
        R.UNCONVERTIBLE_UNIT,
        "different kinds of quantity",
    ),
    (
        "%LEL for a toxic-only gas point",
        "hw/QJ001/GW02/data",
        j({"tag": "OT-1101", "ts": NOW, "v": 1, "u": "%LEL"}),
        R.UNCONVERTIBLE_UNIT,
        "no lower explosive limit",
    ),
    ("unit as number", T, item(u=5), R.WRONG_TYPE, "$.data[0].u"),
    ("oversize payload", T, j({"ts": NOW, "data": [OK] * 20_000}), R.OVERSIZE, "exceeds"),
    ("topic without kind", "hw/QJ001/GW01", item(), R.BAD_TOPIC, "is not hw/<enterprise>"),
    ("topic with wrong prefix", "other/QJ001/GW01/data", item(), R.BAD_TOPIC, "other/"),
    ("topic with extra level", "hw/QJ001/GW01/x/data", item(), R.BAD_TOPIC, "is not"),
    ("topic with unknown kind", "hw/QJ001/GW01/status", item(), R.BAD_TOPIC, "is not"),
    (
        "event without type",
        "hw/QJ002/GW01/event",
        j({"tag": "EV-01", "ts": NOW}),
        R.SCHEMA,
        "`type`",
    ),
    (
        "provincial bad value",
        T,
        j({"tnm": "AT-1101", "ts": "2026-11-29 08:00:00", "val": "--"}),
        R.WRONG_TYPE,
        "'--' is not a number at $.val",
    ),
    (
        "provincial NaN value",
        T,
        j({"tnm": "AT-1101", "ts": "2026-11-29 08:00:00", "val": "nan"}),
        R.NOT_FINITE,
        "$.val",
    ),
    (
        "provincial bad time",
        T,
        j({"tnm": "AT-1101", "ts": "2026/11/29 08:00", "val": "1"}),
        R.BAD_TIME,
        "yyyy-MM-dd HH:mm:ss",
    ),
    ("provincial missing time", T, j({"tnm": "AT-1101", "val": "1"}), R.SCHEMA, "`ts`"),
]


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "fragment"),
    [b[1:] for b in BAD_INPUTS],
    ids=[b[0] for b in BAD_INPUTS],
)
def test_bad_input_is_dead_lettered_with_its_reason(registry, topic, payload, reason, fragment):
    res = Normalizer(registry).normalize(topic, payload, NOW)
    assert res.readings == []
    assert len(res.rejects) == 1, res.rejects
    (dl,) = res.rejects
    assert dl.reason is reason, dl.detail
    assert fragment in dl.detail
    assert dl.topic == topic and dl.received_ms == NOW
    assert dl.payload or payload == b""  # what came is kept for whoever reads dead letters


def test_the_bad_input_table_is_large_enough():
    assert len(BAD_INPUTS) >= 30
    assert {b[3] for b in BAD_INPUTS} >= set(R) - {R.DUPLICATE}


def test_dead_letters_point_at_the_right_reading_after_a_lenient_decode(norm):
    # item 0 fails decoding (so the decoder keeps items 1 and 2); item 2's own problem must
    # still be reported as index 2, not as its position among the kept readings
    payload = j(
        {"ts": NOW, "data": [{"v": 1}, {"tag": "AT-1101", "v": 2}, {"tag": "NOPE", "v": 3}]}
    )
    res = norm.normalize(TOPIC, payload, NOW)
    assert [r.tag for r in res.readings] == ["AT-1101"]
    assert sorted((d.index, d.reason) for d in res.rejects) == [(0, R.SCHEMA), (2, R.UNKNOWN_TAG)]
    prov = j(
        [
            {"tnm": "AT-1101", "ts": "bad", "val": "1"},
            {"tnm": "NOPE", "ts": "2026-11-29 08:00:00", "val": "1"},
        ]
    )
    res = norm.normalize(TOPIC, prov, NOW)
    assert sorted((d.index, d.reason) for d in res.rejects) == [(0, R.BAD_TIME), (1, R.UNKNOWN_TAG)]


def test_auto_format_looks_for_the_tnm_key_not_a_value():
    from ingest.decode import decode_auto

    canonical = decode_auto(b'{"tag": "tnm", "ts": 1795910400000, "v": 1}')
    assert [r.tag for r in canonical.readings] == ["tnm"] and not canonical.problems
    prov = decode_auto(b'{"tnm" : "AT-1", "ts": "2026-11-29 08:00:00", "val": "1"}')
    assert [r.tag for r in prov.readings] == ["AT-1"]


def test_a_failing_plug_in_decoder_dead_letters_the_message(registry):
    from ingest.decode import _DECODERS, register_decoder

    def broken(payload: bytes):
        raise IndexError("vendor parser bug")

    register_decoder("broken-test", broken)
    try:
        n = Normalizer(registry, NormalizeConfig(decoders={"QJ001": "broken-test"}))
        (dl,) = n.normalize(TOPIC, b"anything", NOW).rejects
        assert dl.reason is R.SCHEMA and "IndexError: vendor parser bug" in dl.detail
    finally:
        _DECODERS.pop("broken-test")
