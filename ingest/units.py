"""Units of measure: canonical names, which units fit which parameter, and exact affine
conversions between them (pure). Gas concentrations convert through ppm at 20 °C and
101.3 kPa (`ppm = mg/m3 * 24.04 / M`, DOMAIN.md §1), %LEL through the gas's LEL, and
%vol = 10,000 ppm.

Every conversion is `value * scale + offset`; `linear()` returns that pair so the hot path in
`normalize` converts with one multiply-add instead of a lookup per reading.
"""

from __future__ import annotations

from functools import lru_cache

from ingest.gases import gas_properties

# Molar volume of an ideal gas at 20 °C and 101.3 kPa, L/mol (GB/T 50493 appendix; DOMAIN.md §1).
MOLAR_VOLUME_20C_L = 24.04


class UnitError(ValueError):
    """A unit is unknown, does not fit the parameter, or cannot be converted."""


# Spellings seen on gateways and in provincial registries -> canonical name.
# "%" is resolved by parameter (see `_resolve`): %vol for gases, %RH for humidity, % of span else.
_ALIASES: dict[str, str] = {
    "ppm": "ppm",
    "mg/m3": "mg/m3",
    "mg/m³": "mg/m3",
    "mg/m^3": "mg/m3",
    "%lel": "%LEL",
    "lel%": "%LEL",
    "%vol": "%vol",
    "%v/v": "%vol",
    "vol%": "%vol",
    "%": "%",
    "pa": "Pa",
    "kpa": "kPa",
    "mpa": "MPa",
    "bar": "bar",
    "°c": "°C",
    "℃": "°C",
    "c": "°C",
    "degc": "°C",
    "k": "K",
    "m": "m",
    "mm": "mm",
    "cm": "cm",
    "%rh": "%RH",
    "rh%": "%RH",
    "m3/h": "m3/h",
    "m³/h": "m3/h",
    "l/h": "L/h",
    "l/min": "L/min",
    "t/h": "t/h",
    "kg/h": "kg/h",
    "persons": "persons",
    "person": "persons",
    "人": "persons",
    "": "",
    "state": "state",
}

CANONICAL_UNITS = frozenset(_ALIASES.values())

# Dimension of each canonical unit, and its factor to the dimension's base unit.
_LINEAR: dict[str, tuple[str, float]] = {
    "Pa": ("pressure", 1.0),
    "kPa": ("pressure", 1e3),
    "MPa": ("pressure", 1e6),
    "bar": ("pressure", 1e5),
    "m": ("length", 1.0),
    "cm": ("length", 1e-2),
    "mm": ("length", 1e-3),
    "m3/h": ("volume_flow", 1.0),
    "L/h": ("volume_flow", 1e-3),
    "L/min": ("volume_flow", 0.06),
    "t/h": ("mass_flow", 1.0),
    "kg/h": ("mass_flow", 1e-3),
    "%RH": ("humidity", 1.0),
    "%": ("percent_of_span", 1.0),
    "persons": ("count", 1.0),
    "state": ("state", 1.0),
    "": ("none", 1.0),
}

_GAS_UNITS = ("ppm", "mg/m3", "%vol", "%LEL")

# Units each non-gas parameter may be registered and reported in.
_PARAMETER_UNITS: dict[str, tuple[str, ...]] = {
    "level": ("m", "cm", "mm", "%"),
    "temperature": ("°C", "K"),
    "pressure": ("Pa", "kPa", "MPa", "bar"),
    "flow": ("m3/h", "L/h", "L/min", "t/h", "kg/h"),
    "humidity": ("%RH",),
    "occupancy": ("persons",),
    "valve": ("", "state", "%"),
    "event": ("",),
}

NON_GAS_PARAMETERS = frozenset(_PARAMETER_UNITS)


def canonical_unit(unit: str) -> str:
    """The canonical spelling of a unit (`"mg/m³"` -> `"mg/m3"`, `"人"` -> `"persons"`).

    Raises `UnitError` for a unit hazardwatch does not know. `"%"` stays `"%"` here: what it
    means depends on the parameter (%vol for a gas, %RH for humidity, % of span for a level).
    """
    c = _ALIASES.get(unit.strip().lower()) if unit is not None else None
    if c is None:
        raise UnitError(
            f"unknown unit {unit!r}; expected one of {', '.join(sorted(CANONICAL_UNITS - {''}))}"
        )
    return c


