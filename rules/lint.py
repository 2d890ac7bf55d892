"""Checks beyond the schema: references from rule files to the registry (enterprises, tags,
zones, gateways, parameters, interlock valves) and the compliance lint of `rules check`
(gas set points not above GB/T 50493; every point covered by a limit and an offline rule).
Pure: takes parsed files, a registry and a compiled RuleSet; returns problems.
"""

from __future__ import annotations

from ingest.model import Registry
from ingest.units import UnitError, convert
from rules.loader import (
    RuleProblem,
    RuleSet,
    _as_list,
    _problem,
    rule_matches,
)
from rules.model import Level
from rules.schema import InterlockRule, RuleFile
from rules.standards import available_packs, gas_setpoints

_GLOB = set("*?[")

# Points whose data has no limits by nature: a valve position (checked by interlock rules)
# and event streams (each message is the alarm).
_NO_LIMIT_PARAMETERS = frozenset({"valve", "event"})
# Event points send only when something happens, so silence is not "offline".
_NO_OFFLINE_PARAMETERS = frozenset({"event"})


def reference_problems(
    files: list[tuple[str, bytes, RuleFile]], registry: Registry
) -> list[RuleProblem]:
    """Literal names in `match` (and interlock valves) must exist in the registry, and every
    enabled rule must match at least one point: a typo would otherwise silently do nothing."""
    known = {
        "enterprise": {p.enterprise_code for p in registry},
        "tag": {p.tag for p in registry},
        "parameter": {p.parameter for p in registry},
        "zone": {p.zone for p in registry},
        "gateway": {p.gateway_code for p in registry},
        "hazard": {p.hazard_code for p in registry},
        "industry": {str(p.industry) for p in registry},
    }
    out: list[RuleProblem] = []
    for name, _raw, rf in files:
        for i, rule in enumerate(rf.rules):
            bad_ref = False
            for key, values in known.items():
                for v in _as_list(getattr(rule.match, key)) or []:
                    if not (_GLOB & set(v)) and v not in values:
                        sample = ", ".join(sorted(values)[:8]) or "none registered"
                        out.append(
                            _problem(
                                name, f"rules[{i}].match.{key}", f"a registered {key} ({sample})", v
                            )
                        )
                        bad_ref = True
            if isinstance(rule, InterlockRule) and rule.valve is not None:
                valves = {p.tag for p in registry if p.parameter == "valve"}
                if rule.valve not in valves:
                    out.append(
                        _problem(
                            name,
                            f"rules[{i}].valve",
                            f"the tag of a registered valve point "
                            f"({', '.join(sorted(valves)[:8]) or 'none registered'})",
                            rule.valve,
                        )
                    )
            if not bad_ref and rule.enabled and not any(rule_matches(rule, p) for p in registry):
                out.append(
                    _problem(
                        name,
                        f"rules[{i}].match",
                        "a match that selects at least one registered point",
                        "<no point matches>",
                    )
                )
    return out


def compliance_problems(
    ruleset: RuleSet, registry: Registry, registry_name: str = "registry"
) -> list[RuleProblem]:
    """The compliance lint: gas set points above the GB/T 50493 set points of the active pack
    version, and points without a limit or an offline rule."""
    out: list[RuleProblem] = []
    std_pack = None
    version = ruleset.packs.get("gbt50493")
    if version is not None:
        std_pack = available_packs()["gbt50493"][version]
    oxygen = _oxygen_set_points(ruleset)
    for p in registry:
        pr = ruleset.points.get(p.key)
        if pr is None:
            continue
        if std_pack is not None and p.is_gas and pr.limit is not None:
            std = gas_setpoints(p, std_pack)
            for t in pr.limit.high:
                if std is None or t.level not in (Level.L1, Level.L2):
                    continue
                limit = std[t.level]
                if t.value > limit * (1 + 1e-9):
                    origin = (
                        f"registry column {'h' if t.level == Level.L1 else 'hh'}"
                        if t.pack == "registry"
                        else f"rule {t.rule}"
                    )
                    out.append(
                        _problem(
                            registry_name
                            if t.pack == "registry"
                            else ruleset.rule_files.get(t.rule, t.rule),
                            f"{p.key}.{t.level}",
                            f"{t.level} <= {limit:.4g} {p.unit} (GB/T 50493 {std_pack.version})",
                            f"{t.value:g} {p.unit} from {origin}",
                            raw=True,
                        )
                    )
        if p.parameter == "gas.O2" and pr.limit is not None and oxygen is not None:
            out.extend(_oxygen_problems(p, pr, oxygen, ruleset, registry_name))
        if p.parameter not in _NO_LIMIT_PARAMETERS and pr.limit is None:
            out.append(
                _problem(
                    registry_name,
                    p.key,
                    "a limit rule covering the point (registry ll/l/h/hh, a pack, "
                    "or a rule file with levels)",
                    "<no limits>",
                )
            )
        if p.parameter not in _NO_OFFLINE_PARAMETERS and pr.offline is None:
            out.append(
                _problem(
                    registry_name, p.key, "an offline rule covering the point", "<no offline rule>"
                )
            )
    return out


def _oxygen_set_points(ruleset: RuleSet) -> tuple[str, dict[Level, float]] | None:
    """(version, {L: %vol, H: %vol}) of the active oxygen pack."""
    version = ruleset.packs.get("oxygen")
    if version is None:
        return None
    pack = available_packs()["oxygen"][version]
    for rule in pack.data.rules:
        levels = getattr(rule, "levels", None)
        if levels and Level.L in levels and Level.H in levels:
            unit = getattr(rule, "unit", None) or "%vol"
            return version, {
                Level.L: convert(levels[Level.L], unit, "%vol", "gas.O2"),
                Level.H: convert(levels[Level.H], unit, "%vol", "gas.O2"),
            }
    return None


def _oxygen_problems(p, pr, oxygen, ruleset: RuleSet, registry_name: str) -> list[RuleProblem]:
    """Oxygen deficiency must alarm at or above, enrichment at or below, the standard's
    values (a lower deficiency set point or a higher enrichment one protects less)."""
    version, std = oxygen
    out = []
    checks = [(t, Level.L, -1) for t in pr.limit.low if t.level == Level.L]
    checks += [(t, Level.H, +1) for t in pr.limit.high if t.level == Level.H]
    for t, level, direction in checks:
        try:
            limit = convert(std[level], "%vol", p.unit, p.parameter)
        except UnitError:
            continue
        if direction * (t.value - limit) > 1e-9 * abs(limit):
            origin = (
                f"registry column {'l' if level == Level.L else 'h'}"
                if t.pack == "registry"
                else f"rule {t.rule}"
            )
            where = "at or above" if level == Level.L else "at or below"
            out.append(
                _problem(
                    registry_name
                    if t.pack == "registry"
                    else ruleset.rule_files.get(t.rule, t.rule),
                    f"{p.key}.{level}",
                    f"{level} {where} {limit:.4g} {p.unit} (oxygen {version})",
                    f"{t.value:g} {p.unit} from {origin}",
                    raw=True,
                )
            )
    return out
