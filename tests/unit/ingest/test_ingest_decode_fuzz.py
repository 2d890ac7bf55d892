"""No payload crashes or hangs a decoder or the normaliser: random bytes, random JSON, and
JSON shaped almost like the real formats all end as readings or dead letters."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.decode import decode_auto, decode_canonical, decode_event, decode_provincial
from ingest.model import RejectReason
from ingest.normalize import Normalizer
from ingest.registry import load_registry

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"
NOW = 1_795_910_400_000
REG = load_registry(DATA / "registry.csv")
DECODERS = [decode_auto, decode_canonical, decode_provincial, decode_event]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
tags = st.sampled_from(["AT-1101", "AT-1102", "LT-1101", "TT-1101", "nope", ""])
scalar = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
near_item = st.fixed_dictionaries(
    {},
    optional={
        "tag": tags | scalar,
        "v": st.floats() | scalar,
        "ts": st.integers() | scalar,
        "q": st.integers(-2, 5) | scalar,
        "u": st.sampled_from(["ppm", "kPa", "?"]) | scalar,
    },
)
near_canonical = st.one_of(
    near_item,
    st.fixed_dictionaries(
        {"data": st.lists(near_item, max_size=8)}, optional={"ts": st.integers() | scalar}
    ),
)
near_provincial = st.fixed_dictionaries(
    {},
    optional={
        "tnm": tags | scalar,
        "ts": st.text(max_size=20) | scalar,
        "val": st.text(max_size=8) | scalar,
    },
)


NORM = Normalizer(REG)


def _check(payload: bytes) -> None:
    n = NORM
    t = time.perf_counter()
    for d in DECODERS:
        out = d(payload)
        for p in out.problems:
            assert isinstance(p.reason, RejectReason) and p.detail
    for topic in ("hw/QJ001/GW01/data", "hw/QJ002/GW01/event"):
        res = n.normalize(topic, payload, NOW)
        for r in res.readings:
            assert isinstance(r.ts_ms, int) and isinstance(r.value, float)
    assert time.perf_counter() - t < 2.0, "a decoder took too long"


def _dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(payload):
    _check(payload)


@FUZZ
@given(json_values)
def test_random_json(obj):
    _check(_dumps(obj))


@FUZZ
@given(near_canonical)
def test_json_shaped_like_the_canonical_format(obj):
    _check(_dumps(obj))


@FUZZ
@given(st.one_of(near_provincial, st.lists(near_provincial, max_size=5)))
def test_json_shaped_like_the_provincial_format(obj):
    _check(_dumps(obj))


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"data":' * 50_000 + b"1" + b"}" * 50_000,
        b'{"tag": "AT-1101", "v": 1' + b" " * 200_000 + b"}",
        b'{"ts": 1795910400000, "data": [' + b'{"tag": "AT-1101", "v": 1},' * 9000 + b"1]",
    ],
)
def test_pathological_payloads_end_quickly(payload):
    _check(payload)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(near_item, max_size=12), st.integers(NOW - 10**6, NOW + 10**6) | scalar)
def test_every_reading_of_a_batch_is_accounted_for(items, batch_ts):
    """Nothing is lost silently: each reading of a batch becomes exactly one reading, one
    dead letter (pointing at its index) or one counted duplicate, unless the whole message
    is rejected (then nothing of it is accepted)."""
    payload = _dumps({"ts": batch_ts, "data": items})
    res = NORM.normalize("hw/QJ001/GW01/data", payload, NOW)
    whole = [d for d in res.rejects if d.index is None]
    if whole:
        assert res.readings == [] and len(whole) == 1
        return
    assert len(res.readings) + len(res.rejects) + res.duplicates == len(items)
    assert len({d.index for d in res.rejects}) == len(res.rejects)
    assert all(0 <= d.index < len(items) for d in res.rejects)
