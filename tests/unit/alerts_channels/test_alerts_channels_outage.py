"""The delivery acceptance over real HTTP: the real service and outbox sending through the real
channels to the local receivers, all on one simulated clock. The platform down for an hour,
WeCom answering 45009, SMS timing out: once they recover every notification is delivered, none
twice (the receivers count idempotency keys), in order per alarm. And a burst of 30 alarms in a
minute reaches one WeCom robot as at most 20 messages a minute with no alarm missing."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from alerts.channels.aliyun_sms import AliyunSmsChannel
from alerts.channels.platform import PlatformChannel
from alerts.channels.receivers import AliyunSmsReceiver, PlatformReceiver, WecomReceiver
from alerts.channels.wecom import WecomChannel
from alerts.routing import parse_routing
from alerts.service import AlertService
from alerts.store import AlertStore
from ingest.model import Industry, Point, Registry
from rules.model import AlarmEvent, AlarmState, Kind, Level

T0 = 1_795_076_800_000
MIN = 60_000
SECRET, ROBOT_KEY, SMS_ID, SMS_SECRET = "plat-secret-x1", "robot-key-x2", "LTAI-x3", "sms-secret-x4"


class SimClock:
    def __init__(self) -> None:
        self.ms = T0

    def __call__(self) -> float:  # what channels and receivers read: epoch seconds
        return self.ms / 1000.0


def _alarm(aid: str, tag: str, ts: int, state: str = "firing") -> AlarmEvent:
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code="E001",
        hazard_code="H01",
        zone="Z1",
        tag=tag,
        parameter="gas.NH3",
        kind=Kind.LIMIT,
        level=Level.L1,
        state=AlarmState(state),
        value=35.0 if state == "firing" else 3.0,
        threshold=30.0,
        unit="mg/m3",
        rule="gas.NH3.limit",
        alarm_id=aid,
        message=f"{tag} 氨气一级报警",
    )


@pytest.fixture
def rig():
    shm = Path("/dev/shm")
    d = Path(tempfile.mkdtemp(prefix="hw-outage-", dir=shm if shm.is_dir() else None))
    clock = SimClock()
    registry = Registry(
        [
            Point(
                enterprise_code="E001",
                enterprise_name="E001 化工",
                industry=Industry.HAZCHEM,
                district="KFQ",
                hazard_code="H01",
                hazard_level=2,
                zone="Z1",
                gateway_code="GW1",
                tag=f"AT-{i}",
                parameter="gas.NH3",
                unit="mg/m3",
                range_low=0,
                range_high=100,
                h=30,
                hh=40,
            )
            for i in range(40)
        ],
        version="outage",
    )
    routing = parse_routing(
        {
            "enterprises": {
                "E001": {
                    "name": "E001 化工",
                    "duty_robot": "duty-E001",
                    "operator": {"name": "操作负责人", "phone": "+8613800000001"},
                }
            },
        }
    )
    store = AlertStore(d / "alerts.sqlite")
    service = AlertService(store, routing, registry, public_url="https://hw.example")
    platform_rx = PlatformReceiver(SECRET, clock=clock).start()
    wecom_rx = WecomReceiver([ROBOT_KEY], clock=clock).start()
    sms_rx = AliyunSmsReceiver({SMS_ID: SMS_SECRET}, clock=clock).start()
    channels = {
        "platform": PlatformChannel(platform_rx.url, SECRET, timeout_s=2, clock=clock),
        "wecom": WecomChannel(
            {"duty-E001": ROBOT_KEY}, base_url=wecom_rx.url, timeout_s=2, clock=clock
        ),
        # A short timeout: the SMS gateway "timing out" costs the test little real time.
        "aliyun_sms": AliyunSmsChannel(
            SMS_ID, SMS_SECRET, "潜江应急", "SMS_1", endpoint=sms_rx.url, timeout_s=0.2, clock=clock
        ),
    }
    yield clock, service, store, channels, platform_rx, wecom_rx, sms_rx
    for rx in (platform_rx, wecom_rx, sms_rx):
        rx.stop()
    for ch in channels.values():
        ch.close()
    store.close()
    shutil.rmtree(d, ignore_errors=True)


def test_outage_then_recovery_delivers_everything_once_in_order(rig):
    clock, service, store, channels, platform_rx, wecom_rx, sms_rx = rig
    up_at = T0 + 60 * MIN
    platform_rx.go_down(503)
    wecom_rx.rate_limit_next(6)
    sms_rx.hang_next(4, seconds=2.0)

    # Five alarms, each raised, acknowledged, cleared and disposed during the outage.
    for i in range(5):
        aid, tag, t = f"A{i}", f"AT-{i}", T0 + i * MIN
        clock.ms = t
        service.on_alarm(_alarm(aid, tag, t), t)
        service.acknowledge(aid, "值班员", t + 2 * MIN)
        service.on_alarm(_alarm(aid, tag, t + 5 * MIN, "cleared"), t + 5 * MIN)
        service.dispose(aid, "值班员", "process_fluctuation", "进料波动", t + 6 * MIN)
    expected = {i.notification.id: i.notification for i in store.list_outbox()}
    assert {n.channel for n in expected.values()} == {"platform", "wecom", "aliyun_sms"}

    clock.ms = T0
    while clock.ms <= T0 + 120 * MIN:
        if clock.ms >= up_at:
            platform_rx.come_up()
        service.outbox.deliver_due(clock.ms, channels)
        clock.ms += 10_000

    # Every channel really failed during the outage...
    assert platform_rx.faults_served > 0 and wecom_rx.rate_limited == 6
    assert sms_rx.faults_served == 4
    # ...and once recovered, every notification arrived exactly once, signatures verified.
    by_channel = {"platform": platform_rx, "wecom": wecom_rx, "aliyun_sms": sms_rx}
    for name, rx in by_channel.items():
        want = {nid for nid, n in expected.items() if n.channel == name}
        assert set(rx.by_key) == want, name
        assert rx.duplicates == 0 and rx.rejected == [], name
    assert {i.state for i in store.list_outbox()} == {"delivered"}
    # The platform saw each alarm's life in order, and nothing before it came back.
    for i in range(5):
        assert platform_rx.events_for(f"A{i}") == ["raised", "acknowledged", "cleared", "disposed"]
    assert min(a.at for a in platform_rx.accepted) >= up_at / 1000


def test_thirty_alarms_in_a_minute_reach_the_robot_within_its_limit_none_missing(rig):
    clock, service, _store, channels, platform_rx, wecom_rx, _sms_rx = rig
    for i in range(30):  # one every 2 s, all for E001's one duty robot
        clock.ms = T0 + i * 2_000
        service.on_alarm(_alarm(f"B{i:02d}", f"AT-{i}", clock.ms), clock.ms)
        service.outbox.deliver_due(clock.ms, channels)
    while clock.ms < T0 + 5 * MIN:
        clock.ms += 1_000
        service.outbox.deliver_due(clock.ms, channels)

    # The robot itself enforces 20 a minute (45009 beyond): it never had to.
    assert wecom_rx.rate_limited == 0
    assert wecom_rx.max_per_minute(ROBOT_KEY) <= 20
    assert len([a for a in wecom_rx.accepted if a.at < (T0 + MIN) / 1000]) <= 20
    contents = "\n".join(wecom_rx.contents())
    missing = [f"B{i:02d}" for i in range(30) if f"B{i:02d}" not in contents]
    assert missing == [], f"alarms in no WeCom message or digest: {missing}"
    assert any("【汇总】" in c for c in wecom_rx.contents())  # the burst was digested
    assert wecom_rx.duplicates == 0 and platform_rx.delivered == 30
