"""Physical properties of the gases hazardwatch measures (molar mass, explosive limits, kind),
read from `ingest/data/gas_properties.csv`. Regulatory set points (AL/AH, OEL, IDLH, GB 18218)
are not here: they live in the versioned rule packs of `rules`.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

KINDS = frozenset({"toxic", "combustible", "toxic+combustible", "oxygen"})


@dataclass(frozen=True, slots=True)
class GasProperties:
    parameter: str  # gas.NH3
    name_zh: str
    molar_mass_g_mol: float | None  # None for mixtures (gasoline vapour)
    kind: str  # toxic | combustible | toxic+combustible | oxygen
    lel_pct_vol: float | None
    uel_pct_vol: float | None
    source: str

    @property
    def formula(self) -> str:
        return self.parameter[4:]

    @property
    def is_toxic(self) -> bool:
        return "toxic" in self.kind

    @property
    def is_combustible(self) -> bool:
        return "combustible" in self.kind

    @property
    def is_oxygen(self) -> bool:
        return self.kind == "oxygen"


def _opt_float(s: str, where: str) -> float | None:
    s = s.strip()
    if not s:
        return None
    v = float(s)
    if not v > 0:
        raise ValueError(f"{where}: expected a positive number, got {s!r}")
    return v


@cache
def all_gases() -> Mapping[str, GasProperties]:
    """Every known gas parameter -> its properties (loaded once from the package data)."""
    text = resources.files("ingest").joinpath("data/gas_properties.csv").read_text("utf-8")
    out: dict[str, GasProperties] = {}
    for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        where = f"ingest/data/gas_properties.csv line {n}"
        kind = row["kind"].strip()
        if kind not in KINDS:
            raise ValueError(f"{where}: kind {kind!r} is not one of {sorted(KINDS)}")
        out[row["parameter"].strip()] = GasProperties(
            parameter=row["parameter"].strip(),
            name_zh=row["name_zh"].strip(),
            molar_mass_g_mol=_opt_float(row["molar_mass_g_mol"], where),
            kind=kind,
            lel_pct_vol=_opt_float(row["lel_pct_vol"], where),
            uel_pct_vol=_opt_float(row["uel_pct_vol"], where),
            source=row["source"].strip(),
        )
    return MappingProxyType(out)


def gas_properties(parameter: str) -> GasProperties | None:
    """Properties of a gas parameter such as `gas.NH3`, or None if it is not a known gas."""
    return all_gases().get(parameter)
