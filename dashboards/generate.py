"""Generates the Grafana dashboards from the point registry and the loaded rules: the city
overview, one drill-down per enterprise, alarm management (ISA-18.2) and pipeline health.

Pure: registry and thresholds in, JSON-ready dicts out, identical for identical input. Limit
lines come from `thresholds_for(point_key)` of the rule set, so a threshold is never typed
twice. Built with the Grafana Foundation SDK (Grafana 11 schema) plus our Flux query type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from grafana_foundation_sdk.builders import (
    barchart,
    common,
    dashboard,
    geomap,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m

from dashboards import queries as q
from dashboards.flux import INFLUXDB_TYPE, FluxAnnotationTargetBuilder, FluxQueryBuilder
from ingest.model import Point, Registry
from rules.kpi import KpiConfig

DATASOURCE_UID = "hazardwatch-influx"
SCHEMA_TAG = "hazardwatch"
OVERVIEW_UID = "hw-overview"
ALARMS_UID = "hw-alarms"
PIPELINE_UID = "hw-pipeline"
ENTERPRISE_UID_PREFIX = "hw-ent-"
ENTERPRISE_TAG = "hazardwatch-enterprise"

#: Folder (one per area) of each kind of dashboard; also the sub-directory of `build`.
FOLDERS = {
    "overview": "City",
    "enterprise": "Enterprises",
    "alarms": "Alarms",
    "pipeline": "Operations",
}

#: Levels below which a value is abnormal (the others are upper limits).
LOW_LEVELS = ("LL", "L")
#: Colours of limit lines: first level / pre-alarm amber, second level red (GB/T 50493 and
#: process HH/LL are both "second level").
LEVEL_COLOURS = {
    "L1": "orange",
    "H": "orange",
    "L": "orange",
    "L2": "red",
    "HH": "red",
    "LL": "red",
}
#: Warning/risk rank (0 none, 1 蓝 .. 4 红) -> colour, shared by map, tables and bars.
RANK_STEPS = ((None, "green"), (1, "blue"), (2, "yellow"), (3, "orange"), (4, "red"))

_UID_OK = re.compile(r"^[A-Za-z0-9_-]{1,33}$")


class ThresholdLike(Protocol):
    level: Any
    value: float
    unit: str
    rule: str
    pack: str
    pack_version: str


class ThresholdSource(Protocol):
    """What the generator needs from `rules.loader.RuleSet`."""

    def thresholds_for(self, point_key: str) -> Sequence[ThresholdLike]: ...


class GenerateError(ValueError):
    """The registry or rules cannot be turned into dashboards (names what and where)."""


@dataclass(frozen=True)
class Generated:
    """One dashboard and where it goes (`folder` is the Grafana folder title)."""

    uid: str
    folder: str
    model: dict[str, Any]

    @property
    def path(self) -> str:
        # The directory is the folder title: Grafana's file provisioning
        # (foldersFromFilesStructure) then makes the same folders as `dashboards push`.
        return f"{self.folder}/{self.uid}.json"


def enterprise_uid(enterprise_code: str) -> str:
    if not _UID_OK.match(enterprise_code):
        raise GenerateError(
            f"enterprise code {enterprise_code!r} cannot be part of a Grafana dashboard uid; "
            "expected 1-33 characters of A-Z a-z 0-9 _ -"
        )
    return ENTERPRISE_UID_PREFIX + enterprise_code


# -- building blocks -------------------------------------------------------------------------


def _ds() -> dash_m.DataSourceRef:
    return dash_m.DataSourceRef(type_val=INFLUXDB_TYPE, uid=DATASOURCE_UID)


def _target(flux: str, ref: str = "A") -> FluxQueryBuilder:
    return FluxQueryBuilder().ref_id(ref).query(flux).datasource(_ds())


class _Grid:
    """Places panels left to right in Grafana's 24-column grid, with stable ids."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def place(self, builder: Any, w: int, h: int) -> Any:
        if self.x + w > 24:
            self.newline()
        builder.grid_pos(dash_m.GridPos(h=h, w=w, x=self.x, y=self.y))
        builder.id(self.next_id)
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return builder

    def newline(self) -> None:
        self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def row(self, title: str) -> dashboard.Row:
        self.newline()
        r = dashboard.Row(title).grid_pos(dash_m.GridPos(h=1, w=24, x=0, y=self.y)).id(self.next_id)
        self.next_id += 1
        self.y += 1
        return r


