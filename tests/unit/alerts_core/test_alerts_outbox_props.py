"""Property tests of the outbox under a rate-limited, flaky robot: whatever the arrival
pattern and the failures, no window carries more than the limit, every alarm reaches the
robot exactly once (alone or inside a digest) and nothing is left behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerts.channels.testing import RecordingChannel
from alerts.model import EventType, Notification, Verdict
from alerts.outbox import Outbox
from alerts.store import AlertStore
from tests.unit.alerts_core.conftest import T0

LIMIT = (20, 60.0)


def _note(i: int, created: int) -> Notification:
    return Notification(
        id=f"n{i:03d}",
        channel="wecom",
        recipient="robot",
        event_type=EventType.RAISED,
        subject_kind="alarm",
        subject_id=f"S{i:03d}",
        enterprise_code="E001",
        title=f"alarm {i}",
        body="b",
        created_ms=created,
    )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    arrivals=st.lists(st.integers(min_value=0, max_value=180), min_size=1, max_size=60),
    failures=st.lists(st.booleans(), max_size=40),
)
def test_rate_limited_robot_gets_every_alarm_once_within_the_limit(arrivals, failures):
    arrivals = sorted(arrivals)
    script = iter(failures)

    def answer(n, attempt):
        # the robot answers 45009 ("too many") on the scripted attempts
        if next(script, False):
            return Verdict.retry("errcode 45009", retry_after_s=60)
        return Verdict.delivered(200)

    with tempfile.TemporaryDirectory() as d:
        store = AlertStore(Path(d) / "o.sqlite")
        ob = Outbox(store)
        robot = RecordingChannel("wecom", answer, rate_limit=LIMIT)
        sent_at: list[int] = []
        orig = robot.send

        def timed(n):
            sent_at.append(clock)  # the simulated time of this attempt
            return orig(n)

        robot.send = timed
        pending = list(enumerate(arrivals))
        clock = T0
        while clock <= T0 + 20 * 60_000:
            while pending and T0 + pending[0][1] * 1000 <= clock:
                i, _ = pending.pop(0)
                ob.enqueue([_note(i, clock)])
            ob.deliver_due(clock, {"wecom": robot})
            clock += 5_000
        for t in sent_at:
            assert sum(1 for u in sent_at if t <= u < t + 60_000) <= LIMIT[0]
        covered: list[str] = []
        for n in robot.delivered:
            if n.event_type is EventType.DIGEST:
                covered += n.payload["subjects"]
            else:
                covered.append(n.subject_id)
        assert sorted(covered) == [f"S{i:03d}" for i in range(len(arrivals))]
        assert store.outbox_depth() == 0
        store.close()
