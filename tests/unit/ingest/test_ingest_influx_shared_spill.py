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
