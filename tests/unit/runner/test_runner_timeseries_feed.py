"""The time-series feed across a registry swap: lines take the new registry's tags from the
next batch on, and the points' last-seen times (the online rate's input) are kept."""

from __future__ import annotations

from hazardwatch.metrics import Metrics
from hazardwatch.runner import BatchOutcome
from hazardwatch.wiring import TimeseriesFeed
from ingest.lineprotocol import reading_line
from ingest.model import Industry, Point, Reading, Registry


class Discard:
    def write_lines(self, lines) -> None:
        pass

    def flush(self, timeout_s: float = 0) -> bool:
        return True

    def close(self) -> None:
        pass


def point(tag: str, district: str) -> Point:
    return Point(
        "E1",
        "Works",
        Industry.HAZCHEM,
        district,
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


def test_registry_swap_changes_the_tags_and_keeps_the_last_seen_times():
    old = Registry([point("AT-1", "潜江"), point("AT-2", "潜江")], version="r1")
    new = Registry([point("AT-1", "江汉")], version="r2")  # AT-2 removed, district renamed
    feed = TimeseriesFeed(Discard(), old, Metrics(), pipeline_every_s=3600)
    try:
        first = [Reading("E1", "AT-1", 2_000, 1.5), Reading("E1", "AT-2", 3_000, 2.5)]
        assert feed.lines(BatchOutcome(readings=first)) == [
            reading_line(r, old.get("E1", r.tag)) for r in first
        ]
        feed.set_registry(new)
        later = [Reading("E1", "AT-1", 1_000, 4.0), Reading("E1", "AT-2", 4_000, 5.0)]
        got = feed.lines(BatchOutcome(readings=later))
        assert got == [reading_line(later[0], new.get("E1", "AT-1"))]  # AT-2: no longer known
        assert "district=江汉" in got[0]
        # An older reading does not move a point's time back; the removed point keeps its own.
        assert feed.last_seen == {"E1/AT-1": 2_000, "E1/AT-2": 3_000}
        feed.lines(BatchOutcome(readings=[Reading("E1", "AT-1", 9_000, 4.0)]))
        assert feed.last_seen == {"E1/AT-1": 9_000, "E1/AT-2": 3_000}
    finally:
        feed.close()
