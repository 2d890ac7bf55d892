"""Load rule files and standard packs against a registry into a compiled, immutable `RuleSet`.

Every problem in every file is collected (file, key path with line, what was expected, what
came) and raised together as `RuleFileError`; nothing is returned then, so a caller's loaded
good RuleSet is never replaced by a bad one. Loading never runs code: `yaml.safe_load`, strict
models, no expressions. Precedence per point and field: standard packs (in pack order), then
the registry's own limits, then the user's files (in file-name order), the later winning.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.model import Point, Registry
from ingest.units import UnitError, convert
from rules.model import Kind, Level
from rules.schema import (
    EventRule,
    FaultRule,
    InterlockRule,
    LimitRule,
    OccupancyRule,
    OfflineRule,
    RateRule,
    RuleFile,
    StuckRule,
    VoteRule,
)
from rules.standards import Pack, available_packs, choose_packs, gas_setpoints

USER_PACK = ""  # `pack` of thresholds and rules from the user's own files
REGISTRY_PACK = "registry"


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One problem: where (file, key path such as `rules[2].levels.HH` with `:line`), what was
    expected and what came."""

    file: str
    path: str
    expected: str
    got: str
    message: str

    def __str__(self) -> str:
        return self.message


class RuleFileError(Exception):
    """Rule files (or the packs/registry they refer to) have problems; `.problems` lists
    every one of them."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        self.problems = problems
        lines = [str(p) for p in problems[:20]]
        if len(problems) > 20:
            lines.append(f"... and {len(problems) - 20} more")
        super().__init__(f"{len(problems)} problem(s) in rule files:\n" + "\n".join(lines))


def _problem(
    file: str, path: str, expected: str, got: Any, line: int | None = None, *, raw: bool = False
) -> RuleProblem:
    got_s = got if isinstance(got, str) and (raw or got.startswith("<")) else _short(got)
    where = f"{file}:{line}" if line else file
    loc = f" {path}:" if path else ""
    return RuleProblem(
        file, path, expected, got_s, f"{where}:{loc} expected {expected}, got {got_s}"
    )


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 80 else s[:77] + "..."


# --------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class Threshold:
    """One set point of a point, as dashboards draw it and as alarms report it."""

    level: Level
    value: float
    unit: str
    rule: str
    pack: str
    pack_version: str


@dataclass(frozen=True, slots=True)
class Source:
    rule: str
    pack: str
    pack_version: str


@dataclass(frozen=True, slots=True)
class LimitSpec:
    """Limit evaluation of one point. `high`/`low` list thresholds from the less to the more
    severe level; `strict` compares with > / < instead of >= / <= (head-count quotas)."""

    kind: Kind  # LIMIT or OCCUPANCY
    source: Source
    high: tuple[Threshold, ...]
    low: tuple[Threshold, ...]
    for_ms: int = 0
    off_ms: int = 0
    deadband: float = 0.0
    strict: bool = False
    latch: bool = False


@dataclass(frozen=True, slots=True)
class FaultSpec:
    source: Source
    range_low: float | None
    range_high: float | None
    over_range_latch: bool  # gas detectors only (DOMAIN.md §2)


@dataclass(frozen=True, slots=True)
class OfflineSpec:
    source: Source
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class StuckSpec:
    source: Source
    for_ms: int
    tolerance: float


@dataclass(frozen=True, slots=True)
class RateSpec:
    source: Source
    max_rise: float  # per minute, point unit; inf = not checked
    max_fall: float


@dataclass(frozen=True, slots=True)
class EventSpec:
    source: Source
    types: frozenset[str] | None  # None = any type
    hold_ms: int


@dataclass(frozen=True, slots=True)
class InterlockSpec:
    source: Source
    valve_key: str
    within_ms: int
    closed_max: float


@dataclass(frozen=True, slots=True)
class PointRules:
    point: Point
    limit: LimitSpec | None = None
    fault: FaultSpec | None = None
    offline: OfflineSpec | None = None
    stuck: StuckSpec | None = None
    rate: RateSpec | None = None
    event: EventSpec | None = None
    interlock: InterlockSpec | None = None


@dataclass(frozen=True, slots=True)
class VoteGroup:
    """k-of-n voting over the detectors of one gas in one zone."""

    enterprise_code: str
    zone: str
    parameter: str
    heads: tuple[str, ...]  # point keys
    k: int
    source: Source

    @property
    def key(self) -> str:
        return f"{self.enterprise_code}/{self.zone}/{self.parameter}"


@dataclass(frozen=True, slots=True)
class GatewayRule:
    enterprise_code: str
    gateway_code: str
    points: tuple[str, ...]  # keys of the points with an offline rule
    timeout_ms: int
    window_ms: int
    source: Source

    @property
    def key(self) -> str:
        return f"{self.enterprise_code}/{self.gateway_code}"


@dataclass(frozen=True)
class RuleSet:
    """The compiled rules for one registry. Immutable; build it with `load_ruleset`."""

    version: str
    packs: Mapping[str, str]
    points: Mapping[str, PointRules]
    votes: tuple[VoteGroup, ...]
    gateways: tuple[GatewayRule, ...]
    files: tuple[str, ...] = ()
    registry_version: str = ""
    lint: tuple[RuleProblem, ...] = field(default=(), compare=False)
    rule_files: Mapping[str, str] = field(default_factory=dict, compare=False)  # rule -> file

    def thresholds_for(self, point_key: str) -> tuple[Threshold, ...]:
        """Every set point of a point in ascending value order (LL, L, H, HH; L1, L2), empty
        for an unknown point or one without limits. Dashboards draw limit lines from this."""
        pr = self.points.get(point_key)
        if pr is None or pr.limit is None:
            return ()
        return tuple(reversed(pr.limit.low)) + pr.limit.high

    def rules_for(self, point_key: str) -> PointRules | None:
        return self.points.get(point_key)


# --------------------------------------------------------------------------- reading files


def rule_files(rules_dir: Path) -> list[Path]:
    """The rule files of a directory: `*.yaml`/`*.yml`, except sidecar tests
    (`*.rules_test.yaml`) and the warning model (`warnings.yaml`), which are not rules."""
    out = []
    for p in sorted(rules_dir.iterdir()):
        if not p.is_file() or p.suffix not in (".yaml", ".yml"):
            continue
        if p.name.endswith((".rules_test.yaml", ".rules_test.yml")):
            continue
        if p.name in ("warnings.yaml", "warnings.yml"):
            continue
        out.append(p)
    return out


def _line_map(text: str) -> dict[tuple, int]:
    """Key path -> 1-based line, from the YAML node tree (for messages only)."""
    out: dict[tuple, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out

    def walk(node: Any, path: tuple) -> None:
        out[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
                out[(*path, key)] = k.start_mark.line + 1
                walk(v, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, (*path, i))

    if root is not None:
        walk(root, ())
    return out


def _duplicate_keys(text: str, file: str) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return problems

    def walk(node: Any, path: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for k, v in node.value:
                key = str(k.value)
                p = f"{path}.{key}" if path else key
                if key in seen:
                    problems.append(
                        _problem(
                            file,
                            p,
                            "each key once in a mapping",
                            "<a second value for the same key>",
                            k.start_mark.line + 1,
                        )
                    )
                seen.add(key)
                walk(v, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return problems


def _loc_path(loc: tuple, data: Any) -> tuple[str, tuple]:
    """Pydantic error location -> (`rules[2].levels.HH`, raw key tuple for the line map).
    Drops the discriminator segment pydantic inserts after a rule's index."""
    parts: list[str] = []
    raw: list[Any] = []
    node = data
    for i, seg in enumerate(loc):
        if (
            isinstance(seg, str)
            and i > 0
            and isinstance(loc[i - 1], int)
            and isinstance(node, dict)
            and node.get("kind") == seg
            and seg not in node
        ):
            continue  # the discriminator tag, not a key of the file
        if seg == "[key]":
            continue  # pydantic marks a bad mapping key this way; the key itself follows
        if seg == "for_":
            seg = "for"
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
        else:
            parts.append(f".{seg}" if parts else str(seg))
        raw.append(seg)
        if isinstance(node, dict):
            node = node.get(seg)
        elif isinstance(node, list) and isinstance(seg, int) and seg < len(node):
            node = node[seg]
        else:
            node = None
    return "".join(parts), tuple(raw)


