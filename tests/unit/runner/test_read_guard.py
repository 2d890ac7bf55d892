"""ReadGuard: an agent never processes a partition's record beyond one it has not read."""

from __future__ import annotations

import asyncio

from hazardwatch.read_guard import ReadGuard


class Fake:
    """Committed offsets, the seeks asked for, and a clock."""

    def __init__(self, committed: dict[str, int | None]) -> None:
        self.committed = committed
        self.asked: list[list[str]] = []
        self.seeks: list[tuple[str, int]] = []
        self.now = 0.0

    async def start_offsets(self, tps: list[str]) -> dict[str, int | None]:
        self.asked.append(list(tps))
        return {tp: self.committed.get(tp) for tp in tps}

    async def seek(self, tp: str, offset: int) -> None:
        self.seeks.append((tp, offset))

    def guard(self) -> ReadGuard:
        return ReadGuard(
            "test",
            start_offsets=self.start_offsets,
            seek=self.seek,
            position=lambda e: e,
            reseek_after_s=10,
            clock=lambda: self.now,
        )


def admit(g: ReadGuard, *events: tuple[str, int]) -> list[tuple[str, int]]:
    return asyncio.run(g.admit(list(events)))


def test_in_order_from_the_committed_offset_passes_and_asks_kafka_once_per_partition():
    f = Fake({"r0": 10, "r1": None})
    g = f.guard()
    assert admit(g, ("r0", 10), ("r1", 0), ("r0", 11)) == [("r0", 10), ("r1", 0), ("r0", 11)]
    assert admit(g, ("r0", 12), ("r1", 1)) == [("r0", 12), ("r1", 1)]
    assert f.asked == [["r0", "r1"]]
    assert f.seeks == [] and g.holes == 0
    assert g.start("r0") == 10 and g.start("r1") is None


def test_records_below_the_committed_offset_pass_they_are_replays():
    f = Fake({"r0": 10})
    g = f.guard()
    assert admit(g, ("r0", 8), ("r0", 9), ("r0", 10)) == [("r0", 8), ("r0", 9), ("r0", 10)]


def test_a_first_read_beyond_the_committed_offset_seeks_back_and_drops_until_it_returns():
    # the fault suite's case: partition 1 read from 834 with 752 committed
    f = Fake({"r1": 752, "r2": 5})
    g = f.guard()
    assert admit(g, ("r1", 834), ("r2", 5), ("r1", 835)) == [("r2", 5)]
    assert f.seeks == [("r1", 752)] and g.holes == 1
    # what Faust had buffered from beyond the hole still arrives: dropped, no second seek
    assert admit(g, ("r1", 836), ("r1", 837)) == []
    assert f.seeks == [("r1", 752)]
    # the seek took effect: read in order again, nothing skipped
    assert admit(g, ("r1", 752), ("r1", 753)) == [("r1", 752), ("r1", 753)]
    assert admit(g, ("r1", 754)) == [("r1", 754)]


def test_a_hole_within_an_assignment_is_caught_too():
    f = Fake({"r0": 0})
    g = f.guard()
    assert admit(g, ("r0", 0), ("r0", 1)) == [("r0", 0), ("r0", 1)]
    assert admit(g, ("r0", 3), ("r0", 4)) == []  # 2 was never read
    assert f.seeks == [("r0", 2)]
    assert admit(g, ("r0", 2), ("r0", 3), ("r0", 4)) == [("r0", 2), ("r0", 3), ("r0", 4)]


def test_a_seek_without_effect_is_repeated_after_a_while():
    f = Fake({"r0": 5})
    g = f.guard()
    assert admit(g, ("r0", 9)) == []
    f.now = 5
    assert admit(g, ("r0", 10)) == []
    assert f.seeks == [("r0", 5)]
    f.now = 11
    assert admit(g, ("r0", 11)) == []
    assert f.seeks == [("r0", 5), ("r0", 5)]
    assert admit(g, ("r0", 5)) == [("r0", 5)]


def test_records_a_second_seek_cannot_bring_back_are_taken_as_gone(caplog):
    # committed 5, but retention deleted everything below 9: each seek lands on 9 again
    f = Fake({"r0": 5})
    g = f.guard()
    assert admit(g, ("r0", 9)) == []
    f.now = 10
    assert admit(g, ("r0", 9)) == []  # second seek
    assert f.seeks == [("r0", 5), ("r0", 5)]
    f.now = 19
    assert admit(g, ("r0", 9)) == []  # not yet: the second seek gets its time too
    f.now = 20
    assert admit(g, ("r0", 9), ("r0", 10)) == [("r0", 9), ("r0", 10)]
    assert "records 5..8 cannot be read (2 seeks back to 5 had no effect" in caplog.text
    assert admit(g, ("r0", 11)) == [("r0", 11)]  # and in order from there
    assert admit(g, ("r0", 13)) == []  # a new hole is caught again
    assert f.seeks[-1] == ("r0", 12)


def test_reset_starts_every_partition_again_at_its_committed_offset():
    f = Fake({"r0": 5})
    g = f.guard()
    assert admit(g, ("r0", 5), ("r0", 6)) == [("r0", 5), ("r0", 6)]
    g.reset()  # revoked; meanwhile another worker processed and committed up to 20
    f.committed["r0"] = 20
    assert admit(g, ("r0", 20)) == [("r0", 20)]
    assert f.asked == [["r0"], ["r0"]] and f.seeks == []
    g.reset()
    f.committed["r0"] = 25
    assert admit(g, ("r0", 30)) == []
    assert f.seeks == [("r0", 25)]


def test_a_failing_seek_is_logged_and_the_records_stay_dropped(caplog):
    f = Fake({"r0": 5})

    async def broken(tp: str, offset: int) -> None:
        raise RuntimeError("partition not assigned")

    g = ReadGuard("test", start_offsets=f.start_offsets, seek=broken, position=lambda e: e)
    assert admit(g, ("r0", 7)) == []
    assert "seeking partition r0 back to 5 failed" in caplog.text
    assert "records 5..6 were never read" in caplog.text


def test_a_revocation_while_asking_kafka_drops_the_batch():
    f = Fake({"r0": 5})
    g = f.guard()

    async def revoked_meanwhile(tps: list[str]) -> dict[str, int | None]:
        g.reset()
        return {tp: 5 for tp in tps}

    g._start_offsets = revoked_meanwhile
    assert admit(g, ("r0", 5)) == []
    g._start_offsets = f.start_offsets
    assert admit(g, ("r0", 5)) == [("r0", 5)]


def test_start_of_finds_a_partition_by_topic_and_number():
    from collections import namedtuple

    TP = namedtuple("TP", "topic partition")
    f = Fake({})
    f.committed = {TP("t", 1): 7, TP("u", 1): 9}
    g = ReadGuard("test", start_offsets=f.start_offsets, seek=f.seek, position=lambda e: e)
    asyncio.run(g.admit([(TP("t", 1), 7), (TP("u", 1), 9)]))
    assert g.start_of("t", 1) == 7 and g.start_of("u", 1) == 9
    assert g.start_of("t", 2) is None
