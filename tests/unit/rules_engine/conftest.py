"""Shared registries for the rules-engine tests: small, built in code so every test reads
its own scenario. Times are epoch ms from a fixed instant (no clock)."""

from __future__ import annotations

import pytest

from ingest.model import Industry, Point, Reading, Registry

T0 = 1_764_403_200_000  # 2025-11-29T08:00:00Z


def point(
    tag: str,
    parameter: str,
    unit: str,
    *,
    ent: str = "E1",
    zone: str = "Z1",
    gw: str = "G1",
    industry: Industry = Industry.HAZCHEM,
    hazard: str = "H1",
    interval: float = 10.0,
    **kw,
) -> Point:
    return Point(
        ent,
        f"{ent} Co.",
        industry,
        "潜江",
        hazard,
        2,
        zone,
        gw,
        tag,
        parameter,
        unit,
        expected_interval_s=interval,
        **kw,
    )


def rd(tag: str, t_s: float, v: float, q: int = 0, ent: str = "E1", **kw) -> Reading:
    return Reading(ent, tag, T0 + round(t_s * 1000), float(v), q, **kw)


def at(t_s: float) -> int:
    return T0 + round(t_s * 1000)


def plant_registry() -> Registry:
    """A hazchem site: NH3 (ppm), three CH4 heads (%LEL) in one zone, O2, a benzene head,
    a tank level with HH + inlet valve, all on gateway G1; a second gateway G2."""
    return Registry(
        [
            point("AT-NH3", "gas.NH3", "ppm", range_low=0, range_high=100),
            point("AT-CH4-1", "gas.CH4", "%LEL", zone="Z2", range_low=0, range_high=100),
            point("AT-CH4-2", "gas.CH4", "%LEL", zone="Z2", range_low=0, range_high=100),
            point("AT-CH4-3", "gas.CH4", "%LEL", zone="Z2", range_low=0, range_high=100),
            point("AT-O2", "gas.O2", "%vol", range_low=0, range_high=30),
            point("AT-BZ", "gas.C6H6", "mg/m3", range_low=0, range_high=50),
            point(
                "LT-101",
                "level",
                "m",
                zone="T1",
                range_low=0,
                range_high=10,
                ll=0.5,
                l=1.0,
                h=8.0,
                hh=9.0,
            ),
            point("XV-101", "valve", "", zone="T1"),
            point("PT-201", "pressure", "MPa", gw="G2", range_low=0, range_high=2.5, h=1.6, hh=2.0),
            point("TT-201", "temperature", "°C", gw="G2", range_low=-20, range_high=200, h=60),
        ],
        version="plant-v1",
    )


@pytest.fixture
def plant() -> Registry:
    return plant_registry()
