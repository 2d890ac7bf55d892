"""The rule semantics, written for obviousness: one reading at a time, timers from a heap, one
Python object per point. `ReferenceEngine` runs every reading through it; the vectorised
`rules.engine.Engine` must give identical output (property tests), and uses this same
machine only for the few readings its numpy pass cannot prove to be "nothing happens".

Time rules (event time): before a reading at `t`, every timer due at or before `t` fires
(with its due time as the event time); `now_ms` fires timers due at or before it. Delays are
> 0 or exactly 0 (immediate), so a timer never fires at the instant it was set.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from ingest.model import Reading, Registry
from rules._plan import Plan
from rules.ids import alarm_id
from rules.loader import LimitSpec, RuleSet, Source, Threshold
from rules.model import AlarmEvent, AlarmState, Kind, Level
from rules.state import (
    NO_TS,
    POINT_DTYPE,
    EngineState,
    new_gateways,
    new_points,
    new_votes,
)

_FIELDS = POINT_DTYPE.names
_LIST_FIELDS = {"since", "below", "act", "act_start", "dup"}

# Timer kinds, in the order they fire when due at the same instant.
T_GATEWAY, T_OFFLINE, T_ON, T_OFF, T_EVENT, T_INTERLOCK = range(6)
FIRING, CLEARED = AlarmState.FIRING, AlarmState.CLEARED
D_OFFLINE, D_FAULT, D_STUCK, D_RATE, D_EVENT, D_INTERLOCK = range(2, 8)  # PointState.dup slots


def _dup(prev_start: int, prev_dup: int, start: int) -> int:
    """Episode number within one millisecond (0 unless an episode already began then)."""
    return min(prev_dup + 1, 255) if prev_start == start else 0


class PointState:
    """Mutable working copy of one point's record (see rules.state.POINT_DTYPE)."""

    __slots__ = _FIELDS

    @classmethod
    def from_record(cls, rec: np.void) -> PointState:
        s = cls.__new__(cls)
        for name, v in zip(_FIELDS, rec.item(), strict=True):
            setattr(s, name, v.tolist() if name in _LIST_FIELDS else v)
        return s

    def to_tuple(self) -> tuple:
        return tuple(getattr(self, n) for n in _FIELDS)


