"""InfluxDB rows of alarms, warnings, risk, online rate, pipeline health and handling: the
documented schema (docs/influx-schema.md), as line protocol, and Grafana's macro expansion."""

from __future__ import annotations

from dashboards.queries import interpolate
from dashboards.series import (
    HandlingEvent,
    PipelineStats,
    RiskSnapshot,
    alarm_rows,
    disposition_rows,
    notification_row,
    online_rows,
    pipeline_rows,
    risk_rows,
    warning_rows,
)
from ingest.model import Industry, Point, Registry, RejectReason
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState
from rules.risk import RiskLevel

T0 = 1_764_288_000_000  # 2025-11-28T00:00:00Z


def _registry() -> Registry:
    def pt(ent, tag, district, interval=10.0, lat=30.0, lon=112.0, param="level", hazard="H1"):
        return Point(
            ent,
            f"name {ent}",
            Industry.HAZCHEM,
            district,
            hazard,
            2,
            "Z1",
            "G1",
            tag,
            param,
            "%",
            expected_interval_s=interval,
            lat=lat,
            lon=lon,
        )

    return Registry(
        [
            pt("E1", "LT-1", "开发区", lat=30.0, lon=112.0),
            pt("E1", "LT-2", "开发区", lat=30.2, lon=112.2, interval=60.0),
            pt("E1", "CAM-1", "开发区", lat=30.1, lon=112.1, param="event"),
            pt("E2", "TT-1", "城区", hazard=""),
        ]
    )


def _alarm(state: AlarmState, level: Level | None, value: float | None, ts: int) -> AlarmEvent:
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code="E1",
        hazard_code="H1",
        zone="Z1",
        tag="LT-1",
        parameter="level",
        kind=Kind.LIMIT,
        level=level,
        state=state,
        value=value,
        threshold=85.0 if value is not None else None,
        unit="%",
        rule="tankfarm.limits",
        alarm_id="a1",
        pack="registry",
    )


def test_alarm_rows_follow_the_schema_and_render_as_line_protocol():
    firing, cleared = alarm_rows(
        [
            _alarm(AlarmState.FIRING, Level.HH, 87.5, T0),
            _alarm(AlarmState.CLEARED, None, None, T0 + 1000),
        ],
        _registry(),
    )
    assert firing.measurement == "alarm"
    assert dict(firing.tags) == {
        "enterprise": "E1",
        "district": "开发区",
        "hazard": "H1",
        "zone": "Z1",
        "tag": "LT-1",
        "parameter": "level",
        "kind": "limit",
        "level": "HH",
        "state": "firing",
        "rule": "tankfarm.limits",
    }
    assert dict(firing.fields) == {
        "alarm_id": "a1",
        "value": 87.5,
        "threshold": 85.0,
        "firing": 1,
        "pack": "registry",
        "backfill": False,
    }
    assert cleared.tags["level"] == "none" and cleared.fields["firing"] == 0
    assert "value" not in cleared.fields  # InfluxDB has no null: unset fields are left out
    assert firing.line() == (
        "alarm,district=开发区,enterprise=E1,hazard=H1,kind=limit,level=HH,parameter=level,"
        "rule=tankfarm.limits,state=firing,tag=LT-1,zone=Z1 "
        'alarm_id="a1",value=87.5,threshold=85.0,firing=1i,pack="registry",backfill=false '
        f"{T0}"
    )


def test_warning_and_handling_rows():
    (w,) = warning_rows(
        [
            WarningEvent(
                ts_ms=T0,
                warning_id="w1",
                enterprise_code="E2",
                hazard_code="",
                colour=Colour.ORANGE,
                previous=None,
                state=WarningState.RAISED,
                reason="HH",
            )
        ],
        _registry(),
    )
    assert dict(w.tags) == {
        "enterprise": "E2",
        "district": "城区",
        "hazard": "none",
        "colour": "orange",
        "state": "raised",
    }
    assert dict(w.fields) == {"warning_id": "w1", "rank": 3, "reason": "HH"}
    (h,) = disposition_rows(
        [
            HandlingEvent(
                "w1", "E2", "", Colour.ORANGE, "disposed", 3600.0, T0, result="process_fluctuation"
            )
        ],
        _registry(),
    )
    assert h.tags["disposition"] == "process_fluctuation" and h.fields["elapsed_s"] == 3600.0


