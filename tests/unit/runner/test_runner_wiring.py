"""Settings -> adapters: which channels exist, clear errors for missing files, and the
time-series feed that must never block the alarm path."""

from __future__ import annotations

import threading
import time

import pytest

from hazardwatch.metrics import Metrics
from hazardwatch.runner import BatchOutcome
from hazardwatch.settings import load_settings
from hazardwatch.wiring import TimeseriesFeed, WiringError, build_channels, rule_sources
from ingest.model import Industry, Point, Reading, Registry
from rules.model import AlarmEvent, AlarmState, Kind, Level


def _registry() -> Registry:
    return Registry(
        [
            Point(
                "E1",
                "Works",
                Industry.HAZCHEM,
                "潜江",
                "H1",
                2,
                "Z1",
                "G1",
                "AT-1",
                "gas.NH3",
                "mg/m3",
                0,
                100,
            ),
        ],
        version="r1",
    )


def test_missing_registry_is_one_clear_error_with_hint(clean_env):
    with pytest.raises(WiringError, match=r"rules\.registry is not set") as e:
        rule_sources(load_settings(environ={}))
    assert "HW_RULES__REGISTRY" in e.value.hint


def test_only_configured_channels_are_built_and_secrets_stay_out_of_repr(clean_env):
    s = load_settings(
        environ={
            "HW_PLATFORM__URL": "http://127.0.0.1:1/push",
            "HW_PLATFORM__HMAC_SECRET": "s3cret-hmac-value",
            "HW_CHANNELS__WECOM__ROBOT_KEYS": '{"duty": "robot-key-123456"}',
        }
    )
    ch = build_channels(s)
    assert sorted(ch) == ["platform", "wecom"]
    assert ch["wecom"].rate_limit == (20, 60.0)
    assert "s3cret-hmac-value" not in repr(ch) and "robot-key-123456" not in repr(ch)
    assert build_channels(load_settings(environ={})) == {}


class RecordingWriter:
    def __init__(self, block: threading.Event | None = None):
        self.lines: list[str] = []
        self.block = block
        self.flushed = self.closed = False

    def write_lines(self, lines):
        if self.block is not None:
            self.block.wait()
        self.lines.extend(lines)

    def flush(self):
        self.flushed = True

    def close(self):
        self.closed = True

    def stats(self):
        return {"failed": 2, "dropped": 1}


def _alarm() -> AlarmEvent:
    return AlarmEvent(
        ts_ms=1_764_400_000_000,
        enterprise_code="E1",
        hazard_code="H1",
        zone="Z1",
        tag="AT-1",
        parameter="gas.NH3",
        kind=Kind.LIMIT,
        level=Level.L1,
        state=AlarmState.FIRING,
        value=25.0,
        threshold=20.0,
        unit="mg/m3",
        rule="gbt50493.toxic",
        alarm_id="a1",
    )


def test_feed_writes_readings_alarms_and_pipeline_rows():
    w = RecordingWriter()
    m = Metrics("embedded")
    m.observe_batch(1, 1, 3.0)
    m.observe_reject("unknown_tag", 4)
    feed = TimeseriesFeed(w, _registry(), m, pipeline_every_s=3600)
    r = Reading("E1", "AT-1", 1_764_400_000_000, 25.0, unit="mg/m3")
    feed.submit(BatchOutcome(readings=[r], alarms=[_alarm()]))
    feed.close()
    text = "\n".join(w.lines)
    assert text.startswith("reading,") and "tag=AT-1" in text
    assert "\nalarm," in text and 'alarm_id="a1"' in text
    pipeline = [x for x in w.lines if x.startswith("pipeline,")]
    assert len(pipeline) == 1 and "readings_in=1i" in pipeline[0]
    assert "influx_errors=2i" in pipeline[0]
    assert any(
        x.startswith("reject,") and "reason=unknown_tag" in x and "count=4i" in x for x in w.lines
    )
    assert w.flushed and w.closed


def test_feed_never_blocks_the_caller_when_the_writer_hangs():
    gate = threading.Event()
    w = RecordingWriter(block=gate)
    m = Metrics()
    feed = TimeseriesFeed(w, _registry(), m, queue_max=2, pipeline_every_s=3600)
    r = Reading("E1", "AT-1", 1_764_400_000_000, 1.0)
    t0 = time.monotonic()
    for _ in range(50):
        feed.submit(BatchOutcome(readings=[r]))
    assert time.monotonic() - t0 < 0.5
    assert feed.dropped >= 40
    assert m.registry.get_sample_value("hw_timeseries_dropped") == feed.dropped
    gate.set()
    feed.close()


def test_feed_writes_every_reading_exactly_as_reading_line_does():
    """The feed's fast path for plain readings writes the same bytes as `reading_line` (the
    format's definition), for awkward names and values too; other readings go through it."""
    from ingest.lineprotocol import reading_line

    odd = Point(
        "E 2,x",
        "Odd=Works",
        Industry.HAZCHEM,
        "潜 江",
        "H=2",
        2,
        "Z 1",
        "G,2",
        'T "9"',
        "gas.NH3",
        "mg/m3",
        0,
        100,
    )
    reg = Registry([*_registry(), odd], version="r2")
    values = [0.0, -0.0, 3.0, 31.9, -1e-7, 1e21, 123456789.125, float("nan"), float("inf"), 7]
    readings = [
        Reading(p.enterprise_code, p.tag, 1_764_403_200_000 + i, v, quality=i % 4, backfill=bf)
        for p in reg
        for i, v in enumerate(values)
        for bf in (False, True)
    ]
    readings.append(Reading("E1", "AT-1", 5, float("nan"), event_type="smoke", text='a "b"\n'))
    readings.append(Reading("E9", "nope", 5, 1.0))  # not in the registry: no line
    feed = TimeseriesFeed(RecordingWriter(), reg, Metrics(), pipeline_every_s=3600)
    try:
        got = feed.lines(BatchOutcome(readings=readings))
    finally:
        feed.close()
    want = [reading_line(r, reg.get(r.enterprise_code, r.tag)) for r in readings[:-1]]
    assert got == want
    assert feed.last_seen == {"E1/AT-1": 1_764_403_200_009, 'E 2,x/T "9"': 1_764_403_200_009}