def _rank_thresholds() -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dash_m.ThresholdsMode.ABSOLUTE)
        .steps([dash_m.Threshold(value=v, color=c) for v, c in RANK_STEPS])
    )


def _query_var(name: str, label: str, flux: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .query(flux)
        .datasource(_ds())
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def scope_variables(*, installation: bool = True) -> list[dashboard.QueryVariable]:
    """district -> enterprise -> installation, each narrowed by the ones before it."""
    out = [
        _query_var("district", "District", q.variable_values("district")),
        _query_var(
            "enterprise",
            "Enterprise",
            q.variable_values("enterprise", q.var_match("district", "district")),
        ),
    ]
    if installation:
        out.append(
            _query_var(
                "installation",
                "Installation",
                q.variable_values(
                    "hazard",
                    q.var_match("district", "district"),
                    q.var_match("enterprise", "enterprise"),
                ),
            )
        )
    return out


def installation_variable(points: Sequence[Point]) -> dashboard.CustomVariable:
    """An enterprise's installations, from the registry ("none": points outside any)."""
    codes = sorted({p.hazard_code or "none" for p in points})
    return (
        dashboard.CustomVariable("installation")
        .label("Installation")
        .values(",".join(codes))
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash_m.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .options([dash_m.VariableOption(selected=False, text=c, value=c) for c in codes])
    )


def _drilldown_link(field: str = "enterprise") -> dashboard.DashboardLink:
    return (
        dashboard.DashboardLink("Open ${__data.fields." + field + "} drill-down")
        .type(dash_m.DashboardLinkType.LINK)
        .url(f"/d/{ENTERPRISE_UID_PREFIX}${{__data.fields.{field}}}?${{__url_time_range}}")
        .tooltip("Enterprise drill-down")
    )


def _organize(columns: Sequence[str]) -> dash_m.DataTransformerConfig:
    """Column order of a table; the panel-walk test also reads it as the expected columns."""
    return dash_m.DataTransformerConfig(
        id_val="organize",
        options={
            "indexByName": {c: i for i, c in enumerate(columns)},
            "excludeByName": {},
            "renameByName": {},
        },
    )


def _table(title: str, flux: str, columns: Sequence[str], description: str) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .with_target(_target(flux))
        .with_transformation(_organize(columns))
        .filterable(True)
    )


def _timeseries(title: str, flux: str, description: str, unit: str = "short") -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .with_target(_target(flux))
        .unit(unit)
        .line_width(1)
        .fill_opacity(10)
    )


def _stat(title: str, flux: str, description: str, unit: str = "short") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(_ds())
        .with_target(_target(flux))
        .unit(unit)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def _dashboard(uid: str, title: str, tags: list[str], description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([SCHEMA_TAG, *tags])
        .timezone("browser")
        .time("now-24h", "now")
        .refresh("1m")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
        .editable()
    )


# -- the dashboards --------------------------------------------------------------------------


def _centre(registry: Registry) -> tuple[float, float]:
    located = [(p.lat, p.lon) for p in registry if p.lat is not None and p.lon is not None]
    if not located:
        return (0.0, 0.0)
    return (
        round(sum(a for a, _ in located) / len(located), 4),
        round(sum(b for _, b in located) / len(located), 4),
    )