def test_risk_rows_carry_name_and_location_for_the_map():
    snap = RiskSnapshot.of(
        RiskLevel("E1", Colour.YELLOW, 31.5, (), 2), [Colour.BLUE, Colour.ORANGE]
    )
    (r,) = risk_rows([snap], _registry(), T0)
    assert dict(r.tags) == {"enterprise": "E1", "district": "开发区"}
    assert r.fields["level"] == "yellow" and r.fields["rank"] == 2
    assert r.fields["warning"] == "orange" and r.fields["warning_rank"] == 3
    assert r.fields["open_warnings"] == 2 and r.fields["name"] == "name E1"
    assert abs(r.fields["lat"] - 30.1) < 1e-9 and abs(r.fields["lon"] - 112.1) < 1e-9
    (none,) = risk_rows([RiskSnapshot("E2", None, 0.0)], _registry(), T0)
    assert none.fields["level"] == "none" and none.fields["rank"] == 0


def test_online_rows_count_points_reporting_within_their_offline_limit():
    seen = {"E1/LT-1": T0 - 25_000, "E1/LT-2": T0 - 200_000}  # 2.5 and 3.3 intervals ago
    rows = {
        r.tags["enterprise"]: r.fields
        for r in online_rows(_registry(), seen, T0, offline_after=3.0)
    }
    # LT-2 (60 s) was seen 200 s ago: within 3 x 60 s? no. Event points are not counted.
    assert rows["E1"] == {"points": 2, "online": 1, "rate": 0.5}
    assert rows["E2"] == {"points": 1, "online": 0, "rate": 0.0}


def test_pipeline_rows_rate_and_one_reject_row_per_reason():
    rows = pipeline_rows(
        PipelineStats("embedded", 10.0, 930, {RejectReason.UNKNOWN_TAG: 3, RejectReason.SCHEMA: 0}),
        T0,
    )
    assert rows[0].fields["readings_per_s"] == 93.0 and rows[0].fields["rejects"] == 3
    assert [(r.measurement, dict(r.tags), dict(r.fields)) for r in rows[1:]] == [
        ("reject", {"process": "embedded", "reason": "unknown_tag"}, {"count": 3})
    ]
    n = notification_row(
        notification_id="n1",
        enterprise_code="E1",
        channel="wecom",
        event_type="raised",
        result="delivered",
        attempts=1,
        latency_ms=12.5,
        ts_ms=T0,
    )
    assert n.line().startswith("notification,channel=wecom,enterprise=E1,event_type=raised,")


def test_interpolate_expands_macros_and_variables_like_grafana():
    flux = (
        "from(bucket: v.defaultBucket) |> range(start: v.timeRangeStart, stop: "
        "v.timeRangeStop) |> filter(fn: (r) => r.district =~ /^${district:regex}$/ and "
        "r.tag =~ /^${tag:regex}$/) |> aggregateWindow(every: v.windowPeriod, fn: max)"
    )
    out = interpolate(
        flux,
        start="2025-11-28T00:00:00Z",
        stop="2025-11-29T00:00:00Z",
        window="5m",
        bucket="db/autogen",
        variables={"district": None, "tag": ["LT-1", "A.B"]},
    )
    assert 'from(bucket: "db/autogen")' in out
    assert "range(start: 2025-11-28T00:00:00Z, stop: 2025-11-29T00:00:00Z)" in out
    assert "r.district =~ /^.*$/" in out  # All
    assert r"r.tag =~ /^(LT\-1|A\.B)$/" in out  # regex-escaped, joined
    assert "every: 5m" in out
