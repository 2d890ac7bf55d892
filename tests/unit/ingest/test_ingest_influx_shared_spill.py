"""Two writers on one spill folder (distributed workers sharing `storage.data_dir`) during an
InfluxDB outage: every line of both is replayed once InfluxDB answers. Found by the fault
suite (tests/faults, InfluxDB stopped for minutes): with sequence-only file names each
writer's batches replaced the other's and about 80 % of the readings were lost."""

from __future__ import annotations

import time

from ingest.influx import InfluxConfig, InfluxUnavailable, InfluxWriter


def test_two_writers_sharing_a_spill_folder_lose_nothing(tmp_path):
    down = [True]
    got: list[str] = []

    def send(lines: list[str]) -> None:
        if down[0]:
            raise InfluxUnavailable("InfluxDB unreachable: connection refused")
        got.extend(lines)

    cfg = InfluxConfig(
        url="http://127.0.0.1:1",
        token="u:p",
        spill_dir=tmp_path / "spill",
        flush_interval_ms=20,
        backoff_initial_s=0.05,
        backoff_max_s=0.1,
    )
    a, b = InfluxWriter(cfg, sender=send), InfluxWriter(cfg, sender=send)
    try:
        for i in range(30):
            a.write_lines([f"m,w=a v={i} {i}"])
            b.write_lines([f"m,w=b v={i} {i}"])
            time.sleep(0.01)
        deadline = time.monotonic() + 5
        while a.stats()["spilled"] + b.stats()["spilled"] < 60 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.stats()["spilled"] + b.stats()["spilled"] == 60
        down[0] = False
        assert a.flush(10) and b.flush(10)
    finally:
        a.close()
        b.close()
    want = {f"m,w={w} v={i} {i}" for w in "ab" for i in range(30)}
    assert set(got) == want
    assert not list((tmp_path / "spill").glob("spill-*"))


def test_a_live_writer_replays_the_files_a_dead_peer_left(tmp_path):
    """A worker killed while InfluxDB was down leaves spill files nobody would replay if it
    is not restarted (or restarted with no readings to write): the live peer sharing the
    folder adopts them once they are older than `spill_adopt_after_s`, and replays them."""
    from ingest.influx import _Spill

    got: list[str] = []
    live_cfg = InfluxConfig(
        url="http://127.0.0.1:1",
        token="u:p",
        spill_dir=tmp_path / "spill",
        flush_interval_ms=20,
        spill_adopt_after_s=0.3,
        spill_adopt_every_s=0.05,
    )
    live = InfluxWriter(live_cfg, sender=got.extend)  # started before the peer spilled
    try:
        dead = _Spill(tmp_path / "spill", 1 << 20)  # the killed peer's spill, never replayed
        for i in range(3):
            dead.put([f"m,w=dead v={i} {i}"])
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert got == [f"m,w=dead v={i} {i}" for i in range(3)]
        assert not list((tmp_path / "spill").glob("spill-*"))
        assert live.stats()["replayed"] == 3
    finally:
        live.close()


def test_a_file_a_peer_replayed_first_leaves_the_byte_count(tmp_path):
    from ingest.influx import _Spill

    a = _Spill(tmp_path / "spill", 1 << 20)
    b = _Spill(tmp_path / "spill", 1 << 20)
    a.put(["m v=1 1"])
    assert b.adopt(60.0) == 0  # a fresh file is its live writer's to replay
    time.sleep(0.01)
    assert b.adopt(0.0) == 1 and b.bytes == a.bytes > 0
    path, _lines = b.peek()
    b.pop(path)  # b replayed it first
    assert b.bytes == 0
    assert a.peek() is None  # a finds it gone, and forgets its bytes
    assert a.bytes == 0 and len(a) == 0
