"""Every query of every generated dashboard (panels, template variables, annotations) runs
against the real InfluxDB filled with a simulated day and returns data of the shape its
panel draws. One test walks them all and skips none."""

from __future__ import annotations

import functools
from datetime import date

import pytest

from dashboards.generate import build_all
from dashboards.influx import Influx, InfluxConfig, create_database, drop_database
from dashboards.testing import day_bounds, day_from_replay
from dashboards.validate import validate

# A UserWarning from influxdb_client means an ambiguous result (e.g. duplicate column names).
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("error::UserWarning")]

DAY = date(2026, 11, 28)


@functools.cache
def replayed_day(day: date, points: int = 80):
    """A simulated day (hazardwatch.sim: normal signals plus every incident kind, twice)
    replayed through the rules engine and the warning model, as InfluxDB rows. Cached: the
    report tests use the same day."""
    from hazardwatch.sim.city import generate_registry
    from hazardwatch.sim.simulation import Simulation
    from ingest.model import Reading
    from rules.loader import load_ruleset
    from rules.replay import run_replay
    from rules.warnings import WarningModel, load_warning_config

    registry = generate_registry(points=points, seed=7)
    start, end = day_bounds(day)
    sim = Simulation.demo(
        registry=registry, seed=7, start_ms=start, duration_ms=end - start, repeats=2
    )
    pts = registry.points
    readings = []
    for b in sim.deliveries(end):
        for ts, i, v, q, d in zip(
            b.ts_ms.tolist(),
            b.point.tolist(),
            b.value.tolist(),
            b.quality.tolist(),
            b.deliver_ms.tolist(),
            strict=True,
        ):
            p = pts[i]
            readings.append(Reading(p.enterprise_code, p.tag, ts, v, q, p.unit, d, d > ts))
    readings.sort(key=lambda r: (r.ts_ms, r.enterprise_code, r.tag))
    ruleset = load_ruleset(None, registry)  # the standard packs + registry limits
    config = load_warning_config()
    result = run_replay(
        registry,
        ruleset,
        readings,
        start_ms=start,
        end_ms=end,
        warning_model=WarningModel(config, registry),
    )
    simulated = day_from_replay(
        registry,
        readings,
        result.alarms,
        result.warnings,
        start_ms=start,
        end_ms=end,
        risk_weights=config.risk,
    )
    return simulated, ruleset


@pytest.fixture(scope="module")
def filled():
    import uuid

    from tests.conftest import INFLUXDB, LOCAL_ENV

    INFLUXDB.require()
    db = f"hw_dash_{uuid.uuid4().hex[:10]}"
    base = InfluxConfig(LOCAL_ENV["HW_INFLUX__URL"], LOCAL_ENV["HW_INFLUX__TOKEN"], "-")
    create_database(base, db)
    cfg = InfluxConfig(base.url, base.token, "-", f"{db}/autogen")
    day, ruleset = replayed_day(DAY)
    influx = Influx(cfg)
    influx.write(day.rows())
    yield influx, day, build_all(day.registry, ruleset)
    influx.close()
    drop_database(base, db)


def _columns(tables):
    cols = set()
    for t in tables:
        cols |= {c.label for c in t.columns}
    return cols


def _rows(tables):
    return [r.values for t in tables for r in t.records]


def _expected_columns(panel):
    for tr in panel.get("transformations", []):
        if tr["id"] == "organize":
            return list(tr["options"]["indexByName"])
    return []


def check_shape(where: str, ptype: str, panel: dict, tables) -> None:
    rows = _rows(tables)
    assert rows, f"{where}: no data"
    if ptype == "timeseries":
        for t in tables:
            labels = {c.label for c in t.columns}
            assert {"_time", "_value"} <= labels, f"{where}: series without _time/_value"
            for r in t.records:
                assert isinstance(r.values["_value"], int | float), f"{where}: non-numeric"
    elif ptype == "stat":
        assert len(rows) == 1, f"{where}: stat needs one row, got {len(rows)}"
        assert isinstance(rows[0]["_value"], int | float), f"{where}: stat value {rows[0]}"
    elif ptype in ("table", "geomap"):
        missing = set(_expected_columns(panel)) - _columns(tables)
        assert not missing, f"{where}: missing columns {sorted(missing)}"
        assert len(tables) == 1, f"{where}: a table panel needs one frame, got {len(tables)}"
    elif ptype == "barchart":
        cols = _columns(tables)
        x = panel["options"]["xField"]
        assert x in cols, f"{where}: no x field {x}"
        numeric = set(_expected_columns(panel)) - {x}
        assert cols & numeric, f"{where}: no value columns among {sorted(numeric)}"
    else:
        raise AssertionError(f"{where}: panel type {ptype} has no shape check")


