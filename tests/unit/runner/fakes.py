"""Small stand-ins for the pure cores, with the documented API shapes, so the runner's own
logic (batching, commit/ack order, ticks, reload, shutdown) is tested in isolation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace


@dataclass(frozen=True)
class FakeReading:
    key: str
    ts_ms: int
    value: float
    received_ms: int = 0


class FakeNormalizer:
    """Payload b"<key>=<value>"; b"bad" is rejected."""

    def normalize(self, topic, payload, received_ms):
        if payload == b"bad":
            dl = SimpleNamespace(reason="malformed_json", detail="bad", topic=topic)
            return SimpleNamespace(readings=[], rejects=[dl])
        key, _, v = payload.decode().partition("=")
        return SimpleNamespace(
            readings=[FakeReading(key, received_ms, float(v), received_ms)], rejects=[]
        )


@dataclass
class FakeState:
    last: dict = field(default_factory=dict)  # key -> [ts, value]
    firing: dict = field(default_factory=dict)  # alarm id -> kind

    def to_bytes(self):
        return json.dumps({"last": self.last, "firing": self.firing}).encode()


def _ev(kind, key, state, ts, value=None):
    return SimpleNamespace(
        kind=kind,
        level="H" if kind == "limit" else None,
        state=state,
        alarm_id=f"{kind}:{key}",
        ts_ms=ts,
        value=value,
    )


class FakeEngine:
    """limit: value > limit fires, <= clears; offline: no reading for `offline_ms`."""

    def __init__(self, limit=10.0, offline_ms=5000, version="v1"):
        self.limit, self.offline_ms = limit, offline_ms
        self.version = version

    def initial_state(self, start_ms):
        return FakeState()

    def load_state(self, data):
        d = json.loads(data)
        return FakeState(d["last"], d["firing"])

    def process(self, state, readings, now_ms):
        st = FakeState(dict(state.last), dict(state.firing))
        out = []
        for r in readings:
            st.last[r.key] = [r.ts_ms, r.value]
            aid = f"limit:{r.key}"
            if r.value > self.limit and aid not in st.firing:
                st.firing[aid] = "limit"
                out.append(_ev("limit", r.key, "firing", r.ts_ms, r.value))
            elif r.value <= self.limit and aid in st.firing:
                del st.firing[aid]
                out.append(_ev("limit", r.key, "cleared", r.ts_ms, r.value))
            oid = f"offline:{r.key}"
            if oid in st.firing:
                del st.firing[oid]
                out.append(_ev("offline", r.key, "cleared", r.ts_ms))
        st2, more = self.tick(st, now_ms)
        return st2, out + more

    def tick(self, state, now_ms):
        st = FakeState(dict(state.last), dict(state.firing))
        out = []
        for key, (ts, _v) in sorted(st.last.items()):
            oid = f"offline:{key}"
            if now_ms - ts >= self.offline_ms and oid not in st.firing:
                st.firing[oid] = "offline"
                out.append(_ev("offline", key, "firing", now_ms))
        return st, out


@dataclass
class FakeWarningState:
    open: dict = field(default_factory=dict)

    def to_bytes(self):
        return json.dumps(self.open).encode()

    @classmethod
    def load(cls, data):
        return cls(json.loads(data))


class FakeWarnings:
    """A firing limit alarm opens a yellow warning per key; close() closes it."""

    def initial_state(self):
        return FakeWarningState()

    def on_alarms(self, state, events, now_ms):
        st = FakeWarningState(dict(state.open))
        out = []
        for e in events:
            if e.kind == "limit" and e.state == "firing" and e.alarm_id not in st.open:
                wid = "w:" + e.alarm_id
                st.open[e.alarm_id] = wid
                out.append(SimpleNamespace(warning_id=wid, colour="yellow", state="raised"))
        return st, out

    def tick(self, state, now_ms):
        return state, []

    def close(self, state, warning_id, now_ms):
        if warning_id not in state.open.values():
            raise KeyError(warning_id)
        st = FakeWarningState({k: v for k, v in state.open.items() if v != warning_id})
        return st, [SimpleNamespace(warning_id=warning_id, colour="yellow", state="closed")]


class FakeAlerts:
    """Records what the alerts stage was told; idempotent on (alarm_id, state) like the real one."""

    def __init__(self):
        self.alarms: list = []
        self.warnings: list = []
        self.seen: set = set()
        self.ticks = 0

    def on_alarm(self, ev, now_ms):
        k = (ev.alarm_id, ev.state, ev.ts_ms)
        if k not in self.seen:
            self.seen.add(k)
            self.alarms.append(ev)

    def on_warning(self, ev, now_ms):
        self.warnings.append(ev)

    def tick(self, now_ms):
        self.ticks += 1


def fake_stages(alerts=None, engine=None):
    from hazardwatch.runner import Stages

    eng = engine or FakeEngine()
    return Stages(
        registry=None,
        ruleset=SimpleNamespace(version=eng.version),
        normalizer=FakeNormalizer(),
        engine=eng,
        warnings=FakeWarnings(),
        alerts=alerts,
    )
