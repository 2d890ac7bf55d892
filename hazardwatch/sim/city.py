"""Generate the point registry of a simulated Qianjiang-like city (DOMAIN.md §3) from the city
template `data/city.yaml`: chlor-alkali plants, a refinery tank farm, liquid ammonia storage
and fireworks warehouses, scaled to any number of points and deterministic from a seed.

The registry is an ordinary `ingest.model.Registry` and is written as the DESIGN.md CSV, so
everything downstream (loader, rules, dashboards) sees exactly what a real city would register.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ingest.model import Industry, Point, Registry
from ingest.registry import COLUMNS

#: Extra registry columns the generated CSV carries (kept by the loader as point attributes).
#: `inlet_valve` names the tank's inlet valve tag on its level point (interlock check);
#: `sim_publish_unit` is the unit the detector publishes in when it differs from the registry
#: unit (the ammonia heads that speak ppm); `sim_ts_format` how the gateway writes `ts`.
EXTRA_COLUMNS = ("inlet_valve", "sim_publish_unit", "sim_ts_format")

# The contract columns (DESIGN.md) in their documented order, then our extras.
REGISTRY_COLUMNS = (*COLUMNS, *EXTRA_COLUMNS)


class CityTemplateError(ValueError):
    """The city template is not usable; the message names the key and what was expected."""


@lru_cache(maxsize=4)
def load_template(path: Path | None = None) -> Mapping[str, Any]:
    """The city template (the packaged `data/city.yaml` unless `path` is given)."""
    if path is None:
        text = resources.files("hazardwatch.sim").joinpath("data/city.yaml").read_text("utf-8")
        name = "hazardwatch/sim/data/city.yaml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        name = str(path)
    data = yaml.safe_load(text)
    for key in ("parks", "gateways", "units", "enterprises", "signals", "timing"):
        if not isinstance(data, dict) or not isinstance(data.get(key), dict):
            raise CityTemplateError(f"{name}: key {key!r} must be a mapping")
    for ename, ent in data["enterprises"].items():
        if ent.get("park") not in data["parks"]:
            raise CityTemplateError(
                f"{name}: enterprises.{ename}.park {ent.get('park')!r} is not one of "
                f"{sorted(data['parks'])}"
            )
        for uname in ent.get("units", {}):
            if uname not in data["units"]:
                raise CityTemplateError(
                    f"{name}: enterprises.{ename}.units.{uname} is not a unit type; expected "
                    f"one of {sorted(data['units'])}"
                )
    for uname, unit in data["units"].items():
        if unit.get("gateway") not in data["gateways"]:
            raise CityTemplateError(
                f"{name}: units.{uname}.gateway {unit.get('gateway')!r} is not one of "
                f"{sorted(data['gateways'])}"
            )
    return MappingProxyType(data)


@dataclass(slots=True)
class _Unit:
    """One installation unit (a detector zone, a tank, a workshop) before gateway assignment."""

    type_name: str
    gateway_class: str
    rows: list[dict[str, Any]]


def _unit_rows(
    tpl: Mapping[str, Any], type_name: str, u: int, rng: random.Random, lat: float, lon: float
) -> _Unit:
    spec = tpl["units"][type_name]
    zone = spec["zone"].format(u=u)
    cycle = float(tpl["gateways"][spec["gateway"]]["cycle_s"])
    rows: list[dict[str, Any]] = []
    ulat = lat + rng.uniform(-0.0015, 0.0015)
    ulon = lon + rng.uniform(-0.0015, 0.0015)
    valve_tag = next(
        (p["tag"].format(u=u, i=1) for p in spec["points"] if p.get("role") == "inlet_valve"), ""
    )
    for pspec in spec["points"]:
        for i in range(1, int(pspec.get("count", 1)) + 1):
            lo, hi = pspec.get("range", (None, None))
            row: dict[str, Any] = {
                "zone": zone,
                "tag": pspec["tag"].format(u=u, i=i),
                "parameter": pspec["parameter"],
                "unit": pspec["unit"],
                "range_low": lo,
                "range_high": hi,
                "ll": pspec.get("ll"),
                "l": pspec.get("l"),
                "h": pspec.get("h"),
                "hh": pspec.get("hh"),
                "expected_interval_s": cycle * int(pspec.get("every", 1)),
                "lat": round(ulat + rng.uniform(-0.0002, 0.0002), 6),
                "lon": round(ulon + rng.uniform(-0.0002, 0.0002), 6),
                "_hazard": bool(spec.get("hazard", False)) or pspec["parameter"].startswith("gas."),
            }
            if "quota" in pspec:
                row["h"] = rng.choice(list(pspec["quota"]))
            if pspec.get("role") == "level" and valve_tag:
                row["inlet_valve"] = valve_tag
            every_pu = pspec.get("publish_unit_every")
            if every_pu and i % int(every_pu) == 0:
                row["sim_publish_unit"] = pspec["publish_unit"]
            rows.append(row)
    return _Unit(type_name, spec["gateway"], rows)


def _enterprise_units(
    tpl: Mapping[str, Any], etype: str, n: int, rng: random.Random
) -> tuple[dict[str, Any], list[_Unit]]:
    ent = tpl["enterprises"][etype]
    park = tpl["parks"][ent["park"]]
    lat = park["lat"] + rng.uniform(-0.02, 0.02)
    lon = park["lon"] + rng.uniform(-0.02, 0.02)
    info = {
        "enterprise_code": ent["code"].format(n=n),
        "enterprise_name": ent["name"].format(n=n),
        "industry": Industry(ent["industry"]),
        "district": park["name"],
        "hazard_level": ent.get("hazard_level"),
    }
    units: list[_Unit] = []
    for type_name, count in ent["units"].items():
        for u in range(1, int(count) + 1):
            units.append(_unit_rows(tpl, type_name, u, rng, lat, lon))
    return info, units


def _finish_enterprise(
    tpl: Mapping[str, Any], info: dict[str, Any], units: list[_Unit]
) -> list[Point]:
    """Assign gateways (up to `max_units` units of one class per gateway) and build points."""
    points: list[Point] = []
    per_class: dict[str, int] = {}
    gateway_of: list[str] = []
    for unit in units:
        gw = tpl["gateways"][unit.gateway_class]
        k = per_class.get(unit.gateway_class, 0)
        per_class[unit.gateway_class] = k + 1
        gateway_of.append(f"GW-{gw['code']}{k // int(gw['max_units']) + 1:02d}")
    code = info["enterprise_code"]
    for unit, gateway in zip(units, gateway_of, strict=True):
        ts_format = tpl["gateways"][unit.gateway_class].get("ts_format", "epoch_ms")
        for row in unit.rows:
            attrs = {c: str(row.get(c) or "") for c in EXTRA_COLUMNS}
            attrs["sim_ts_format"] = ts_format
            points.append(
                Point(
                    enterprise_code=code,
                    enterprise_name=info["enterprise_name"],
                    industry=info["industry"],
                    district=info["district"],
                    hazard_code=f"{code}-MH1" if row["_hazard"] else "",
                    hazard_level=info["hazard_level"] if row["_hazard"] else None,
                    zone=row["zone"],
                    gateway_code=gateway,
                    tag=row["tag"],
                    parameter=row["parameter"],
                    unit=row["unit"],
                    range_low=_f(row["range_low"]),
                    range_high=_f(row["range_high"]),
                    ll=_f(row["ll"]),
                    l=_f(row["l"]),
                    h=_f(row["h"]),
                    hh=_f(row["hh"]),
                    expected_interval_s=float(row["expected_interval_s"]),
                    lat=row["lat"],
                    lon=row["lon"],
                    attrs=MappingProxyType(attrs),
                )
            )
    return points


def _f(v: Any) -> float | None:
    return None if v is None or v == "" else float(v)


def generate_registry(
    points: int = 1000, seed: int = 7, template: Mapping[str, Any] | None = None
) -> Registry:
    """A registry of exactly `points` points (>= 1), deterministic for a given seed.

    Enterprise types are added round-robin (chlor-alkali, tank farm, ammonia, fireworks) with
    all their units while they fit; the last few points are single warehouse temperature
    sensors so any count is reachable without breaking a detector zone of three.
    """
    if points < 1:
        raise ValueError(f"points must be >= 1, got {points}")
    tpl = template or load_template()
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not security
    out: list[Point] = []
    n = 0
    etypes = list(tpl["enterprises"])
    while True:
        n += 1
        added_round = 0
        for etype in etypes:
            info, units = _enterprise_units(tpl, etype, n, rng)
            room = points - len(out)
            kept = []
            for unit in units:
                if len(unit.rows) <= room:
                    kept.append(unit)
                    room -= len(unit.rows)
            if kept:
                new = _finish_enterprise(tpl, info, kept)
                out.extend(new)
                added_round += len(new)
        if len(out) >= points or added_round == 0:
            break
    if len(out) < points:
        out.extend(_filler(tpl, points - len(out), n + 1, rng))
    return Registry(out, version=f"sim-{tpl['version']}-n{points}-s{seed}")


def _filler(tpl: Mapping[str, Any], count: int, n: int, rng: random.Random) -> list[Point]:
    """`count` single-sensor warehouses (temperature only) in one extra fireworks enterprise."""
    fw_type = next(k for k, e in tpl["enterprises"].items() if e["industry"] == "fireworks")
    info, _ = _enterprise_units(tpl, fw_type, n, rng)
    park = tpl["parks"][tpl["enterprises"][fw_type]["park"]]
    units = []
    for u in range(1, count + 1):
        unit = _unit_rows(tpl, "warehouse", 50 + u, rng, park["lat"], park["lon"])
        unit.rows = unit.rows[:1]
        units.append(unit)
    return _finish_enterprise(tpl, info, units)


def registry_rows(registry: Registry) -> list[dict[str, str]]:
    """The registry as CSV rows (strings; empty cells for unset values)."""
    rows = []
    for p in registry:
        row = {
            "enterprise_code": p.enterprise_code,
            "enterprise_name": p.enterprise_name,
            "industry": str(p.industry),
            "district": p.district,
            "hazard_code": p.hazard_code,
            "hazard_level": "" if p.hazard_level is None else str(p.hazard_level),
            "zone": p.zone,
            "gateway_code": p.gateway_code,
            "tag": p.tag,
            "parameter": p.parameter,
            "unit": p.unit,
            "range_low": _s(p.range_low),
            "range_high": _s(p.range_high),
            "ll": _s(p.ll),
            "l": _s(p.l),
            "h": _s(p.h),
            "hh": _s(p.hh),
            "expected_interval_s": _s(p.expected_interval_s),
            "lat": _s(p.lat),
            "lon": _s(p.lon),
        }
        for c in EXTRA_COLUMNS:
            row[c] = str(p.attrs.get(c, ""))
        rows.append(row)
    return rows


def _s(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def registry_csv(registry: Registry) -> str:
    """The registry in the DESIGN.md CSV format (plus the simulator's extra columns)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=REGISTRY_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(registry_rows(registry))
    return buf.getvalue()


def write_registry_csv(registry: Registry, path: Path | str) -> Path:
    path = Path(path)
    path.write_text(registry_csv(registry), encoding="utf-8")
    return path


def scale_intervals(registry: Registry, factor: float) -> Registry:
    """The same registry with every expected interval multiplied by `factor` (gateways
    polling faster), so a load run reaches its rate in real time with current timestamps
    instead of running simulated time ahead of the clock. Intervals stay >= 0.1 s."""
    if not factor > 0:
        raise ValueError(f"interval scale must be > 0, got {factor}")
    if factor == 1:
        return registry
    pts = [
        replace(p, expected_interval_s=max(0.1, round(p.expected_interval_s * factor, 3)))
        for p in registry
    ]
    return Registry(pts, version=f"{registry.version}-x{factor:g}")
