"""Units: canonical names, what fits which parameter, and exact conversions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.gases import all_gases, gas_properties
from ingest.units import UnitError, canonical_unit, convert, unit_fits


def test_gas_properties_come_from_the_shared_table():
    nh3 = gas_properties("gas.NH3")
    assert nh3 is not None
    assert nh3.molar_mass_g_mol == 17.03
    assert nh3.lel_pct_vol == 15.7
    assert nh3.is_toxic and nh3.is_combustible
    assert gas_properties("gas.O2").is_oxygen
    assert gas_properties("gas.gasoline").molar_mass_g_mol is None
    assert gas_properties("gas.XYZ") is None
    assert len(all_gases()) == 18


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("ppm", "ppm"),
        ("mg/m³", "mg/m3"),
        ("MG/M3", "mg/m3"),
        ("%lel", "%LEL"),
        ("%LEL", "%LEL"),
        ("%VOL", "%vol"),
        ("kpa", "kPa"),
        ("MPa", "MPa"),
        ("℃", "°C"),
        ("C", "°C"),
        ("degC", "°C"),
        ("人", "persons"),
        ("persons", "persons"),
        ("%RH", "%RH"),
        ("m³/h", "m3/h"),
        ("t/h", "t/h"),
        ("%", "%"),
        (" mm ", "mm"),
    ],
)
def test_canonical_unit_aliases(alias, canonical):
    assert canonical_unit(alias) == canonical


def test_unknown_unit_names_the_unit_and_the_choices():
    with pytest.raises(UnitError, match=r"unknown unit 'furlong'.*ppm"):
        canonical_unit("furlong")


@pytest.mark.parametrize(
    ("value", "f", "t", "param", "expected"),
    [
        # ppm = mg/m3 * 24.04 / M (DOMAIN.md §1), NH3 M = 17.03
        (20.0, "mg/m3", "ppm", "gas.NH3", 20.0 * 24.04 / 17.03),
        (10.0, "ppm", "mg/m3", "gas.H2S", 10.0 * 34.08 / 24.04),
        (1.0, "%vol", "ppm", "gas.CH4", 10_000.0),
        # 100 %LEL of methane is 5 %vol, so 25 %LEL = 1.25 %vol = 12,500 ppm
        (25.0, "%LEL", "%vol", "gas.CH4", 1.25),
        (25.0, "%LEL", "ppm", "gas.CH4", 12_500.0),
        (1.0, "%vol", "%LEL", "gas.H2", 25.0),
        (20.9, "%", "ppm", "gas.O2", 209_000.0),
        (1.6, "MPa", "kPa", "pressure", 1600.0),
        (101.3, "kPa", "Pa", "pressure", 101_300.0),
        (2.0, "bar", "MPa", "pressure", 0.2),
        (25.0, "°C", "K", "temperature", 298.15),
        (300.0, "K", "C", "temperature", 300.0 - 273.15),
        (1500.0, "mm", "m", "level", 1.5),
        (60.0, "L/min", "m3/h", "flow", 3.6),
        (3.0, "人", "persons", "occupancy", 3.0),
    ],
)
def test_convert(value, f, t, param, expected):
    assert convert(value, f, t, param) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("f", "t", "param", "message"),
    [
        ("%LEL", "ppm", "gas.Cl2", "no lower explosive limit"),
        ("mg/m3", "%LEL", "gas.gasoline", "no single molar mass"),
        ("m", "kPa", "level", "different kinds of quantity"),
        ("%", "m", "level", "different kinds of quantity"),  # % of span needs the tank geometry
        ("t/h", "m3/h", "flow", "different kinds of quantity"),  # mass vs volume needs density
        ("kPa", "ppm", "gas.NH3", "does not fit gas parameter"),
        ("ppm", "mg/m3", "gas.XYZ", "unknown gas parameter"),
        ("furlong", "m", "level", "unknown unit"),
    ],
)
def test_unconvertible_units_say_why(f, t, param, message):
    with pytest.raises(UnitError, match=message):
        convert(1.0, f, t, param)


@pytest.mark.parametrize(
    ("param", "unit", "fits"),
    [
        ("gas.NH3", "ppm", True),
        ("gas.NH3", "mg/m³", True),
        ("gas.NH3", "%LEL", True),
        ("gas.Cl2", "%LEL", False),
        ("gas.gasoline", "mg/m3", False),
        ("gas.CH4", "%", True),
        ("gas.O2", "%vol", True),
        ("level", "m", True),
        ("level", "%", True),
        ("level", "kPa", False),
        ("pressure", "MPa", True),
        ("temperature", "℃", True),
        ("humidity", "%", True),
        ("humidity", "%RH", True),
        ("occupancy", "人", True),
        ("occupancy", "m", False),
        ("event", "", True),
        ("gas.XYZ", "ppm", False),
        ("nonsense", "m", False),
    ],
)
def test_unit_fits(param, unit, fits):
    assert unit_fits(param, unit) is fits


GAS_UNITS = st.sampled_from(["ppm", "mg/m3", "%vol", "%LEL"])


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["gas.NH3", "gas.H2S", "gas.CO", "gas.CH4", "gas.C3H8", "gas.H2"]),
    GAS_UNITS,
    GAS_UNITS,
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
def test_gas_conversions_round_trip(param, a, b, x):
    assert convert(convert(x, a, b, param), b, a, param) == pytest.approx(x, rel=1e-9, abs=1e-9)
