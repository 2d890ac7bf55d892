"""The early-warning model: alarm transitions in, coloured warnings (红橙黄蓝) out, one open
warning per installation (or per enterprise for points outside any installation).

Pure: time is an argument (`now_ms`, event time in replay) and state is a value that
round-trips through bytes. The conditions and their numbers are the configurable defaults of
DOMAIN.md §4 (`rules/packs/warning-defaults.yaml`, overridable by `<rules_dir>/warnings.yaml`);
they are hazardwatch defaults, not regulatory values.

Semantics worth knowing:
- a warning only goes up in colour while open; a cleared alarm does not close it, a filed
  disposition (`close`) does;
- timed conditions (first level persisting, unresolved too long) fire at the exact instant they
  become true, whatever the `tick` cadence, so replay and live give the same events;
- alarms still active when a disposition closes a warning re-assert: if the conditions still
  hold, a new warning is raised at once (an alarm still present after reset re-asserts).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingest.gases import gas_properties
from ingest.model import Registry
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState
from rules.risk import OpenWarning, RiskWeights

DEFAULTS_RESOURCE = "packs/warning-defaults.yaml"
OVERRIDE_NAME = "warnings.yaml"
_CLOSED_MEMORY = 1000  # closed warning ids remembered so a repeated disposition is a no-op
MAX_ALARM_IDS = 100  # alarm ids remembered per warning


# --------------------------------------------------------------------------- configuration


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BlueConfig(_Section):
    first_level: bool = True


class YellowConfig(_Section):
    first_level_persist_s: float | None = Field(gt=0)  # null disables the condition
    repeat_count: int = Field(ge=2)
    repeat_window_s: float = Field(gt=0)


class OrangeConfig(_Section):
    second_level: bool = True
    zone_points: int = Field(ge=0)  # 0 disables
    yellow_unresolved_s: float | None = Field(gt=0)


class RedConfig(_Section):
    second_level_points: int = Field(ge=0)  # 0 disables
    toxic_with_excursion: bool = True
    process_parameters: list[str]
    orange_unresolved_s: float | None = Field(gt=0)


class WarningConfig(_Section):
    """The warning model's conditions and the risk weights, as in warning-defaults.yaml."""

    name: str
    version: str
    source: str
    first_levels: list[Level]
    second_levels: list[Level]
    kinds: list[Kind]
    unlevelled: dict[Kind, Literal["first", "second"]] = Field(default_factory=dict)
    point_kinds: list[Kind]
    blue: BlueConfig
    yellow: YellowConfig
    orange: OrangeConfig
    red: RedConfig
    disposition_overdue_s: float = Field(gt=0)
    reassert_after_disposition: bool = True
    risk: RiskWeights


