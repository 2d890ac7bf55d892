"""Detection quality: match the alarms a run produced to the incidents the simulator injected.

Per incident: detected or missed, by which alarm, time to detect, and which expected alarm
kinds never came. Every alarm episode not explained by an incident (same enterprise and
subject, inside the incident's time span plus a grace period) is a false alarm, counted per
1,000 point-days of monitored data. Pure: truth and alarms in, a `Score` out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from hazardwatch.sim.incidents import Expect, Incident
from ingest.model import datetime_to_ms, iso_ms
from rules.model import AlarmEvent, AlarmState, Kind

DAY_MS = 86_400_000
#: Alarms a little after an incident's end still belong to it (an offline alarm fires a few
#: intervals after the silence began; a latched alarm clears late).
DEFAULT_GRACE_MS = 15 * 60_000

# Alarms about a group rather than one point: their tag is a zone or a gateway.
_GROUP_KINDS = frozenset({Kind.VOTE, Kind.VOTE_DEGRADED, Kind.GATEWAY, Kind.INTERLOCK})


@dataclass(frozen=True, slots=True)
class IncidentResult:
    incident: Incident
    detected_by: AlarmEvent | None  # the first alarm matching one of the expectations
    first_by_expectation: tuple[tuple[Expect, AlarmEvent | None], ...]
    episodes: int  # alarm episodes explained by this incident

    @property
    def detected(self) -> bool:
        return self.detected_by is not None

    @property
    def time_to_detect_s(self) -> float | None:
        if self.detected_by is None:
            return None
        return (self.detected_by.ts_ms - self.incident.start_ms) / 1000.0

    @property
    def missing(self) -> tuple[Expect, ...]:
        """Expected alarm kinds/levels that never came (the incident may still be detected)."""
        return tuple(e for e, a in self.first_by_expectation if a is None)


@dataclass(frozen=True, slots=True)
class Score:
    results: tuple[IncidentResult, ...]
    false_alarms: tuple[AlarmEvent, ...]  # first firing event of each unexplained episode
    episodes: int  # all alarm episodes in the run
    point_days: float | None

    @property
    def detected(self) -> int:
        return sum(r.detected for r in self.results)

    @property
    def missed(self) -> int:
        return len(self.results) - self.detected

    @property
    def all_detected(self) -> bool:
        return self.missed == 0

    @property
    def all_expectations_met(self) -> bool:
        return all(r.detected and not r.missing for r in self.results)

    @property
    def false_per_1000_point_days(self) -> float | None:
        if not self.point_days:
            return None
        return len(self.false_alarms) / self.point_days * 1000.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data for `--json` and benchmark notes."""
        return {
            "incidents": len(self.results),
            "detected": self.detected,
            "missed": self.missed,
            "all_expectations_met": self.all_expectations_met,
            "episodes": self.episodes,
            "false_alarms": len(self.false_alarms),
            "point_days": self.point_days,
            "false_per_1000_point_days": self.false_per_1000_point_days,
            "results": [
                {
                    "id": r.incident.id,
                    "kind": str(r.incident.kind),
                    "enterprise_code": r.incident.enterprise_code,
                    "subject": subject(r.incident),
                    "start": iso_ms(r.incident.start_ms),
                    "detected": r.detected,
                    "time_to_detect_s": r.time_to_detect_s,
                    "detected_by": _alarm_brief(r.detected_by),
                    "missing": [msgspec.to_builtins(e) for e in r.missing],
                    "episodes": r.episodes,
                }
                for r in self.results
            ],
            "false": [_alarm_brief(a) for a in self.false_alarms],
        }


def subject(incident: Incident) -> str:
    """What a person calls the incident's subject: a zone, a gateway or a tag."""
    if incident.kind in ("gateway_outage", "backfill"):
        return incident.gateway
    if incident.kind == "leak":
        return incident.zone
    return incident.tags[0] if incident.tags else incident.zone


