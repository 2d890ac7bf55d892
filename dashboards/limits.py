"""Thresholds taken from the registry's own LL/L/H/HH columns, for when no rule set is loaded
(tests and demos before `rules.loader` is wired). Same shape as `rules.loader`'s
`Threshold`, so the dashboards draw them the same way. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.model import Registry


@dataclass(frozen=True, slots=True)
class RegistryThreshold:
    level: str
    value: float
    unit: str
    rule: str = "registry"
    pack: str = ""
    pack_version: str = ""


class RegistryLimits:
    """`thresholds_for(point_key)` from the point's registered limits."""

    def __init__(self, registry: Registry) -> None:
        self._by_key: dict[str, tuple[RegistryThreshold, ...]] = {}
        for p in registry:
            out = []
            for level, v in (("LL", p.ll), ("L", p.l), ("H", p.h), ("HH", p.hh)):
                if v is not None:
                    out.append(RegistryThreshold(level, float(v), p.unit))
            self._by_key[p.key] = tuple(out)

    def thresholds_for(self, point_key: str) -> tuple[RegistryThreshold, ...]:
        return self._by_key.get(point_key, ())
