"""The InfluxDB writer on a really full spill disk (a tmpfs filled to ENOSPC by
tests/faults/env.py `full_disk`) with an InfluxDB that is down: nothing crashes, nothing is
lost while it fits in memory, and what is dropped is counted and logged."""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ingest.influx import InfluxConfig, InfluxUnavailable, InfluxWriter
from tests.faults.env import FaultSetupError, full_disk


def _mounted(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


# ------------------------------------------------------------------------ the primitive


def test_full_disk_answers_enospc_then_recovers_and_unmounts(tmp_path: Path) -> None:
    d = tmp_path / "spill"
    with full_disk(d, 256 * 1024) as disk:
        assert _mounted(d)
        assert os.fspath(disk) == str(d)
        assert disk.free_bytes() == 0
        (d / "empty").touch()  # inodes are left: a file can be created, not written
        with pytest.raises(OSError) as exc:
            (d / "x.tmp").write_bytes(b"a" * 10)
        assert exc.value.errno == errno.ENOSPC
        disk.free(64 * 1024)
        (d / "y").write_bytes(b"b" * 4096)
        disk.refill()
        assert disk.free_bytes() == 0
    assert not _mounted(d)
    assert list(d.iterdir()) == []  # the tmpfs and all it held are gone


def test_full_disk_unmounts_on_error_and_with_a_file_still_open(tmp_path: Path) -> None:
    d = tmp_path / "spill"
    with pytest.raises(KeyError), full_disk(d) as disk:
        disk.free(8192)
        held = open(d / "held", "wb")  # still open at unmount: umount -l detaches it
        raise KeyError("boom")
    held.close()
    assert not _mounted(d)


def test_full_disk_refuses_a_folder_with_files(tmp_path: Path) -> None:
    (tmp_path / "spill-000000000001.lp").write_text("m v=1 1\n")
    with pytest.raises(FaultSetupError, match="not empty"), full_disk(tmp_path):
        pass
    assert not _mounted(tmp_path)


# ------------------------------------------------------------------------ the writer on it


class FakeInflux:
    """Records batches; `down` makes it raise like an unreachable server."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = True
        self.lock = threading.Lock()

    def __call__(self, lines: list[str]) -> None:
        with self.lock:
            if self.down:
                raise InfluxUnavailable("InfluxDB unreachable: connection refused")
            self.batches.append(list(lines))

    @property
    def lines(self) -> list[str]:
        with self.lock:
            return [ln for b in self.batches for ln in b]


def cfg(spill_dir: Path, **kw: object) -> InfluxConfig:
    base: dict[str, object] = dict(
        url="http://x",
        token="u:secret-token",
        spill_dir=spill_dir,
        batch_size=100,
        flush_interval_ms=10,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        spill_retry_s=0.02,
    )
    base.update(kw)
    return InfluxConfig(**base)  # type: ignore[arg-type]


def lines(n: int, start: int = 0) -> list[str]:
    return [f"reading,tag=T value={i}.0 {1795910400000 + i}" for i in range(start, start + n)]


def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def spill_entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name != ".full-disk-filler")


def test_outage_on_a_full_spill_disk_loses_nothing_that_fits_in_memory(tmp_path, caplog):
    """Two minutes of a few hundred readings/s (36,000 lines) while InfluxDB is down and the
    spill disk answers ENOSPC: all of it stays in memory and reaches InfluxDB when it is back,
    in order; the caller is never held up; one ERROR names the folder."""
    caplog.set_level(logging.WARNING, logger="ingest.influx")
    d = tmp_path / "spill"
    fake = FakeInflux()
    with full_disk(d, 64 * 1024):
        w = InfluxWriter(cfg(d, batch_size=5000), sender=fake)
        try:
            slowest = 0.0
            for k in range(120):  # one call per simulated second: 300 readings
                t = time.perf_counter()
                w.write_lines(lines(300, k * 300))
                slowest = max(slowest, time.perf_counter() - t)
            wait_for(lambda: w.stats()["spill_errors"] >= 3)  # spilling is retried
            s = w.stats()
            assert s["spilled"] == 0 and s["dropped"] == 0 and s["buffered"] == 36_000, s
            assert "No space left on device" in s["spill_error"]
            assert spill_entries(d) == []  # no half-written batch left behind
            fake.down = False
            assert w.flush(10), w.stats()
        finally:
            w.close()
    assert fake.lines == lines(36_000)
    s = w.stats()
    assert s["written"] == 36_000 and s["dropped"] == 0 and s["buffered"] == 0
    assert slowest < 0.05, f"write_lines held the caller for {slowest:.3f} s"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and str(d) in errors[0].getMessage(), caplog.text
    assert "keeping lines in memory" in errors[0].getMessage()


def test_spilling_resumes_when_the_disk_frees_and_the_order_holds(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ingest.influx")
    d = tmp_path / "spill"
    fake = FakeInflux()
    with full_disk(d, 256 * 1024) as disk:
        w = InfluxWriter(cfg(d), sender=fake)
        try:
            w.write_lines(lines(500))
            wait_for(lambda: w.stats()["spill_errors"] >= 1)
            disk.free()  # an operator clears the disk
            w.write_lines(lines(500, 500))
            wait_for(lambda: w.stats()["buffered"] == 0)  # all moved to disk
            s = w.stats()
            assert s["spilled"] == 1000 and s["spill_error"] == "" and s["dropped"] == 0, s
            assert all(n.startswith("spill-") and n.endswith(".lp") for n in spill_entries(d))
            fake.down = False
            assert w.flush(10), w.stats()
        finally:
            w.close()
    assert fake.lines == lines(1000)
    assert w.stats()["replayed"] == 1000
    assert "takes batches again" in caplog.text


def test_beyond_the_memory_bound_the_oldest_lines_are_dropped_counted_and_logged(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="ingest.influx")
    d = tmp_path / "spill"
    fake = FakeInflux()
    with full_disk(d, 64 * 1024):
        w = InfluxWriter(cfg(d, max_buffer_lines=500), sender=fake)
        try:
            for k in range(20):
                w.write_lines(lines(100, k * 100))
            wait_for(lambda: w.stats()["spill_errors"] >= 1 and w.stats()["dropped"] == 1500)
            s = w.stats()
            assert s["buffered"] == 500 and s["spilled"] == 0, s
            fake.down = False
            assert w.flush(10), w.stats()
        finally:
            w.close()
    assert fake.lines == lines(500, 1500)  # the newest are kept
    s = w.stats()
    assert s["written"] + s["dropped"] == 2000
    msgs = [r.getMessage() for r in caplog.records]
    assert any("dropped 100 lines" in m and str(d) in m for m in msgs), msgs
    assert any("refuses batches" in m and "No space left on device" in m for m in msgs), msgs


def test_a_disk_that_fills_mid_batch_leaves_only_whole_batches(tmp_path):
    d = tmp_path / "spill"
    fake = FakeInflux()
    with full_disk(d, 256 * 1024) as disk:
        disk.free(6000)  # room for about two batches of 100 lines, then ENOSPC mid-write
        w = InfluxWriter(cfg(d), sender=fake)
        try:
            for k in range(10):
                w.write_lines(lines(100, k * 100))
            wait_for(lambda: w.stats()["spill_errors"] >= 2)
            files = spill_entries(d)
            assert files and all(n.endswith(".lp") for n in files), files  # no .tmp
            for name in files:  # every spilled file is a whole batch
                assert len((d / name).read_text().splitlines()) == 100
            s = w.stats()
            assert s["spilled"] == 100 * len(files) and s["dropped"] == 0
            assert s["spilled"] + s["buffered"] == 1000
            fake.down = False
            assert w.flush(10), w.stats()
        finally:
            w.close()
    assert fake.lines == lines(1000)


def test_close_while_down_on_a_full_disk_counts_what_it_drops(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="ingest.influx")
    d = tmp_path / "spill"
    with full_disk(d, 64 * 1024):
        w = InfluxWriter(cfg(d), sender=FakeInflux())
        w.write_lines(lines(250))
        w.close(timeout_s=0.2)
        assert spill_entries(d) == []
    s = w.stats()
    assert s["dropped"] == 250 and s["buffered"] == 0
    assert any("closing" in r.getMessage() and str(d) in r.getMessage() for r in caplog.records)


def test_damaged_or_unreadable_spill_files_do_not_block_replay(tmp_path, caplog):
    d = tmp_path / "spill"
    d.mkdir()
    (d / "spill-000000000001.lp").write_bytes(b"reading,tag=T value=\xff 1\n" + b"ok v=1 1\n")
    (d / "spill-000000000002.lp").mkdir()  # read fails with an OSError (EISDIR)
    (d / "spill-000000000003.lp").write_text("ok v=3 3\n")
    (d / "spill-000000000004.tmp").write_text("half a bat")  # a crash mid-write
    os.utime(d / "spill-000000000004.tmp", (time.time() - 120, time.time() - 120))
    (d / "spill-000000000005-peer.tmp").write_text("a live peer's")  # its batch in the making
    fake = FakeInflux()
    fake.down = False
    w = InfluxWriter(cfg(d), sender=fake)
    try:
        assert w.flush(5), w.stats()
    finally:
        w.close()
    assert fake.lines == ["reading,tag=T value=\ufffd 1", "ok v=1 1", "ok v=3 3"]
    assert spill_entries(d) == ["spill-000000000002.bad", "spill-000000000005-peer.tmp"]
    assert "spill-000000000002.lp is unreadable" in caplog.text
