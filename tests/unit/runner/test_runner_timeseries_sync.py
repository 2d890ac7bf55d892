"""`TimeseriesFeed.sync`: True only once every batch submitted before the call has been handed
to the writer and the writer says it is durable (InfluxDB or spill file). The distributed
worker acknowledges Kafka records on it, so a kill -9 cannot lose readings it acknowledged."""

from __future__ import annotations

import threading
import time

from hazardwatch.metrics import Metrics
from hazardwatch.runner import BatchOutcome
from hazardwatch.wiring import TimeseriesFeed
from ingest.influx import InfluxConfig, InfluxUnavailable, InfluxWriter
from ingest.model import Industry, Point, Reading, Registry


def point(tag: str) -> Point:
    return Point(
        "E1",
        "Works",
        Industry.HAZCHEM,
        "潜江",
        "H1",
        2,
        "Z1",
        "G1",
        tag,
        "gas.NH3",
        "mg/m3",
        0,
        100,
    )


REG = Registry([point("AT-1"), point("AT-2")], version="r1")


class Recorder:
    """A writer whose `write_lines` can be held (a slow feed) and whose `persist` answers
    `durable`, recording what had been written when it was asked."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self.durable = True
        self.persisted_after: list[int] = []

    def write_lines(self, lines) -> None:
        self.gate.wait(10)
        self.lines.extend(lines)

    def persist(self, timeout_s: float = 0) -> bool:
        self.persisted_after.append(len(self.lines))
        return self.durable

    def flush(self, timeout_s: float = 0) -> bool:
        return True

    def stats(self) -> dict:
        return {}

    def close(self) -> None:
        pass


def batch(ts: int) -> BatchOutcome:
    return BatchOutcome(readings=[Reading("E1", "AT-1", ts, 1.0), Reading("E1", "AT-2", ts, 2.0)])


def test_sync_waits_for_the_batches_submitted_before_it_then_persists():
    w = Recorder()
    feed = TimeseriesFeed(w, REG, Metrics(), pipeline_every_s=3600)
    try:
        w.gate.clear()  # the feed's thread is stuck handing the first batch to the writer
        feed.submit(batch(1_000))
        feed.submit(batch(2_000))
        t0 = time.monotonic()
        assert feed.sync(0.3) is False
        assert time.monotonic() - t0 >= 0.25
        assert w.persisted_after == []  # never asked the writer while batches were pending
        w.gate.set()
        assert feed.sync(5.0) is True
        assert len(w.lines) == 4 and w.persisted_after[-1] == 4
        assert any(" 2000" in ln for ln in w.lines)
    finally:
        feed.close()


def test_sync_is_false_when_the_writer_cannot_make_the_lines_durable():
    w = Recorder()
    w.durable = False  # e.g. InfluxDB down and the spill disk full
    feed = TimeseriesFeed(w, REG, Metrics(), pipeline_every_s=3600)
    try:
        feed.submit(batch(1_000))
        assert feed.sync(2.0) is False
        assert len(w.lines) == 2  # handed over, but not durable
        w.durable = True
        assert feed.sync(2.0) is True
    finally:
        feed.close()


def test_sync_with_nothing_submitted_asks_only_the_writer():
    w = Recorder()
    feed = TimeseriesFeed(w, REG, Metrics(), pipeline_every_s=3600)
    try:
        assert feed.sync(1.0) is True
        assert w.persisted_after == [0]
    finally:
        feed.close()


def test_sync_with_influxdb_down_puts_the_readings_in_spill_files(tmp_path):
    def down(lines: list[str]) -> None:
        raise InfluxUnavailable("InfluxDB unreachable: connection refused")

    cfg = InfluxConfig(
        url="http://x",
        token="u:p",
        spill_dir=tmp_path / "spill",
        flush_interval_ms=1000,
        backoff_initial_s=0.05,
    )
    writer = InfluxWriter(cfg, sender=down)
    feed = TimeseriesFeed(writer, REG, Metrics(), pipeline_every_s=3600)
    feed.submit(batch(1_000))
    feed.submit(batch(2_000))
    assert feed.sync(3.0) is True
    spilled = "".join(f.read_text() for f in sorted((tmp_path / "spill").glob("spill-*.lp")))
    readings = [ln for ln in spilled.splitlines() if ln.startswith("reading,")]
    assert len(readings) == 4
    assert {ln.rsplit(" ", 1)[1] for ln in readings} == {"1000", "2000"}
