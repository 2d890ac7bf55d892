"""`persist`: the time-series writers say when everything handed in so far is durable (in
InfluxDB or a spill file), which the distributed worker waits for before acknowledging Kafka
records. InfluxDB up, down, hanging, a really full spill disk, and the file writer."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from ingest.influx import InfluxConfig, InfluxUnavailable, InfluxWriter, LineProtocolFileWriter
from tests.faults.env import full_disk


class FakeInflux:
    """Records what it was sent; `down` answers like an unreachable server, `hold` makes a
    request hang until released (a slow InfluxDB)."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.down = False
        self.hold: threading.Event | None = None
        self.holding = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, lines: list[str]) -> None:
        hold = self.hold
        if hold is not None:
            self.holding.set()
            hold.wait(10)
        with self.lock:
            if self.down:
                raise InfluxUnavailable("InfluxDB unreachable: connection refused")
            self.sent.extend(lines)


def cfg(tmp_path: Path, **kw: object) -> InfluxConfig:
    base: dict = dict(
        url="http://x",
        token="u:secret-token",
        spill_dir=tmp_path / "spill",
        batch_size=100,
        flush_interval_ms=1000,  # persist must not wait for the periodic round
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    base.update(kw)
    return InfluxConfig(**base)


def lines(n: int, start: int = 0) -> list[str]:
    return [f"m,k=a v={i} {i}" for i in range(start, start + n)]


def spilled_lines(folder: Path) -> list[str]:
    out: list[str] = []
    for f in sorted(folder.glob("spill-*.lp")):
        try:
            text = f.read_text()
        except FileNotFoundError:
            continue  # replayed a moment ago: its lines were sent before the file went
        out.extend(ln for ln in text.split("\n") if ln)
    return out


def test_influx_up_persist_returns_once_everything_is_written(tmp_path):
    fake = FakeInflux()
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    try:
        w.write_lines(lines(250))
        t0 = time.monotonic()
        assert w.persist(5.0) is True
        assert time.monotonic() - t0 < 1.0  # woke the writer, did not wait out its interval
        assert fake.sent == lines(250)
        assert w.stats()["spilled"] == 0
        assert w.persist(0.1) is True  # nothing new: at once
    finally:
        w.close()


def test_influx_down_persist_spills_memory_and_a_new_writer_replays_it(tmp_path):
    fake = FakeInflux()
    fake.down = True
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    w.write_lines(lines(30))
    time.sleep(0.05)
    w.write_lines(lines(270, 30))
    assert w.persist(3.0) is True
    st = w.stats()
    assert st["buffered"] == 0 and st["spilled"] == 300 and st["dropped"] == 0
    assert sorted(spilled_lines(tmp_path / "spill")) == sorted(lines(300))
    # kill -9 now (no close): the next writer on the folder sends what was spilled
    fake2 = FakeInflux()
    w2 = InfluxWriter(cfg(tmp_path), sender=fake2)
    try:
        assert w2.flush(5.0)
        assert sorted(fake2.sent) == sorted(lines(300))
    finally:
        w2.close()


def test_a_hanging_request_makes_persist_false_until_it_finishes(tmp_path):
    fake = FakeInflux()
    fake.hold = threading.Event()
    release = fake.hold
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    try:
        w.write_lines(lines(100))
        w.flush(0.0)  # wake the writer thread: it takes the batch and hangs in the request
        assert fake.holding.wait(2)
        w.write_lines(lines(50, 100))
        t0 = time.monotonic()
        assert w.persist(0.6) is False  # the first 100 are in a request that did not finish
        assert 0.5 < time.monotonic() - t0 < 2.0
        # the lines behind the hanging request did not wait for it: they are in the spill
        assert spilled_lines(tmp_path / "spill") == lines(50, 100)
        fake.hold = None
        release.set()
        assert w.persist(5.0) is True
        assert w.flush(5.0)
        assert sorted(fake.sent) == sorted(lines(150))
    finally:
        release.set()
        w.close()


def test_full_spill_disk_and_influx_down_persist_false_and_nothing_lost(tmp_path):
    fake = FakeInflux()
    fake.down = True
    d = tmp_path / "spill"
    with full_disk(d, 64 * 1024):
        w = InfluxWriter(cfg(tmp_path, spill_retry_s=0.05), sender=fake)
        try:
            w.write_lines(lines(400))
            assert w.persist(0.5) is False
            st = w.stats()
            assert st["buffered"] == 400 and st["dropped"] == 0 and st["spilled"] == 0
            assert st["spill_error"]  # says why
            fake.down = False  # InfluxDB is back: the same lines go there
            assert w.persist(5.0) is True
            assert fake.sent == lines(400)
            assert w.stats()["dropped"] == 0
        finally:
            w.close()


def test_persist_covers_what_was_handed_in_before_it_under_concurrent_writes(tmp_path):
    """Whenever persist says True, every line written before the call is in InfluxDB or a
    spill file, while another thread keeps writing and InfluxDB flaps."""
    fake = FakeInflux()
    w = InfluxWriter(cfg(tmp_path, batch_size=37, flush_interval_ms=5), sender=fake)
    stop = threading.Event()
    written = [0]
    lock = threading.Lock()

    def producer() -> None:
        rnd = random.Random(7)
        while not stop.is_set():
            with lock:
                n = rnd.randint(1, 60)
                w.write_lines(lines(n, written[0]))
                written[0] += n
            time.sleep(0.001)

    def flapper() -> None:
        rnd = random.Random(11)
        while not stop.is_set():
            fake.down = rnd.random() < 0.5
            time.sleep(rnd.uniform(0.005, 0.05))

    threads = [threading.Thread(target=producer), threading.Thread(target=flapper)]
    for t in threads:
        t.start()
    checked = 0
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            with lock:
                before = written[0]
            if w.persist(2.0):
                # spill first: a file replayed meanwhile is in `sent` by the time it is read
                durable = set(spilled_lines(tmp_path / "spill"))
                with fake.lock:
                    durable.update(fake.sent)
                missing = [ln for ln in lines(before) if ln not in durable]
                assert missing == [], f"{len(missing)} lines reported durable are not"
                checked += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
        fake.down = False
        w.close()
    assert checked >= 5
    assert w.stats()["dropped"] == 0


def test_file_writer_persist_puts_everything_in_the_file(tmp_path):
    w = LineProtocolFileWriter(tmp_path)
    try:
        w.write_lines(lines(20))
        assert w.persist(1.0) is True
        assert w.path is not None
        # read by another handle, as a restarted process would
        text = Path(w.path).read_text()
        assert [ln for ln in text.split("\n") if ln and not ln.startswith("#")] == lines(20)
    finally:
        w.close()
