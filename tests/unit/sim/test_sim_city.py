"""The generated city registry: the requested size, the Qianjiang shape of DOMAIN.md §3, a CSV
the real registry loader accepts, and a rule set the default packs can build."""

from __future__ import annotations

from collections import Counter

import pytest

from hazardwatch.sim.city import generate_registry, registry_csv, write_registry_csv
from ingest.registry import load_registry


@pytest.mark.parametrize("n", [1, 7, 119, 120, 1000, 2500])
def test_exactly_the_requested_number_of_points(n: int) -> None:
    assert len(generate_registry(n, seed=1)) == n


def test_same_seed_same_city_other_seed_other_coordinates() -> None:
    a, b, c = generate_registry(300, 7), generate_registry(300, 7), generate_registry(300, 8)
    assert registry_csv(a) == registry_csv(b)
    assert [p.key for p in a] == [p.key for p in c]  # the structure follows the template
    assert [p.lat for p in a] != [p.lat for p in c]


def test_city_has_the_qianjiang_installations() -> None:
    reg = generate_registry(1000, 7)
    params = Counter(p.parameter for p in reg)
    for parameter in (
        "gas.Cl2",
        "gas.H2",
        "gas.C3H8",
        "gas.gasoline",
        "gas.NH3",
        "level",
        "pressure",
        "temperature",
        "valve",
        "occupancy",
        "humidity",
    ):
        assert params[parameter] > 0, parameter
    parks = {"潜江经济开发区", "江汉盐化工园", "潜江市烟花爆竹批发仓储区"}
    assert {p.district for p in reg} == parks
    assert {str(p.industry) for p in reg} == {"hazchem", "fireworks"}


def test_gas_zones_have_three_heads_of_one_gas_and_empty_limits() -> None:
    reg = generate_registry(1000, 7)
    gas_zones = {k: v for k, v in reg.zones().items() if any(p.is_gas for p in v)}
    assert gas_zones
    for pts in gas_zones.values():
        assert len(pts) == 3
        assert len({p.parameter for p in pts}) == 1
        for p in pts:
            assert (p.ll, p.l, p.h, p.hh) == (None, None, None, None), p.key


def test_tanks_have_h_hh_and_name_their_inlet_valve() -> None:
    reg = generate_registry(1000, 7)
    levels = [p for p in reg if p.parameter == "level"]
    assert levels
    for p in levels:
        assert p.h is not None and p.hh is not None and p.h < p.hh
        valve = reg.get(p.enterprise_code, p.attrs["inlet_valve"])
        assert valve is not None and valve.parameter == "valve" and valve.zone == p.zone


def test_some_ammonia_heads_publish_ppm_against_mg_m3() -> None:
    nh3 = [p for p in generate_registry(1000, 7) if p.parameter == "gas.NH3"]
    assert {p.unit for p in nh3} == {"mg/m3"}
    ppm = [p for p in nh3 if p.attrs["sim_publish_unit"] == "ppm"]
    assert 0 < len(ppm) < len(nh3)


def test_workshops_carry_their_quota_and_intervals_are_realistic() -> None:
    reg = generate_registry(1000, 7)
    quotas = {p.h for p in reg if p.parameter == "occupancy"}
    assert quotas and quotas <= {3.0, 4.0, 6.0}
    assert all(1 <= p.expected_interval_s <= 60 for p in reg)


def test_csv_loads_with_the_real_loader_and_round_trips(tmp_path) -> None:
    reg = generate_registry(500, 3)
    loaded = load_registry(write_registry_csv(reg, tmp_path / "city.csv"))
    assert [p.key for p in loaded] == [p.key for p in reg]
    for a, b in zip(reg, loaded, strict=True):
        assert (a.parameter, a.unit, a.zone, a.gateway_code, a.h, a.hh, a.expected_interval_s) == (
            b.parameter,
            b.unit,
            b.zone,
            b.gateway_code,
            b.h,
            b.hh,
            b.expected_interval_s,
        )
        assert b.attrs["inlet_valve"] == a.attrs["inlet_valve"]


def test_default_packs_build_a_ruleset_for_the_city() -> None:
    from rules.loader import load_ruleset

    reg = generate_registry(1000, 7)
    ruleset = load_ruleset(None, reg)
    cl2 = next(p for p in reg if p.parameter == "gas.Cl2")
    assert {str(t.level) for t in ruleset.thresholds_for(cl2.key)} == {"L1", "L2"}


def test_zero_points_is_refused() -> None:
    with pytest.raises(ValueError, match="points must be >= 1"):
        generate_registry(0)