class Machine:
    """Per-reading evaluation over an EngineState's arrays (copied on entry). Points are
    materialised lazily, so the vectorised engine can run it on a subset of points."""

    def __init__(self, plan: Plan, state: EngineState, copy: bool = True) -> None:
        self.plan = plan
        self.pts_arr = state.points.copy() if copy else state.points
        self.gws = state.gateways.copy() if copy else state.gateways
        self.votes = state.votes.copy()
        self.G: dict[int, dict] = {}  # materialised gateway / vote records (plain dicts)
        self.V: dict[int, dict] = {}
        self.start_ms = state.start_ms
        self.now_ms = state.now_ms
        self.P: dict[int, PointState] = {}
        self.heap: list[tuple[int, int, int, int]] = []
        self.events: list[tuple[int, int, AlarmEvent]] = []  # (ts, seq, event)
        self.version = plan.ruleset.version
        for kind, key, start, dup in state.orphans:
            self._close_orphan_group(kind, key, start, dup)

    # ------------------------------------------------------------------ plumbing
    def pt(self, i: int) -> PointState:
        s = self.P.get(i)
        if s is None:
            s = PointState.from_record(self.pts_arr[i])
            self.P[i] = s
        return s

    def gw(self, g: int) -> dict:
        r = self.G.get(g)
        if r is None:
            rec = self.gws[g]
            r = {name: rec[name].item() for name in self.gws.dtype.names}
            self.G[g] = r
        return r

    def vote(self, vi: int) -> dict:
        r = self.V.get(vi)
        if r is None:
            rec = self.votes[vi]
            r = {name: rec[name].item() for name in self.votes.dtype.names}
            self.V[vi] = r
        return r

    def preload(self, indices: np.ndarray) -> None:
        """Materialise many points at once (column-wise, much faster than one by one)."""
        idx = [i for i in indices.tolist() if i not in self.P]
        if not idx:
            return
        sub = self.pts_arr[idx]
        cols = [sub[name].tolist() for name in _FIELDS]
        for k, i in enumerate(idx):
            st = PointState.__new__(PointState)
            for name, col in zip(_FIELDS, cols, strict=True):
                setattr(st, name, col[k])
            self.P[i] = st

    def result(self) -> EngineState:
        if self.P:
            idx = list(self.P)
            self.pts_arr[idx] = np.array(
                [self.P[i].to_tuple() for i in idx], dtype=self.pts_arr.dtype
            )
        for g, r in self.G.items():
            self.gws[g] = tuple(r[name] for name in self.gws.dtype.names)
        for vi, r in self.V.items():
            self.votes[vi] = tuple(r[name] for name in self.votes.dtype.names)
        p = self.plan
        return EngineState(
            self.pts_arr,
            self.gws,
            self.votes,
            p.keys,
            p.gw_keys,
            p.vote_keys,
            self.start_ms,
            self.now_ms,
        )

    def sorted_events(self) -> list[AlarmEvent]:
        self.events.sort(key=lambda e: (e[0], e[2].enterprise_code, e[2].tag, e[2].rule, e[1]))
        return [e[2] for e in self.events]

    def push(self, due: int, kind: int, idx: int, slot: int = 0) -> None:
        heapq.heappush(self.heap, (due, kind, idx, slot))

    def seed_point(self, i: int) -> None:
        """Push every pending timer of point i (used when a call starts)."""
        self._close_orphans(i)
        s = self.pt(i)
        pr = self.plan.rules[i]
        if pr.offline is not None and s.offline == 0:
            self.push(s.off_base + pr.offline.timeout_ms, T_OFFLINE, i)
        for b in range(4):
            if s.since[b] != NO_TS:
                self.push(s.since[b] + pr.limit.for_ms, T_ON, i, b)
            if s.below[b] != NO_TS:
                self.push(s.below[b] + pr.limit.off_ms, T_OFF, i, b)
        if s.ev:
            self.push(s.ev_due, T_EVENT, i)
        if s.il_due != NO_TS:
            self.push(s.il_due, T_INTERLOCK, i)

    def _close_orphan_group(self, kind: str, key: str, start: int, dup: int) -> None:
        """Clear an open gateway/vote alarm whose group a hot reload removed."""
        parts = key.split("/")
        ent, subject = parts[0], parts[1]
        parameter = parts[2] if len(parts) > 2 else ""
        ev = AlarmEvent(
            ts_ms=self.now_ms,
            enterprise_code=ent,
            hazard_code="",
            zone=subject if kind != "gateway" else "",
            tag=subject,
            parameter=parameter,
            kind=Kind(kind),
            level=None,
            state=CLEARED,
            value=None,
            threshold=None,
            unit="",
            rule=_REMOVED.rule,
            alarm_id=alarm_id(kind, key, "", start, dup),
            ruleset=self.version,
            message="its rule was removed by a rules reload",
        )
        self.events.append((self.now_ms, len(self.events), ev))

    def _close_orphans(self, i: int) -> None:
        """After a hot reload that removed a rule, its open alarms on this point are cleared
        (once, at the time the state had reached) instead of staying open forever."""
        s = self.pt(i)
        pr = self.plan.rules[i]
        key = pr.point.key
        ts = self.now_ms

        def close(kind: Kind, aid: str) -> None:
            self.emit(
                ts,
                i,
                kind,
                None,
                CLEARED,
                None,
                None,
                _REMOVED,
                aid,
                message="its rule was removed by a rules reload",
            )

        if s.offline and pr.offline is None:
            if s.offline == 1:
                close(Kind.OFFLINE, alarm_id("offline", key, "", s.offline_start, s.dup[D_OFFLINE]))
            s.offline = 0
        if s.fault and pr.fault is None:
            close(Kind.FAULT, alarm_id("fault", key, "", s.fault_start, s.dup[D_FAULT]))
            s.fault = 0
        if s.stuck and pr.stuck is None:
            close(Kind.STUCK, alarm_id("stuck", key, "", s.stuck_start, s.dup[D_STUCK]))
            s.stuck = 0
        if s.rate and pr.rate is None:
            close(Kind.RATE, alarm_id("rate", key, "", s.rate_start, s.dup[D_RATE]))
            s.rate = 0
        if s.ev and pr.event is None:
            close(Kind.EVENT, alarm_id("event", key, "", s.ev_start, s.dup[D_EVENT]))
            s.ev, s.ev_due = 0, NO_TS
        if (s.il or s.il_due != NO_TS) and pr.interlock is None:
            if s.il:
                close(
                    Kind.INTERLOCK, alarm_id("interlock", key, "", s.il_start, s.dup[D_INTERLOCK])
                )
            s.il, s.il_due = 0, NO_TS
        if pr.limit is None and (
            s.act[0] or s.act[1] or s.on or s.latched or any(x != NO_TS for x in s.since + s.below)
        ):
            for side_no, tag in ((0, "hi"), (1, "lo")):
                if s.act[side_no]:
                    close(
                        Kind.LIMIT,
                        alarm_id("limit", key, tag, s.act_start[side_no], s.dup[side_no]),
                    )
            s.act, s.on, s.latched = [0, 0], 0, 0
            s.since, s.below = [NO_TS] * 4, [NO_TS] * 4

    def seed_gateway(self, g: int) -> None:
        if not self.gw(g)["alarm"]:
            self.push(int(self.gw(g)["last"]) + self.plan.gw_timeout_l[g], T_GATEWAY, g)

    def emit(
        self,
        ts: int,
        i: int,
        kind: Kind,
        level: Level | None,
        state: AlarmState,
        value: float | None,
        threshold: float | None,
        rule_src,
        aid: str,
        backfill: bool = False,
        message: str = "",
        *,
        tag: str | None = None,
        parameter: str | None = None,
    ) -> None:
        p = self.plan.rules[i].point
        if value is not None and math.isnan(value):
            value = None
        ev = AlarmEvent(
            ts_ms=ts,
            enterprise_code=p.enterprise_code,
            hazard_code=p.hazard_code,
            zone=p.zone,
            tag=tag if tag is not None else p.tag,
            parameter=parameter if parameter is not None else p.parameter,
            kind=kind,
            level=level,
            state=state,
            value=value,
            threshold=threshold,
            unit=p.unit,
            rule=rule_src.rule,
            alarm_id=aid,
            pack=rule_src.pack,
            pack_version=rule_src.pack_version,
            ruleset=self.version,
            backfill=backfill,
            message=message,
        )
        self.events.append((ts, len(self.events), ev))

    # ------------------------------------------------------------------ timers
    def advance(self, until: int) -> None:
        """Fire every timer due at or before `until`, in (due, kind, index, slot) order."""
        heap = self.heap
        while heap and heap[0][0] <= until:
            due, kind, idx, slot = heapq.heappop(heap)
            if kind == T_GATEWAY:
                self._gw_timer(due, idx)
            elif kind == T_OFFLINE:
                self._offline_timer(due, idx)
            elif kind == T_ON:
                self._on_timer(due, idx, slot)
            elif kind == T_OFF:
                self._off_timer(due, idx, slot)
            elif kind == T_EVENT:
                self._event_timer(due, idx)
            else:
                self._interlock_timer(due, idx)
        if until > self.now_ms:
            self.now_ms = until

    def _gw_timer(self, due: int, g: int) -> None:
        rec = self.gw(g)
        if rec["alarm"]:
            return
        current = int(rec["last"]) + self.plan.gw_timeout_l[g]
        if current > due:
            self.push(current, T_GATEWAY, g)
            return
        if current < due:
            return
        rec["alarm"] = 1
        rec["dup"] = _dup(int(rec["start"]), int(rec["dup"]), due)
        rec["start"] = due
        rule = self.plan.gw_rules[g]
        i0 = self.plan.gw_members[g][0]
        self.emit(
            due,
            i0,
            Kind.GATEWAY,
            None,
            FIRING,
            None,
            None,
            rule.source,
            alarm_id("gateway", rule.key, "", due, int(rec["dup"])),
            tag=rule.gateway_code,
            parameter="",
            message=f"gateway {rule.gateway_code} silent: no data from any of its "
            f"{len(rule.points)} points",
        )

    def _offline_timer(self, due: int, i: int) -> None:
        s = self.pt(i)
        pr = self.plan.rules[i]
        if s.offline != 0:
            return
        current = s.off_base + pr.offline.timeout_ms
        if current > due:
            self.push(current, T_OFFLINE, i)
            return
        if current < due:
            return
        g = self.plan.gw_of_l[i]
        if g >= 0 and not int(self.gw(g)["last"]) > due - self.plan.gw_window_l[g]:
            # Nothing came through the gateway lately either: the gateway alarm covers it.
            s.offline = 2
            self.gw(g)["inh"] += 1
        else:
            s.offline = 1
            s.dup[D_OFFLINE] = _dup(s.offline_start, s.dup[D_OFFLINE], due)
            s.offline_start = due
            self.emit(
                due,
                i,
                Kind.OFFLINE,
                None,
                FIRING,
                None,
                None,
                pr.offline.source,
                alarm_id("offline", pr.point.key, "", due, s.dup[D_OFFLINE]),
                message=f"no data for {pr.offline.timeout_ms / 1000:g} s",
            )
        self._votes(i, due, False)

    def _on_timer(self, due: int, i: int, b: int) -> None:
        s = self.pt(i)
        if s.since[b] == NO_TS or s.since[b] + self.plan.rules[i].limit.for_ms != due:
            return
        for bb in range(4):  # every level whose on-delay completes now: one transition
            if s.since[bb] != NO_TS and s.since[bb] + self.plan.rules[i].limit.for_ms == due:
                s.since[bb] = NO_TS
                s.on |= 1 << bb
        self._levels(i, due, s.good_value, bool(s.bf))

    def _off_timer(self, due: int, i: int, b: int) -> None:
        s = self.pt(i)
        if s.below[b] == NO_TS or s.below[b] + self.plan.rules[i].limit.off_ms != due:
            return
        for bb in range(4):
            if s.below[bb] != NO_TS and s.below[bb] + self.plan.rules[i].limit.off_ms == due:
                s.below[bb] = NO_TS
                s.on &= ~(1 << bb)
        self._levels(i, due, s.good_value, bool(s.bf))

    def _event_timer(self, due: int, i: int) -> None:
        s = self.pt(i)
        if not s.ev:
            return
        if s.ev_due > due:
            self.push(s.ev_due, T_EVENT, i)
            return
        if s.ev_due < due:
            return
        s.ev = 0
        s.ev_due = NO_TS
        pr = self.plan.rules[i]
        self.emit(
            due,
            i,
            Kind.EVENT,
            None,
            CLEARED,
            None,
            None,
            pr.event.source,
            alarm_id("event", pr.point.key, "", s.ev_start, s.dup[D_EVENT]),
            bool(s.bf),
        )

    def _interlock_timer(self, due: int, i: int) -> None:
        s = self.pt(i)
        if s.il_due != due:
            return
        s.il_due = NO_TS
        self._fire_interlock(i, due, bool(s.bf))

    # ------------------------------------------------------------------ readings
    def reading(
        self,
        i: int,
        ts: int,
        v: float,
        q: int,
        backfill: bool = False,
        event_type: str | None = None,
        text: str | None = None,
    ) -> None:
        plan = self.plan
        pr = plan.rules[i]
        s = self.pt(i)
        s.bf = 1 if backfill else 0
        health_changed = False
        # -- data arrived: offline, gateway
        if s.offline == 1:
            self.emit(
                max(ts, s.offline_start),  # late data never clears before the alarm began
                i,
                Kind.OFFLINE,
                None,
                CLEARED,
                v,
                None,
                pr.offline.source,
                alarm_id("offline", pr.point.key, "", s.offline_start, s.dup[D_OFFLINE]),
                backfill,
            )
            health_changed = True
        elif s.offline == 2:
            g0 = plan.gw_of_l[i]
            if g0 >= 0:
                self.gw(g0)["inh"] -= 1
            health_changed = True
        was_pending = s.offline != 0
        s.offline = 0
        if ts > s.off_base:
            s.off_base = ts
        if was_pending and pr.offline is not None:
            self.push(s.off_base + pr.offline.timeout_ms, T_OFFLINE, i)
        g = plan.gw_of_l[i]
        if g >= 0:
            rec = self.gw(g)
            if ts > rec["last"]:
                rec["last"] = ts
            if rec["alarm"]:
                rec["alarm"] = 0
                rule = plan.gw_rules[g]
                self.emit(
                    max(ts, int(rec["start"])),
                    plan.gw_members[g][0],
                    Kind.GATEWAY,
                    None,
                    CLEARED,
                    None,
                    None,
                    rule.source,
                    alarm_id("gateway", rule.key, "", int(rec["start"]), int(rec["dup"])),
                    backfill,
                    tag=rule.gateway_code,
                    parameter="",
                )
                self.seed_gateway(g)
            if rec["inh"] > 0:
                # The gateway speaks again: its silent points get a fresh offline timer.
                for j in plan.gw_members[g]:
                    sj = self.pt(j)
                    if sj.offline == 2:
                        sj.offline = 0
                        rec["inh"] -= 1
                        if ts > sj.off_base:
                            sj.off_base = ts
                        self.push(sj.off_base + plan.rules[j].offline.timeout_ms, T_OFFLINE, j)
                        self._votes(j, ts, backfill)
        if health_changed:
            self._votes(i, ts, backfill)
        # -- event messages
        if pr.event is not None:
            if event_type is None or (
                pr.event.types is not None and event_type not in pr.event.types
            ):
                return
            due = ts + pr.event.hold_ms
            if not s.ev:
                s.ev = 1
                s.dup[D_EVENT] = _dup(s.ev_start, s.dup[D_EVENT], ts)
                s.ev_start = ts
                s.ev_due = due
                self.push(due, T_EVENT, i)
                self.emit(
                    ts,
                    i,
                    Kind.EVENT,
                    None,
                    FIRING,
                    None,
                    None,
                    pr.event.source,
                    alarm_id("event", pr.point.key, "", ts, s.dup[D_EVENT]),
                    backfill,
                    message=f"{event_type}: {text or ''}".strip(),
                )
            elif due > s.ev_due:
                s.ev_due = due
            return
        if pr.point.parameter == "event":
            return
        s.last_value = v
        s.last_q = q
        # -- maintenance and faults: not evaluated for process alarms
        if q == 3:
            self._cancel_pending(s)
            return
        faulty, bound, why = self._faulty(i, v, q)
        if faulty:
            if pr.fault is not None:
                if not s.fault:
                    s.fault = 1
                    s.dup[D_FAULT] = _dup(s.fault_start, s.dup[D_FAULT], ts)
                    s.fault_start = ts
                    self.emit(
                        ts,
                        i,
                        Kind.FAULT,
                        None,
                        FIRING,
                        v,
                        bound,
                        pr.fault.source,
                        alarm_id("fault", pr.point.key, "", ts, s.dup[D_FAULT]),
                        backfill,
                        message=why,
                    )
                    self._votes(i, ts, backfill)
                if (
                    pr.fault.over_range_latch
                    and pr.fault.range_high is not None
                    and v > pr.fault.range_high
                ):
                    # A gas detector above its range: never let "fault" hide a possibly real,
                    # very high concentration (DOMAIN.md §2) -> highest level, latched.
                    self._latch_high(i, s, ts, v, backfill)
            self._cancel_pending(s)
            return
        if s.fault:
            s.fault = 0
            self.emit(
                max(ts, s.fault_start),
                i,
                Kind.FAULT,
                None,
                CLEARED,
                v,
                None,
                pr.fault.source,
                alarm_id("fault", pr.point.key, "", s.fault_start, s.dup[D_FAULT]),
                backfill,
            )
            self._votes(i, ts, backfill)
        # -- process evaluation of a good reading
        if pr.limit is not None:
            self._evaluate_limits(i, s, ts, v)
            self._levels(i, ts, v, backfill)
        if pr.rate is not None and s.good_ts != NO_TS and ts > s.good_ts:
            r = (v - s.good_value) * 60000.0 / (ts - s.good_ts)
            cond = r > pr.rate.max_rise or -r > pr.rate.max_fall
            if cond and not s.rate:
                s.rate = 1
                s.dup[D_RATE] = _dup(s.rate_start, s.dup[D_RATE], ts)
                s.rate_start = ts
                lim = pr.rate.max_rise if r > 0 else pr.rate.max_fall
                self.emit(
                    ts,
                    i,
                    Kind.RATE,
                    None,
                    FIRING,
                    v,
                    lim,
                    pr.rate.source,
                    alarm_id("rate", pr.point.key, "", ts, s.dup[D_RATE]),
                    backfill,
                    message=f"{'rising' if r > 0 else 'falling'} {abs(r):.4g} "
                    f"{pr.point.unit}/min (limit {lim:.4g})",
                )
            elif not cond and s.rate:
                s.rate = 0
                self.emit(
                    ts,
                    i,
                    Kind.RATE,
                    None,
                    CLEARED,
                    v,
                    None,
                    pr.rate.source,
                    alarm_id("rate", pr.point.key, "", s.rate_start, s.dup[D_RATE]),
                    backfill,
                )
        if pr.stuck is not None:
            if s.good_ts != NO_TS and abs(v - s.good_value) <= pr.stuck.tolerance:
                if not s.stuck and ts - s.run_start >= pr.stuck.for_ms:
                    s.stuck = 1
                    s.dup[D_STUCK] = _dup(s.stuck_start, s.dup[D_STUCK], ts)
                    s.stuck_start = ts
                    self.emit(
                        ts,
                        i,
                        Kind.STUCK,
                        None,
                        FIRING,
                        v,
                        None,
                        pr.stuck.source,
                        alarm_id("stuck", pr.point.key, "", ts, s.dup[D_STUCK]),
                        backfill,
                        message=f"unchanged for {(ts - s.run_start) / 1000:g} s",
                    )
            else:
                s.run_start = ts
                if s.stuck:
                    s.stuck = 0
                    self.emit(
                        ts,
                        i,
                        Kind.STUCK,
                        None,
                        CLEARED,
                        v,
                        None,
                        pr.stuck.source,
                        alarm_id("stuck", pr.point.key, "", s.stuck_start, s.dup[D_STUCK]),
                        backfill,
                    )
        s.good_ts = ts
        s.good_value = v
        if plan.valve_of[i] >= 0:
            self._interlock(i, ts, backfill)
        for t in plan.tanks_of_valve.get(i, ()):
            self._interlock(t, ts, backfill)

    def _faulty(self, i: int, v: float, q: int) -> tuple[bool, float | None, str]:
        """(faulty?, the range bound crossed, why) for a reading of point i."""
        f = self.plan.rules[i].fault
        if q == 2:
            return True, None, "device reports a fault"
        if not math.isfinite(v):
            return True, None, "not a finite number"
        if f is None:
            return False, None, ""
        if f.range_low is not None and v < f.range_low:
            return True, f.range_low, f"below the measuring range (low {f.range_low:g})"
        if f.range_high is not None and v > f.range_high:
            return True, f.range_high, f"above the measuring range (high {f.range_high:g})"
        return False, None, ""

    @staticmethod
    def _cancel_pending(s: PointState) -> None:
        # An unknown process value must not complete an on-delay.
        s.since = [NO_TS] * 4

    def _latch_high(self, i: int, s: PointState, ts: int, v: float, backfill: bool) -> None:
        n = self.plan.rules[i].limit
        if n is None or not n.high:
            return
        for b in range(len(n.high)):
            s.on |= 1 << b
            s.since[b] = NO_TS
            s.below[b] = NO_TS
        s.latched |= 1
        self._levels(i, ts, v, backfill)

    def _evaluate_limits(self, i: int, s: PointState, ts: int, v: float) -> None:
        lim = self.plan.rules[i].limit
        db = lim.deadband
        strict = lim.strict
        for side_no, side in ((0, lim.high), (1, lim.low)):
            latched = s.latched & (1 << side_no)
            for j, t in enumerate(side):
                b = side_no * 2 + j
                thr = t.value
                if not s.on & (1 << b):
                    if side_no == 0:
                        entered = v > thr if strict else v >= thr
                    else:
                        entered = v < thr if strict else v <= thr
                    if entered:
                        if s.since[b] == NO_TS:
                            if lim.for_ms == 0:
                                s.on |= 1 << b
                            else:
                                s.since[b] = ts
                                self.push(ts + lim.for_ms, T_ON, i, b)
                    else:
                        s.since[b] = NO_TS
                else:
                    if latched:
                        s.below[b] = NO_TS
                        continue
                    if side_no == 0:
                        held = v > thr - db if strict else v >= thr - db
                    else:
                        held = v < thr + db if strict else v <= thr + db
                    if held:
                        s.below[b] = NO_TS
                    elif s.below[b] == NO_TS:
                        if lim.off_ms == 0:
                            s.on &= ~(1 << b)
                        else:
                            s.below[b] = ts
                            self.push(ts + lim.off_ms, T_OFF, i, b)

    def _levels(self, i: int, ts: int, v: float, backfill: bool) -> None:
        """Emit the side's transition if its active level changed."""
        pr = self.plan.rules[i]
        lim = pr.limit
        s = self.pt(i)
        changed_high = False
        for side_no, side in ((0, lim.high), (1, lim.low)):
            new = 0
            for j in range(len(side)):
                if s.on & (1 << (side_no * 2 + j)):
                    new = j + 1
            old = s.act[side_no]
            if new == old:
                continue
            s.act[side_no] = new
            changed_high |= side_no == 0
            tag = "hi" if side_no == 0 else "lo"
            if old == 0:
                s.dup[side_no] = _dup(s.act_start[side_no], s.dup[side_no], ts)
                s.act_start[side_no] = ts
                if lim.latch:
                    s.latched |= 1 << side_no
            aid = alarm_id(str(lim.kind), pr.point.key, tag, s.act_start[side_no], s.dup[side_no])
            if new == 0:
                t = side[old - 1]
                self.emit(
                    max(ts, s.act_start[side_no]),
                    i,
                    lim.kind,
                    t.level,
                    CLEARED,
                    v,
                    t.value,
                    _src(lim, t),
                    aid,
                    backfill,
                )
            else:
                t = side[new - 1]
                unit = pr.point.unit
                if lim.kind == Kind.OCCUPANCY:
                    msg = f"{v:g} {unit} present, quota {t.value:g}"
                elif (
                    side_no == 0
                    and pr.fault is not None
                    and pr.fault.range_high is not None
                    and v > pr.fault.range_high
                ):
                    msg = f"{v:.4g} {unit} above the detector's range: highest level, latched"
                else:
                    where = "at or above" if side_no == 0 else "at or below"
                    msg = f"{v:.4g} {unit} {where} the {t.level} set point {t.value:.4g} {unit}"
                self.emit(
                    ts,
                    i,
                    lim.kind,
                    t.level,
                    FIRING,
                    v,
                    t.value,
                    _src(lim, t),
                    aid,
                    backfill,
                    message=msg,
                )
        if changed_high:
            self._votes(i, ts, backfill)
            if self.plan.valve_of[i] >= 0:
                self._interlock(i, ts, backfill)

    # ------------------------------------------------------------------ interlock, votes
    def _interlock(self, i: int, ts: int, backfill: bool) -> None:
        pr = self.plan.rules[i]
        s = self.pt(i)
        lim = pr.limit
        at_hh = s.act[0] > 0 and lim.high[s.act[0] - 1].level == Level.HH
        valve = self.pt(self.plan.valve_of[i])
        closed = valve.good_ts != NO_TS and valve.good_value <= pr.interlock.closed_max
        if at_hh and not closed:
            if not s.il and s.il_due == NO_TS:
                if pr.interlock.within_ms == 0:
                    self._fire_interlock(i, ts, backfill)
                else:
                    s.il_due = ts + pr.interlock.within_ms
                    self.push(s.il_due, T_INTERLOCK, i)
        else:
            s.il_due = NO_TS
            if s.il:
                s.il = 0
                self.emit(
                    ts,
                    i,
                    Kind.INTERLOCK,
                    None,
                    CLEARED,
                    s.good_value,
                    None,
                    pr.interlock.source,
                    alarm_id("interlock", pr.point.key, "", s.il_start, s.dup[D_INTERLOCK]),
                    backfill,
                )

    def _fire_interlock(self, i: int, ts: int, backfill: bool) -> None:
        pr = self.plan.rules[i]
        s = self.pt(i)
        s.il = 1
        s.dup[D_INTERLOCK] = _dup(s.il_start, s.dup[D_INTERLOCK], ts)
        s.il_start = ts
        vtag = self.plan.rules[self.plan.valve_of[i]].point.tag
        self.emit(
            ts,
            i,
            Kind.INTERLOCK,
            None,
            FIRING,
            s.good_value,
            None,
            pr.interlock.source,
            alarm_id("interlock", pr.point.key, "", ts, s.dup[D_INTERLOCK]),
            backfill,
            message=f"at HH and inlet valve {vtag} not closed within "
            f"{pr.interlock.within_ms / 1000:g} s",
        )

    def _votes(self, i: int, ts: int, backfill: bool) -> None:
        for vi in self.plan.votes_of[i]:
            self._vote(vi, ts, backfill)

    def _vote(self, vi: int, ts: int, backfill: bool) -> None:
        plan = self.plan
        group = plan.votes[vi]
        heads = plan.vote_heads[vi]
        levels = []
        unhealthy = 0
        alarmed = 0  # unhealthy for a reason of their own, not their gateway's outage
        for h in heads:
            sh = self.pt(h)
            if sh.fault or sh.offline:
                unhealthy += 1
                alarmed += 1 if (sh.fault or sh.offline == 1) else 0
            else:
                levels.append(sh.act[0])
        levels.sort(reverse=True)
        k_eff = max(1, group.k - unhealthy)
        rec = self.vote(vi)
        if levels:
            lvl = levels[k_eff - 1] if len(levels) >= k_eff else 0
        else:
            lvl = int(rec["lvl"])  # no healthy head left: hold the last confirmed state
        i0 = heads[0]
        # The gateway alarm already reports heads silenced by its outage (one alarm).
        deg = 1 if alarmed else 0
        if deg != rec["deg"]:
            rec["deg"] = deg
            if deg:
                rec["deg_dup"] = _dup(int(rec["deg_start"]), int(rec["deg_dup"]), ts)
                rec["deg_start"] = ts
            self.emit(
                ts,
                i0,
                Kind.VOTE_DEGRADED,
                None,
                FIRING if deg else CLEARED,
                None,
                None,
                group.source,
                alarm_id(
                    "vote_degraded", group.key, "", int(rec["deg_start"]), int(rec["deg_dup"])
                ),
                backfill,
                tag=group.zone,
                parameter=group.parameter,
                message=f"{unhealthy} of {len(heads)} heads faulted or offline: "
                f"{group.k}oo{len(heads)} now needs {k_eff} healthy head(s)",
            )
        old = int(rec["lvl"])
        if lvl == old:
            return
        rec["lvl"] = lvl
        if old == 0:
            rec["dup"] = _dup(int(rec["start"]), int(rec["dup"]), ts)
            rec["start"] = ts
        aid = alarm_id("vote", group.key, "", int(rec["start"]), int(rec["dup"]))
        high = plan.rules[i0].limit.high
        t = high[(lvl or old) - 1]
        self.emit(
            ts,
            i0,
            Kind.VOTE,
            t.level,
            FIRING if lvl else CLEARED,
            None,
            None,
            group.source,
            aid,
            backfill,
            tag=group.zone,
            parameter=group.parameter,
            message=f"{group.k}oo{len(heads)}: {len(levels)} healthy head(s)",
        )

    # ------------------------------------------------------------------ manual reset
    def reset(self, aid: str, now_ms: int) -> None:
        for i in range(len(self.plan.keys)):
            pr = self.plan.rules[i]
            lim = pr.limit
            if lim is None:
                continue
            rec = self.pts_arr[i] if i not in self.P else None
            latched = int(rec["latched"]) if rec is not None else self.P[i].latched
            if not latched:
                continue
            s = self.pt(i)
            for side_no in (0, 1):
                if not s.latched & (1 << side_no) or not s.act[side_no]:
                    continue
                tag = "hi" if side_no == 0 else "lo"
                if (
                    alarm_id(str(lim.kind), pr.point.key, tag, s.act_start[side_no], s.dup[side_no])
                    != aid
                ):
                    continue
                s.latched &= ~(1 << side_no)
                for j in range(2):
                    b = side_no * 2 + j
                    s.on &= ~(1 << b)
                    s.since[b] = NO_TS
                    s.below[b] = NO_TS
                self._levels(i, now_ms, s.last_value, False)
                # Still present after the reset: it re-asserts as a new alarm.
                v, q = s.last_value, s.last_q
                if q in (0, 1, 2) and not math.isnan(v):
                    f = pr.fault
                    if (
                        side_no == 0
                        and f is not None
                        and f.over_range_latch
                        and f.range_high is not None
                        and v > f.range_high
                    ):
                        self._latch_high(i, s, now_ms, v, False)
                    elif q in (0, 1) and not self._faulty(i, v, q)[0]:
                        self._evaluate_limits(i, s, now_ms, v)
                        self._levels(i, now_ms, v, False)
                return


