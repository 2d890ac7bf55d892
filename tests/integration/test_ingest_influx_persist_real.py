"""`InfluxWriter.persist` against the real InfluxDB 1.8: when it says True the readings can be
queried at once, and while InfluxDB is unreachable (a loopback proxy in front of it closed) it
says True only once they are in spill files, which a writer started after a kill sends."""

from __future__ import annotations

import time

import pytest

from ingest.influx import InfluxConfig, InfluxWriter
from ingest.lineprotocol import reading_line
from ingest.model import Reading
from tests.integration._ingest_proxy import Proxy
from tests.integration.test_ingest_influx import count_readings, point

pytestmark = pytest.mark.integration


def test_persist_with_influxdb_up_then_unreachable(influx, unique, tmp_path):
    host, port = influx.url.removeprefix("http://").split(":")
    proxy = Proxy((host, int(port)))
    proxy.up()
    ent = f"E{unique}"
    pts = [point(ent, f"AT-{i:03d}") for i in range(20)]
    t0 = int(time.time() * 1000) - 60_000

    def batch(k: int) -> list[str]:
        return [reading_line(Reading(ent, p.tag, t0 + k * 100, float(k)), p) for p in pts]

    cfg = InfluxConfig(
        url=f"http://127.0.0.1:{proxy.port}",
        token=influx.token,
        org=influx.org,
        bucket=influx.bucket,
        flush_interval_ms=1000,  # persist must not wait for the periodic round
        spill_dir=tmp_path / "spill",
        timeout_ms=1000,
        backoff_initial_s=0.2,
    )
    w = InfluxWriter(cfg)
    try:
        for k in range(10):
            w.write_lines(batch(k))
        assert w.persist(5.0) is True
        assert count_readings(influx, ent) == 200  # queryable the moment persist said so
        proxy.down()
        for k in range(10, 30):
            w.write_lines(batch(k))
        assert w.persist(5.0) is True, w.stats()
        st = w.stats()
        assert st["spilled"] == 400 and st["buffered"] == 0 and st["dropped"] == 0, st
        assert count_readings(influx, ent) == 200
    finally:
        proxy.down()
    # kill -9 here (no close): a writer started afterwards on the folder sends the spill
    w2 = InfluxWriter(
        InfluxConfig(
            url=influx.url,
            token=influx.token,
            org=influx.org,
            bucket=influx.bucket,
            spill_dir=tmp_path / "spill",
        )
    )
    try:
        assert w2.flush(20), w2.stats()
    finally:
        w2.close()
    assert count_readings(influx, ent) == 600