def _expected_from(err: Mapping[str, Any]) -> str:
    t = err["type"]
    ctx = err.get("ctx") or {}
    if t == "extra_forbidden":
        return "only the keys of the rule-file schema here (see `hazardwatch rules schema`)"
    if t == "missing":
        return "this key (it is required)"
    if t == "union_tag_invalid":
        return f"`kind` one of {ctx.get('expected_tags', '')}"
    if t == "union_tag_not_found":
        return (
            "a `kind` key (limit, occupancy, offline, fault, stuck, rate, vote, interlock, event)"
        )
    if t == "enum":
        return f"one of {ctx.get('expected', '')}"
    if t == "literal_error":
        return f"one of {ctx.get('expected', '')}"
    simple = {
        "float_parsing": "a number",
        "float_type": "a number",
        "int_parsing": "a whole number",
        "int_type": "a whole number",
        "int_from_float": "a whole number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "text",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
        "finite_number": "a finite number",
    }
    if t in simple:
        return simple[t]
    bounds = {
        "greater_than": ">",
        "greater_than_equal": ">=",
        "less_than": "<",
        "less_than_equal": "<=",
    }
    if t in bounds:
        limit = next(iter(ctx.values()), "")
        return f"a number {bounds[t]} {limit}"
    if t == "string_pattern_mismatch":
        return "a name of letters, digits and _ . : - (no spaces, at most 80 characters)"
    msg = str(err["msg"])
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


