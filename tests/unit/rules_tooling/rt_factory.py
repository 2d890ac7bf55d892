"""Hand-made alarm events and registries for the rules-tooling unit tests."""

from __future__ import annotations

from pathlib import Path

from ingest.model import Industry, Point, Registry
from rules.model import AlarmEvent, AlarmState, Kind, Level

REPO = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000_000  # a fixed instant (2027-01-15T08:00:00Z); tests never read the clock
S = 1000
MIN = 60 * S


def alarm(
    t_ms: int,
    tag: str,
    state: str = "firing",
    *,
    level: str | None = "L1",
    kind: str = "limit",
    ent: str = "E1",
    hazard: str = "HZ1",
    zone: str = "Z1",
    parameter: str = "gas.CH4",
    rule: str | None = None,
    alarm_id: str | None = None,
    value: float | None = 30.0,
    backfill: bool = False,
) -> AlarmEvent:
    return AlarmEvent(
        ts_ms=t_ms,
        enterprise_code=ent,
        hazard_code=hazard,
        zone=zone,
        tag=tag,
        parameter=parameter,
        kind=Kind(kind),
        level=Level(level) if level else None,
        state=AlarmState(state),
        value=value,
        threshold=25.0,
        unit="%LEL",
        rule=rule or f"{kind}.{parameter}",
        alarm_id=alarm_id or f"A-{ent}-{tag}-{kind}",
        backfill=backfill,
    )


def point(
    tag: str,
    parameter: str = "gas.CH4",
    *,
    ent: str = "E1",
    hazard: str = "HZ1",
    zone: str = "Z1",
    gateway: str = "GW1",
    unit: str = "%LEL",
    level: int | None = 2,
    **kw,
) -> Point:
    return Point(
        enterprise_code=ent,
        enterprise_name=f"{ent} Co.",
        industry=Industry.HAZCHEM,
        district="D1",
        hazard_code=hazard,
        hazard_level=level if hazard else None,
        zone=zone,
        gateway_code=gateway,
        tag=tag,
        parameter=parameter,
        unit=unit,
        **kw,
    )


def registry(*points: Point) -> Registry:
    return Registry(points, version="test")
