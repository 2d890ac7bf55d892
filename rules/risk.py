"""Enterprise dynamic risk level (红橙黄蓝): a pure, explainable score from weighted
contributions (installation grade, open warnings and their age, repeated alarms, disposition
timeliness, online rate, active filings). The weights are data in
`rules/packs/warning-defaults.yaml` (hazardwatch defaults, not regulatory values)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ingest.model import Registry
from rules.model import AlarmEvent, AlarmState, Colour

HOUR_MS = 3_600_000


class RiskWeights(BaseModel):
    """Weights and colour bands of the risk score (the `risk:` section of the warning config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grade_points: dict[str, float] = Field(default_factory=dict)  # "1".."4" -> points
    warning_points: dict[Colour, float] = Field(default_factory=dict)
    grade_factor: dict[str, float] = Field(default_factory=dict)  # "1".."4" | "none"
    warning_hour_points: float = Field(ge=0)
    warning_hour_cap: float = Field(ge=0)
    repeat_alarm_points: float = Field(ge=0)
    repeat_alarm_cap: float = Field(ge=0)
    overdue_disposition_points: float = Field(ge=0)
    overdue_disposition_cap: float = Field(ge=0)
    online_target: float = Field(gt=0, le=1)
    online_points_per_pct: float = Field(ge=0)
    online_cap: float = Field(ge=0)
    filing_points: float = Field(ge=0)
    filing_cap: float = Field(ge=0)
    bands: dict[Colour, float]
    floor_at_open_warning: bool = True

    @model_validator(mode="after")
    def _bands_rise_with_colour(self) -> RiskWeights:
        ordered = sorted(self.bands.items(), key=lambda kv: kv[0].rank)
        values = [v for _, v in ordered]
        if values != sorted(values):
            raise ValueError(
                "bands must not decrease from blue to red, got "
                + ", ".join(f"{c.value}={v:g}" for c, v in ordered)
            )
        grades = set(self.grade_points) | set(self.grade_factor)
        bad = sorted(g for g in grades if g not in {"1", "2", "3", "4", "none"})
        if bad:
            raise ValueError(f'grades are "1".."4" (or "none" in grade_factor), got {bad}')
        return self


@dataclass(frozen=True, slots=True)
class OpenWarning:
    """An open (not yet disposed) warning, as the risk score sees it."""

    warning_id: str
    enterprise_code: str
    hazard_code: str
    colour: Colour
    raised_ms: int
    hazard_level: int | None = None  # grade of its installation, None for enterprise-level


@dataclass(frozen=True, slots=True)
class RiskInputs:
    """What the score is computed from, for one enterprise at one instant."""

    enterprise_code: str
    now_ms: int
    installation_grades: Sequence[int | None] = ()  # GB 18218 grade of each installation
    open_warnings: Sequence[OpenWarning] = ()
    repeated_alarms: int = 0  # firings beyond the first per point in the last 24 h
    overdue_dispositions: int = 0  # warnings/alarms past their disposition deadline
    online_rate: float | None = None  # share of points online, 0..1; None = unknown
    active_filings: int = 0  # maintenance / start-up-shutdown filings in force


@dataclass(frozen=True, slots=True)
class RiskLevel:
    enterprise_code: str
    colour: Colour | None  # None: below the blue band
    score: float
    reasons: tuple[str, ...] = field(default=())
    rank: int = 0  # 0 none, 1 blue .. 4 red (the `risk` measurement's `rank` field)


def enterprise_risk(inputs: RiskInputs, weights: RiskWeights) -> RiskLevel:
    """Score one enterprise and map the score to a colour; every contribution is a reason."""
    parts: list[tuple[float, str]] = []
    grades = [g for g in inputs.installation_grades if g is not None]
    if grades:
        g = min(grades)  # grade 1 is the most dangerous
        pts = weights.grade_points.get(str(g), 0.0)
        if pts:
            parts.append((pts, f"grade-{g} major hazard installation (+{pts:g})"))

    for w in sorted(inputs.open_warnings, key=lambda w: (-w.colour.rank, w.raised_ms)):
        factor = weights.grade_factor.get(
            str(w.hazard_level) if w.hazard_level is not None else "none", 1.0
        )
        base = weights.warning_points.get(w.colour, 0.0) * factor
        hours = max(0, inputs.now_ms - w.raised_ms) / HOUR_MS
        age = min(weights.warning_hour_cap, weights.warning_hour_points * hours)
        where = w.hazard_code or "enterprise"
        parts.append(
            (
                base + age,
                f"open {w.colour.zh}/{w.colour.value} warning at {where} for {hours:.1f} h "
                f"(+{base + age:.1f})",
            )
        )

    _capped(
        parts,
        inputs.repeated_alarms,
        weights.repeat_alarm_points,
        weights.repeat_alarm_cap,
        "repeated alarm(s) in 24 h",
    )
    _capped(
        parts,
        inputs.overdue_dispositions,
        weights.overdue_disposition_points,
        weights.overdue_disposition_cap,
        "disposition(s) overdue",
    )
    _capped(
        parts,
        inputs.active_filings,
        weights.filing_points,
        weights.filing_cap,
        "active maintenance/start-up filing(s)",
    )
    if inputs.online_rate is not None and inputs.online_rate < weights.online_target:
        short_pct = (weights.online_target - inputs.online_rate) * 100
        pts = min(weights.online_cap, short_pct * weights.online_points_per_pct)
        parts.append(
            (
                pts,
                f"online rate {inputs.online_rate:.1%} below target "
                f"{weights.online_target:.1%} (+{pts:.1f})",
            )
        )

    score = round(sum(p for p, _ in parts), 3)
    colour = _band(score, weights.bands)
    reasons = [r for _, r in parts]
    if weights.floor_at_open_warning and inputs.open_warnings:
        top = max((w.colour for w in inputs.open_warnings), key=lambda c: c.rank)
        if colour is None or top.rank > colour.rank:
            colour = top
            reasons.append(f"at least {top.value}: an open {top.value} warning")
    return RiskLevel(
        inputs.enterprise_code, colour, score, tuple(reasons), colour.rank if colour else 0
    )


def _capped(parts: list[tuple[float, str]], n: int, each: float, cap: float, what: str) -> None:
    if n > 0 and each > 0:
        pts = min(cap, n * each)
        parts.append((pts, f"{n} {what} (+{pts:g})"))


def _band(score: float, bands: Mapping[Colour, float]) -> Colour | None:
    for colour in sorted(bands, key=lambda c: -c.rank):
        if score >= bands[colour]:
            return colour
    return None


def repeated_alarms(
    events: Iterable[AlarmEvent], enterprise_code: str, now_ms: int, window_s: float = 86_400
) -> int:
    """Alarm episodes of an enterprise in the window beyond the first per point and kind
    (a point that alarms 4 times in 24 h counts 3). Level changes are not new episodes."""
    lo = now_ms - int(window_s * 1000)
    seen: dict[tuple[str, str], set[str]] = {}
    for e in events:
        if (
            e.enterprise_code == enterprise_code
            and e.state == AlarmState.FIRING
            and lo < e.ts_ms <= now_ms
        ):
            seen.setdefault((e.tag, str(e.kind)), set()).add(e.alarm_id)
    return sum(len(ids) - 1 for ids in seen.values())


def risk_inputs(
    registry: Registry,
    enterprise_code: str,
    now_ms: int,
    *,
    open_warnings: Sequence[OpenWarning] = (),
    alarms: Iterable[AlarmEvent] = (),
    overdue_dispositions: int = 0,
    online_rate: float | None = None,
    active_filings: int = 0,
    repeat_window_s: float = 86_400,
) -> RiskInputs:
    """Gather the inputs for one enterprise: installation grades from the registry, its open
    warnings, repeated alarms from recent alarm events, and what the alerts stage knows."""
    grades: dict[str, int | None] = {}
    for p in registry.enterprise(enterprise_code):
        if p.hazard_code:
            grades[p.hazard_code] = p.hazard_level
    return RiskInputs(
        enterprise_code=enterprise_code,
        now_ms=now_ms,
        installation_grades=tuple(grades.values()),
        open_warnings=tuple(w for w in open_warnings if w.enterprise_code == enterprise_code),
        repeated_alarms=repeated_alarms(alarms, enterprise_code, now_ms, repeat_window_s),
        overdue_dispositions=overdue_dispositions,
        online_rate=online_rate,
        active_filings=active_filings,
    )
