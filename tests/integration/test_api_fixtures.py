"""The world the API tests share (no tests here): three enterprises in two districts, alarms
and a warning applied through the real `AlertService` into a real SQLite store, and one token
per role. Fixtures are imported by `test_api_*.py` and `tests/e2e/test_ack_page.py`."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from alerts.api import create_app
from alerts.auth import LinkSigner, Principal, Role, TokenAuth
from alerts.routing import parse_routing
from alerts.service import AlertService
from alerts.store import AlertStore
from ingest.model import Industry, Point, Registry
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState

T0 = 1_795_076_800_000  # 2026-11-19T08:26:40Z
MIN = 60_000

TOKENS = {
    "tok-admin-0123456789": Principal("ops", Role.ADMIN),
    "tok-e001-0123456789": Principal("E001 安全科", Role.ENTERPRISE, frozenset({"E001"})),
    "tok-e002-0123456789": Principal("E002 安全科", Role.ENTERPRISE, frozenset({"E002"})),
    "tok-kfq-0123456789": Principal("开发区值班室", Role.DUTY, districts=frozenset({"KFQ"})),
    "tok-yh-0123456789": Principal("盐化工园值班室", Role.DUTY, districts=frozenset({"YH"})),
}
ADMIN, E001, E002, DUTY_KFQ, DUTY_YH = (f"Bearer {t}" for t in TOKENS)
LINK_SECRET = "link-secret-for-tests-4f9a"


def _point(ent: str, tag: str, district: str, hazard: str = "H01") -> Point:
    return Point(
        enterprise_code=ent,
        enterprise_name=f"{ent} 化工有限公司",
        industry=Industry.HAZCHEM,
        district=district,
        hazard_code=hazard,
        hazard_level=2,
        zone="Z1",
        gateway_code="GW1",
        tag=tag,
        parameter="gas.NH3",
        unit="mg/m3",
        range_low=0,
        range_high=100,
        h=30,
        hh=40,
    )


def alarm_event(
    alarm_id: str,
    ent: str,
    tag: str,
    *,
    level: str = "L1",
    state: str = "firing",
    ts: int = T0,
    value: float = 35.0,
) -> AlarmEvent:
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code=ent,
        hazard_code="H01",
        zone="Z1",
        tag=tag,
        parameter="gas.NH3",
        kind=Kind.LIMIT,
        level=Level(level),
        state=AlarmState(state),
        value=value,
        threshold=30.0,
        unit="mg/m3",
        rule="gas.NH3.limit",
        alarm_id=alarm_id,
        message=f"{tag} 氨气{'二' if level == 'L2' else '一'}级报警",
    )


@dataclass
class World:
    store: AlertStore
    service: AlertService
    links: LinkSigner
    now: list[int] = field(default_factory=lambda: [T0 + 5 * MIN])

    def clock(self) -> int:
        return self.now[0]

    def app(self):
        return create_app(
            self.service,
            self.store,
            TokenAuth.from_tokens(TOKENS),
            links=self.links,
            clock_ms=self.clock,
        )

    def link(self, subject_id: str, ttl_ms: int = 3600_000) -> str:
        return f"/a/{subject_id}?t={self.links.sign(subject_id, self.clock() + ttl_ms)}"


def build_world(path: Path) -> World:
    registry = Registry(
        [
            _point("E001", "AT-1", "KFQ"),
            _point("E001", "AT-2", "KFQ"),
            _point("E002", "AT-9", "KFQ"),
            _point("E003", "AT-5", "YH"),
        ],
        version="api-test",
    )
    store = AlertStore(path)
    service = AlertService(store, parse_routing({}), registry, public_url="http://127.0.0.1")
    service.on_alarm(alarm_event("a-e001-1", "E001", "AT-1"), T0)
    service.on_alarm(alarm_event("a-e001-2", "E001", "AT-2", level="L2", ts=T0 + MIN), T0 + MIN)
    service.on_alarm(alarm_event("a-e002-1", "E002", "AT-9", ts=T0 + 2 * MIN), T0 + 2 * MIN)
    service.on_alarm(alarm_event("a-e003-1", "E003", "AT-5", ts=T0 + 3 * MIN), T0 + 3 * MIN)
    service.on_warning(
        WarningEvent(
            ts_ms=T0 + MIN,
            warning_id="w-e001-1",
            enterprise_code="E001",
            hazard_code="H01",
            colour=Colour.ORANGE,
            previous=None,
            state=WarningState.RAISED,
            reason="二级报警",
            alarm_ids=("a-e001-2",),
        ),
        T0 + MIN,
    )
    service.on_warning(
        WarningEvent(
            ts_ms=T0 + 2 * MIN,
            warning_id="w-e002-1",
            enterprise_code="E002",
            hazard_code="H01",
            colour=Colour.BLUE,
            previous=None,
            state=WarningState.RAISED,
            reason="一级报警",
            alarm_ids=("a-e002-1",),
        ),
        T0 + 2 * MIN,
    )
    return World(store, service, LinkSigner(LINK_SECRET))


@pytest.fixture(name="world")
def world_fixture(tmp_path: Path):
    # The store fsyncs every commit (synchronous=FULL); on tmpfs that costs nothing, which keeps
    # these tests about the API rather than the disk.
    shm = Path("/dev/shm")
    d = Path(tempfile.mkdtemp(prefix="hw-api-", dir=shm)) if shm.is_dir() else tmp_path
    w = build_world(d / "alerts.sqlite")
    yield w
    w.store.close()
    if d != tmp_path:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(name="client")
def client_fixture(world: World):
    with TestClient(world.app()) as c:
        yield c
