"""Sidecar rule tests (`*.rules_test.yaml` beside the rule files), in the spirit of
`promtool test rules`: readings in, written as series in the rule author's own terms, and the
alarm transitions expected out at given times. They run the same loader and engine as
production (through `run_replay`), so a passing sidecar test means the shipped rules behave.

A sidecar file:

```yaml
registry: ../registry.csv        # relative to this file (`hazardwatch rules test --registry`
                                 # overrides it)
packs: {gbt50493: 2019-amend1}   # optional standard pack versions
tests:
  - name: NH3 first level after its on-delay
    start: 2026-11-29T08:00:00+08:00   # optional, default 2026-01-01T00:00:00Z
    interval: 10s                       # spacing of series values (default 10s)
    input:
      - tag: AT-1101                    # or point: E1/AT-1101 (enterprise optional when
        unit: ppm                       #   the registry has only one)
        values: "0 0 40x6 0x3"          # promtool series: a, a+bxN, axN (N+1 values), _ gap
      - tag: EV-7
        events: [{at: 30s, type: vehicle_in_zone, text: truck}]
    until: 3m                           # run timers to here (default: last input)
    expect:                             # every transition of the kinds listed here, in order
      - {at: 20s, tag: AT-1101, kind: limit, level: L1, state: firing}
      - {at: 90s, tag: AT-1101, kind: limit, state: cleared}
    expect_active:                      # alarms open at an instant (promtool exp_alerts)
      - at: 1m
        alarms: [{tag: AT-1101, kind: limit, level: L1}]
```

`expect` is compared with every transition of the kinds it mentions (`expect_kinds` widens or
narrows that; `expect: []` means "no alarm at all"), so an unexpected extra alarm of a tested
kind fails the test.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ingest.model import Reading, Registry, datetime_to_ms
from ingest.units import UnitError, linear
from rules.model import AlarmEvent, AlarmState, Kind, Level
from rules.schema import parse_duration_ms

SUFFIXES = (".rules_test.yaml", ".rules_test.yml")

DEFAULT_START = "2026-01-01T00:00:00+00:00"


# --------------------------------------------------------------------------- file model


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_COMPOUND = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|h|m|s))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_PART_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _dur(v: Any) -> int:
    """A rule-file duration (`10s`, `5m`, seconds as a number) or, as in promtool, a
    compound one (`1m30s`, `1h5m`)."""
    if isinstance(v, str) and _COMPOUND.match(v.strip()):
        return round(sum(float(n) * _PART_MS[u] for n, u in _PART.findall(v)))
    try:
        return parse_duration_ms(v)
    except ValueError:
        raise ValueError(f"expected a duration like 10s, 5m, 1m30s or 250ms, got {v!r}") from None


class EventIn(_Strict):
    at: Any
    type: str
    text: str = ""

    @field_validator("at")
    @classmethod
    def _at(cls, v: Any) -> int:
        return _dur(v)


class SeriesIn(_Strict):
    tag: str | None = None
    point: str | None = None  # "<enterprise>/<tag>"
    unit: str | None = None
    quality: int = Field(default=0, ge=0, le=3)
    values: str | None = None
    events: list[EventIn] | None = None
    offset: Any = 0  # shift of the first value from the test start

    @field_validator("offset")
    @classmethod
    def _offset(cls, v: Any) -> int:
        return _dur(v)


class ExpectedAlarm(_Strict):
    at: Any
    tag: str
    kind: Kind
    state: AlarmState = AlarmState.FIRING
    level: Level | None = None
    enterprise: str | None = None
    rule: str | None = None
    threshold: float | None = None
    value: float | None = None

    @field_validator("at")
    @classmethod
    def _at(cls, v: Any) -> int:
        return _dur(v)


class ActiveAlarm(_Strict):
    tag: str
    kind: Kind
    level: Level | None = None
    enterprise: str | None = None


class ExpectActive(_Strict):
    at: Any
    alarms: list[ActiveAlarm] = Field(default_factory=list)
    # Kinds compared (default: those in `alarms`, else the test's `expect_kinds`, else all).
    kinds: list[Kind] | Literal["all"] | None = None

    @field_validator("at")
    @classmethod
    def _at(cls, v: Any) -> int:
        return _dur(v)


class TestCase(_Strict):
    name: str
    start: str = DEFAULT_START
    interval: Any = "10s"
    enterprise: str | None = None
    input: list[SeriesIn] = Field(default_factory=list)
    until: Any = None
    expect: list[ExpectedAlarm] | None = None
    expect_kinds: list[Kind] | Literal["all"] | None = None
    expect_active: list[ExpectActive] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: Any) -> int:
        ms = _dur(v)
        if ms <= 0:
            raise ValueError(f"expected a positive duration, got {v!r}")
        return ms

    @field_validator("until")
    @classmethod
    def _until(cls, v: Any) -> int | None:
        return None if v is None else _dur(v)

    @field_validator("start")
    @classmethod
    def _start(cls, v: str) -> str:
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 time with offset, got {v!r}") from None
        if dt.tzinfo is None:
            raise ValueError(f"ISO time {v!r} has no UTC offset; add one (e.g. +08:00 or Z)")
        return v


class SidecarFile(_Strict):
    registry: str | None = None
    rules: str | None = None  # the rules dir, relative to this file (default: its directory)
    packs: dict[str, str] = Field(default_factory=dict)
    tests: list[TestCase] = Field(min_length=1)


# --------------------------------------------------------------------------- results


@dataclass(slots=True)
class CaseResult:
    name: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    alarms: list[AlarmEvent] = field(default_factory=list)


@dataclass(slots=True)
class FileResult:
    path: str
    cases: list[CaseResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the file itself could not run

    @property
    def passed(self) -> bool:
        return not self.errors and all(c.passed for c in self.cases)


class SidecarError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


# --------------------------------------------------------------------------- series


_TERM = re.compile(
    r"^(?P<a>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?|_)"
    r"(?:(?P<op>[-+])(?P<b>\d+(?:\.\d*)?|\.\d+)(?:e[-+]?\d+)?)?"
    r"(?:x(?P<n>\d+))?$"
)


def expand_series(text: str) -> list[float | None]:
    """promtool series notation: `1 2 3`; `_` for no reading; `axN` is a repeated N+1 times;
    `a+bxN` is a, a+b, ..., a+N*b (N+1 values); `a-bxN` counts down."""
    out: list[float | None] = []
    for tok in str(text).split():
        m = _TERM.match(tok)
        if not m:
            raise ValueError(
                f"series term {tok!r}: expected a number, '_', 'aXn' or 'a+bxN' (e.g. 0 10x5 "
                "1+2x3 _x2)"
            )
        a, op, b, n = m.group("a"), m.group("op"), m.group("b"), m.group("n")
        if a == "_":
            if op:
                raise ValueError(f"series term {tok!r}: a gap '_' cannot have a step")
            out.extend([None] * (int(n) + 1 if n else 1))
            continue
        if op and n is None:
            raise ValueError(f"series term {tok!r}: a step needs a count, like {tok}x3")
        start = float(a)
        step = (float(b) if op == "+" else -float(b)) if op else 0.0
        count = int(n) + 1 if n is not None else 1
        out.extend(start + i * step for i in range(count))
    return out


# --------------------------------------------------------------------------- running


def _fmt_offset(ms: int) -> str:
    sign = "-" if ms < 0 else "+"
    ms = abs(ms)
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s = rem / 1000
    parts = []
    if h:
        parts.append(f"{h}h")
    if m:
        parts.append(f"{m}m")
    if s or not parts:
        parts.append(f"{s:g}s")
    return sign + "".join(parts)


def _describe(at_ms: int, tag: str, kind: str, level: Any, state: str, extra: str = "") -> str:
    lv = f" {level}" if level else ""
    return f"{_fmt_offset(at_ms):>9}  {tag} {kind}{lv} {state}{extra}"


def _enterprise_for(case: TestCase, registry: Registry, given: str | None, where: str) -> str:
    if given:
        return given
    if case.enterprise:
        return case.enterprise
    ents = registry.enterprises()
    if len(ents) == 1:
        return ents[0]
    raise SidecarError(
        [
            f"{where}: the registry has {len(ents)} enterprises; give `point: "
            "<enterprise>/<tag>` or the test's `enterprise`"
        ]
    )


def build_readings(case: TestCase, registry: Registry, where: str) -> tuple[int, list[Reading]]:
    """The test's input series as readings (in each point's unit), and the start time."""
    start_ms = datetime_to_ms(datetime.fromisoformat(case.start))
    out: list[Reading] = []
    problems: list[str] = []
    for i, s in enumerate(case.input):
        w = f"{where}.input[{i}]"
        try:
            if s.point:
                ent, _, tag = s.point.partition("/")
                if not tag:
                    raise SidecarError([f"{w}.point: expected <enterprise>/<tag>, got {s.point!r}"])
            elif s.tag:
                ent, tag = _enterprise_for(case, registry, None, w), s.tag
            else:
                raise SidecarError([f"{w}: expected `tag` or `point`"])
            p = registry.get(ent, tag)
            if p is None:
                raise SidecarError([f"{w}: point {ent}/{tag} is not in the registry"])
            if (s.values is None) == (s.events is None):
                raise SidecarError([f"{w}: expected exactly one of `values` or `events`"])
            if s.values is not None:
                try:
                    vals = expand_series(s.values)
                except ValueError as exc:
                    raise SidecarError([f"{w}.values: {exc}"]) from None
                scale, off = 1.0, 0.0
                if s.unit:
                    try:
                        scale, off = linear(s.unit, p.unit, p.parameter)
                    except UnitError as exc:
                        raise SidecarError([f"{w}.unit: {exc}"]) from None
                for j, v in enumerate(vals):
                    if v is None:
                        continue
                    t = start_ms + s.offset + j * case.interval
                    out.append(Reading(ent, tag, t, v * scale + off, s.quality, p.unit, t))
            else:
                for ev in s.events or []:
                    t = start_ms + ev.at
                    out.append(
                        Reading(
                            ent,
                            tag,
                            t,
                            math.nan,
                            s.quality,
                            p.unit,
                            t,
                            event_type=ev.type,
                            text=ev.text or None,
                        )
                    )
        except SidecarError as exc:
            problems.extend(exc.problems)
    if problems:
        raise SidecarError(problems)
    out.sort(key=lambda r: r.ts_ms)
    return start_ms, out


def _check_case(case: TestCase, alarms: list[AlarmEvent], start_ms: int) -> list[str]:
    failures: list[str] = []
    if case.expect is not None:
        if case.expect_kinds == "all" or (case.expect_kinds is None and not case.expect):
            kinds = None
        elif case.expect_kinds is not None:
            kinds = {str(k) for k in case.expect_kinds}
        else:
            kinds = {str(e.kind) for e in case.expect}
        got = [a for a in alarms if kinds is None or str(a.kind) in kinds]
        exp = list(case.expect)
        unmatched_got = list(range(len(got)))
        missing: list[ExpectedAlarm] = []
        for e in exp:
            ent = e.enterprise
            hit = None
            for gi in unmatched_got:
                a = got[gi]
                if (
                    a.ts_ms - start_ms == e.at
                    and a.tag == e.tag
                    and a.kind == e.kind
                    and a.state == e.state
                    and (e.level is None or a.level == e.level)
                    and (ent is None or a.enterprise_code == ent)
                    and (e.rule is None or a.rule == e.rule)
                    and (e.threshold is None or _close(a.threshold, e.threshold))
                    and (e.value is None or _close(a.value, e.value))
                ):
                    hit = gi
                    break
            if hit is None:
                missing.append(e)
            else:
                unmatched_got.remove(hit)
        if missing or unmatched_got:
            scope = "all kinds" if kinds is None else "kinds " + ", ".join(sorted(kinds))
            failures.append(f"alarm transitions differ ({scope}):")
            failures.append("  expected:")
            failures += [
                f"    {_describe(e.at, e.tag, e.kind, e.level, e.state)}" for e in exp
            ] or ["    (none)"]
            failures.append("  got:")
            failures += [f"    {_describe_got(a, start_ms)}" for a in got] or ["    (none)"]
            for e in missing:
                failures.append(
                    f"  missing:    {_describe(e.at, e.tag, e.kind, e.level, e.state).lstrip()}"
                )
            for gi in unmatched_got:
                failures.append(f"  unexpected: {_describe_got(got[gi], start_ms).lstrip()}")
    for k, ea in enumerate(case.expect_active):
        t = start_ms + ea.at
        open_: dict[str, AlarmEvent] = {}
        for a in alarms:
            if a.ts_ms > t:
                break
            if a.state == AlarmState.FIRING:
                open_[a.alarm_id] = a
            else:
                open_.pop(a.alarm_id, None)
        if ea.kinds is not None:
            akinds = None if ea.kinds == "all" else {str(x) for x in ea.kinds}
        elif ea.alarms:
            akinds = {str(x.kind) for x in ea.alarms}
        elif case.expect_kinds is not None and case.expect_kinds != "all":
            akinds = {str(x) for x in case.expect_kinds}
        else:
            akinds = None
        act = sorted(
            (a for a in open_.values() if akinds is None or str(a.kind) in akinds),
            key=lambda a: (a.tag, str(a.kind)),
        )
        want = sorted(ea.alarms, key=lambda a: (a.tag, str(a.kind)))
        remaining = list(act)
        ok = True
        for w_ in want:
            m = next(
                (
                    a
                    for a in remaining
                    if a.tag == w_.tag
                    and a.kind == w_.kind
                    and (w_.level is None or a.level == w_.level)
                    and (w_.enterprise is None or a.enterprise_code == w_.enterprise)
                ),
                None,
            )
            if m is None:
                ok = False
            else:
                remaining.remove(m)
        if remaining:
            ok = False
        if not ok:
            failures.append(
                f"alarms open at {_fmt_offset(ea.at).lstrip('+')} (expect_active[{k}]) differ:"
            )
            failures.append(
                "  expected: "
                + (
                    ", ".join(
                        f"{w_.tag} {w_.kind}{' ' + str(w_.level) if w_.level else ''}"
                        for w_ in want
                    )
                    or "(none)"
                )
            )
            failures.append(
                "  got:      "
                + (
                    ", ".join(
                        f"{a.tag} {a.kind}{' ' + str(a.level) if a.level else ''}" for a in act
                    )
                    or "(none)"
                )
            )
    return failures


def _describe_got(a: AlarmEvent, start_ms: int) -> str:
    extra = ""
    if a.state == AlarmState.FIRING and a.threshold is not None:
        extra = f"  (value {a.value:g}, threshold {a.threshold:g} {a.unit}, rule {a.rule})"
    elif a.state == AlarmState.FIRING:
        extra = f"  (rule {a.rule})"
    return _describe(a.ts_ms - start_ms, a.tag, str(a.kind), a.level, str(a.state), extra)


def _close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)


def _validation_problems(exc: ValidationError, where: str) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        got = err.get("input")
        msg = err["msg"].removeprefix("Value error, ")
        got_s = "" if isinstance(got, dict | list) or ", got " in msg else f", got {got!r}"
        out.append(f"{where}: {loc}: {msg}{got_s}")
    return out


def load_sidecar(path: Path) -> SidecarFile:
    """Parse and validate a sidecar file; raises `SidecarError` listing every problem."""
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except OSError as exc:
        raise SidecarError([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise SidecarError([f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})"]) from None
    if not isinstance(data, dict):
        raise SidecarError([f"{path}: expected a mapping with `tests:`, got {type(data).__name__}"])
    try:
        # strict in JSON mode, like the warning config: "2" is not a quality code
        return SidecarFile.model_validate_json(json.dumps(data, default=str), strict=True)
    except ValidationError as exc:
        raise SidecarError(_validation_problems(exc, str(path))) from None


def run_sidecar(path: Path | str, registry: Registry | None = None) -> FileResult:
    """Run every test of one sidecar file against the rules of its directory."""
    from ingest.registry import RegistryError, load_registry
    from rules.loader import RuleFileError, load_ruleset
    from rules.replay import run_replay

    path = Path(path)
    res = FileResult(str(path))
    try:
        sc = load_sidecar(path)
    except SidecarError as exc:
        res.errors = exc.problems
        return res
    reg = registry
    if reg is None:
        if sc.registry is None:
            res.errors = [f"{path}: no `registry:` in the file and no --registry given"]
            return res
        try:
            reg = load_registry((path.parent / sc.registry).resolve())
        except RegistryError as exc:
            res.errors = [str(exc)]
            return res
    rules_dir = (path.parent / sc.rules).resolve() if sc.rules else path.parent
    try:
        ruleset = load_ruleset(rules_dir, reg, pack_versions=sc.packs or None)
    except RuleFileError as exc:
        res.errors = [f"{path}: the rules under test do not load:"] + [
            f"  {p}" for p in exc.problems
        ]
        return res
    for i, case in enumerate(sc.tests):
        where = f"{path.name}: tests[{i}] ({case.name})"
        try:
            start_ms, readings = build_readings(case, reg, where)
        except SidecarError as exc:
            res.cases.append(CaseResult(case.name, False, exc.problems))
            continue
        last = readings[-1].ts_ms if readings else start_ms
        until = start_ms + case.until if case.until is not None else last
        if case.expect_active:
            until = max(until, start_ms + max(e.at for e in case.expect_active))
        if case.expect:
            until = max(until, start_ms + max(e.at for e in case.expect))
        result = run_replay(
            reg, ruleset, readings, start_ms=start_ms, end_ms=until, warning_model=None
        )
        failures = _check_case(case, result.alarms, start_ms)
        res.cases.append(CaseResult(case.name, not failures, failures, result.alarms))
    return res


def discover(paths: Sequence[Path | str]) -> list[Path]:
    """Sidecar files under the given files/directories (recursively), sorted."""
    out: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            for suf in SUFFIXES:
                out.update(x for x in p.rglob(f"*{suf}") if x.is_file())
        elif p.exists():
            out.add(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return sorted(out)


def format_result(r: FileResult) -> list[str]:
    """Human-readable lines for one file (promtool style)."""
    lines = []
    if r.errors:
        lines.append(f"FAILED {r.path}: cannot run")
        lines += [f"  {e}" for e in r.errors]
        return lines
    for c in r.cases:
        if c.passed:
            lines.append(f"  ok     {c.name}")
        else:
            lines.append(f"  FAILED {c.name}")
            lines += [f"    {f}" for f in c.failures]
    head = "SUCCESS" if r.passed else "FAILED"
    return [f"{head} {r.path}", *lines]