def overview(registry: Registry) -> dashboard.Dashboard:
    lat, lon = _centre(registry)
    g = _Grid()
    d = _dashboard(
        OVERVIEW_UID,
        "City overview",
        ["overview"],
        "Enterprises by current warning and dynamic risk, open warnings, newest alarms and the "
        "online rate. Click an enterprise for its drill-down.",
    )
    for v in scope_variables():
        d.with_variable(v)
    d.link(
        dashboard.DashboardLink("Enterprise drill-downs")
        .type(dash_m.DashboardLinkType.DASHBOARDS)
        .tags([ENTERPRISE_TAG])
        .as_dropdown(True)
        .include_vars(False)
        .keep_time(True)
    )
    marker_style = {
        "color": {"field": "rank", "fixed": "green"},
        "size": {"fixed": 8, "max": 16, "min": 4, "field": "warning_rank"},
        "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
        "opacity": 0.8,
    }
    warning_style = {
        "color": {"field": "warning_rank", "fixed": "green"},
        "size": {"fixed": 14},
        "symbol": {"fixed": "img/icons/marker/square.svg", "mode": "fixed"},
        "opacity": 0.4,
    }
    geo = (
        geomap.Panel()
        .title("Enterprises: dynamic risk (dot) and highest open warning (square)")
        .description(
            "Latest risk snapshot per enterprise. Colours: 蓝 blue, 黄 yellow, "
            "橙 orange, 红 red; green = none."
        )
        .datasource(_ds())
        .with_target(_target(q.enterprise_map()))
        .with_transformation(
            _organize(
                [
                    "enterprise",
                    "name",
                    "district",
                    "lat",
                    "lon",
                    "level",
                    "rank",
                    "warning",
                    "warning_rank",
                    "open_warnings",
                    "score",
                ]
            )
        )
        .view(geomap.MapViewConfig().id("coords").lat(lat).lon(lon).zoom(11))
        .basemap(common.MapLayerOptions().type("default").name("Basemap"))
        .layers(
            [
                common.MapLayerOptions()
                .type("markers")
                .name("Open warning")
                .config({"style": warning_style, "showLegend": True})
                .location(
                    common.FrameGeometrySource()
                    .mode(common_m.FrameGeometrySourceMode.COORDS)
                    .latitude("lat")
                    .longitude("lon")
                ),
                common.MapLayerOptions()
                .type("markers")
                .name("Dynamic risk")
                .config({"style": marker_style, "showLegend": True})
                .location(
                    common.FrameGeometrySource()
                    .mode(common_m.FrameGeometrySourceMode.COORDS)
                    .latitude("lat")
                    .longitude("lon")
                ),
            ]
        )
        .thresholds(_rank_thresholds())
        .color_scheme(dashboard.FieldColor().mode(dash_m.FieldColorModeId.THRESHOLDS))
        .data_links([_drilldown_link()])
    )
    d.with_panel(g.place(geo, 14, 12))
    online = (
        _stat(
            "Online rate",
            q.online_rate_total(),
            "Points reporting within their offline limit / points registered, over the range "
            "(target >= 99.5 %).",
            unit="percentunit",
        )
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    dash_m.Threshold(value=None, color="red"),
                    dash_m.Threshold(value=0.99, color="orange"),
                    dash_m.Threshold(value=0.995, color="green"),
                ]
            )
        )
        .decimals(2)
    )
    d.with_panel(g.place(online, 10, 4))
    bars = (
        barchart.Panel()
        .title("Open warnings by district and colour")
        .description("Warnings raised and not yet closed by a disposition.")
        .datasource(_ds())
        .with_target(_target(q.open_warnings_by_district()))
        .with_transformation(_organize(["district", "blue", "yellow", "orange", "red"]))
        .x_field("district")
        .stacking(common_m.StackingMode.NORMAL)
        .show_value(common_m.VisibilityMode.AUTO)
        .fill_opacity(80)
    )
    for colour in ("blue", "yellow", "orange", "red"):
        bars.override_by_name(
            colour,
            [
                dash_m.DynamicConfigValue(
                    id_val="color", value={"mode": "fixed", "fixedColor": colour}
                )
            ],
        )
    d.with_panel(g.place(bars, 10, 8))
    d.with_panel(
        g.place(
            _timeseries(
                "Online rate by enterprise",
                q.online_rate_by_enterprise(),
                "Share of each enterprise's points that are reporting.",
                unit="percentunit",
            )
            .min(0)
            .max(1),
            12,
            8,
        )
    )
    d.with_panel(
        g.place(
            _timeseries(
                "Alarm timeline", q.alarm_timeline(), "Alarms raised per interval, by level."
            )
            .draw_style(common_m.GraphDrawStyle.BARS)
            .stacking(common.StackingConfig().mode(common_m.StackingMode.NORMAL)),
            12,
            8,
        )
    )
    newest = _table(
        "Newest alarms",
        q.newest_alarms(),
        [
            "_time",
            "enterprise",
            "district",
            "hazard",
            "zone",
            "tag",
            "parameter",
            "kind",
            "level",
            "state",
            "value",
            "threshold",
            "alarm_id",
        ],
        "Latest alarm transitions; click the enterprise to drill down.",
    ).override_by_name(
        "enterprise",
        [
            dash_m.DynamicConfigValue(
                id_val="links",
                value=[
                    {
                        "title": "Open ${__data.fields.enterprise} drill-down",
                        "url": f"/d/{ENTERPRISE_UID_PREFIX}${{__data.fields.enterprise}}"
                        "?${__url_time_range}",
                    }
                ],
            )
        ],
    )
    d.with_panel(g.place(newest, 24, 10))
    return d


