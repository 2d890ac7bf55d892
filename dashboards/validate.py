"""Checks a dashboard JSON against the Grafana Foundation SDK's dashboard schema (Grafana 11).

The SDK ships its schema as typed models: decoding a dashboard with `Dashboard.from_json`
and encoding it again keeps exactly the keys and values the schema knows, so any key it
drops (misspelt, unknown to Grafana 11) or value it changes is a schema problem. Panel
options and custom field config go through each panel plugin's own model, targets through
the registered query types (ours: `dashboards.flux`). Pure.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.cog import plugins as cogplugins
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dash_m

from dashboards import flux

cogplugins.register_default_plugins()
flux.register()  # after the defaults, so `influxdb` targets decode as Flux queries

REQUIRED = ("uid", "title", "panels", "templating", "annotations", "time", "schemaVersion")


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            p = f"{path}.{k}" if path else k
            if k not in b:
                out.append(f"{p}: not in the Grafana 11 dashboard schema (dropped on decode)")
            elif k not in a:
                out.append(f"{p}: added by the schema with default {b[k]!r}")
            else:
                _diff(a[k], b[k], p, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items became {len(b)}")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}[{i}]", out)
    elif a != b or (
        type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float))
    ):
        out.append(f"{path}: {a!r} does not survive the schema (became {b!r})")


def validate(model: dict[str, Any]) -> list[str]:
    """Every schema problem of a dashboard JSON, one line each (empty when valid)."""
    problems: list[str] = []
    where = model.get("uid", "?")
    for key in REQUIRED:
        if key not in model:
            problems.append(f"{key}: required, missing")
    for i, panel in enumerate(model.get("panels", [])):
        ptype = panel.get("type", "")
        if ptype != "row" and cogruntime.panelcfg_config(ptype) is None:
            problems.append(f"panels[{i}].type: unknown panel plugin {ptype!r}")
        for j, t in enumerate(panel.get("targets", []) or []):
            if not isinstance(cogruntime.dataquery_from_json(t, ""), flux.FluxQuery):
                problems.append(f"panels[{i}].targets[{j}]: not an InfluxDB (Flux) query")
            elif not t.get("query", "").strip():
                problems.append(f"panels[{i}].targets[{j}].query: empty Flux query")
    try:
        decoded = dash_m.Dashboard.from_json(model)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [*problems, f"cannot be decoded by the SDK dashboard model: {exc!r}"]
    # The SDK's AnnotationTarget knows only Grafana's built-in annotation fields; ours adds
    # the Flux query (see dashboards.flux.FluxAnnotationTarget).
    for a_json, a in zip(
        model.get("annotations", {}).get("list", []),
        (decoded.annotations.list_val if decoded.annotations else None) or [],
        strict=False,
    ):
        tgt = a_json.get("target") or {}
        if "query" in tgt:
            a.target = flux.FluxAnnotationTarget(tgt["query"], tgt.get("refId", "Anno"))
    again = json.loads(json.dumps(decoded, cls=JSONEncoder))
    _diff(model, again, "", problems)
    return [f"{where}: {p}" for p in problems]