def _resolve(parameter: str, unit: str) -> str:
    """Canonical unit in the context of a parameter (resolves the ambiguous "%")."""
    c = canonical_unit(unit)
    if c == "%":
        if parameter.startswith("gas."):
            return "%vol"
        if parameter == "humidity":
            return "%RH"
    return c


def units_for(parameter: str) -> tuple[str, ...]:
    """Canonical units a parameter may use; raises `UnitError` for an unknown parameter."""
    if parameter.startswith("gas."):
        props = gas_properties(parameter)
        if props is None:
            raise UnitError(f"unknown gas parameter {parameter!r}")
        units = ["%vol", "ppm"]
        if props.molar_mass_g_mol is not None:
            units.append("mg/m3")
        if props.lel_pct_vol is not None:
            units.append("%LEL")
        return tuple(units)
    try:
        return _PARAMETER_UNITS[parameter]
    except KeyError:
        raise UnitError(f"unknown parameter {parameter!r}") from None


def unit_fits(parameter: str, unit: str) -> bool:
    """True if `unit` is a known unit that a point of `parameter` may be registered in."""
    try:
        return _resolve(parameter, unit) in units_for(parameter)
    except UnitError:
        return False


def _gas_ppm_per_unit(parameter: str, unit: str) -> float:
    props = gas_properties(parameter)
    if props is None:
        raise UnitError(f"unknown gas parameter {parameter!r}")
    if unit == "ppm":
        return 1.0
    if unit == "%vol":
        return 1e4
    if unit == "mg/m3":
        if props.molar_mass_g_mol is None:
            raise UnitError(
                f"cannot use mg/m3 for {parameter}: it has no single molar mass "
                "(a mixture); register the point in %LEL, %vol or ppm"
            )
        return MOLAR_VOLUME_20C_L / props.molar_mass_g_mol
    if unit == "%LEL":
        if props.lel_pct_vol is None:
            raise UnitError(f"cannot use %LEL for {parameter}: it has no lower explosive limit")
        # 100 %LEL = LEL %vol = LEL * 10,000 ppm
        return props.lel_pct_vol * 100.0
    raise UnitError(
        f"unit {unit!r} does not fit gas parameter {parameter}; expected one of "
        f"{', '.join(_GAS_UNITS)}"
    )


@lru_cache(maxsize=4096)
def linear(from_unit: str, to_unit: str, parameter: str) -> tuple[float, float]:
    """`(scale, offset)` such that `value_in_to_unit = value * scale + offset`.

    Raises `UnitError` naming the units and the parameter when there is no exact conversion
    (different dimensions, %LEL for a gas without LEL, mg/m3 for a mixture, unknown unit).
    """
    f = _resolve(parameter, from_unit)
    t = _resolve(parameter, to_unit)
    if f == t:
        return (1.0, 0.0)
    if parameter.startswith("gas."):
        return (_gas_ppm_per_unit(parameter, f) / _gas_ppm_per_unit(parameter, t), 0.0)
    if {f, t} == {"°C", "K"}:
        return (1.0, 273.15) if f == "°C" else (1.0, -273.15)
    fd = _LINEAR.get(f)
    td = _LINEAR.get(t)
    if fd is None or td is None or fd[0] != td[0]:
        raise UnitError(
            f"cannot convert {from_unit!r} to {to_unit!r} for {parameter}: "
            "different kinds of quantity"
        )
    return (fd[1] / td[1], 0.0)


def convert(value: float, from_unit: str, to_unit: str, parameter: str) -> float:
    """Convert `value` from one unit to another for a parameter (gas conversions need it).

    >>> round(convert(20.0, "mg/m3", "ppm", "gas.NH3"), 3)
    28.233
    """
    scale, offset = linear(from_unit, to_unit, parameter)
    return value * scale + offset