def _point_fn(levels: Iterable[str]) -> str:
    lv = set(levels)
    return "min" if lv and lv <= set(LOW_LEVELS) else "max"


def limit_steps(thresholds: Sequence[ThresholdLike]) -> list[dash_m.Threshold]:
    """Grafana threshold steps (ascending) whose boundaries are the point's limits: normal
    is green, beyond a first-level limit amber, beyond a second-level limit red."""
    lows = sorted((t for t in thresholds if str(t.level) in LOW_LEVELS), key=lambda t: t.value)
    highs = sorted((t for t in thresholds if str(t.level) not in LOW_LEVELS), key=lambda t: t.value)
    steps = [
        dash_m.Threshold(value=None, color=LEVEL_COLOURS[str(lows[0].level)] if lows else "green")
    ]
    for i, t in enumerate(lows):
        # Above this low limit the colour is the next (less severe) low level, or normal.
        nxt = LEVEL_COLOURS[str(lows[i + 1].level)] if i + 1 < len(lows) else "green"
        steps.append(dash_m.Threshold(value=float(t.value), color=nxt))
    for t in highs:
        steps.append(dash_m.Threshold(value=float(t.value), color=LEVEL_COLOURS[str(t.level)]))
    return steps


def _limits_text(thresholds: Sequence[ThresholdLike]) -> str:
    if not thresholds:
        return "No limits set."
    parts = []
    for t in sorted(thresholds, key=lambda t: (t.value, str(t.level))):
        src = f"{t.pack} {t.pack_version}".strip() or t.rule
        parts.append(f"{t.level} {t.value:g} {t.unit} ({src})")
    return "Limits: " + "; ".join(parts) + "."


def point_panel(p: Point, thresholds: Sequence[ThresholdLike]) -> timeseries.Panel:
    levels = [str(t.level) for t in thresholds]
    title = f"{p.tag} {p.parameter} ({p.unit})"
    panel = _timeseries(
        title,
        q.point_series(p.enterprise_code, p.tag, _point_fn(levels)),
        f"{p.tag}, zone {p.zone or '-'}, gateway {p.gateway_code}. {_limits_text(thresholds)}",
        unit=p.unit if p.unit in ("percent",) else "none",
    ).axis_label(p.unit)
    if thresholds:
        panel.thresholds(
            dashboard.ThresholdsConfig()
            .mode(dash_m.ThresholdsMode.ABSOLUTE)
            .steps(limit_steps(thresholds))
        ).thresholds_style(
            common.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.LINE)
        )
    if p.range_low is not None:
        panel.axis_soft_min(p.range_low)
    if p.range_high is not None:
        panel.axis_soft_max(p.range_high)
    return panel


