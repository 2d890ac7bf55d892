"""The rules engine: a pure function of (state, batch of readings, now) -> (state, alarm
transitions), in event time, vectorised with numpy across points.

How it is fast and still exact: one numpy pass over the whole batch proves, per point, that
its readings change nothing but "last seen / last value" (no level entered or left, no rate
or frozen-value change, no fault, no timer due). Those points are updated in bulk. Every
other point -- with its gateway and interlock partners, which share timing decisions -- goes
through `rules.reference.Machine`, the per-reading semantics, in time order. Alarms are rare,
so almost every reading takes the numpy path; the output is identical to
`rules.reference.ReferenceEngine` (property-tested).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest.model import Reading, Registry
from rules._plan import Plan
from rules.loader import RuleSet
from rules.model import AlarmEvent
from rules.reference import Machine, initial_state
from rules.state import (
    NO_TS,
    EngineState,
    decode,
    new_gateways,
    new_points,
    new_votes,
    restore,
)

__all__ = ["Engine", "EngineState"]


class Engine:
    """Evaluate a RuleSet over a registry. Holds no mutable state: every call takes an
    `EngineState` and returns a new one (the input is never modified)."""

    def __init__(self, ruleset: RuleSet, registry: Registry) -> None:
        missing = [p.key for p in registry if p.key not in ruleset.points]
        if missing:
            raise ValueError(
                f"ruleset {ruleset.version} was not built for this registry: no rules for "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; "
                "load the ruleset with the same registry"
            )
        self.ruleset = ruleset
        self.registry = registry
        self.plan = Plan(ruleset, registry)

    # ------------------------------------------------------------------ state
    def initial_state(self, start_ms: int) -> EngineState:
        """Fresh state; offline timers run from `start_ms` (never-reporting points too)."""
        return initial_state(self.plan, int(start_ms))

    def load_state(self, data: bytes) -> EngineState:
        """State from `EngineState.to_bytes()`, possibly saved by an engine with another
        ruleset or registry: records are matched by point/gateway/vote key."""
        obj = decode(data)
        p = self.plan
        now = int(obj["now_ms"])
        pts = restore(obj["points"], new_points(len(p.keys), now), p.keys)
        gws = restore(obj["gateways"], new_gateways(len(p.gw_keys), now), p.gw_keys)
        votes = restore(obj["votes"], new_votes(len(p.vote_keys)), p.vote_keys)
        # Links may have changed with the new rules: re-derive what depends on them.
        stray = (pts["offline"] == 2) & (p.gw_of < 0)
        pts["offline"][stray] = 0
        for g, members in enumerate(p.gw_members):
            gws["inh"][g] = int(np.count_nonzero(pts["offline"][members] == 2))
        for s in (0, 1):
            over = pts["act"][:, s] > p.nlev[:, s]
            pts["act"][over, s] = p.nlev[over, s]
        valid = np.zeros(len(p.keys), dtype=np.uint8)
        for s in (0, 1):
            for j in (0, 1):
                valid |= np.where(p.nlev[:, s] > j, 1 << (s * 2 + j), 0).astype(np.uint8)
        pts["on"] &= valid
        return EngineState(
            pts, gws, votes, p.keys, p.gw_keys, p.vote_keys, int(obj["start_ms"]), now
        )

    def point_index(self, key: str) -> int:
        """Position of a point in the column arrays of `process_columns` (-1 if unknown)."""
        return self.plan.index.get(key, -1)

    # ------------------------------------------------------------------ evaluation
    def process(
        self, state: EngineState, readings: Sequence[Reading], now_ms: int
    ) -> tuple[EngineState, list[AlarmEvent]]:
        """Evaluate a batch (any order; event time decides) and every timer up to `now_ms`.
        Readings of unknown points are ignored (ingest dead-lettered them)."""
        n = len(readings)
        index = self.plan.index
        idx = np.fromiter(
            (index.get(f"{r.enterprise_code}/{r.tag}", -1) for r in readings),
            dtype=np.int64,
            count=n,
        )
        ts = np.fromiter((r.ts_ms for r in readings), dtype=np.int64, count=n)
        val = np.fromiter((r.value for r in readings), dtype=np.float64, count=n)
        q = np.fromiter((r.quality for r in readings), dtype=np.int64, count=n)
        backfill = None
        if any(r.backfill for r in readings):
            backfill = np.fromiter((r.backfill for r in readings), dtype=bool, count=n)
        events = None
        if any(r.event_type is not None for r in readings):
            events = {
                k: (r.event_type, r.text)
                for k, r in enumerate(readings)
                if r.event_type is not None
            }
        return self.process_columns(
            state, idx, ts, val, q, now_ms, backfill=backfill, events=events
        )

    def tick(self, state: EngineState, now_ms: int) -> tuple[EngineState, list[AlarmEvent]]:
        """Timers only (offline, delays completing, interlock deadlines, event hold)."""
        empty_i = np.empty(0, dtype=np.int64)
        return self.process_columns(state, empty_i, empty_i, np.empty(0), empty_i, now_ms)

    def reset(
        self, state: EngineState, alarm_id: str, now_ms: int
    ) -> tuple[EngineState, list[AlarmEvent]]:
        """Manual reset of a latched alarm. If its condition is still present it re-asserts
        at once as a new firing (new alarm id). Unknown or unlatched ids change nothing."""
        m = Machine(self.plan, state)
        for i in range(len(self.plan.keys)):
            m.seed_point(i)
        for g in range(len(self.plan.gw_keys)):
            m.seed_gateway(g)
        m.advance(now_ms)
        m.reset(alarm_id, now_ms)
        return m.result(), m.sorted_events()

    def process_columns(
        self,
        state: EngineState,
        point_index: np.ndarray,
        ts_ms: np.ndarray,
        value: np.ndarray,
        quality: np.ndarray,
        now_ms: int,
        *,
        backfill: np.ndarray | None = None,
        events: dict[int, tuple[str | None, str | None]] | None = None,
    ) -> tuple[EngineState, list[AlarmEvent]]:
        """The vectorised fast path (replay). Arrays of equal length; `point_index` from
        `point_index(key)` (-1 = unknown, ignored); `events` maps a row to its
        (event_type, text) for event messages."""
        plan = self.plan
        idx = np.asarray(point_index, dtype=np.int64)
        ts = np.asarray(ts_ms, dtype=np.int64)
        val = np.asarray(value, dtype=np.float64)
        q = np.asarray(quality, dtype=np.int64)
        if not (len(idx) == len(ts) == len(val) == len(q)):
            raise ValueError(
                "process_columns: point_index, ts_ms, value and quality must have the same length"
            )
        now_ms = int(now_ms)
        pts = state.points.copy()
        gws = state.gateways.copy()
        n_pts = len(plan.keys)

        # time order (stable: equal times keep their batch order), unknown points dropped
        order = np.argsort(ts, kind="stable")
        order = order[idx[order] >= 0]
        # grouped by point, time order inside each group
        grp = order[np.argsort(idx[order], kind="stable")]
        pi = idx[grp]
        t = ts[grp]
        v = val[grp]
        qq = q[grp]
        m = len(grp)

        has_reading = np.zeros(n_pts, dtype=bool)
        has_reading[pi] = True
        # nq: points the machine must evaluate; drag: points whose whole gateway must go too
        # (offline and gateway decisions depend on what every member sent, in time order)
        nq, drag = self._pending_points(pts, gws, now_ms, has_reading)
        if m:
            first = np.empty(m, dtype=bool)
            first[0] = True
            np.not_equal(pi[1:], pi[:-1], out=first[1:])
            last = np.empty(m, dtype=bool)
            last[-1] = True
            last[:-1] = first[1:]
            bad, bad_off = self._unquiet_readings(pts, pi, t, v, qq, first, last, now_ms)
            if events:
                bad |= plan.is_event[pi]
            nq[pi[bad]] = True
            drag[pi[bad_off]] = True
            # gateway: a silence inside the batch, or the last reading too old by now
            gsel = plan.gw_of[idx[order]] >= 0
            if gsel.any():
                g_rows = order[gsel]
                g_of = plan.gw_of[idx[g_rows]]
                gsort = np.argsort(g_of, kind="stable")
                gg = g_of[gsort]
                gt = ts[g_rows][gsort]
                gfirst = np.empty(len(gg), dtype=bool)
                gfirst[0] = True
                np.not_equal(gg[1:], gg[:-1], out=gfirst[1:])
                gprev = np.empty(len(gg), dtype=np.int64)
                gprev[1:] = gt[:-1]
                gprev[gfirst] = gws["last"][gg[gfirst]]
                late = (gprev + plan.gw_timeout[gg] <= gt) | (gt < gws["last"][gg])
                bad_g = np.zeros(len(gws), dtype=bool)
                bad_g[gg[late]] = True
                glast = np.full(len(gws), NO_TS, dtype=np.int64)
                np.maximum.at(glast, gg, gt)
                seen = glast != NO_TS
                bad_g |= seen & ((gws["alarm"] != 0) | (gws["inh"] > 0))
                bad_g |= seen & (np.maximum(glast, gws["last"]) + plan.gw_timeout <= now_ms)
                for g in np.flatnonzero(bad_g):
                    nq[plan.gw_members[g]] = True
        if drag.any():
            nq |= drag
            gw = np.unique(plan.gw_of[drag])
            for g in gw[gw >= 0]:
                nq[plan.gw_members[g]] = True
        if plan.has_il_group and nq.any():
            groups = np.zeros(n_pts, dtype=bool)
            groups[plan.il_group[nq]] = True
            nq = groups[plan.il_group]

        # ---- bulk update of quiet points (their readings only move "last seen/value")
        if m:
            quiet_last = last & ~nq[pi]
            qi = pi[quiet_last]
            if len(qi):
                st_mask = plan.has_stuck[qi]
                if st_mask.any():  # before good_ts/good_value move on
                    rs = self._run_start(pts, pi, t, v, first)
                tl = t[quiet_last]
                vl = v[quiet_last]
                pts["off_base"][qi] = np.maximum(pts["off_base"][qi], tl)
                pts["last_value"][qi] = vl
                pts["last_q"][qi] = qq[quiet_last]
                pts["good_ts"][qi] = tl
                pts["good_value"][qi] = vl
                if st_mask.any():
                    pts["run_start"][qi[st_mask]] = rs[quiet_last][st_mask]
                gq = plan.gw_of[qi]
                gsel = gq >= 0
                if gsel.any():
                    np.maximum.at(gws["last"], gq[gsel], tl[gsel])

        # ---- everything else: the per-reading machine, in time order
        work = EngineState(
            pts,
            gws,
            state.votes,
            plan.keys,
            plan.gw_keys,
            plan.vote_keys,
            state.start_ms,
            state.now_ms,
        )
        mach = Machine(plan, work, copy=False)
        nq_idx = np.flatnonzero(nq)
        mach.preload(nq_idx)
        for i in nq_idx:
            mach.seed_point(int(i))
        if len(nq_idx):
            for g in np.unique(plan.gw_of[nq_idx]):
                if g >= 0:
                    mach.seed_gateway(int(g))
        if m and len(nq_idx):
            rows = order[nq[idx[order]]]
            r_idx = idx[rows].tolist()
            r_ts = ts[rows].tolist()
            r_v = val[rows].tolist()
            r_q = q[rows].tolist()
            r_bf = backfill[rows].tolist() if backfill is not None else None
            rows_l = rows.tolist()
            for k in range(len(rows_l)):
                tk = r_ts[k]
                mach.advance(tk)
                et, text = events.get(rows_l[k], (None, None)) if events else (None, None)
                mach.reading(r_idx[k], tk, r_v[k], r_q[k], r_bf[k] if r_bf else False, et, text)
        mach.advance(now_ms)
        if m:
            mach.now_ms = max(mach.now_ms, int(ts[order].max()) if len(order) else NO_TS)
        return mach.result(), mach.sorted_events()

    # ------------------------------------------------------------------ the quiet proof
    def _pending_points(
        self, pts: np.ndarray, gws: np.ndarray, now_ms: int, has_reading: np.ndarray
    ) -> np.ndarray:
        """Points that need the machine whatever they receive: open data-quality states,
        pending delays, latches, open event/interlock alarms; and, among those without
        readings in this batch, offline/gateway timers due by `now_ms` (for the others the
        readings decide, see `_unquiet_readings`)."""
        plan = self.plan
        nq = (pts["fault"] != 0) | (pts["latched"] != 0)
        nq |= (pts["since"] != NO_TS).any(axis=1) | (pts["below"] != NO_TS).any(axis=1)
        nq |= (pts["ev"] != 0) | (pts["il"] != 0) | (pts["il_due"] != NO_TS)
        drag = pts["offline"] != 0
        drag |= ~has_reading & plan.has_offline & (pts["off_base"] + plan.offline_ms <= now_ms)
        if len(gws):
            gw_seen = np.zeros(len(gws), dtype=bool)
            member = plan.gw_of[has_reading]
            gw_seen[member[member >= 0]] = True
            due = ~gw_seen & (gws["alarm"] == 0) & (gws["last"] + plan.gw_timeout <= now_ms)
            for g in np.flatnonzero(due | (gws["inh"] > 0)):
                nq[plan.gw_members[g]] = True
        return nq, drag

    def _run_start(self, pts, pi, t, v, first) -> np.ndarray:
        """Frozen-value run start at each reading (as the machine would track it)."""
        unchanged = self._unchanged(pts, pi, v, first)
        m = len(pi)
        defined = ~unchanged | first
        start = np.where(~unchanged, t, pts["run_start"][pi])
        pos = np.where(defined, np.arange(m), 0)
        np.maximum.accumulate(pos, out=pos)
        return start[pos]

    def _unchanged(self, pts, pi, v, first) -> np.ndarray:
        prev_v = np.empty_like(v)
        prev_v[1:] = v[:-1]
        prev_v[first] = pts["good_value"][pi[first]]
        has_prev = ~first | (pts["good_ts"][pi] != NO_TS)
        return has_prev & (np.abs(v - prev_v) <= self.plan.stuck_tol[pi])

    def _unquiet_readings(
        self, pts, pi, t, v, qq, first, last, now_ms
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per reading: may it change anything beyond last seen/value? (True = yes.) The
        second array marks the offline-timing reasons, which take the gateway along."""
        plan = self.plan
        bad = (qq != 0) & (qq != 1)
        bad |= plan.is_event[pi]
        bad |= plan.has_fault[pi] & ((v < plan.range_lo[pi]) | (v > plan.range_hi[pi]))
        # offline: a silence inside the batch, out-of-order data, or silent since by now
        prev_t = np.empty_like(t)
        prev_t[1:] = t[:-1]
        ob = pts["off_base"][pi]
        prev_t[first] = ob[first]
        base = prev_t  # t is ascending within a point; an older reading is caught below
        has_off = plan.has_offline[pi]
        bad_off = has_off & (base + plan.offline_ms[pi] <= t)
        bad_off |= t < ob
        bad_off |= has_off & last & (t + plan.offline_ms[pi] <= now_ms)
        # limits: any slot entered (when off) or left (when on)
        nlev = plan.nlev[pi]
        if nlev.any():
            on = pts["on"][pi]
            db = plan.deadband[pi]
            strict = plan.strict[pi]
            for s in (0, 1):
                for j in (0, 1):
                    has = nlev[:, s] > j
                    if not has.any():
                        continue
                    b = s * 2 + j
                    thr = plan.thr[pi, b]
                    is_on = (on >> b) & 1 == 1
                    if s == 0:
                        entered = np.where(strict, v > thr, v >= thr)
                        held = np.where(strict, v > thr - db, v >= thr - db)
                    else:
                        entered = np.where(strict, v < thr, v <= thr)
                        held = np.where(strict, v < thr + db, v <= thr + db)
                    bad |= has & np.where(is_on, ~held, entered)
        # rate of change against the previous good reading
        hr = plan.has_rate[pi]
        if hr.any():
            gts = pts["good_ts"][pi]
            pv = np.empty_like(v)
            pv[1:] = v[:-1]
            pv[first] = pts["good_value"][pi[first]]
            pt_ = np.empty_like(t)
            pt_[1:] = t[:-1]
            pt_[first] = gts[first]
            ev_ok = hr & (pt_ != NO_TS) & (t > pt_)
            dt = np.where(ev_ok, t - pt_, 1).astype(np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                r = (v - pv) * 60000.0 / dt
            cond = (r > plan.max_rise[pi]) | (-r > plan.max_fall[pi])
            bad |= ev_ok & (cond != (pts["rate"][pi] != 0))
        # frozen value
        hs = plan.has_stuck[pi]
        if hs.any():
            unchanged = self._unchanged(pts, pi, v, first)
            rs = self._run_start(pts, pi, t, v, first)
            stuck = pts["stuck"][pi] != 0
            fire = ~stuck & unchanged & (t - rs >= plan.stuck_ms[pi])
            clear = stuck & ~unchanged
            bad |= hs & (fire | clear)
        # interlock: a tank already at HH makes its valve's readings matter
        if plan.interlocked.any():
            bad |= plan.interlocked[pi] & (pts["act"][pi, 0] > 0)
        return bad, bad_off
