"""Fixtures of the alerts-core unit tests: a small registry, the test routing file, a store in
a temporary directory, a service wired to it, and event builders. Time is always explicit."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerts.routing import load_routing
from alerts.service import AlertService
from alerts.store import AlertStore
from ingest.model import Industry, Point, Registry
from rules.model import AlarmEvent, AlarmState, Colour, Kind, Level, WarningEvent, WarningState

DATA = Path(__file__).resolve().parents[2] / "data" / "alerts"
T0 = 1_795_000_000_000  # a fixed instant (2026-11-18), every test counts from here
MIN = 60_000


def point(
    ent: str,
    tag: str,
    *,
    hazard: str = "H01",
    gw: str = "GW1",
    zone: str = "Z1",
    parameter: str = "gas.Cl2",
    district: str = "QJ-KFQ",
) -> Point:
    return Point(
        enterprise_code=ent,
        enterprise_name=f"{ent} 公司",
        industry=Industry.HAZCHEM,
        district=district,
        hazard_code=hazard,
        hazard_level=2,
        zone=zone,
        gateway_code=gw,
        tag=tag,
        parameter=parameter,
        unit="mg/m3",
        range_low=0,
        range_high=100,
        h=10,
        hh=20,
    )


@pytest.fixture
def registry() -> Registry:
    pts = [
        point("E001", "AT-1", gw="GW1"),
        point("E001", "AT-2", gw="GW1"),
        point("E001", "LT-1", gw="GW2", parameter="level", hazard="H02"),
        point("E002", "AT-9", gw="GWX", hazard="H09"),
    ]
    pts += [point("E001", f"AT-{i}", gw="GW3") for i in range(10, 45)]
    return Registry(pts, version="test")


@pytest.fixture
def routing():
    return load_routing(DATA / "routing.yaml")


@pytest.fixture
def store(tmp_path: Path) -> AlertStore:
    s = AlertStore(tmp_path / "alerts.sqlite")
    yield s
    s.close()


@pytest.fixture
def closed_warnings() -> list[tuple[str, int]]:
    return []


@pytest.fixture
def service(store, routing, registry, closed_warnings) -> AlertService:
    return AlertService(
        store,
        routing,
        registry,
        public_url="https://hw.example/",
        on_warning_closed=lambda wid, now: closed_warnings.append((wid, now)),
    )


def alarm(
    alarm_id: str = "A1",
    *,
    state: str = "firing",
    level: str | None = "L1",
    ts: int = T0,
    ent: str = "E001",
    tag: str = "AT-1",
    kind: str = "limit",
    hazard: str = "H01",
    parameter: str = "gas.Cl2",
    backfill: bool = False,
    rule: str = "gas.Cl2.limit",
    value: float | None = 12.0,
) -> AlarmEvent:
    return AlarmEvent(
        ts_ms=ts,
        enterprise_code=ent,
        hazard_code=hazard,
        zone="Z1",
        tag=tag,
        parameter=parameter,
        kind=Kind(kind),
        level=None if level is None else Level(level),
        state=AlarmState(state),
        value=value,
        threshold=10.0,
        unit="mg/m3",
        rule=rule,
        alarm_id=alarm_id,
        backfill=backfill,
    )


def warning(
    wid: str = "W1",
    *,
    colour: str = "yellow",
    state: str = "raised",
    ts: int = T0,
    ent: str = "E001",
    hazard: str = "H01",
    previous: str | None = None,
) -> WarningEvent:
    return WarningEvent(
        ts_ms=ts,
        warning_id=wid,
        enterprise_code=ent,
        hazard_code=hazard,
        colour=Colour(colour),
        previous=None if previous is None else Colour(previous),
        state=WarningState(state),
        reason="test",
        alarm_ids=("A1",),
    )


def recipients(notes, channel: str | None = None) -> set[str]:
    return {n.recipient for n in notes if channel is None or n.channel == channel}
