"""Replay with InfluxDB history as input, against the real local InfluxDB 1.8 (Flux through
the 2.x compatibility API): `reading` lines written with influxdb-client under a unique
enterprise code come back as readings and raise the alarms a CSV replay would."""

from __future__ import annotations

import json

import pytest
from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from hazardwatch.cli import main
from ingest.model import Industry, Registry
from ingest.model import Point as HwPoint
from rules.loader import load_ruleset
from rules.replay import ReplayInputError, read_influx, run_replay

pytestmark = pytest.mark.integration

T0 = 1_795_939_200_000  # 2026-11-29T08:00:00Z


def _registry(ent: str) -> Registry:
    def pt(tag, parameter, unit):
        return HwPoint(
            enterprise_code=ent,
            enterprise_name="回放",
            industry=Industry.HAZCHEM,
            district="D",
            hazard_code=f"HZ-{ent}",
            hazard_level=2,
            zone="Z",
            gateway_code="GW",
            tag=tag,
            parameter=parameter,
            unit=unit,
            range_low=0,
            range_high=100,
            expected_interval_s=10,
        )

    return Registry([pt("AT-CH4", "gas.CH4", "%LEL"), pt("AT-NH3", "gas.NH3", "mg/m3")])


def _write(influx, ent: str, rows) -> None:
    with InfluxDBClient(url=influx.url, token=influx.token, org=influx.org) as c:
        pts = [
            Point("reading")
            .tag("enterprise", ent)
            .tag("tag", tag)
            .tag("unit", unit)
            .tag("parameter", param)
            .field("value", float(v))
            .field("quality", q)
            .time(ts, WritePrecision.MS)
            for ts, tag, param, unit, v, q in rows
        ]
        c.write_api(write_options=SYNCHRONOUS).write(bucket=influx.bucket, record=pts)


@pytest.fixture
def history(influx, unique):
    ent = f"IT{unique}"
    rows = []
    for i in range(12):
        ts = T0 + i * 10_000
        rows.append((ts, "AT-CH4", "gas.CH4", "%LEL", 30.0 if 3 <= i < 8 else 5.0, 0))
        # stored in ppm although the point is registered in mg/m3: converted on the way in
        rows.append((ts, "AT-NH3", "gas.NH3", "ppm", 60.0 if i == 5 else 5.0, 0))
    rows.append((T0 + 5_000, "AT-GONE", "gas.CH4", "%LEL", 1.0, 0))  # no longer registered
    _write(influx, ent, rows)
    return ent