class WarningConfigError(ValueError):
    """The warning config could not be loaded; `.problems` lists every problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: {len(problems)} problem(s) in the warning config\n"
            + "\n".join(f"  {p}" for p in problems)
        )


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def default_config_data() -> dict[str, Any]:
    text = resources.files("rules").joinpath(DEFAULTS_RESOURCE).read_text("utf-8")
    return yaml.safe_load(text)


def load_warning_config(path: Path | str | None = None) -> WarningConfig:
    """The defaults, with the keys of `path` (a `warnings.yaml` or a rules dir holding one)
    laid over them. Every problem is reported at once, naming the file and the key path."""
    data = default_config_data()
    source = f"rules/{DEFAULTS_RESOURCE}"
    if path is not None:
        p = Path(path)
        if p.is_dir():
            p = p / OVERRIDE_NAME
            if not p.exists():
                return _validate(data, source)
        source = str(p)
        try:
            over = yaml.safe_load(p.read_text("utf-8"))
        except OSError as exc:
            raise WarningConfigError(source, [f"cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}: " if mark else ""
            raise WarningConfigError(source, [f"{where}not valid YAML ({exc})"]) from None
        if over is None:
            over = {}
        if not isinstance(over, dict):
            raise WarningConfigError(
                source, [f"(top level): expected a mapping of keys, got {type(over).__name__}"]
            )
        data = _merge(data, over)
    return _validate(data, source)


def _validate(data: dict[str, Any], source: str) -> WarningConfig:
    # Strict, in JSON mode: enum names as strings are fine, but "300" is not a number and
    # "yes" is not a boolean (YAML data is JSON-shaped; odd scalars such as dates become
    # strings and fail where a number is expected).
    try:
        text = json.dumps(data, default=str, ensure_ascii=False)
        return WarningConfig.model_validate_json(text, strict=True)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            got = err.get("input")
            got_s = "" if isinstance(got, dict) else f", got {got!r}"
            problems.append(f"{loc}: {err['msg']}{got_s}")
        raise WarningConfigError(source, problems) from None


# --------------------------------------------------------------------------- state


class _Active(msgspec.Struct):
    """An alarm the model is tracking (firing, not yet cleared)."""

    alarm_id: str
    tag: str
    zone: str
    kind: str
    parameter: str
    second: bool
    since_ms: int  # when the episode began
    point: bool  # a point's own reading (counts in the "N points" conditions)
    toxic: bool
    process: bool
    persist_done: bool = False  # the "first level persisting" timer has been evaluated


class _Open(msgspec.Struct):
    warning_id: str
    colour: str
    raised_ms: int
    colour_since_ms: int
    alarm_ids: list[str]


class _Inst(msgspec.Struct):
    enterprise_code: str
    hazard_code: str
    active: dict[str, _Active] = msgspec.field(default_factory=dict)
    repeats: dict[str, list[int]] = msgspec.field(default_factory=dict)  # tag -> firing times
    warning: _Open | None = None


class WarningModelState(msgspec.Struct):
    """Everything the model remembers; a plain value (`to_bytes`/`load`)."""

    insts: dict[str, _Inst] = msgspec.field(default_factory=dict)
    closed: list[str] = msgspec.field(default_factory=list)

    def to_bytes(self) -> bytes:
        return msgspec.msgpack.encode(self)

    @classmethod
    def load(cls, data: bytes) -> WarningModelState:
        return msgspec.msgpack.decode(data, type=cls)

    def copy(self) -> WarningModelState:
        return WarningModelState.load(self.to_bytes())


def warning_id(enterprise_code: str, hazard_code: str, raised_ms: int) -> str:
    """Deterministic: the same alarms at the same times give the same warning ids."""
    h = hashlib.sha256(f"{enterprise_code}|{hazard_code}|{raised_ms}".encode()).hexdigest()
    return f"W-{h[:16]}"


def _key(enterprise_code: str, hazard_code: str) -> str:
    return f"{enterprise_code}|{hazard_code}"


# --------------------------------------------------------------------------- the model


class _Verdict(msgspec.Struct):
    colour: Colour
    reason: str
    alarm_ids: list[str]


class WarningModel:
    """Apply the warning conditions of `config` to alarm transitions."""

    def __init__(self, config: WarningConfig, registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry
        self._first = {str(x) for x in config.first_levels}
        self._second = {str(x) for x in config.second_levels}
        self._kinds = {str(k) for k in config.kinds}
        self._point_kinds = {str(k) for k in config.point_kinds}
        self._unlevelled = {str(k): v for k, v in config.unlevelled.items()}
        self._process = set(config.red.process_parameters)

    def initial_state(self) -> WarningModelState:
        return WarningModelState()

    # -- public operations -------------------------------------------------------------

    def on_alarms(
        self, state: WarningModelState, events: Sequence[AlarmEvent], now_ms: int
    ) -> tuple[WarningModelState, list[WarningEvent]]:
        """Apply alarm transitions (in event-time order) and the timers up to `now_ms`."""
        st = state.copy()
        out: list[WarningEvent] = []
        for ev in sorted(events, key=lambda e: e.ts_ms):
            cls = self._classify(ev)
            if cls is None:
                continue
            inst = st.insts.get(_key(ev.enterprise_code, ev.hazard_code))
            if inst is None:
                inst = _Inst(ev.enterprise_code, ev.hazard_code)
                st.insts[_key(ev.enterprise_code, ev.hazard_code)] = inst
            # Installations are independent: only this one's timers must run first.
            self._advance_inst(inst, ev.ts_ms, out)
            self._apply(inst, ev, cls)
            if ev.state == AlarmState.FIRING:  # a clear can make no condition true
                self._evaluate(inst, ev.ts_ms, out, backfill=ev.backfill)
        self._advance(st, now_ms, out)
        return st, _ordered(out)

    def tick(
        self, state: WarningModelState, now_ms: int
    ) -> tuple[WarningModelState, list[WarningEvent]]:
        """Timers only: first level persisting, yellow/orange unresolved for too long."""
        st = state.copy()
        out: list[WarningEvent] = []
        self._advance(st, now_ms, out)
        return st, _ordered(out)

    def close(
        self, state: WarningModelState, warning_id_: str, now_ms: int, reason: str = ""
    ) -> tuple[WarningModelState, list[WarningEvent]]:
        """A disposition was filed for the warning: close it. Closing an already closed
        warning is a no-op (delivery is at least once); an unknown id is a `KeyError`."""
        st = state.copy()
        if warning_id_ in st.closed:
            return st, []
        inst = next(
            (i for i in st.insts.values() if i.warning and i.warning.warning_id == warning_id_),
            None,
        )
        if inst is None:
            raise KeyError(f"no open warning {warning_id_!r}")
        out: list[WarningEvent] = []
        self._advance(st, now_ms, out)
        w = inst.warning
        assert w is not None
        colour = Colour(w.colour)
        out.append(
            WarningEvent(
                ts_ms=now_ms,
                warning_id=w.warning_id,
                enterprise_code=inst.enterprise_code,
                hazard_code=inst.hazard_code,
                colour=colour,
                previous=colour,
                state=WarningState.CLOSED,
                reason=reason or "disposition filed",
                alarm_ids=tuple(w.alarm_ids),
            )
        )
        inst.warning = None
        st.closed.append(warning_id_)
        del st.closed[:-_CLOSED_MEMORY]
        if self.config.reassert_after_disposition:
            self._evaluate(inst, now_ms, out, backfill=False, reasserted=True)
        self._forget_if_idle(st, inst)
        return st, _ordered(out)

    def open_warnings(
        self, state: WarningModelState, enterprise_code: str | None = None
    ) -> list[OpenWarning]:
        """Open warnings (for the risk score, dashboards and the daily report)."""
        out = []
        for inst in state.insts.values():
            w = inst.warning
            if w is None or (enterprise_code and inst.enterprise_code != enterprise_code):
                continue
            out.append(
                OpenWarning(
                    w.warning_id,
                    inst.enterprise_code,
                    inst.hazard_code,
                    Colour(w.colour),
                    w.raised_ms,
                    self._grade(inst),
                )
            )
        return sorted(out, key=lambda w: (w.enterprise_code, w.hazard_code))

    def overdue(self, state: WarningModelState, now_ms: int) -> list[OpenWarning]:
        """Open warnings with no disposition within `disposition_overdue_s`."""
        limit = int(self.config.disposition_overdue_s * 1000)
        return [w for w in self.open_warnings(state) if now_ms - w.raised_ms >= limit]

    # -- internals ---------------------------------------------------------------------

    def _grade(self, inst: _Inst) -> int | None:
        if self.registry is None or not inst.hazard_code:
            return None
        for p in self.registry.enterprise(inst.enterprise_code):
            if p.hazard_code == inst.hazard_code:
                return p.hazard_level
        return None

    def _classify(self, ev: AlarmEvent) -> str | None:
        """ "first", "second", or None when the alarm does not count for warnings."""
        if str(ev.kind) not in self._kinds:
            return None
        if ev.level is None:
            return self._unlevelled.get(str(ev.kind))
        lv = str(ev.level)
        if lv in self._second:
            return "second"
        if lv in self._first:
            return "first"
        return None

    def _apply(self, inst: _Inst, ev: AlarmEvent, cls: str) -> None:
        if ev.state == AlarmState.CLEARED:
            inst.active.pop(ev.alarm_id, None)
            return
        cur = inst.active.get(ev.alarm_id)
        if cur is not None:  # a level change of an open alarm
            cur.second = cls == "second"
            return
        gas = gas_properties(ev.parameter) if ev.parameter.startswith("gas.") else None
        inst.active[ev.alarm_id] = _Active(
            alarm_id=ev.alarm_id,
            tag=ev.tag,
            zone=ev.zone,
            kind=str(ev.kind),
            parameter=ev.parameter,
            second=cls == "second",
            since_ms=ev.ts_ms,
            point=str(ev.kind) in self._point_kinds,
            toxic=bool(gas and gas.is_toxic),
            process=ev.parameter in self._process,
        )
        if str(ev.kind) in self._point_kinds:
            window = int(self.config.yellow.repeat_window_s * 1000)
            times = [t for t in inst.repeats.get(ev.tag, []) if t > ev.ts_ms - window]
            times.append(ev.ts_ms)
            inst.repeats[ev.tag] = times

    def _conditions(self, inst: _Inst, t: int) -> list[_Verdict]:
        """Every condition that holds for the installation at time `t`."""
        cfg = self.config
        act = list(inst.active.values())
        found: list[_Verdict] = []
        w = inst.warning

        # red
        if cfg.red.second_level_points:
            tags = _points({a.tag: a for a in act if a.point and a.second})
            if len(tags) >= cfg.red.second_level_points:
                found.append(
                    _Verdict(
                        Colour.RED,
                        f">= {cfg.red.second_level_points} points at "
                        f"second level ({', '.join(tags)})",
                        [a.alarm_id for a in act if a.point and a.second],
                    )
                )
        if cfg.red.toxic_with_excursion:
            toxic = [a for a in act if a.toxic and a.second]
            proc = [a for a in act if a.process]
            if toxic and proc:
                found.append(
                    _Verdict(
                        Colour.RED,
                        f"second-level toxic alarm ({toxic[0].tag} {toxic[0].parameter}) with a "
                        f"linked process excursion ({proc[0].tag} {proc[0].parameter})",
                        [a.alarm_id for a in toxic + proc],
                    )
                )
        if (
            w
            and w.colour == Colour.ORANGE
            and cfg.red.orange_unresolved_s
            and t - w.colour_since_ms >= cfg.red.orange_unresolved_s * 1000
        ):
            found.append(
                _Verdict(
                    Colour.RED, f"orange unresolved for {_dur(cfg.red.orange_unresolved_s)}", []
                )
            )
        # orange
        if cfg.orange.second_level:
            sec = [a for a in act if a.second]
            if sec:
                found.append(
                    _Verdict(
                        Colour.ORANGE,
                        f"second-level alarm ({sec[0].tag} {sec[0].kind})",
                        [a.alarm_id for a in sec],
                    )
                )
        if cfg.orange.zone_points:
            by_zone: dict[str, dict[str, _Active]] = {}
            for a in act:
                if a.point:
                    by_zone.setdefault(a.zone, {})[a.tag] = a
            for zone in sorted(by_zone):
                if len(by_zone[zone]) >= cfg.orange.zone_points:
                    found.append(
                        _Verdict(
                            Colour.ORANGE,
                            f">= {cfg.orange.zone_points} points of zone {zone} in alarm "
                            f"({', '.join(sorted(by_zone[zone]))})",
                            [a.alarm_id for a in act if a.point and a.zone == zone],
                        )
                    )
        if (
            w
            and w.colour == Colour.YELLOW
            and cfg.orange.yellow_unresolved_s
            and t - w.colour_since_ms >= cfg.orange.yellow_unresolved_s * 1000
        ):
            found.append(
                _Verdict(
                    Colour.ORANGE,
                    f"yellow unresolved for {_dur(cfg.orange.yellow_unresolved_s)}",
                    [],
                )
            )
        # yellow
        persist = cfg.yellow.first_level_persist_s
        if persist:
            long = [a for a in act if not a.second and t - a.since_ms >= persist * 1000]
            if long:
                found.append(
                    _Verdict(
                        Colour.YELLOW,
                        f"first level persisting >= {_dur(persist)} ({long[0].tag})",
                        [a.alarm_id for a in long],
                    )
                )
        window = int(cfg.yellow.repeat_window_s * 1000)
        for tag in sorted(inst.repeats):
            n = sum(1 for x in inst.repeats[tag] if t - window < x <= t)
            if n >= cfg.yellow.repeat_count:
                found.append(
                    _Verdict(
                        Colour.YELLOW,
                        f"{tag} alarmed {n} times in {_dur(cfg.yellow.repeat_window_s)}",
                        [a.alarm_id for a in act if a.tag == tag],
                    )
                )
                break
        # blue
        if cfg.blue.first_level and act:
            a = min(act, key=lambda a: (a.since_ms, a.tag))
            found.append(
                _Verdict(Colour.BLUE, f"{a.tag} in alarm ({a.kind})", [a.alarm_id for a in act])
            )
        return found

    def _evaluate(
        self,
        inst: _Inst,
        t: int,
        out: list[WarningEvent],
        *,
        backfill: bool,
        reasserted: bool = False,
    ) -> None:
        found = self._conditions(inst, t)
        if not found:
            return
        top = max(v.colour.rank for v in found)
        best = [v for v in found if v.colour.rank == top]
        colour = best[0].colour
        reason = "; ".join(dict.fromkeys(v.reason for v in best))
        ids = list(dict.fromkeys(i for v in best for i in v.alarm_ids))
        w = inst.warning
        if w is None:
            wid = warning_id(inst.enterprise_code, inst.hazard_code, t)
            inst.warning = _Open(wid, colour.value, t, t, ids)
            if reasserted:
                reason = f"re-asserted after disposition: {reason}"
            out.append(
                WarningEvent(
                    ts_ms=t,
                    warning_id=wid,
                    enterprise_code=inst.enterprise_code,
                    hazard_code=inst.hazard_code,
                    colour=colour,
                    previous=None,
                    state=WarningState.RAISED,
                    reason=reason,
                    alarm_ids=tuple(ids),
                    backfill=backfill,
                )
            )
            return
        if colour.rank > Colour(w.colour).rank:
            prev = Colour(w.colour)
            w.colour = colour.value
            w.colour_since_ms = t
            w.alarm_ids = _merge_ids(w.alarm_ids, ids)
            out.append(
                WarningEvent(
                    ts_ms=t,
                    warning_id=w.warning_id,
                    enterprise_code=inst.enterprise_code,
                    hazard_code=inst.hazard_code,
                    colour=colour,
                    previous=prev,
                    state=WarningState.UPGRADED,
                    reason=reason,
                    alarm_ids=tuple(ids),
                    backfill=backfill,
                )
            )
        else:
            w.alarm_ids = _merge_ids(w.alarm_ids, ids)

    def _due_times(self, inst: _Inst) -> Iterable[tuple[int, str]]:
        """Pending timed conditions as (due time, alarm id or "" for a colour timer). Each is
        consumed when evaluated (flag set, or the colour moves on), so late-arriving alarms
        still get their timers."""
        cfg = self.config
        if cfg.yellow.first_level_persist_s:
            d = int(cfg.yellow.first_level_persist_s * 1000)
            for a in inst.active.values():
                if not a.second and not a.persist_done:
                    yield a.since_ms + d, a.alarm_id
        w = inst.warning
        if w is not None:
            if w.colour == Colour.YELLOW and cfg.orange.yellow_unresolved_s:
                yield w.colour_since_ms + int(cfg.orange.yellow_unresolved_s * 1000), ""
            if w.colour == Colour.ORANGE and cfg.red.orange_unresolved_s:
                yield w.colour_since_ms + int(cfg.red.orange_unresolved_s * 1000), ""

    def _advance(self, st: WarningModelState, now_ms: int, out: list[WarningEvent]) -> None:
        """Fire every timed condition due by `now_ms` in every installation; forget what no
        longer matters."""
        for key in sorted(st.insts):
            inst = st.insts[key]
            self._advance_inst(inst, now_ms, out)
            window = int(self.config.yellow.repeat_window_s * 1000)
            for tag in list(inst.repeats):
                kept = [x for x in inst.repeats[tag] if x > now_ms - window]
                if kept:
                    inst.repeats[tag] = kept
                else:
                    del inst.repeats[tag]
        for inst in list(st.insts.values()):
            self._forget_if_idle(st, inst)

    def _advance_inst(self, inst: _Inst, now_ms: int, out: list[WarningEvent]) -> None:
        """Fire the installation's timed conditions due by `now_ms`, in time order."""
        while True:
            due = [d for d in self._due_times(inst) if d[0] <= now_ms]
            if not due:
                break
            t, aid = min(due)
            before = inst.warning.colour if inst.warning else None
            self._evaluate(inst, t, out, backfill=False)
            if aid:
                inst.active[aid].persist_done = True
            elif (inst.warning.colour if inst.warning else None) == before:
                break  # defensive: a colour timer that changed nothing must not spin

    @staticmethod
    def _forget_if_idle(st: WarningModelState, inst: _Inst) -> None:
        # Keeps state bounded: an installation with nothing open and no recent firings
        # has nothing to remember.
        if inst.warning is None and not inst.active and not inst.repeats:
            st.insts.pop(_key(inst.enterprise_code, inst.hazard_code), None)


def _merge_ids(have: list[str], new: list[str]) -> list[str]:
    """The alarms a warning covers, first ones first, bounded so a chattering point cannot
    grow the state without limit (the alerts stage keeps the full alarm history)."""
    if len(have) >= MAX_ALARM_IDS:
        return have
    return list(dict.fromkeys([*have, *new]))[:MAX_ALARM_IDS]


def _ordered(out: list[WarningEvent]) -> list[WarningEvent]:
    """Time order; the same instant by installation (stable, so one installation's own
    sequence, e.g. raised then upgraded, is kept)."""
    return sorted(out, key=lambda e: (e.ts_ms, e.enterprise_code, e.hazard_code))


def _points(by_tag: Mapping[str, _Active]) -> list[str]:
    return sorted(by_tag)


def _dur(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)} h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)} min"
    return f"{seconds:g} s"
