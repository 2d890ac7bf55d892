"""Every query of every generated dashboard (panels, template variables, annotations) runs
against the real InfluxDB filled with a simulated day and returns data of the shape its
panel draws. One test walks them all and skips none."""

from __future__ import annotations

from datetime import date

import pytest

from dashboards.generate import build_all
from dashboards.influx import Influx, InfluxConfig, create_database, drop_database
from dashboards.testing import simulated_day
from dashboards.validate import validate

pytestmark = pytest.mark.integration

DAY = date(2026, 11, 28)


@pytest.fixture(scope="module")
def filled(request):
    import uuid

    from hazardwatch.sim.city import generate_registry
    from rules.loader import load_ruleset
    from rules.warnings import load_warning_config
    from tests.conftest import INFLUXDB, LOCAL_ENV

    INFLUXDB.require()
    db = f"hw_dash_{uuid.uuid4().hex[:10]}"
    base = InfluxConfig(LOCAL_ENV["HW_INFLUX__URL"], LOCAL_ENV["HW_INFLUX__TOKEN"], "-")
    create_database(base, db)
    cfg = InfluxConfig(base.url, base.token, "-", f"{db}/autogen")
    registry = generate_registry(points=80, seed=7)
    thresholds = load_ruleset(None, registry)  # the standard packs + registry limits
    day = simulated_day(registry, thresholds, DAY, risk_weights=load_warning_config().risk)
    influx = Influx(cfg)
    influx.write(day.rows())
    yield influx, day, build_all(registry, thresholds)
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
    """Panels show the numbers of the day, not just some rows: alarm count, open warnings,
    online rate dip of the gateway outage."""
    influx, day, dashboards = filled
    alarms = next(g.model for g in dashboards if g.uid == "hw-alarms")
    per10 = next(p for p in alarms["panels"] if p["title"] == "Alarms per 10 min")
    total = sum(
        r["_value"]
        for r in influx.records(
            per10["targets"][0]["query"],
            day.start_ms,
            day.end_ms,
            variables={"district": None, "enterprise": None, "installation": None},
        )
    )
    assert total == sum(1 for a in day.alarms if a.state == "firing")
    floods = next(p for p in alarms["panels"] if p["title"] == "Flood intervals")
    (row,) = influx.records(
        floods["targets"][0]["query"],
        day.start_ms,
        day.end_ms,
        variables={"district": None, "enterprise": None, "installation": None},
    )
    assert row["_value"] >= 1  # the scripted 10:00 flood
    overview = next(g.model for g in dashboards if g.uid == "hw-overview")
    online = next(p for p in overview["panels"] if p["title"] == "Online rate")
    (row,) = influx.records(
        online["targets"][0]["query"],
        day.start_ms,
        day.end_ms,
        variables={"district": None, "enterprise": None},
    )
    assert 0.9 < row["_value"] < 1.0  # one enterprise's gateway was down for an hour