def enterprise(registry: Registry, code: str, thresholds: ThresholdSource) -> dashboard.Dashboard:
    points = registry.enterprise(code)
    if not points:
        raise GenerateError(f"enterprise {code!r} has no points in the registry")
    name = points[0].enterprise_name
    d = _dashboard(
        enterprise_uid(code),
        f"{name} ({code})",
        [ENTERPRISE_TAG, points[0].district],
        f"Every point of {name} with its limit lines and alarm annotations; status per zone.",
    )
    d.with_variable(installation_variable(points))
    d.link(
        dashboard.DashboardLink("City overview")
        .type(dash_m.DashboardLinkType.LINK)
        .url(f"/d/{OVERVIEW_UID}")
        .keep_time(True)
    )
    d.annotation(
        dashboard.AnnotationQuery()
        .name("Alarms")
        .datasource(_ds())
        .enable(True)
        .icon_color("red")
        .target(FluxAnnotationTargetBuilder(q.alarm_annotations(code)))
    )
    g = _Grid()
    d.with_panel(
        g.place(
            _table(
                "Status per zone",
                q.zone_status(code),
                ["zone", "open_alarms"],
                "Alarms open now in each zone of the selected installations (0 = all clear).",
            )
            .thresholds(
                dashboard.ThresholdsConfig()
                .mode(dash_m.ThresholdsMode.ABSOLUTE)
                .steps(
                    [
                        dash_m.Threshold(value=None, color="green"),
                        dash_m.Threshold(value=1, color="red"),
                    ]
                )
            )
            .override_by_name(
                "open_alarms",
                [
                    dash_m.DynamicConfigValue(
                        id_val="custom.cellOptions", value={"type": "color-background"}
                    )
                ],
            ),
            8,
            8,
        )
    )
    d.with_panel(
        g.place(
            _table(
                "Alarms",
                q.enterprise_alarms(code),
                [
                    "_time",
                    "zone",
                    "tag",
                    "kind",
                    "level",
                    "state",
                    "value",
                    "threshold",
                    "alarm_id",
                ],
                "Alarm transitions of the selected installations, newest first.",
            ),
            16,
            8,
        )
    )
    by_install: dict[str, list[Point]] = {}
    for p in points:
        by_install.setdefault(p.hazard_code or "", []).append(p)
    for hazard in sorted(by_install):
        d.with_row(g.row(f"Installation {hazard}" if hazard else "Outside installations"))
        for p in sorted(by_install[hazard], key=lambda p: (p.zone, p.tag)):
            if p.parameter == "event":
                continue  # events have no series; they show as alarms and annotations
            d.with_panel(g.place(point_panel(p, thresholds.thresholds_for(p.key)), 8, 7))
    return d


def alarm_management() -> dashboard.Dashboard:
    d = _dashboard(
        ALARMS_UID,
        "Alarm management (ISA-18.2)",
        ["alarms"],
        "Alarm load per ISA-18.2 / IEC 62682: alarms per 10 min (~1 manageable, > 10 flood), "
        "chattering, bad actors; time to acknowledge and dispose; overdue dispositions.",
    )
    for v in scope_variables():
        d.with_variable(v)
    g = _Grid()
    d.with_panel(
        g.place(
            _timeseries(
                "Alarms per 10 min",
                q.alarms_per_10min(),
                "Alarms raised in each 10-minute interval; above 10 is a flood.",
            )
            .draw_style(common_m.GraphDrawStyle.BARS)
            .thresholds(
                dashboard.ThresholdsConfig()
                .mode(dash_m.ThresholdsMode.ABSOLUTE)
                .steps(
                    [
                        dash_m.Threshold(value=None, color="green"),
                        dash_m.Threshold(value=float(KpiConfig().flood_start), color="red"),
                    ]
                )
            )
            .thresholds_style(
                common.GraphThresholdsStyleConfig().mode(common_m.GraphThresholdsStyleMode.LINE)
            ),
            12,
            8,
        )
    )
    d.with_panel(
        g.place(
            _stat(
                "Flood intervals",
                q.flood_windows(KpiConfig().flood_start),
                "10-minute intervals with more than 10 alarms.",
            ),
            4,
            4,
        )
    )
    d.with_panel(
        g.place(
            _stat(
                "Mean time to acknowledge",
                q.mean_time_to("acknowledged"),
                "From a warning being raised to its acknowledgement.",
                "s",
            ),
            4,
            4,
        )
    )
    d.with_panel(
        g.place(
            _stat(
                "Mean time to dispose",
                q.mean_time_to("disposed"),
                "From a warning being raised to its disposition.",
                "s",
            ),
            4,
            4,
        )
    )
    d.with_panel(
        g.place(
            _table(
                "Chattering (most alarms of one point in a minute)",
                q.chattering(),
                ["enterprise", "tag", "max_per_minute"],
                "ISA-18.2 chattering is 3 or more alarms of one point within 60 s (red); "
                "counted over fixed 1-minute windows.",
            )
            .thresholds(
                dashboard.ThresholdsConfig()
                .mode(dash_m.ThresholdsMode.ABSOLUTE)
                .steps(
                    [
                        dash_m.Threshold(value=None, color="green"),
                        dash_m.Threshold(value=float(KpiConfig().chatter_count), color="red"),
                    ]
                )
            )
            .override_by_name(
                "max_per_minute",
                [
                    dash_m.DynamicConfigValue(
                        id_val="custom.cellOptions", value={"type": "color-background"}
                    )
                ],
            ),
            12,
            4,
        ).data_links([_drilldown_link()])
    )
    g.newline()
    d.with_panel(
        g.place(
            _table(
                "Top bad actors",
                q.bad_actors(),
                ["enterprise", "tag", "parameter", "alarms"],
                "The 10 points raising the most alarms.",
            ),
            12,
            8,
        ).data_links([_drilldown_link()])
    )
    d.with_panel(
        g.place(
            _table(
                "Overdue dispositions",
                q.overdue_dispositions(),
                ["_time", "warning_id", "enterprise", "district", "hazard", "colour", "elapsed_s"],
                "Warnings with no disposition filed within the limit (default 24 h).",
            ),
            12,
            8,
        )
    )
    return d


