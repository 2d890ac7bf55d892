"""Index of a compiled RuleSet over a registry: point/gateway/vote positions, cross-links
(gateway members, vote heads, tank -> inlet valve), and per-point rule parameters as numpy
columns for the vectorised engine. Built once per (ruleset, registry); pure.
"""

from __future__ import annotations

import math

import numpy as np

from ingest.model import Registry
from rules.loader import PointRules, RuleSet
from rules.state import NO_TS


class Plan:
    def __init__(self, ruleset: RuleSet, registry: Registry) -> None:
        self.ruleset = ruleset
        self.registry = registry
        self.keys: tuple[str, ...] = tuple(p.key for p in registry)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.rules: list[PointRules] = [ruleset.points[k] for k in self.keys]
        n = len(self.keys)

        self.gw_rules = ruleset.gateways
        self.gw_keys = tuple(g.key for g in self.gw_rules)
        self.gw_of = np.full(n, -1, dtype=np.int64)
        self.gw_members: list[list[int]] = []
        for gi, g in enumerate(self.gw_rules):
            members = [self.index[k] for k in g.points]
            self.gw_members.append(members)
            self.gw_of[members] = gi

        self.votes = ruleset.votes
        self.vote_keys = tuple(v.key for v in self.votes)
        self.vote_heads: list[list[int]] = [[self.index[k] for k in v.heads] for v in self.votes]
        self.votes_of: list[list[int]] = [[] for _ in range(n)]
        for vi, heads in enumerate(self.vote_heads):
            for h in heads:
                self.votes_of[h].append(vi)

        self.valve_of = [-1] * n
        self.tanks_of_valve: dict[int, list[int]] = {}
        for i, pr in enumerate(self.rules):
            if pr.interlock is not None:
                v = self.index[pr.interlock.valve_key]
                self.valve_of[i] = v
                self.tanks_of_valve.setdefault(v, []).append(i)

        # Points that must be evaluated together in time order when either does something.
        parent = list(range(n))

        def find(x: int) -> int:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        def union(a: int, b: int) -> None:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)

        for i, v in enumerate(self.valve_of):
            if v >= 0:
                union(i, v)
        # a tank and its inlet valve (an interlock decision needs both, in time order)
        self.il_group = np.array([find(i) for i in range(n)], dtype=np.int64)
        self.has_il_group = bool(np.any(self.il_group != np.arange(n)))

        # ---- numpy columns for the fast path
        self.thr = np.zeros((n, 4), dtype=np.float64)  # slot = side*2 + level
        self.nlev = np.zeros((n, 2), dtype=np.int64)
        self.strict = np.zeros(n, dtype=bool)
        self.deadband = np.zeros(n, dtype=np.float64)
        self.latch_rule = np.zeros(n, dtype=bool)
        self.has_fault = np.zeros(n, dtype=bool)
        self.range_lo = np.full(n, -math.inf)
        self.range_hi = np.full(n, math.inf)
        self.has_offline = np.zeros(n, dtype=bool)
        self.offline_ms = np.full(n, NO_TS, dtype=np.int64)
        self.has_stuck = np.zeros(n, dtype=bool)
        self.stuck_ms = np.zeros(n, dtype=np.int64)
        self.stuck_tol = np.zeros(n, dtype=np.float64)
        self.has_rate = np.zeros(n, dtype=bool)
        self.max_rise = np.full(n, math.inf)
        self.max_fall = np.full(n, math.inf)
        self.is_event = np.zeros(n, dtype=bool)
        self.interlocked = np.zeros(n, dtype=bool)  # tank or valve of an interlock
        for i, pr in enumerate(self.rules):
            lim = pr.limit
            if lim is not None:
                for s, side in enumerate((lim.high, lim.low)):
                    self.nlev[i, s] = len(side)
                    for j, t in enumerate(side):
                        self.thr[i, s * 2 + j] = t.value
                self.strict[i] = lim.strict
                self.deadband[i] = lim.deadband
                self.latch_rule[i] = lim.latch
            if pr.fault is not None:
                self.has_fault[i] = True
                if pr.fault.range_low is not None:
                    self.range_lo[i] = pr.fault.range_low
                if pr.fault.range_high is not None:
                    self.range_hi[i] = pr.fault.range_high
            if pr.offline is not None:
                self.has_offline[i] = True
                self.offline_ms[i] = pr.offline.timeout_ms
            if pr.stuck is not None:
                self.has_stuck[i] = True
                self.stuck_ms[i] = pr.stuck.for_ms
                self.stuck_tol[i] = pr.stuck.tolerance
            if pr.rate is not None:
                self.has_rate[i] = True
                self.max_rise[i] = pr.rate.max_rise
                self.max_fall[i] = pr.rate.max_fall
            self.is_event[i] = pr.event is not None
            if pr.interlock is not None:
                self.interlocked[i] = True
                self.interlocked[self.valve_of[i]] = True
        self.has_limit = self.nlev.sum(axis=1) > 0
        self.has_interlock = np.array(self.valve_of) >= 0
        self.gw_timeout = np.array([g.timeout_ms for g in self.gw_rules], dtype=np.int64)
        self.gw_window = np.array([g.window_ms for g in self.gw_rules], dtype=np.int64)
        # the same as Python lists, for the per-reading machine (numpy scalars are slow there)
        self.gw_of_l: list[int] = self.gw_of.tolist()
        self.gw_timeout_l: list[int] = self.gw_timeout.tolist()
        self.gw_window_l: list[int] = self.gw_window.tolist()