def _alarm_brief(a: AlarmEvent | None) -> dict[str, Any] | None:
    if a is None:
        return None
    return {
        "ts": iso_ms(a.ts_ms),
        "enterprise_code": a.enterprise_code,
        "tag": a.tag,
        "kind": str(a.kind),
        "level": None if a.level is None else str(a.level),
        "rule": a.rule,
        "value": a.value,
        "alarm_id": a.alarm_id,
    }


def explains(incident: Incident, alarm: AlarmEvent, grace_ms: int = DEFAULT_GRACE_MS) -> bool:
    """True if `alarm` is about the incident's subject and inside its time span (+ grace)."""
    if alarm.enterprise_code != incident.enterprise_code:
        return False
    if not incident.start_ms <= alarm.ts_ms <= incident.end_ms + grace_ms:
        return False
    if alarm.tag in incident.tags:
        return True
    if alarm.tag and alarm.tag in (incident.zone, incident.gateway):
        return True
    if alarm.kind not in _GROUP_KINDS:
        return False
    # A silent or holding gateway degrades the vote of every zone behind it.
    return alarm.zone in ((incident.zone,) if incident.zone else ()) or alarm.zone in (
        incident.params.get("zones") or ()
    )


def score(
    truth: Sequence[Incident],
    alarms: Iterable[AlarmEvent],
    *,
    point_days: float | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
) -> Score:
    """Match alarms to incidents. `point_days` (points x days monitored) turns the false-alarm
    count into a rate; without it the rate is None."""
    firing = sorted(
        (a for a in alarms if a.state == AlarmState.FIRING),
        key=lambda a: (a.ts_ms, a.enterprise_code, a.tag, a.rule),
    )
    first_of_episode: dict[str, AlarmEvent] = {}
    for a in firing:
        first_of_episode.setdefault(a.alarm_id, a)
    results = []
    explained: set[str] = set()
    # Only an enterprise's own alarms can explain its incidents: index once (a week of a big
    # city has many alarms and incidents).
    by_enterprise: dict[str, list[AlarmEvent]] = {}
    for a in firing:
        by_enterprise.setdefault(a.enterprise_code, []).append(a)
    for incident in truth:
        mine = [
            a
            for a in by_enterprise.get(incident.enterprise_code, ())
            if explains(incident, a, grace_ms)
        ]
        episodes = {a.alarm_id for a in mine}
        explained |= {
            aid for aid in episodes if explains(incident, first_of_episode[aid], grace_ms)
        }
        firsts = tuple(
            (e, next((a for a in mine if e.matches(str(a.kind), _lvl(a))), None))
            for e in incident.expect
        )
        hits = [a for _, a in firsts if a is not None]
        detected_by = min(hits, key=lambda a: a.ts_ms) if hits else None
        results.append(IncidentResult(incident, detected_by, firsts, len(episodes)))
    false = tuple(a for aid, a in first_of_episode.items() if aid not in explained)
    return Score(tuple(results), false, len(first_of_episode), point_days)


def _lvl(a: AlarmEvent) -> str | None:
    return None if a.level is None else str(a.level)


# -- reading alarm files ------------------------------------------------------------------------


class AlarmFileError(ValueError):
    """An alarm events file could not be read; the message names the file and line."""


def read_alarms(path: Path | str) -> list[AlarmEvent]:
    """Alarm events from a JSON-lines file as `hazardwatch replay --out` writes them
    (DESIGN.md "Alarm events": `ts` ISO 8601 or `ts_ms`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AlarmFileError(f"{path}: cannot read alarm events: {exc.strerror}") from None
    out = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = msgspec.json.decode(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
            if "ts_ms" not in rec:
                ts = rec.pop("ts", None)
                if not isinstance(ts, str):
                    raise ValueError(f"expected 'ts' as ISO 8601 text, got {ts!r}")
                rec["ts_ms"] = datetime_to_ms(datetime.fromisoformat(ts.replace("Z", "+00:00")))
            else:
                rec.pop("ts", None)
            out.append(msgspec.convert(rec, AlarmEvent))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise AlarmFileError(f"{path}:{n}: not an alarm event: {exc}") from None
    return out