def pipeline_health() -> dashboard.Dashboard:
    d = _dashboard(
        PIPELINE_UID,
        "Pipeline health",
        ["pipeline"],
        "hazardwatch's own health: readings in, rejects by reason, evaluation lag, outbox "
        "depth, InfluxDB write errors and notification outcomes.",
    )
    g = _Grid()
    panels = [
        _timeseries(
            "Readings per second",
            q.pipeline_field("readings_per_s", "mean"),
            "Readings accepted per second, per process.",
            "reqps",
        ),
        _timeseries(
            "Rejects by reason",
            q.rejects_by_reason(),
            "Dead-lettered readings and messages per interval, by reason.",
        ),
        _timeseries(
            "Evaluation lag",
            q.pipeline_field("eval_lag_ms", "max"),
            "Reading event time to rule evaluation (max per interval).",
            "ms",
        ),
        _timeseries(
            "Outbox depth",
            q.pipeline_field("outbox_depth", "max"),
            "Notifications waiting to be delivered.",
        ),
        _timeseries(
            "InfluxDB write errors",
            q.pipeline_field("influx_errors", "sum"),
            "Failed InfluxDB writes per interval (data is spilled, not lost).",
        ),
        _timeseries(
            "Notifications by channel and result",
            q.notifications_by_result(),
            "Delivery outcomes per interval.",
        ),
    ]
    for p in panels:
        d.with_panel(g.place(p, 12, 8))
    return d


# -- entry points ----------------------------------------------------------------------------


def to_json(builder: cogbuilder.Builder[Any]) -> dict[str, Any]:
    """The dashboard as plain JSON data (what Grafana stores)."""
    return json.loads(json.dumps(builder.build(), cls=JSONEncoder))


def build_all(registry: Registry, thresholds: ThresholdSource) -> list[Generated]:
    """Every dashboard, sorted by path."""
    if len(registry) == 0:
        raise GenerateError("the registry has no points; nothing to build dashboards from")
    out = [
        Generated(OVERVIEW_UID, FOLDERS["overview"], to_json(overview(registry))),
        Generated(ALARMS_UID, FOLDERS["alarms"], to_json(alarm_management())),
        Generated(PIPELINE_UID, FOLDERS["pipeline"], to_json(pipeline_health())),
    ]
    for code in sorted(registry.enterprises()):
        out.append(
            Generated(
                enterprise_uid(code),
                FOLDERS["enterprise"],
                to_json(enterprise(registry, code, thresholds)),
            )
        )
    return sorted(out, key=lambda g: g.path)


def dumps(model: dict[str, Any]) -> str:
    """Deterministic text of a dashboard: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
