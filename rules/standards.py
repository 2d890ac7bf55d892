"""Standard packs shipped as data (`rules/packs/*.pack.yaml`): discovery, validation and
version choice, plus the GB/T 50493 gas set points converted to a point's unit. Pure (reads
package data only); the regulatory numbers live in the YAML files with their sources.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

import yaml
from pydantic import ValidationError

from ingest.gases import gas_properties
from ingest.model import Point
from ingest.units import UnitError, convert
from rules.model import Level
from rules.schema import PackFile


@dataclass(frozen=True, slots=True)
class Pack:
    name: str
    version: str
    file: str  # package-relative path, for messages
    data: PackFile
    text: str  # the YAML as shipped (hashed into RuleSet.version)


class PackError(ValueError):
    """A shipped pack file is invalid (a packaging bug, not a user error)."""


@cache
def available_packs() -> Mapping[str, Mapping[str, Pack]]:
    """name -> version -> Pack, for every `*.pack.yaml` shipped in `rules/packs/`."""
    out: dict[str, dict[str, Pack]] = {}
    root = resources.files("rules").joinpath("packs")
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".pack.yaml"):
            continue
        text = entry.read_text("utf-8")
        try:
            data = PackFile.model_validate(yaml.safe_load(text))
        except ValidationError as exc:
            raise PackError(f"rules/packs/{entry.name}: {exc}") from None
        if data.version in out.get(data.pack, {}):
            raise PackError(f"rules/packs/{entry.name}: {data.pack} {data.version} shipped twice")
        out.setdefault(data.pack, {})[data.version] = Pack(
            data.pack, data.version, f"rules/packs/{entry.name}", data, text
        )
    for name, versions in out.items():
        defaults = [v for v, p in versions.items() if p.data.default]
        if len(versions) > 1 and len(defaults) != 1:
            raise PackError(f"pack {name}: exactly one version must say `default: true`")
    return MappingProxyType({k: MappingProxyType(v) for k, v in out.items()})


def default_version(name: str) -> str:
    versions = available_packs()[name]
    for v, p in versions.items():
        if p.data.default or len(versions) == 1:
            return v
    raise PackError(f"pack {name} has no default version")  # pragma: no cover - checked above


def choose_packs(chosen: Mapping[str, str]) -> tuple[Pack, ...]:
    """The active packs in application order: the chosen version of each pack, else its
    default. Raises KeyError naming what is unknown (the loader turns it into a problem)."""
    packs = available_packs()
    out = []
    for name in packs:
        version = chosen.get(name) or default_version(name)
        if version not in packs[name]:
            raise KeyError(
                f"pack {name} has no version {version!r}; available: {', '.join(packs[name])}"
            )
        out.append(packs[name][version])
    unknown = set(chosen) - set(packs)
    if unknown:
        raise KeyError(f"unknown pack {sorted(unknown)[0]!r}; available: {', '.join(packs)}")
    return tuple(sorted(out, key=lambda p: (p.data.order, p.name)))


def gas_setpoints(point: Point, pack: Pack) -> dict[Level, float] | None:
    """The standard's first/second level set points for a gas point, in the point's unit, or
    None when the pack has no set point for this gas (oxygen, an unlisted gas) or the unit
    cannot express it. Toxic governs for gases that are both toxic and combustible."""
    table = pack.data.gas_setpoints
    if table is None or not point.is_gas:
        return None
    toxic = table.toxic.get(point.parameter)
    try:
        if toxic is not None:
            return {
                Level.L1: convert(toxic.AL, toxic.unit, point.unit, point.parameter),
                Level.L2: convert(toxic.AH, toxic.unit, point.unit, point.parameter),
            }
        props = gas_properties(point.parameter)
        if props is None or not props.is_combustible or props.lel_pct_vol is None:
            return None
        comb = table.combustible
        return {
            Level.L1: convert(comb.L1_pct_lel, "%LEL", point.unit, point.parameter),
            Level.L2: convert(comb.L2_pct_lel, "%LEL", point.unit, point.parameter),
        }
    except UnitError:
        return None
