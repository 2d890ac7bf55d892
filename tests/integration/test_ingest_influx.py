"""InfluxWriter against the real InfluxDB 1.8, including an outage in the middle of a run:
a loopback TCP proxy in front of InfluxDB is closed (InfluxDB "down") and reopened; no
reading is lost once it is back, and the caller never waits meanwhile. The shared InfluxDB
itself is never stopped."""

from __future__ import annotations

import time

import pytest
from influxdb_client import InfluxDBClient

from ingest.influx import InfluxConfig, InfluxWriter, open_line_writer
from ingest.lineprotocol import reading_line
from ingest.model import Industry, Point, Reading
from tests.integration._ingest_proxy import Proxy

pytestmark = pytest.mark.integration


def point(ent: str, tag: str) -> Point:
    return Point(ent, "e", Industry.HAZCHEM, "d", "HZ", 2, "Z", "GW01", tag, "gas.NH3", "ppm")


def count_readings(influx, ent: str) -> int:
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        tables = client.query_api().query(
            f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
            f'|> filter(fn: (r) => r._measurement == "reading" and r.enterprise == "{ent}" '
            f'and r._field == "value") |> count()'
        )
    return sum(rec.get_value() for t in tables for rec in t.records)


def test_outage_in_the_middle_of_a_run_loses_nothing(influx, unique, tmp_path):
    host, port = influx.url.removeprefix("http://").split(":")
    proxy = Proxy((host, int(port)))
    proxy.up()
    ent = f"E{unique}"
    pts = [point(ent, f"AT-{i:03d}") for i in range(50)]
    cfg = InfluxConfig(
        url=f"http://127.0.0.1:{proxy.port}",
        token=influx.token,
        org=influx.org,
        bucket=influx.bucket,
        batch_size=500,
        flush_interval_ms=50,
        spill_dir=tmp_path / "spill",
        timeout_ms=2000,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
    )
    w = InfluxWriter(cfg)
    t0 = int(time.time() * 1000) - 60_000
    slowest = 0.0
    n = 0

    def write_round(k: int) -> None:
        nonlocal slowest, n
        lines = [
            reading_line(Reading(ent, p.tag, t0 + k * 100, float(k), 0, "ppm"), p) for p in pts
        ]
        t = time.perf_counter()
        w.write_lines(lines)
        slowest = max(slowest, time.perf_counter() - t)
        n += len(lines)

    try:
        for k in range(100):
            write_round(k)
        assert w.flush(20)
        proxy.down()  # InfluxDB goes away in the middle of the run
        for k in range(100, 300):
            write_round(k)
            time.sleep(0.002)
        time.sleep(0.5)
        s = w.stats()
        assert s["spilled"] > 0 and s["retries"] > 0 and s["last_error"], s
        proxy.up()  # and comes back
        for k in range(300, 400):
            write_round(k)
        assert w.flush(30), w.stats()
    finally:
        w.close()
        proxy.down()
    s = w.stats()
    assert n == 400 * 50
    assert s["written"] == n and s["dropped"] == 0 and s["failed"] == 0, s
    # far below the 2 s network timeout: the caller never waits for InfluxDB
    assert slowest < 0.5, f"write_lines blocked the caller for {slowest:.3f} s"
    assert count_readings(influx, ent) == n


def test_open_line_writer_picks_files_without_url(tmp_path, influx, unique):
    w = open_line_writer("", "", "-", "b", tmp_path)
    w.write_lines(["m f=1i 1"])
    w.close()
    assert list((tmp_path / "lineprotocol").glob("*.lp"))
    w2 = open_line_writer(influx.url, influx.token, influx.org, influx.bucket, tmp_path)
    ent = f"E{unique}"
    p = point(ent, "AT-1")
    w2.write_lines([reading_line(Reading(ent, "AT-1", int(time.time() * 1000), 1.5), p)])
    assert w2.flush(10)
    w2.close()
    assert count_readings(influx, ent) == 1
