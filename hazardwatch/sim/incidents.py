"""Incidents the simulator injects, and the alarms each one should cause: leak plumes reaching
a zone's detectors with delays, tank overfill with and without interlock action, detector
fault, frozen value, gateway outage, chattering around a set point, an over-quota workshop and
late back-filled data.

An `Incident` is a plain record (it is also the ground-truth line); `apply()` changes a chunk
of normal readings in place; `make_incident()` picks parameters and `schedule_incidents()`
spreads incidents over a run on subjects that never share a gateway at the same time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

import msgspec
import numpy as np

from hazardwatch.sim.signals import Chunk, SignalModel
from ingest.model import Point, iso_ms

MIN_MS = 60_000


class IncidentKind(StrEnum):
    LEAK = "leak"
    OVERFILL = "overfill"  # level rises past HH, the interlock closes the inlet valve
    OVERFILL_NO_INTERLOCK = "overfill_no_interlock"  # ... and the valve stays open
    DETECTOR_FAULT = "detector_fault"
    FROZEN = "frozen"
    GATEWAY_OUTAGE = "gateway_outage"
    CHATTER = "chatter"
    OVER_QUOTA = "over_quota"
    BACKFILL = "backfill"


ALL_KINDS: tuple[IncidentKind, ...] = tuple(IncidentKind)

#: How long each kind lasts by default (ms from onset until the signal is normal again is a
#: little longer for leaks and overfills, which decay). A frozen value must outlast the
#: frozen-value rule's window, an outage the gateway's offline timeout.
DEFAULT_DURATION_MS: dict[IncidentKind, int] = {
    IncidentKind.LEAK: 6 * MIN_MS,
    IncidentKind.OVERFILL: 0,  # set by the fill rate and the interlock
    IncidentKind.OVERFILL_NO_INTERLOCK: 0,
    IncidentKind.DETECTOR_FAULT: 10 * MIN_MS,
    IncidentKind.FROZEN: 150 * MIN_MS,  # the shipped frozen-value rule waits 2 h
    IncidentKind.GATEWAY_OUTAGE: 15 * MIN_MS,
    IncidentKind.CHATTER: 10 * MIN_MS,
    IncidentKind.OVER_QUOTA: 10 * MIN_MS,
    IncidentKind.BACKFILL: 20 * MIN_MS,
}


class Expect(msgspec.Struct, frozen=True):
    """An alarm the incident should cause: its kind, and its level (None = any level)."""

    kind: str
    level: str | None = None

    def matches(self, kind: str, level: str | None) -> bool:
        return kind == self.kind and (self.level is None or level == self.level)


class Incident(msgspec.Struct, frozen=True, kw_only=True):
    """One injected incident: what, where, when (event time) and the alarms it should cause.

    `tags` are the points it changes (for a gateway outage or back-fill: every point of the
    gateway); `end_ms` is when its signals are normal again. `params` holds the numbers that
    shaped it (delays, peaks, rates), so the ground truth explains the signals.
    """

    id: str
    kind: IncidentKind
    enterprise_code: str
    start_ms: int
    end_ms: int
    tags: tuple[str, ...]
    zone: str = ""
    gateway: str = ""
    hazard_code: str = ""
    expect: tuple[Expect, ...] = ()
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    description: str = ""

    def to_record(self) -> dict[str, Any]:
        """The ground-truth JSON line (times also as ISO 8601 UTC, for people)."""
        rec = msgspec.to_builtins(self)
        return {"start": iso_ms(self.start_ms), "end": iso_ms(self.end_ms), **rec}


# -- building incidents ----------------------------------------------------------------------


class NoSubject(LookupError):
    """No point, zone or gateway of the registry can host this incident kind."""


_SUBJECT_HINT = {
    IncidentKind.LEAK: "it needs a zone with two or more detectors of one gas",
    IncidentKind.OVERFILL: "it needs a level point with H and HH naming its inlet_valve",
    IncidentKind.OVERFILL_NO_INTERLOCK: "it needs a level point with H and HH naming its "
    "inlet_valve",
    IncidentKind.DETECTOR_FAULT: "it needs a gas detector",
    IncidentKind.FROZEN: "it needs a level, temperature or pressure point",
    IncidentKind.GATEWAY_OUTAGE: "it needs a gateway",
    IncidentKind.CHATTER: "it needs a hazchem temperature or pressure point with an H limit",
    IncidentKind.OVER_QUOTA: "it needs an occupancy point with its quota as H",
    IncidentKind.BACKFILL: "it needs a gateway with a level point that has H and HH",
}


def candidates(model: SignalModel, kind: IncidentKind) -> list[tuple[str, str, tuple[Point, ...]]]:
    """Possible subjects of a kind: (enterprise, gateway, points), in registry order."""
    reg = model.registry
    out: list[tuple[str, str, tuple[Point, ...]]] = []
    if kind is IncidentKind.LEAK:
        for (ent, _zone), pts in reg.zones().items():
            gas = tuple(p for p in pts if p.is_gas)
            if len(gas) >= 2 and len({p.parameter for p in gas}) == 1:
                out.append((ent, gas[0].gateway_code, gas))
    elif kind in (IncidentKind.OVERFILL, IncidentKind.OVERFILL_NO_INTERLOCK):
        for p in reg:
            valve = p.attrs.get("inlet_valve", "")
            if p.parameter == "level" and p.hh is not None and valve:
                v = reg.get(p.enterprise_code, valve)
                if v is not None:
                    out.append((p.enterprise_code, p.gateway_code, (p, v)))
    elif kind is IncidentKind.DETECTOR_FAULT:
        out = [(p.enterprise_code, p.gateway_code, (p,)) for p in reg if p.is_gas]
    elif kind is IncidentKind.FROZEN:
        # Process transmitters: gas heads legitimately read a flat zero in clean air, so the
        # frozen-value check (and this incident) is about level, temperature and pressure.
        out = [
            (p.enterprise_code, p.gateway_code, (p,))
            for p in reg
            if p.parameter in ("level", "temperature", "pressure")
        ]
    elif kind is IncidentKind.GATEWAY_OUTAGE:
        out = [(ent, gw, pts) for (ent, gw), pts in reg.gateways().items()]
    elif kind is IncidentKind.CHATTER:
        out = [
            (p.enterprise_code, p.gateway_code, (p,))
            for p in reg
            if p.parameter in ("temperature", "pressure")
            and p.h is not None
            and p.industry == "hazchem"
        ]
    elif kind is IncidentKind.OVER_QUOTA:
        out = [
            (p.enterprise_code, p.gateway_code, (p,))
            for p in reg
            if p.parameter == "occupancy" and p.h is not None
        ]
    elif kind is IncidentKind.BACKFILL:
        for (ent, gw), pts in reg.gateways().items():
            target = _backfill_target(pts)
            if target is not None:
                out.append((ent, gw, pts))
    return out


def _backfill_target(pts: Sequence[Point]) -> Point | None:
    """The point of a gateway whose excursion the back-filled data carries: a tank level
    with its own H and HH (so the excursion sits clearly between the two)."""
    for p in pts:
        if p.parameter == "level" and p.h is not None and p.hh is not None:
            return p
    return None


def make_incident(
    model: SignalModel,
    kind: IncidentKind | str,
    start_ms: int,
    subject: tuple[str, str, tuple[Point, ...]],
    rng: np.random.Generator,
    *,
    incident_id: str,
    duration_ms: int | None = None,
) -> Incident:
    """Build one incident of `kind` on `subject` (from `candidates`) starting at `start_ms`."""
    made = _make(model, kind, start_ms, subject, rng, incident_id, duration_ms)
    # numpy scalars would not serialise; the truth file holds plain JSON numbers.
    return msgspec.structs.replace(made, params=_plain(made.params))


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _make(
    model: SignalModel,
    kind: IncidentKind | str,
    start_ms: int,
    subject: tuple[str, str, tuple[Point, ...]],
    rng: np.random.Generator,
    incident_id: str,
    duration_ms: int | None,
) -> Incident:
    kind = IncidentKind(kind)
    ent, gw, pts = subject
    dur = int(duration_ms if duration_ms is not None else DEFAULT_DURATION_MS[kind])
    first = pts[0]
    common = {
        "id": incident_id,
        "kind": kind,
        "enterprise_code": ent,
        "start_ms": int(start_ms),
        "gateway": gw,
        "hazard_code": first.hazard_code,
    }
    if kind is IncidentKind.LEAK:
        # The plume reaches the nearest head first, the others later and weaker, but a real
        # release near a zone still takes at least two heads past the second level (2oo3).
        peak0 = float(model.leak_peak[model.index(ent, first.tag)])
        delays = [0.0, *sorted(rng.uniform(10, 45, len(pts) - 1).round(1).tolist())]
        peaks = [round(peak0 * f, 3) for f in [1.0, *rng.uniform(0.8, 0.95, len(pts) - 1)]]
        rise_s, tau_s = 40.0, 45.0
        end = int(start_ms + (max(delays) + rise_s) * 1000 + dur + 6 * tau_s * 1000)
        return Incident(
            **common,
            end_ms=end,
            tags=tuple(p.tag for p in pts),
            zone=first.zone,
            expect=(Expect("limit", "L1"), Expect("limit", "L2"), Expect("vote")),
            params={
                "parameter": first.parameter,
                "unit": first.unit,
                "delays_s": delays,
                "peaks": peaks,
                "rise_s": rise_s,
                "release_s": dur / 1000,
                "decay_tau_s": tau_s,
            },
            description=(
                f"{first.parameter[4:]} leak in zone {first.zone}: plume reaches "
                f"{len(pts)} heads within {max(delays):.0f} s, peak {peaks[0]:g} {first.unit}"
            ),
        )
    if kind in (IncidentKind.OVERFILL, IncidentKind.OVERFILL_NO_INTERLOCK):
        level, valve = pts
        li = model.index(ent, level.tag)
        interlock = kind is IncidentKind.OVERFILL
        assert level.hh is not None and level.h is not None
        span = model.hi[li] - model.lo[li]
        # The filling pump outruns the withdrawal: HH is reached 8-12 min after onset (faster
        # than a real fill, so a demo need not wait hours; the alarm logic is the same).
        v0 = float(model.base(np.array([li]), np.array([start_ms]))[0])
        rate = (level.hh - v0) / span * 100.0 / float(rng.uniform(8, 12))  # % of span / min
        # Find when base + ramp crosses HH (1 s grid; the base moves slowly meanwhile).
        grid = np.arange(0, 3 * 3600, 1, dtype=np.int64)
        base = model.base(np.full(len(grid), li), start_ms + grid * 1000)
        ramp = base + rate / 60.0 * span / 100.0 * grid
        above = np.nonzero(ramp >= level.hh)[0]
        cross_s = int(above[0]) if len(above) else int(grid[-1])
        valve_delay_s = float(rng.uniform(2, 6)) if interlock else None
        # Without the interlock the level keeps rising until an operator stops the pump and
        # closes the valve by hand: after 5 min, or before the level leaves the gauge's range.
        rate_per_s = rate / 60.0 * span / 100.0
        room_s = 0.66 * (model.hi[li] - level.hh) / rate_per_s
        stop_s = cross_s + (valve_delay_s or 0) + 1 if interlock else cross_s + min(300.0, room_s)
        hold_s, recover_s = 5 * 60.0, 15 * 60.0
        end = int(start_ms + (stop_s + hold_s + recover_s) * 1000)
        expect = [Expect("limit", "H"), Expect("limit", "HH")]
        if not interlock:
            expect.append(Expect("interlock"))
        return Incident(
            **common,
            end_ms=end,
            tags=(level.tag, valve.tag),
            zone=level.zone,
            expect=tuple(expect),
            params={
                "level_tag": level.tag,
                "valve_tag": valve.tag,
                "rate_pct_per_min": round(rate, 3),
                "hh": level.hh,
                "hh_reached_s": cross_s,
                "interlock": interlock,
                "valve_closed_s": (cross_s + valve_delay_s) if interlock else stop_s,
                "pump_stopped_s": stop_s,
                "hold_s": hold_s,
                "recover_s": recover_s,
            },
            description=(
                f"tank {level.zone} overfill: {level.tag} rises {rate:.2f} %/min past HH "
                + (
                    f"after {cross_s} s; interlock closes {valve.tag} {valve_delay_s:.0f} s later"
                    if interlock
                    else f"after {cross_s} s; {valve.tag} stays open {stop_s - cross_s:.0f} s"
                )
            ),
        )
    if kind is IncidentKind.DETECTOR_FAULT:
        mode = "quality" if rng.random() < 0.5 else "out_of_range"
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=(first.tag,),
            zone=first.zone,
            expect=(Expect("fault"),),
            params={"mode": mode},
            description=(
                f"detector {first.tag} "
                + (
                    "reports an instrument fault (q=2)"
                    if mode == "quality"
                    else "reads below its range"
                )
            ),
        )
    if kind is IncidentKind.FROZEN:
        i = model.index(ent, first.tag)
        frozen = float(
            model.quantise(np.array([i]), model.base(np.array([i]), np.array([start_ms])))[0]
        )
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=(first.tag,),
            zone=first.zone,
            expect=(Expect("stuck"),),
            params={"value": frozen},
            description=f"{first.tag} frozen at {frozen:g} {first.unit}",
        )
    if kind is IncidentKind.GATEWAY_OUTAGE:
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=tuple(p.tag for p in pts),
            expect=(Expect("gateway"),),
            params={"zones": sorted({p.zone for p in pts if p.zone})},
            description=f"gateway {gw} silent for {dur / MIN_MS:g} min ({len(pts)} points)",
        )
    if kind is IncidentKind.CHATTER:
        assert first.h is not None
        span = model.hi[model.index(ent, first.tag)] - model.lo[model.index(ent, first.tag)]
        amp = round(0.03 * span, 3)
        period_s = 4 * first.expected_interval_s
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=(first.tag,),
            zone=first.zone,
            expect=(Expect("limit", "H"),),
            params={"set_point": first.h, "amplitude": amp, "period_s": period_s},
            description=f"{first.tag} chatters around H {first.h:g} ± {amp:g} {first.unit}",
        )
    if kind is IncidentKind.OVER_QUOTA:
        assert first.h is not None
        count = int(first.h) + int(rng.integers(1, 3))
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=(first.tag,),
            zone=first.zone,
            expect=(Expect("occupancy", "H"),),
            params={"quota": first.h, "count": count},
            description=f"workshop {first.zone}: {count} people, quota {first.h:g}",
        )
    if kind is IncidentKind.BACKFILL:
        target = _backfill_target(pts)
        assert target is not None and target.h is not None
        ti = model.index(ent, target.tag)
        span = model.hi[ti] - model.lo[ti]
        value = (
            target.h + 0.4 * (target.hh - target.h)
            if target.hh is not None
            else target.h + 0.03 * span
        )
        return Incident(
            **common,
            end_ms=int(start_ms + dur),
            tags=tuple(p.tag for p in pts),
            zone=target.zone,
            expect=(Expect("limit", "H"),),
            params={
                "zones": sorted({p.zone for p in pts if p.zone}),
                "target_tag": target.tag,
                "excursion_value": round(float(value), 3),
                "excursion_from_s": dur / 1000 * 0.25,
                "excursion_to_s": dur / 1000 * 0.75,
                "delivered_at_s": dur / 1000,
            },
            description=(
                f"gateway {gw} holds {dur / MIN_MS:g} min of data and back-fills it; "
                f"{target.tag} was above H meanwhile"
            ),
        )
    raise ValueError(f"unknown incident kind {kind!r}")


# -- applying incidents to a chunk -------------------------------------------------------------


def apply(incident: Incident, model: SignalModel, chunk: Chunk) -> None:
    """Change `chunk` in place where `incident` is active (no-op outside its time span)."""
    if incident.end_ms <= chunk.start_ms or incident.start_ms >= chunk.end_ms:
        return
    ent = incident.enterprise_code
    kind = incident.kind
    p = incident.params
    t = chunk.ts_ms
    active = (t >= incident.start_ms) & (t < incident.end_ms)
    if kind is IncidentKind.LEAK:
        for tag, delay, peak in zip(incident.tags, p["delays_s"], p["peaks"], strict=True):
            sel = active & (chunk.point == model.index(ent, tag))
            x = (t[sel] - incident.start_ms) / 1000.0 - delay
            chunk.value[sel] += peak * _plume(x, p["rise_s"], p["release_s"], p["decay_tau_s"])
            chunk.touched[sel] = True
    elif kind in (IncidentKind.OVERFILL, IncidentKind.OVERFILL_NO_INTERLOCK):
        li = model.index(ent, p["level_tag"])
        sel = active & (chunk.point == li)
        x = (t[sel] - incident.start_ms) / 1000.0
        rate_s = p["rate_pct_per_min"] / 60.0 * (model.hi[li] - model.lo[li]) / 100.0
        stop, hold, rec = p["pump_stopped_s"], p["hold_s"], p["recover_s"]
        peak = rate_s * stop
        excess = np.where(
            x < stop,
            rate_s * x,
            np.where(x < stop + hold, peak, peak * np.clip(1 - (x - stop - hold) / rec, 0, 1)),
        )
        chunk.value[sel] += excess
        chunk.touched[sel] = True
        vi = model.index(ent, p["valve_tag"])
        vsel = active & (chunk.point == vi)
        xv = (t[vsel] - incident.start_ms) / 1000.0
        closed = (xv >= p["valve_closed_s"]) & (xv < stop + hold)
        chunk.value[np.nonzero(vsel)[0][closed]] = 0.0  # limit switch: fully closed
    elif kind is IncidentKind.DETECTOR_FAULT:
        sel = active & (chunk.point == model.index(ent, incident.tags[0]))
        if p["mode"] == "quality":
            chunk.quality[sel] = 2
        else:
            i = model.index(ent, incident.tags[0])
            chunk.value[sel] = model.lo[i] - 0.05 * (model.hi[i] - model.lo[i])
            chunk.touched[sel] = True
    elif kind is IncidentKind.FROZEN:
        sel = active & (chunk.point == model.index(ent, incident.tags[0]))
        chunk.value[sel] = p["value"]
    elif kind is IncidentKind.GATEWAY_OUTAGE:
        sel = active & (model.gateway_of[chunk.point] == _gateway_index(model, incident))
        chunk.keep[sel] = False
    elif kind is IncidentKind.CHATTER:
        sel = active & (chunk.point == model.index(ent, incident.tags[0]))
        x = (t[sel] - incident.start_ms) / 1000.0
        sign = np.where(np.sin(2 * np.pi * x / p["period_s"] + 0.3) >= 0, 1.0, -1.0)
        chunk.value[sel] = p["set_point"] + sign * p["amplitude"]
        chunk.touched[sel] = True
    elif kind is IncidentKind.OVER_QUOTA:
        sel = active & (chunk.point == model.index(ent, incident.tags[0]))
        chunk.value[sel] = p["count"]
        chunk.touched[sel] = True
    elif kind is IncidentKind.BACKFILL:
        sel = active & (model.gateway_of[chunk.point] == _gateway_index(model, incident))
        chunk.deliver_ms[sel] = np.maximum(
            chunk.deliver_ms[sel], incident.start_ms + int(p["delivered_at_s"] * 1000)
        )
        x = (t - incident.start_ms) / 1000.0
        tsel = (
            sel
            & (chunk.point == model.index(ent, p["target_tag"]))
            & (x >= p["excursion_from_s"])
            & (x < p["excursion_to_s"])
        )
        # Keep the sensor's own noise on top of the excursion.
        noise = chunk.value[tsel] - model.base(chunk.point[tsel], t[tsel])
        chunk.value[tsel] = p["excursion_value"] + noise
        chunk.touched[tsel] = True


def _gateway_index(model: SignalModel, incident: Incident) -> int:
    for i, g in enumerate(model.gateways):
        if g.enterprise_code == incident.enterprise_code and g.code == incident.gateway:
            return i
    raise KeyError(f"gateway {incident.enterprise_code}/{incident.gateway} is not in the registry")


def _plume(x: np.ndarray, rise_s: float, release_s: float, tau_s: float) -> np.ndarray:
    """Relative concentration at a head, `x` seconds after the plume reaches it: a smooth
    rise, a plateau while the release lasts, then exponential clearing."""
    up = np.clip(x / rise_s, 0.0, 1.0)
    up = up * up * (3 - 2 * up)  # smoothstep: no step change a rate rule would call a fault
    after = np.where(x > rise_s + release_s, np.exp(-(x - rise_s - release_s) / tau_s), 1.0)
    return np.where(x <= 0, 0.0, up * after)


# -- scheduling -------------------------------------------------------------------------------


def schedule_incidents(
    model: SignalModel,
    start_ms: int,
    end_ms: int,
    *,
    seed: int = 7,
    kinds: Iterable[IncidentKind | str] = ALL_KINDS,
    repeats: int = 1,
    shuffle: bool = True,
    warmup_ms: int = 10 * MIN_MS,
    durations: dict[IncidentKind, int] | None = None,
    id_prefix: str = "inc",
) -> list[Incident]:
    """`repeats` incidents of each kind spread evenly over [start + warmup, end), each on a
    subject whose gateway no other incident uses at the same time (so one incident never
    masks another: a gateway outage would hide a leak on the same gateway).

    Raises `ValueError` when the run is too short for its incidents, and `NoSubject` when the
    registry has nothing that can host a requested kind.
    """
    rng = np.random.default_rng([seed, 0x1C1D])
    kinds = [IncidentKind(k) for k in kinds]
    plan = [k for _ in range(repeats) for k in kinds]
    if shuffle:
        rng.shuffle(plan)
    durations = {**DEFAULT_DURATION_MS, **(durations or {})}
    if not plan:
        return []

    def est(kind: IncidentKind) -> float:  # overfills last about 40 min (fill rate decides)
        return (durations[kind] or 40 * MIN_MS) * 1.05 + MIN_MS

    longest = max(est(k) for k in plan)
    if end_ms - start_ms - warmup_ms < longest:
        raise ValueError(
            f"the run is too short for its incidents: it needs more than "
            f"{(warmup_ms + longest) / MIN_MS:.0f} min"
        )
    slot = (end_ms - start_ms - warmup_ms) / len(plan)
    busy: dict[tuple[str, str], list[tuple[int, int]]] = {}
    out: list[Incident] = []
    for n, kind in enumerate(plan):
        t0 = int(start_ms + warmup_ms + n * slot + rng.uniform(0, 0.2) * slot)
        # A long incident late in the plan starts earlier so it still ends inside the run
        # (it may overlap others: they are on other gateways).
        t0 = max(int(start_ms + warmup_ms), min(t0, int(end_ms - est(kind))))
        subjects = candidates(model, kind)
        if not subjects:
            raise NoSubject(
                f"the registry has no subject for an incident of kind {kind}: "
                + _SUBJECT_HINT[kind]
            )
        order = rng.permutation(len(subjects))
        inc = None
        for j in order:
            subject = subjects[int(j)]
            trial = make_incident(
                model,
                kind,
                t0,
                subject,
                rng,
                incident_id=f"{id_prefix}-{n + 1:04d}",
                duration_ms=durations[kind] or None,
            )
            if trial.end_ms > end_ms:
                # Its signals outlast the run (a leak's plume decays, a tank drains back):
                # start it earlier by the overshoot, if the run leaves room for that.
                earlier = t0 - (trial.end_ms - end_ms) - MIN_MS
                if earlier < start_ms + warmup_ms:
                    raise ValueError(
                        f"a {kind} incident needs until {iso_ms(trial.end_ms)} but the run "
                        f"ends at {iso_ms(end_ms)}: the run is too short for its incidents"
                    )
                trial = make_incident(
                    model,
                    kind,
                    earlier,
                    subject,
                    rng,
                    incident_id=f"{id_prefix}-{n + 1:04d}",
                    duration_ms=durations[kind] or None,
                )
                if trial.end_ms > end_ms:
                    raise ValueError(
                        f"a {kind} incident cannot end before the run does "
                        f"({iso_ms(end_ms)}): the run is too short for its incidents"
                    )
            key = (subject[0], subject[1])
            # Keep a margin after each incident so alarms clear before the next one.
            if all(
                trial.start_ms >= e or trial.end_ms + 10 * MIN_MS <= s for s, e in busy.get(key, [])
            ):
                inc = trial
                break
        if inc is None:
            raise ValueError(f"no free subject for a {kind} incident at {iso_ms(t0)}")
        busy.setdefault((inc.enterprise_code, inc.gateway), []).append(
            (inc.start_ms, inc.end_ms + 10 * MIN_MS)
        )
        out.append(inc)
    return out
