"""The InfluxDB writer against the real InfluxDB 1.8 when InfluxDB goes away (a loopback
proxy in front of it is cut) while the spill folder is a full disk (a tmpfs at ENOSPC, from
tests/faults/env.py): the lines wait in memory and all reach InfluxDB when it is back; and
when the outage outlasts the memory bound, the drops show in the `pipeline` row that
operators read in Grafana. The shared InfluxDB itself is never stopped."""

from __future__ import annotations

import time

import pytest
from influxdb_client import InfluxDBClient

from hazardwatch.metrics import Metrics
from hazardwatch.wiring import TimeseriesFeed
from ingest.influx import InfluxConfig, InfluxWriter
from ingest.lineprotocol import reading_line
from ingest.model import Industry, Point, Reading
from tests.faults.env import full_disk
from tests.integration._ingest_proxy import Proxy

pytestmark = pytest.mark.integration


def point(ent: str, tag: str) -> Point:
    return Point(ent, "e", Industry.HAZCHEM, "d", "HZ", 2, "Z", "GW01", tag, "gas.NH3", "ppm")


def query(influx, flux: str) -> list:
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        return [rec for t in client.query_api().query(flux) for rec in t.records]


def count_readings(influx, ent: str) -> int:
    recs = query(
        influx,
        f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
        f'|> filter(fn: (r) => r._measurement == "reading" and r.enterprise == "{ent}" '
        f'and r._field == "value") |> count()',
    )
    return sum(r.get_value() for r in recs)


def writer(influx, proxy: Proxy, spill, **kw) -> InfluxWriter:
    return InfluxWriter(
        InfluxConfig(
            url=f"http://127.0.0.1:{proxy.port}",
            token=influx.token,
            org=influx.org,
            bucket=influx.bucket,
            batch_size=500,
            flush_interval_ms=50,
            spill_dir=spill,
            timeout_ms=2000,
            backoff_initial_s=0.2,
            backoff_max_s=1.0,
            spill_retry_s=0.2,
            **kw,
        )
    )


def proxy_for(influx) -> Proxy:
    host, port = influx.url.removeprefix("http://").split(":")
    return Proxy((host, int(port)))


def test_outage_on_a_full_spill_disk_loses_nothing(influx, unique, tmp_path):
    proxy = proxy_for(influx)
    proxy.up()
    ent = f"E{unique}"
    pts = [point(ent, f"AT-{i:03d}") for i in range(30)]
    t0 = int(time.time() * 1000) - 120_000
    n = 0
    slowest = 0.0
    with full_disk(tmp_path / "spill", 256 * 1024):
        w = writer(influx, proxy, tmp_path / "spill")
        try:

            def write_round(k: int) -> None:
                nonlocal n, slowest
                lines = [
                    reading_line(Reading(ent, p.tag, t0 + k * 100, float(k), 0, "ppm"), p)
                    for p in pts
                ]
                t = time.perf_counter()
                w.write_lines(lines)
                slowest = max(slowest, time.perf_counter() - t)
                n += len(lines)

            write_round(0)
            assert w.flush(20)
            proxy.down()
            # 3 s at 300 readings/s (10 rounds of 30 a second) with InfluxDB away
            for k in range(1, 31):
                write_round(k)
                time.sleep(0.1)
            s = w.stats()
            assert s["retries"] > 0 and s["spill_errors"] > 0 and s["spilled"] == 0, s
            assert s["dropped"] == 0 and s["buffered"] > 0, s
            proxy.up()
            assert w.flush(30), w.stats()
        finally:
            w.close()
            proxy.down()
    s = w.stats()
    assert n == 31 * 30 and s["written"] == n and s["dropped"] == 0, s
    assert slowest < 0.5, f"write_lines held the caller for {slowest:.3f} s"
    assert count_readings(influx, ent) == n


def test_drops_beyond_the_memory_bound_show_in_the_pipeline_row(influx, unique, tmp_path):
    proxy = proxy_for(influx)  # never up: InfluxDB stays away until the end
    ent = f"E{unique}"
    p = point(ent, "AT-001")
    t0 = int(time.time() * 1000) - 60_000
    with full_disk(tmp_path / "spill", 64 * 1024):
        w = writer(influx, proxy, tmp_path / "spill", max_buffer_lines=200)
        process = f"spill-{unique}"
        feed = TimeseriesFeed(w, None, Metrics(process), process=process, pipeline_every_s=3600)
        try:
            w.write_lines(
                [
                    reading_line(Reading(ent, p.tag, t0 + i, float(i), 0, "ppm"), p)
                    for i in range(500)
                ]
            )
            deadline = time.monotonic() + 10
            while w.stats()["dropped"] < 300 and time.monotonic() < deadline:
                time.sleep(0.05)
            at_row = w.stats()["dropped"]
            now = int(time.time() * 1000)
            w.write_lines(feed.pipeline_lines(now))  # what the runner does every 10 s
            proxy.up()
            assert w.flush(30), w.stats()
        finally:
            feed._q.put(None)  # stop the feed's thread without its final flush/close
            w.close()
            proxy.down()
    s = w.stats()
    assert at_row == 300 and s["written"] + s["dropped"] == 501, s
    recs = query(
        influx,
        f'from(bucket: "{influx.bucket}") |> range(start: -1h) '
        f'|> filter(fn: (r) => r._measurement == "pipeline" and r.process == "spill-{unique}" '
        f'and r._field == "influx_dropped")',
    )
    assert [r.get_value() for r in recs] == [300]