_REMOVED = Source("removed-by-reload", "", "")


def _src(lim: LimitSpec, t: Threshold) -> Source:
    """Alarm provenance of a limit transition: the evaluating rule, the threshold's pack."""
    return Source(lim.source.rule, t.pack, t.pack_version)


def initial_state(plan: Plan, start_ms: int) -> EngineState:
    return EngineState(
        new_points(len(plan.keys), start_ms),
        new_gateways(len(plan.gw_keys), start_ms),
        new_votes(len(plan.vote_keys)),
        plan.keys,
        plan.gw_keys,
        plan.vote_keys,
        start_ms,
        start_ms,
    )


class ReferenceEngine:
    """Same constructor and `process`/`tick`/`reset` API as `rules.engine.Engine`; every
    reading goes through `Machine` one at a time."""

    def __init__(self, ruleset: RuleSet, registry: Registry) -> None:
        self.ruleset = ruleset
        self.registry = registry
        self.plan = Plan(ruleset, registry)

    def initial_state(self, start_ms: int) -> EngineState:
        return initial_state(self.plan, start_ms)

    def _machine(self, state: EngineState) -> Machine:
        m = Machine(self.plan, state)
        m.preload(np.arange(len(self.plan.keys)))
        for i in range(len(self.plan.keys)):
            m.seed_point(i)
        for g in range(len(self.plan.gw_keys)):
            m.seed_gateway(g)
        return m

    def process(
        self, state: EngineState, readings: Sequence[Reading], now_ms: int
    ) -> tuple[EngineState, list[AlarmEvent]]:
        m = self._machine(state)
        index = self.plan.index
        rows = [(r.ts_ms, n, r) for n, r in enumerate(readings)]
        rows.sort(key=lambda x: (x[0], x[1]))
        for ts, _n, r in rows:
            i = index.get(f"{r.enterprise_code}/{r.tag}")
            if i is None:
                continue  # ingest dead-lettered unknown points already
            m.advance(ts)
            m.reading(i, ts, r.value, r.quality, r.backfill, r.event_type, r.text)
        m.advance(now_ms)
        return m.result(), m.sorted_events()

    def tick(self, state: EngineState, now_ms: int) -> tuple[EngineState, list[AlarmEvent]]:
        return self.process(state, (), now_ms)

    def reset(
        self, state: EngineState, aid: str, now_ms: int
    ) -> tuple[EngineState, list[AlarmEvent]]:
        m = self._machine(state)
        m.advance(now_ms)
        m.reset(aid, now_ms)
        return m.result(), m.sorted_events()