def test_every_panel_variable_and_annotation_returns_data_of_its_shape(filled):
    influx, day, dashboards = filled
    start, stop = day.start_ms, day.end_ms
    walked = {"panel": 0, "variable": 0, "annotation": 0}
    kinds = set()
    for g in dashboards:
        model = g.model
        assert validate(model) == []
        # Every variable at "All" (Grafana's default for these multi-value variables).
        every = {v["name"]: None for v in model.get("templating", {}).get("list", [])}
        for var in model.get("templating", {}).get("list", []):
            if var["type"] == "custom":  # values from the registry, no query to run
                assert var["query"] and var["options"], f"{g.uid} variable {var['name']}"
                walked["variable"] += 1
                continue
            tables = influx.panel_query(var["query"], start, stop, variables=every)
            values = [r["_value"] for r in _rows(tables)]
            assert values, f"{g.uid} variable {var['name']}: no values"
            assert all(isinstance(v, str) and v for v in values)
            walked["variable"] += 1
        for ann in model.get("annotations", {}).get("list", []):
            rows = _rows(influx.panel_query(ann["target"]["query"], start, stop, variables=every))
            assert rows, f"{g.uid} annotation {ann['name']}: no events"
            assert all({"_time", "text"} <= set(r) for r in rows)
            walked["annotation"] += 1
        for panel in model["panels"]:
            if panel["type"] == "row":
                continue
            targets = panel.get("targets") or []
            assert targets, f"{g.uid} panel {panel['title']!r} has no query"
            for t in targets:
                tables = influx.panel_query(t["query"], start, stop, variables=every)
                check_shape(f"{g.uid} / {panel['title']}", panel["type"], panel, tables)
                walked["panel"] += 1
                kinds.add(panel["type"])
    # Overview, alarms, pipeline and one drill-down per enterprise, all walked.
    assert len(dashboards) == 3 + len(day.registry.enterprises())
    assert walked["panel"] > 30 and walked["variable"] >= 9 and walked["annotation"] >= 3
    assert kinds == {"timeseries", "stat", "table", "geomap", "barchart"}


def test_variables_narrow_the_panels(filled):
    """Selecting one district shows only that district's enterprises and warnings."""
    influx, day, dashboards = filled
    overview = next(g.model for g in dashboards if g.uid == "hw-overview")
    district = sorted({p.district for p in day.registry})[0]
    geo = next(p for p in overview["panels"] if p["type"] == "geomap")
    rows = influx.records(
        geo["targets"][0]["query"],
        day.start_ms,
        day.end_ms,
        variables={"district": [district], "enterprise": None},
    )
    expected = sorted({p.enterprise_code for p in day.registry if p.district == district})
    assert sorted(r["enterprise"] for r in rows) == expected
    assert {r["district"] for r in rows} == {district}
    for r in rows:
        assert 29 < r["lat"] < 31 and 112 < r["lon"] < 114  # Qianjiang


def test_figures_match_the_simulated_day(filled):
    """Panels show the numbers of the day, not just some rows: alarms per 10 min, floods,
    the worst point per minute, the online-rate dip of the gateway outages."""
    influx, day, dashboards = filled
    every = {"district": None, "enterprise": None, "installation": None}
    firing = sorted(a.ts_ms for a in day.alarms if a.state == "firing")
    alarms = next(g.model for g in dashboards if g.uid == "hw-alarms")

    def panel(title):
        p = next(p for p in alarms["panels"] if p["title"].startswith(title))
        return influx.records(p["targets"][0]["query"], day.start_ms, day.end_ms, variables=every)

    assert sum(r["_value"] for r in panel("Alarms per 10 min")) == len(firing)
    per10 = {}
    for t in firing:
        per10[t // 600_000] = per10.get(t // 600_000, 0) + 1
    (flood,) = panel("Flood intervals")
    assert flood["_value"] == sum(1 for n in per10.values() if n > 10) >= 1
    per_min = {}
    for a in day.alarms:
        if a.state == "firing":
            k = (a.enterprise_code, a.tag, a.ts_ms // 60_000)
            per_min[k] = per_min.get(k, 0) + 1
    worst = panel("Chattering")[0]
    assert worst["max_per_minute"] == max(per_min.values())
    overview = next(g.model for g in dashboards if g.uid == "hw-overview")
    bars = next(p for p in overview["panels"] if p["title"].startswith("Open warnings"))
    shown = {
        (r["district"], c): r[c]
        for r in influx.records(
            bars["targets"][0]["query"], day.start_ms, day.end_ms, variables=every
        )
        for c in ("blue", "yellow", "orange", "red")
        if r.get(c) is not None
    }
    districts = {p.enterprise_code: p.district for p in day.registry}
    last = {}
    for w in sorted(day.warnings, key=lambda w: w.ts_ms):
        if day.start_ms <= w.ts_ms < day.end_ms:
            last[w.warning_id] = w
    expected = {}
    for w in last.values():
        if w.state != "closed":
            k = (districts[w.enterprise_code], str(w.colour))
            expected[k] = expected.get(k, 0) + 1
    assert shown == expected and expected  # open at the end of the day, by latest colour
    online = next(p for p in overview["panels"] if p["title"] == "Online rate")
    (row,) = influx.records(
        online["targets"][0]["query"],
        day.start_ms,
        day.end_ms,
        variables={"district": None, "enterprise": None},
    )
    assert 0.9 < row["_value"] < 1.0  # the day's gateway outages