def test_influx_history_replays_like_a_file(influx, history):
    ent = history
    reg = _registry(ent)
    inp = read_influx(
        url=influx.url,
        token=influx.token,
        org=influx.org,
        bucket=influx.bucket,
        registry=reg,
        start_ms=T0,
        stop_ms=T0 + 3_600_000,
        enterprise=ent,
    )
    assert len(inp.readings) == 24
    assert [r.ts_ms for r in inp.readings] == sorted(r.ts_ms for r in inp.readings)
    nh3 = next(r for r in inp.readings if r.tag == "AT-NH3" and r.ts_ms == T0 + 50_000)
    assert nh3.value == pytest.approx(60 * 17.03 / 24.04, rel=1e-4) and nh3.unit == "mg/m3"
    assert inp.bad_row_count == 1 and f"{ent}/AT-GONE is not in the registry" in str(
        inp.bad_rows[0]
    )

    res = run_replay(reg, load_ruleset(None, reg), inp.readings)
    got = [
        ((a.ts_ms - T0) // 1000, a.tag, str(a.kind), a.level and str(a.level), str(a.state))
        for a in res.alarms
        if a.kind == "limit"
    ]
    assert got == [
        (30, "AT-CH4", "limit", "L1", "firing"),
        (50, "AT-NH3", "limit", "L2", "firing"),  # 60 ppm = 42.5 mg/m3 > AH 40
        (60, "AT-NH3", "limit", "L2", "cleared"),
        (80, "AT-CH4", "limit", "L1", "cleared"),
    ]


def test_replay_cli_from_influx(influx, history, tmp_path, monkeypatch, capsys):
    ent = history
    reg_file = tmp_path / "registry.csv"
    reg_file.write_text(
        "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
        "gateway_code,tag,parameter,unit,range_low,range_high,expected_interval_s\n"
        f"{ent},回放,hazchem,D,HZ-{ent},2,Z,GW,AT-CH4,gas.CH4,%LEL,0,100,10\n"
        f"{ent},回放,hazchem,D,HZ-{ent},2,Z,GW,AT-NH3,gas.NH3,mg/m3,0,100,10\n"
    )
    for k, v in {
        "HW_INFLUX__URL": influx.url,
        "HW_INFLUX__TOKEN": influx.token,
        "HW_INFLUX__ORG": influx.org,
        "HW_INFLUX__BUCKET": influx.bucket,
    }.items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "alarms.jsonl"
    rc = main(
        [
            "replay",
            "--registry",
            str(reg_file),
            "--from-influx",
            "--start",
            "2026-11-29T16:00:00+08:00",
            "--stop",
            "2026-11-29T17:00:00+08:00",
            "--enterprise",
            ent,
            "--out",
            str(out),
            "--json-summary",
        ]
    )
    text, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(text)
    assert summary["input"]["readings"] == 24
    assert summary["alarms"]["by_level"]["L1"] == 1 and summary["alarms"]["by_level"]["L2"] == 1
    assert any(json.loads(x)["tag"] == "AT-NH3" for x in out.read_text().splitlines())
    assert influx.token not in err + text  # the token never shows


def test_unreachable_influx_is_one_clear_error(influx):
    reg = _registry("X")
    with pytest.raises(ReplayInputError, match="history query failed") as ei:
        read_influx(
            url="http://127.0.0.1:9",
            token=influx.token,
            org="-",
            bucket="b",
            registry=reg,
            start_ms=T0,
            stop_ms=T0 + 1,
            timeout_s=2,
        )
    assert influx.token not in str(ei.value)


def test_rules_diff_from_influx(influx, history, tmp_path, monkeypatch, capsys):
    ent = history
    reg_file = tmp_path / "registry.csv"
    reg_file.write_text(
        "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
        "gateway_code,tag,parameter,unit,range_low,range_high,expected_interval_s\n"
        f"{ent},回放,hazchem,D,HZ-{ent},2,Z,GW,AT-CH4,gas.CH4,%LEL,0,100,10\n"
        f"{ent},回放,hazchem,D,HZ-{ent},2,Z,GW,AT-NH3,gas.NH3,mg/m3,0,100,10\n"
    )
    new = tmp_path / "new"
    new.mkdir()
    (new / "ch4.rules.yaml").write_text(
        "version: 1\nrules:\n  - name: site.ch4\n    kind: limit\n    match: {tag: AT-CH4}\n"
        "    for: 25s\n"
    )
    for k, v in {
        "HW_INFLUX__URL": influx.url,
        "HW_INFLUX__TOKEN": influx.token,
        "HW_INFLUX__ORG": influx.org,
        "HW_INFLUX__BUCKET": influx.bucket,
    }.items():
        monkeypatch.setenv(k, v)
    rc = main(
        [
            "rules",
            "diff",
            "@defaults",
            str(new),
            "--registry",
            str(reg_file),
            "--from-influx",
            "--start",
            "2026-11-29T08:00:00Z",
            "--stop",
            "2026-11-29T08:02:00Z",
            "--enterprise",
            ent,
            "--fail-on",
            "later:10",
            "--json",
        ]
    )
    text, err = capsys.readouterr()
    assert rc == 1, err
    d = json.loads(text)
    # CH4 above 25 %LEL from 30 s to 70 s: at once with the pack, 25 s later with the new rule
    assert [(s["alarm"], s["delta_s"]) for s in d["shifted"]] == [(f"{ent}/AT-CH4 limit L1", 25.0)]
    assert d["regressions"][0].startswith(f"alarm later by 25 s (> 10 s): {ent}/AT-CH4 limit L1")