_MAX_NODES = 100_000  # values in a rule file once aliases are expanded


def _expanded_size(root: Any) -> int:
    """Node count with aliases expanded (capped just above the limit); -1 for an alias
    inside its own anchor. Memoised per node, so an "alias bomb" is measured in no time."""
    memo: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in active:
            return -1
        if key in memo:
            return memo[key]
        active.add(key)
        if isinstance(node, yaml.MappingNode):
            children = [c for kv in node.value for c in kv]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        total = 1
        for c in children:
            n = size(c)
            if n < 0:
                return -1
            total = min(total + n, _MAX_NODES + 1)
        active.discard(key)
        memo[key] = total
        return total

    return size(root)


def _shape_problem(text: str, file: str) -> RuleProblem | None:
    """Refuse what would make parsing itself run away: nesting deeper than the YAML parser
    can follow, aliases inside their own anchor, and aliases that expand exponentially."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None:
            return None
        n = _expanded_size(root)
    except RecursionError:
        return _problem(
            file, "", "YAML nested at most a few hundred levels deep", "<deeper nesting>"
        )
    except yaml.YAMLError:
        return None  # reported with its line by the parse that follows
    if n < 0:
        return _problem(
            file, "", "aliases that do not refer to themselves", "<an alias inside its own anchor>"
        )
    if n > _MAX_NODES:
        return _problem(
            file,
            "",
            f"at most {_MAX_NODES:,} values once aliases are expanded",
            "<more (aliases of aliases)>",
        )
    return None


def parse_rule_file(text: str, file: str) -> tuple[RuleFile | None, list[RuleProblem]]:
    """Parse and validate one rule file; returns the model (None if invalid) and problems."""
    shape = _shape_problem(text, file)
    if shape is not None:
        return None, [shape]
    problems = _duplicate_keys(text, file)
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else None
        return None, [
            *problems,
            _problem(
                file,
                "",
                "plain YAML data (tags that construct objects or run code are not allowed)",
                f"<{exc.problem}>",
                line,
            ),
        ]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [*problems, _problem(file, "", "valid YAML", f"<{what}>", line)]
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return None, [
            *problems,
            _problem(
                file, "", "a mapping with `rules:` at the top", f"<a {type(data).__name__}>", 1
            ),
        ]
    lines = _line_map(text)
    try:
        model = RuleFile.model_validate(data)
    except RecursionError:
        return None, [
            *problems,
            _problem(file, "", "YAML nested at most a few hundred levels deep", "<deeper nesting>"),
        ]
    except ValidationError as exc:
        for err in exc.errors():
            path, raw = _loc_path(err["loc"], data)
            line = lines.get(raw) or lines.get(raw[:-1])
            got = err.get("input")
            if err["type"] == "missing":
                got = "<nothing>"
            elif err["type"] == "extra_forbidden":
                got = f"<unknown key {raw[-1]!r}>"
            elif err["type"] in ("union_tag_invalid",) and isinstance(got, dict):
                got = got.get("kind")
            elif isinstance(got, dict | list) and err["type"] != "extra_forbidden":
                got = f"<a {'mapping' if isinstance(got, dict) else 'list'}>"
            problems.append(_problem(file, path, _expected_from(err), got, line))
        return None, problems
    return (None if problems else model), problems


# --------------------------------------------------------------------------- matching


def _as_list(v: str | list[str] | None) -> list[str] | None:
    return None if v is None else ([v] if isinstance(v, str) else list(v))


def _matches(patterns: list[str] | None, value: str) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(value, p) for p in patterns)


def rule_matches(rule: Any, p: Point) -> bool:
    m = rule.match
    return (
        _matches(_as_list(m.enterprise), p.enterprise_code)
        and _matches(_as_list(m.tag), p.tag)
        and _matches(_as_list(m.parameter), p.parameter)
        and _matches(_as_list(m.zone), p.zone)
        and _matches(_as_list(m.gateway), p.gateway_code)
        and _matches(_as_list(m.hazard), p.hazard_code)
        and _matches(_as_list(m.industry), str(p.industry))
    )


# --------------------------------------------------------------------------- compiling

_META = {"name", "description", "match", "kind", "enabled"}
_KIND_OF = {
    LimitRule: "limit",
    OccupancyRule: "occupancy",
    OfflineRule: "offline",
    FaultRule: "fault",
    StuckRule: "stuck",
    RateRule: "rate",
    VoteRule: "vote",
    InterlockRule: "interlock",
    EventRule: "event",
}


@dataclass
class _Acc:
    """Fields accumulated for one (point, kind) across packs and files."""

    fields: dict[str, Any]
    source: Source


@dataclass
class _Level:
    value: float
    pack: str
    pack_version: str


@dataclass
class _PointAcc:
    point: Point
    kinds: dict[str, _Acc] = field(default_factory=dict)
    levels: dict[Level, _Level] = field(default_factory=dict)


@dataclass
class _Origin:
    file: str
    index: int
    pack: Pack | None


def _gas_like(p: Point) -> bool:
    """Gas points other than oxygen use L1/L2; oxygen and process points use LL/L/H/HH."""
    return p.is_gas and p.parameter != "gas.O2"


def _registry_levels(p: Point) -> dict[Level, float]:
    if p.parameter in ("occupancy", "valve", "event"):
        return {}
    if _gas_like(p):
        m = {Level.L1: p.h, Level.L2: p.hh}
    else:
        m = {Level.LL: p.ll, Level.L: p.l, Level.H: p.h, Level.HH: p.hh}
    return {k: v for k, v in m.items() if v is not None}


def _apply(
    acc: _PointAcc, rule: Any, origin: _Origin, problems: list[RuleProblem], where: str
) -> None:
    kind = _KIND_OF[type(rule)]
    pack = origin.pack
    src = Source(rule.name, pack.name if pack else USER_PACK, pack.version if pack else "")
    if not rule.enabled:
        acc.kinds.pop(kind, None)
        if kind == "limit":
            acc.levels.clear()
        return
    fields = {k: getattr(rule, k) for k in rule.model_fields_set - _META}
    prev = acc.kinds.get(kind)
    merged = {**(prev.fields if prev else {}), **fields}
    acc.kinds[kind] = _Acc(merged, src)
    if kind != "limit":
        return
    p = acc.point
    levels: dict[Level, float] | None = None
    if rule.levels is not None:
        unit = rule.unit or p.unit
        levels = {}
        for lv, v in rule.levels.items():
            try:
                levels[lv] = convert(v, unit, p.unit, p.parameter)
            except UnitError as exc:
                problems.append(
                    _problem(
                        origin.file,
                        f"{where}.unit",
                        f"a unit convertible to {p.unit!r} for {p.key}",
                        f"<{unit}: {exc}>",
                    )
                )
                return
        allowed = {Level.L1, Level.L2} if _gas_like(p) else {Level.LL, Level.L, Level.H, Level.HH}
        bad = [str(lv) for lv in levels if lv not in allowed]
        if bad and origin.pack is None:
            problems.append(
                _problem(
                    origin.file,
                    f"{where}.levels",
                    f"levels {sorted(map(str, allowed))} for {p.key} ({p.parameter})",
                    ", ".join(bad),
                )
            )
            return
        levels = {lv: v for lv, v in levels.items() if lv in allowed}
    elif pack is not None and pack.data.gas_setpoints is not None:
        levels = gas_setpoints(p, pack)
    if levels:
        if origin.pack is None:
            acc.levels.clear()  # a user's `levels:` is the whole set for the point
        for lv, v in levels.items():
            acc.levels[lv] = _Level(v, src.pack, src.pack_version)


def _build_point(acc: _PointAcc, registry: Registry, problems: list[RuleProblem]) -> PointRules:
    p = acc.point
    k = acc.kinds

    def src(kind: str) -> Source:
        return k[kind].source

    def f(kind: str, name: str, default: Any) -> Any:
        v = k[kind].fields.get(name)
        return default if v is None else v

    span = (
        (p.range_high - p.range_low)
        if (p.range_high is not None and p.range_low is not None)
        else None
    )
    limit = None
    if "occupancy" in k:
        quota = f("occupancy", "quota", p.h)
        if quota is not None:
            s = src("occupancy")
            limit = LimitSpec(
                Kind.OCCUPANCY,
                s,
                (
                    Threshold(
                        Level.H,
                        float(quota),
                        p.unit,
                        s.rule,
                        REGISTRY_PACK if k["occupancy"].fields.get("quota") is None else s.pack,
                        registry.version
                        if k["occupancy"].fields.get("quota") is None
                        else s.pack_version,
                    ),
                ),
                (),
                strict=True,
            )
    elif "limit" in k and acc.levels:
        s = src("limit")
        lv = acc.levels

        def th(level: Level) -> Threshold | None:
            x = lv.get(level)
            return (
                None
                if x is None
                else Threshold(level, x.value, p.unit, s.rule, x.pack, x.pack_version)
            )

        if _gas_like(p):
            high_l, low_l = (Level.L1, Level.L2), ()
        else:
            high_l, low_l = (Level.H, Level.HH), (Level.L, Level.LL)
        high = tuple(t for t in map(th, high_l) if t is not None)
        low = tuple(t for t in map(th, low_l) if t is not None)
        vals = [t.value for t in reversed(low)] + [t.value for t in high]
        if any(not a < b for a, b in itertools.pairwise(vals)):
            order = " < ".join(str(t.level) for t in (*reversed(low), *high))
            problems.append(
                _problem(
                    s.rule,
                    p.key,
                    f"set points in order {order}",
                    ", ".join(f"{t.level}={t.value:g}" for t in (*reversed(low), *high)),
                )
            )
        db = f("limit", "deadband", None)
        if db is None:
            pct = f("limit", "deadband_pct", 0.0)
            db = pct / 100.0 * span if span else 0.0
        limit = LimitSpec(
            Kind.LIMIT,
            s,
            high,
            low,
            for_ms=f("limit", "for_", 0),
            off_ms=f("limit", "off_delay", 0),
            deadband=float(db),
            latch=f("limit", "latch", False),
        )
    fault = None
    if "fault" in k:
        fault = FaultSpec(
            src("fault"),
            p.range_low,
            p.range_high,
            bool(f("fault", "over_range_latch", False))
            and p.is_gas
            and limit is not None
            and bool(limit.high),
        )
    offline = None
    if "offline" in k and p.parameter != "event":
        mult = f("offline", "multiple", 3.0)
        offline = OfflineSpec(src("offline"), round(mult * p.expected_interval_s * 1000))
    stuck = None
    if "stuck" in k and f("stuck", "for_", None):
        stuck = StuckSpec(
            src("stuck"), int(f("stuck", "for_", 0)), float(f("stuck", "tolerance", 0.0))
        )
    rate = None
    if "rate" in k:
        rise = f("rate", "max_rise_per_min", None)
        fall = f("rate", "max_fall_per_min", None)
        if rise is None and f("rate", "max_rise_pct_span_per_min", None) and span:
            rise = f("rate", "max_rise_pct_span_per_min", 0) / 100.0 * span
        if fall is None and f("rate", "max_fall_pct_span_per_min", None) and span:
            fall = f("rate", "max_fall_pct_span_per_min", 0) / 100.0 * span
        if rise is not None or fall is not None:
            rate = RateSpec(
                src("rate"), float(rise) if rise else math.inf, float(fall) if fall else math.inf
            )
    event = None
    if "event" in k and p.parameter == "event":
        types = f("event", "types", ["*"])
        event = EventSpec(
            src("event"),
            None if "*" in types else frozenset(types),
            int(f("event", "hold", 600_000)),
        )
    interlock = None
    if "interlock" in k and limit is not None and any(t.level == Level.HH for t in limit.high):
        valve_tag = f("interlock", "valve", None) or p.attrs.get("inlet_valve")
        valve = None
        if valve_tag:
            valve = registry.get(p.enterprise_code, valve_tag)
        else:
            valves = [q for q in registry.zone(p.enterprise_code, p.zone) if q.parameter == "valve"]
            valve = valves[0] if len(valves) == 1 else None
        if valve is not None:
            interlock = InterlockSpec(
                src("interlock"),
                valve.key,
                int(f("interlock", "within", 60_000)),
                float(f("interlock", "closed_max", 0.5)),
            )
    return PointRules(p, limit, fault, offline, stuck, rate, event, interlock)


def compile_rules(
    registry: Registry,
    packs: Iterable[Pack],
    user: Iterable[tuple[str, RuleFile]],
    problems: list[RuleProblem],
) -> tuple[dict[str, PointRules], tuple[VoteGroup, ...], tuple[GatewayRule, ...]]:
    """Apply packs, registry limits and user files to every point (see module doc)."""
    accs = {p.key: _PointAcc(p) for p in registry}
    packs = list(packs)
    user = list(user)
    votes_cfg: dict[str, tuple[dict[str, Any], Source]] = {}
    gw_cfg: dict[str, tuple[dict[str, Any], Source]] = {}

    def run(rules: list[Any], origin_of) -> None:
        for i, rule in enumerate(rules):
            origin = origin_of(i)
            where = f"rules[{i}]"
            for acc in accs.values():
                if rule_matches(rule, acc.point):
                    if isinstance(rule, VoteRule):
                        prev = votes_cfg.get(acc.point.key)
                        if not rule.enabled:
                            votes_cfg.pop(acc.point.key, None)
                            continue
                        fields = {k: getattr(rule, k) for k in rule.model_fields_set - _META}
                        votes_cfg[acc.point.key] = (
                            {**(prev[0] if prev else {}), **fields},
                            Source(
                                rule.name,
                                origin.pack.name if origin.pack else USER_PACK,
                                origin.pack.version if origin.pack else "",
                            ),
                        )
                        continue
                    if isinstance(rule, OfflineRule) and rule.enabled:
                        prev = gw_cfg.get(acc.point.key)
                        fields = {
                            k: getattr(rule, k)
                            for k in rule.model_fields_set & {"gateway_multiple", "gateway_window"}
                        }
                        gw_cfg[acc.point.key] = (
                            {**(prev[0] if prev else {}), **fields},
                            Source(
                                rule.name,
                                origin.pack.name if origin.pack else USER_PACK,
                                origin.pack.version if origin.pack else "",
                            ),
                        )
                    _apply(acc, rule, origin, problems, where)

    for pack in packs:
        run(list(pack.data.rules), lambda i, pack=pack: _Origin(pack.file, i, pack))
    for acc in accs.values():  # registry limits override the packs' defaults
        for lv, v in _registry_levels(acc.point).items():
            acc.levels[lv] = _Level(v, REGISTRY_PACK, registry.version)
    for file, rf in user:
        run(list(rf.rules), lambda i, file=file: _Origin(file, i, None))

    points = {key: _build_point(acc, registry, problems) for key, acc in accs.items()}

    votes: list[VoteGroup] = []
    groups: dict[tuple[str, str, str], list[str]] = {}
    for key, (_cfg, _s) in votes_cfg.items():
        pr = points[key]
        p = pr.point
        # Voting is over gas first/second levels; points without them (oxygen) do not vote.
        if pr.limit is None or not pr.limit.high or pr.limit.high[0].level != Level.L1:
            continue
        groups.setdefault((p.enterprise_code, p.zone, p.parameter), []).append(key)
    for (ent, zone, param), heads in sorted(groups.items()):
        cfg, s = votes_cfg[heads[0]]
        k = int(cfg.get("k") or 2)
        min_heads = int(cfg.get("min_heads") or k + 1)
        if len(heads) >= max(min_heads, k):
            votes.append(VoteGroup(ent, zone, param, tuple(sorted(heads)), k, s))

    gateways: list[GatewayRule] = []
    for (ent, gw), pts in sorted(registry.gateways().items()):
        keys = sorted(q.key for q in pts if points[q.key].offline is not None)
        if len(keys) < 2:
            continue  # a lone point's own offline alarm already is the one alarm
        cfg, s = gw_cfg[keys[0]]
        min_iv = min(registry.by_key(kk).expected_interval_s for kk in keys)
        gm = float(cfg.get("gateway_multiple") or 3.0)
        gwin = float(cfg.get("gateway_window") or 1.5)
        timeout = round(gm * min_iv * 1000)
        window = round(gwin * min_iv * 1000)
        window = min(window, min(points[kk].offline.timeout_ms for kk in keys) - 1)
        gateways.append(GatewayRule(ent, gw, tuple(keys), timeout, max(window, 1), s))
    return points, tuple(votes), tuple(gateways)


# --------------------------------------------------------------------------- entry point


def load_ruleset(
    rules_dir: Path | None,
    registry: Registry,
    *,
    pack_versions: Mapping[str, str] | None = None,
) -> RuleSet:
    """Load the standard packs and the rule files of `rules_dir` (None: packs only) for
    `registry`. Raises `RuleFileError` listing every problem; returns nothing then."""
    problems: list[RuleProblem] = []
    files: list[tuple[str, bytes, RuleFile]] = []
    if rules_dir is not None:
        rules_dir = Path(rules_dir)
        if not rules_dir.is_dir():
            raise RuleFileError(
                [_problem(str(rules_dir), "", "a directory of rule files", "<no such directory>")]
            )
        for path in rule_files(rules_dir):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(_problem(str(path), "", "UTF-8 text", f"<byte {exc.start}>"))
                continue
            model, probs = parse_rule_file(text, str(path))
            problems.extend(probs)
            if model is not None:
                files.append((str(path), raw, model))
    try:
        return build_ruleset(files, registry, pack_versions=pack_versions, problems=problems)
    except RuleFileError as exc:
        texts = {name: raw.decode("utf-8") for name, raw, _m in files}
        raise RuleFileError([_with_line(p, texts) for p in exc.problems]) from None


_PATH_SEG = re.compile(r"\.?([^.\[\]]+)|\[(\d+)\]")


def _with_line(p: RuleProblem, texts: Mapping[str, str]) -> RuleProblem:
    """Add the line of `p.path` to a problem found after parsing (references, names)."""
    text = texts.get(p.file)
    if text is None or not p.path or not p.message.startswith(f"{p.file}: "):
        return p  # not a rule file, or it already names its line
    raw = tuple(int(m.group(2)) if m.group(2) else m.group(1) for m in _PATH_SEG.finditer(p.path))
    line = _line_map(text).get(raw)
    if line is None:
        return p
    msg = f"{p.file}:{line}: {p.path}: expected {p.expected}, got {p.got}"
    return RuleProblem(p.file, p.path, p.expected, p.got, msg)


def build_ruleset(
    files: list[tuple[str, bytes, RuleFile]],
    registry: Registry,
    *,
    pack_versions: Mapping[str, str] | None = None,
    problems: list[RuleProblem] | None = None,
) -> RuleSet:
    """Compile already-parsed rule files (name, bytes, model) with the packs."""
    problems = list(problems or [])
    chosen: dict[str, str] = {}
    chosen_by: dict[str, str] = {}
    for name, _raw, rf in files:
        for pack, version in rf.packs.items():
            if pack in chosen and chosen[pack] != version:
                problems.append(
                    _problem(
                        name,
                        f"packs.{pack}",
                        f"{chosen[pack]!r} as chosen in {chosen_by[pack]}",
                        version,
                    )
                )
            chosen[pack] = version
            chosen_by[pack] = name
    for pack, version in (pack_versions or {}).items():
        chosen[pack] = version
        chosen_by[pack] = "pack_versions (settings rules.standard_pack_versions or --pack)"
    shipped = available_packs()
    for pack, version in chosen.items():
        if pack not in shipped:
            problems.append(
                _problem(
                    chosen_by[pack], f"packs.{pack}", f"a shipped pack ({', '.join(shipped)})", pack
                )
            )
        elif version not in shipped[pack]:
            problems.append(
                _problem(
                    chosen_by[pack],
                    f"packs.{pack}",
                    f"a version of {pack} ({', '.join(shipped[pack])})",
                    version,
                )
            )
    if problems:
        raise RuleFileError(problems)
    packs = choose_packs(chosen)

    names: dict[str, str] = {}
    for pack in packs:
        for r in pack.data.rules:
            names[r.name] = f"pack {pack.name}"
    for name, _raw, rf in files:
        for i, r in enumerate(rf.rules):
            if r.name in names:
                problems.append(
                    _problem(
                        name,
                        f"rules[{i}].name",
                        f"a rule name not used elsewhere (already used by {names[r.name]})",
                        r.name,
                    )
                )
            names[r.name] = f"rules[{i}] of {Path(name).name}"
    if problems:
        raise RuleFileError(problems)

    points, votes, gateways = compile_rules(
        registry, packs, [(n, rf) for n, _raw, rf in files], problems
    )
    from rules.lint import reference_problems  # lint imports loader types

    problems.extend(reference_problems(files, registry))
    if problems:
        raise RuleFileError(problems)

    h = hashlib.sha256()
    for pack in packs:
        h.update(f"pack {pack.name} {pack.version}\n".encode())
        h.update(pack.text.encode())
    for name, raw, _rf in files:
        h.update(f"file {Path(name).name}\n".encode())
        h.update(raw)
    h.update(f"registry {registry.version}\n".encode())
    return RuleSet(
        version=h.hexdigest()[:12],
        packs=MappingProxyType({p.name: p.version for p in packs}),
        points=MappingProxyType(points),
        votes=votes,
        gateways=gateways,
        files=tuple(n for n, _r, _m in files),
        registry_version=registry.version,
        rule_files=MappingProxyType(
            {r.name: p.file for p in packs for r in p.data.rules}
            | {r.name: n for n, _raw, rf in files for r in rf.rules}
        ),
    )
