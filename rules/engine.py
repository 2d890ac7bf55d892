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
    saved_records,
)

__all__ = ["Engine", "EngineState"]


def _copy_records(a: np.ndarray) -> np.ndarray:
    """A copy of a record array. numpy copies a packed structured dtype field by field (about
    5 ms for 10,000 points, more than the rest of a 100-reading call); the records are plain
    bytes, so copy them as bytes (0.2 ms)."""
    if not a.flags.c_contiguous or a.ndim != 1 or not len(a):
        return a.copy()
    return a.view(np.uint8).copy().view(a.dtype)


def _any_not(field: np.ndarray, value: int) -> np.ndarray:
    """Per record: does any element of a sub-array field differ from `value`? Column by
    column: `(field != value).any(axis=1)` on a strided record field is 3-5x slower."""
    out = field[:, 0] != value
    for j in range(1, field.shape[1]):
        out |= field[:, j] != value
    return out


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
        # Fewer levels than before: keep the alarm at the highest level that still exists.
        # (A point with no limit rule left keeps its record: the machine clears that alarm.)
        keep = p.has_limit
        for s in (0, 1):
            over = keep & (pts["act"][:, s] > p.nlev[:, s])
            pts["act"][over, s] = p.nlev[over, s]
        valid = np.zeros(len(p.keys), dtype=np.uint8)
        for s in (0, 1):
            for j in (0, 1):
                valid |= np.where(p.nlev[:, s] > j, 1 << (s * 2 + j), 0).astype(np.uint8)
        pts["on"] = np.where(keep, pts["on"] & valid, pts["on"])
        return EngineState(
            pts,
            gws,
            votes,
            p.keys,
            p.gw_keys,
            p.vote_keys,
            int(obj["start_ms"]),
            now,
            orphans=self._orphans(obj),
        )

    def _orphans(self, obj: dict) -> tuple[tuple[str, str, int, int], ...]:
        """Open gateway and vote alarms of groups the new rules no longer have."""
        p = self.plan
        out = [tuple(o) for o in obj.get("orphans", [])]
        keys, rec = saved_records(obj["gateways"], new_gateways(0, 0))
        gone = set(keys) - set(p.gw_keys)
        for k, r in zip(keys, rec, strict=True):
            if k in gone and r["alarm"]:
                out.append(("gateway", k, int(r["start"]), int(r["dup"])))
        keys, rec = saved_records(obj["votes"], new_votes(0))
        gone = set(keys) - set(p.vote_keys)
        for k, r in zip(keys, rec, strict=True):
            if k in gone and r["lvl"]:
                out.append(("vote", k, int(r["start"]), int(r["dup"])))
            if k in gone and r["deg"]:
                out.append(("vote_degraded", k, int(r["deg_start"]), int(r["deg_dup"])))
        return tuple(out)

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
        if len(idx) and idx.max() >= len(plan.keys):
            raise ValueError("process_columns: point_index beyond the registry (use point_index)")
        if not (len(idx) == len(ts) == len(val) == len(q)):
            raise ValueError(
                "process_columns: point_index, ts_ms, value and quality must have the same length"
            )
        now_ms = int(now_ms)
        pts = _copy_records(state.points)
        gws = _copy_records(state.gateways)
        n_pts = len(plan.keys)

        # time order (stable: equal times keep their batch order), unknown points dropped;
        # a replay batch usually is in time order already, so check before sorting
        n_in = len(ts)
        if n_in > 1 and not bool(np.all(ts[1:] >= ts[:-1])):
            order = np.argsort(ts, kind="stable")
        else:
            order = np.arange(n_in)
        keys = idx[order]
        if n_in and keys.min() < 0:
            order = order[keys >= 0]
            keys = idx[order]
        # grouped by point, time order inside each group (radix sort on small integers)
        small = keys.astype(np.uint16 if n_pts <= 0xFFFF else np.uint32)
        grp = order[np.argsort(small, kind="stable")]
        m = len(grp)

        has_reading = np.zeros(n_pts, dtype=bool)
        # nq: points the machine must evaluate; drag: points whose whole gateway must go too
        # (offline and gateway decisions depend on what every member sent, in time order)
        if m:
            pi = idx[grp]
            t = ts[grp]
            v = val[grp]
            qq = q[grp]
            first = np.empty(m, dtype=bool)
            first[0] = True
            np.not_equal(pi[1:], pi[:-1], out=first[1:])
            starts = np.flatnonzero(first)
            ends = np.empty_like(starts)
            ends[:-1] = starts[1:] - 1
            ends[-1] = m - 1
            up = pi[starts]  # the points with readings, ascending
            has_reading[up] = True
            nq, drag = self._pending_points(pts, gws, now_ms, has_reading)
            scan = self._scan(pts, gws, pi, t, v, qq, first, starts, ends, up, now_ms)
            bad, bad_off, bad_gw, run_start = scan
            if events:
                bad |= plan.is_event[up]
            nq[up[bad]] = True
            drag[up[bad_off]] = True
            for g in np.flatnonzero(bad_gw):
                nq[plan.gw_members[g]] = True
        else:
            nq, drag = self._pending_points(pts, gws, now_ms, has_reading)
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
            quiet = ~nq[up]
            qi = up[quiet]
            if len(qi):
                last_rows = ends[quiet]
                tl = t[last_rows]
                vl = v[last_rows]
                pts["off_base"][qi] = np.maximum(pts["off_base"][qi], tl)
                pts["last_value"][qi] = vl
                pts["last_q"][qi] = qq[last_rows]
                pts["good_ts"][qi] = tl
                pts["good_value"][qi] = vl
                pts["bf"][qi] = backfill[grp][last_rows] if backfill is not None else 0
                if run_start is not None:
                    rs = run_start[quiet]
                    changed = plan.has_stuck[qi] & (rs != NO_TS)
                    pts["run_start"][qi[changed]] = rs[changed]
                gq = plan.gw_of[qi]
                gsel = gq >= 0
                if gsel.any():
                    gq, tl = gq[gsel], tl[gsel]
                    o = np.argsort(gq.astype(np.uint32), kind="stable")
                    gq, tl = gq[o], tl[o]
                    gstarts = np.flatnonzero(np.r_[True, gq[1:] != gq[:-1]])
                    g_ids = gq[gstarts]
                    gws["last"][g_ids] = np.maximum(
                        gws["last"][g_ids], np.maximum.reduceat(tl, gstarts)
                    )

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
            state.orphans,
        )
        mach = Machine(plan, work, copy=False)
        nq_idx = np.flatnonzero(nq)
        if plan.votes and len(nq_idx):
            # A head's level change re-evaluates its vote groups, which read every head:
            # materialise them column-wise now rather than one record at a time there.
            heads = {
                h for i in nq_idx.tolist() for vi in plan.votes_of[i] for h in plan.vote_heads[vi]
            }
            mach.preload(np.union1d(nq_idx, np.fromiter(heads, dtype=np.int64, count=len(heads))))
        else:
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
        readings decide, see `_scan`)."""
        plan = self.plan
        nq = pts["fault"] != 0
        nq |= _any_not(pts["since"], NO_TS) | _any_not(pts["below"], NO_TS)
        nq |= (pts["ev"] != 0) | (pts["il"] != 0) | (pts["il_due"] != NO_TS)
        # open alarms whose rule a hot reload removed: the machine clears them
        nq |= ((pts["offline"] != 0) & ~plan.has_offline) | ((pts["fault"] != 0) & ~plan.has_fault)
        nq |= ((pts["stuck"] != 0) & ~plan.has_stuck) | ((pts["rate"] != 0) & ~plan.has_rate)
        nq |= ((pts["ev"] != 0) & ~plan.is_event) | ((pts["il"] != 0) & ~plan.has_interlock)
        nq |= (_any_not(pts["act"], 0) | (pts["on"] != 0)) & ~plan.has_limit
        # a tank at a high level makes its inlet valve's readings matter (il_group adds it)
        nq |= plan.interlocked & (pts["act"][:, 0] > 0)
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

    def _scan(self, pts, gws, pi, t, v, qq, first, starts, ends, up, now_ms):
        """Per point with readings (`up`), from per-point extremes of the batch: may its
        readings change anything beyond last seen/value? Conservative where exactness would
        cost a per-reading pass (the machine then decides exactly). Returns
        (bad, bad_offline, bad_gateway, new run_start or NO_TS per point | None)."""
        plan = self.plan
        t_first = t[starts]
        t_last = t[ends]
        vmax = np.maximum.reduceat(v, starts)
        vmin = np.minimum.reduceat(v, starts)
        bad = np.maximum.reduceat(qq, starts) > 1  # fault (2) or maintenance (3) inside
        bad |= ~np.isfinite(vmax) | ~np.isfinite(vmin)  # NaN/inf anywhere: a fault
        bad |= plan.is_event[up]
        bad |= plan.has_fault[up] & ((vmin < plan.range_lo[up]) | (vmax > plan.range_hi[up]))
        # offline: the largest silence (from the last reading before the batch), older data
        ob = pts["off_base"][up]
        dt = np.empty_like(t)
        dt[1:] = t[1:] - t[:-1]
        dt[starts] = t_first - ob
        gap = np.maximum.reduceat(dt, starts)
        timeout = plan.offline_ms[up]
        has_off = plan.has_offline[up]
        bad_off = has_off & ((gap >= timeout) | (t_last + timeout <= now_ms))
        bad_off |= t_first < ob
        # limits: a level entered (when off) or left (when on) by any reading
        nlev = plan.nlev[up]
        if nlev.any():
            on = pts["on"][up]
            latched = pts["latched"][up]
            db = plan.deadband[up]
            strict = plan.strict[up]
            for s in (0, 1):
                for j in (0, 1):
                    has = nlev[:, s] > j
                    if not has.any():
                        continue
                    b = s * 2 + j
                    thr = plan.thr[up, b]
                    is_on = ((on >> b) & 1) == 1
                    if s == 0:
                        entered = np.where(strict, vmax > thr, vmax >= thr)
                        left = np.where(strict, vmin <= thr - db, vmin < thr - db)
                    else:
                        entered = np.where(strict, vmin < thr, vmin <= thr)
                        left = np.where(strict, vmax >= thr + db, vmax > thr + db)
                    # a latched side never leaves its levels (manual reset only)
                    left &= ((latched >> s) & 1) == 0
                    bad |= has & np.where(is_on, left, entered)
        # rate of change, per reading, only over the points that have a rate rule
        rated = plan.has_rate[pi]
        if rated.any():
            bad |= self._rate_bad(pts, pi, t, v, first, rated, up)
        # frozen value
        run_start = None
        stuck_pts = plan.has_stuck[pi]
        if stuck_pts.any():
            prev_v = np.empty_like(v)
            prev_v[1:] = v[:-1]
            prev_v[starts] = pts["good_value"][up]
            has_prev = ~first
            has_prev[starts] = pts["good_ts"][up] != NO_TS
            unchanged = has_prev & (np.abs(v - prev_v) <= plan.stuck_tol[pi])
            last_change = np.maximum.reduceat(np.where(unchanged, NO_TS, t), starts)
            all_same = last_change == NO_TS
            origin = np.where(unchanged[starts], pts["run_start"][up], t_first)
            stuck = pts["stuck"][up] != 0
            hs = plan.has_stuck[up]
            # a run long enough to fire might exist (conservative), or a frozen value moved
            bad |= hs & ~stuck & (t_last - origin >= plan.stuck_ms[up])
            bad |= hs & stuck & ~all_same
            run_start = last_change
        # gateways: quiet only if some member reported in every window of the gateway's
        # timeout (then the gateway never fell silent), and no gateway alarm or inhibition
        bad_gw = np.zeros(len(gws), dtype=bool)
        if len(gws):
            g_of = plan.gw_of[up]
            member = g_of >= 0
            if member.any():
                gm = g_of[member]
                steady = np.maximum(gap[member], now_ms - t_last[member]) < plan.gw_timeout[gm]
                ok = np.bincount(gm, weights=steady, minlength=len(gws)) > 0
                seen = np.bincount(gm, minlength=len(gws)) > 0
                bad_gw = seen & (~ok | (gws["alarm"] != 0) | (gws["inh"] > 0))
        return bad, bad_off, bad_gw, run_start

    def _rate_bad(self, pts, pi, t, v, first, rated, up):
        plan = self.plan
        sel = np.flatnonzero(rated)
        rp, rt, rv, rf = pi[sel], t[sel], v[sel], first[sel]
        rstarts = np.flatnonzero(rf)
        gts = pts["good_ts"][rp[rstarts]]
        pv = np.empty_like(rv)
        pv[1:] = rv[:-1]
        pv[rstarts] = pts["good_value"][rp[rstarts]]
        pt_ = np.empty_like(rt)
        pt_[1:] = rt[:-1]
        pt_[rstarts] = gts
        ok = (pt_ != NO_TS) & (rt > pt_)
        dt = np.where(ok, rt - pt_, 1).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            r = (rv - pv) * 60000.0 / dt
        cond = (r > plan.max_rise[rp]) | (-r > plan.max_fall[rp])
        bad_r = ok & (cond != (pts["rate"][rp] != 0))
        per = np.maximum.reduceat(bad_r, rstarts)
        out = np.zeros(len(pts), dtype=bool)
        out[rp[rstarts]] = per
        return out[up]
