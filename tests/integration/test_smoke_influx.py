"""Smoke test: write and Flux-query through influxdb-client against the real InfluxDB 1.8
(2.x compatibility API: org "-", bucket "db/rp", token "user:password")."""

from __future__ import annotations

import time

import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS

pytestmark = pytest.mark.integration


def test_write_then_flux_query(influx, unique):
    now_ms = int(time.time() * 1000)
    lines = [
        f"smoke_{unique},enterprise=E1,tag=AT-1101 value={10 + i}.5,quality=0i {now_ms - 1000 * i}"
        for i in range(5)
    ]
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=influx.bucket, record=lines, write_precision="ms"
        )
        tables = client.query_api().query(
            f'from(bucket: "{influx.bucket}") |> range(start: -5m) '
            f'|> filter(fn: (r) => r._measurement == "smoke_{unique}" and r._field == "value") '
            f'|> sort(columns: ["_time"])'
        )
    values = [rec.get_value() for t in tables for rec in t.records]
    assert values == [14.5, 13.5, 12.5, 11.5, 10.5]
    assert {rec.values["tag"] for t in tables for rec in t.records} == {"AT-1101"}


def test_wrong_token_is_refused(influx):
    with InfluxDBClient(url=influx.url, token="hw:wrong", org=influx.org) as client:
        with pytest.raises(Exception) as ei:
            client.query_api().query(f'from(bucket: "{influx.bucket}") |> range(start: -1m)')
    assert getattr(ei.value, "status", None) == 401
