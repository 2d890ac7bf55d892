"""Property test of the service: any interleaving of alarm events, human actions, timers and
deliveries keeps the records consistent, the journal intact, and sends nothing twice; a
replay of the same events afterwards changes nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.channels.testing import RecordingChannel
from alerts.journal import Journal
from alerts.lifecycle import Phase
from alerts.routing import load_routing
from alerts.service import AlertError, AlertService
from alerts.store import AlertStore
from ingest.model import Registry
from tests.unit.alerts_core.conftest import DATA, MIN, T0, alarm, point

IDS = ("A1", "A2", "A3")
TAGS = {"A1": "AT-1", "A2": "AT-2", "A3": "LT-1"}

ops = st.lists(
    st.one_of(
        st.tuples(st.just("fire"), st.sampled_from(IDS), st.sampled_from(["L1", "L2"])),
        st.tuples(st.just("clear"), st.sampled_from(IDS), st.none()),
        st.tuples(st.just("ack"), st.sampled_from(IDS), st.none()),
        st.tuples(
            st.just("dispose"),
            st.sampled_from(IDS),
            st.sampled_from(["real_alarm_handled", "process_fluctuation"]),
        ),
        st.tuples(st.just("shelve"), st.sampled_from(IDS), st.none()),
        st.tuples(st.just("tick"), st.none(), st.integers(1, 90)),
        st.tuples(st.just("deliver"), st.none(), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
def test_any_interleaving_stays_consistent(ops):
    registry = Registry(
        [
            point("E001", "AT-1"),
            point("E001", "AT-2"),
            point("E001", "LT-1", gw="GW2", parameter="level", hazard="H02"),
        ]
    )
    routing = load_routing(DATA / "routing.yaml")
    chans = {c: RecordingChannel(c) for c in ("platform", "aliyun_sms", "wecom")}
    with tempfile.TemporaryDirectory() as d:
        store = AlertStore(Path(d) / "a.sqlite")
        svc = AlertService(store, routing, registry, public_url="http://x")
        now = T0
        events = []
        for op, aid, arg in ops:
            now += 1_000
            try:
                if op == "fire":
                    ev = alarm(aid, level=arg, tag=TAGS[aid], ts=now)
                    events.append(ev)
                    svc.on_alarm(ev, now)
                elif op == "clear":
                    ev = alarm(aid, state="cleared", tag=TAGS[aid], ts=now)
                    events.append(ev)
                    svc.on_alarm(ev, now)
                elif op == "ack":
                    svc.acknowledge(aid, "u", now)
                elif op == "dispose":
                    svc.dispose(aid, "u", arg, "", now)
                elif op == "shelve":
                    svc.shelve(aid, "u", "noisy", now + 30 * MIN, now)
                elif op == "tick":
                    now += arg * MIN
                    svc.tick(now)
                else:
                    svc.outbox.deliver_due(now, chans)
            except AlertError:
                pass  # e.g. acknowledging an unknown or closed alarm: refused, nothing changes
        for rec in store.list_alarms(limit=None):
            assert (rec.phase is Phase.CLOSED) == (rec.disposition is not None)
            if rec.phase is Phase.ACKNOWLEDGED:
                assert rec.acked_ms is not None and rec.active
            if rec.phase is Phase.FIRING:
                assert rec.acked_ms is None or rec.latched
            assert rec.tier <= 3
        # a replay of every input event changes nothing and stores nothing new
        before = len(store.list_outbox())
        head = store.journal_head()
        for ev in events:
            assert svc.on_alarm(ev, now + 1) == []
        assert len(store.list_outbox()) == before and store.journal_head() == head
        svc.outbox.deliver_due(now + 24 * 3600_000, chans)
        assert all(ch.duplicates == 0 for ch in chans.values())
        assert Journal(store).verify().ok
        store.close()
