"""The alerts stage as one object: alarm transitions and warnings in, lifecycle kept in the
store, notifications out through the pipeline into the outbox, timers on `tick`, and the
human actions (acknowledge, dispose, shelve, file) the API calls. Every transition, action and
notification result is journaled in the same transaction as the change it records.

Replays are harmless: an input event is applied once (keyed by alarm id, state, level and
time), and every notification has a stable id, so a re-processed Kafka partition or a restart
sends nothing twice. Time is always an argument.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from alerts import lifecycle as lc
from alerts.escalation import Timer, ack_deadline, due
from alerts.journal import Journal
from alerts.lifecycle import AlarmRecord, Change, LifecycleError, Phase, WarningRecord
from alerts.model import Disposition, EventType, FilingKind, Notification
from alerts.outbox import Outbox, OutboxConfig, stable_id
from alerts.pipeline import Intent, build_pipeline
from alerts.render import platform_payload, render_filing
from alerts.routing import (
    RouteSubject,
    RoutingConfig,
    platform_recipient,
    role_recipients,
    subject_for,
)
from alerts.store import AlertStore
from alerts.suppression import (
    Filing,
    Shelf,
    SuppressionView,
    decide,
    hold_ms,
    inhibitor_key,
    matches_glob,
)
from ingest.model import Registry
from rules.model import AlarmEvent, AlarmState, Colour, WarningEvent

log = logging.getLogger("alerts.service")

Record = AlarmRecord | WarningRecord


class Handover(Protocol):
    """Where the records of alarms and warnings live between the stores of distributed
    workers (keyed by enterprise and subject id; values are `to_dict()` documents)."""

    def get(self, enterprise: str, subject_id: str) -> dict[str, Any] | None: ...

    def put(self, enterprise: str, subject_id: str, data: dict[str, Any] | None) -> None:
        """Keep `data` (None: forget the subject)."""


class AlertError(Exception):
    """Base of the errors the service raises to its callers (the API maps them)."""


class NotFound(AlertError):
    """No alarm, warning, filing or shelf with that id."""


class InvalidAction(AlertError):
    """The action is not allowed now or its input is wrong (the message says why)."""


class AlertService:
    def __init__(
        self,
        store: AlertStore,
        routing: RoutingConfig,
        registry: Registry,
        *,
        public_url: str,
        on_warning_closed: Callable[[str, int], None] | None = None,
        on_alarm_reset: Callable[[str, int], None] | None = None,
        link_for: Callable[[str], str] | None = None,
        outbox: Outbox | None = None,
        handover: Handover | None = None,
    ) -> None:
        self.store = store
        # Distributed mode: each worker has its own store, and an alarm's transitions can be
        # read by one worker, then (after a failover) by another. The hand-over carries the
        # records between them (a Faust table, see hazardwatch/faust_app.py), so the next
        # worker knows, say, that people were told of the raise and must hear of the clear.
        self.handover = handover
        self.routing = routing
        self.public_url = public_url.rstrip("/")
        self.on_warning_closed = on_warning_closed
        # When given (the runner wires it to the rules engine's reset), disposing an alarm
        # that is still present resets it at the source, which re-asserts it as a new firing;
        # without it the alerts stage re-fires the alarm itself.
        self.on_alarm_reset = on_alarm_reset
        self._link_for = link_for or (lambda sid: f"{self.public_url}/a/{sid}")
        self.outbox = outbox or Outbox(store, OutboxConfig.from_routing(routing))
        self.journal: Journal = self.outbox.journal
        self._set_registry(registry)
        self._view_cache: SuppressionView | None = None
        self.pipeline = self._build()

    # -- wiring ---------------------------------------------------------------------------

    def _build(self):
        return build_pipeline(
            routing=self.routing,
            view=self._view,
            outbox=self.outbox,
            link_for=self._link_for,
            enterprise_name=self._enterprise_name,
        )

    def _set_registry(self, registry: Registry) -> None:
        self.registry = registry
        self._gateway_of = {p.key: p.gateway_code for p in registry}
        self._names: dict[str, str] = {}
        for p in registry:
            self._names.setdefault(p.enterprise_code, p.enterprise_name)

    def with_registry(self, registry: Registry, now_ms: int) -> None:
        """Swap the registry (hot reload); journaled."""
        self._set_registry(registry)
        self._invalidate()  # the view maps points to their gateways
        self.journal.append(
            "registry.loaded", "", {"version": registry.version, "points": len(registry)}, now_ms
        )

    def with_routing(self, routing: RoutingConfig, now_ms: int) -> None:
        """Swap the routing file (hot reload); journaled."""
        self.routing = routing
        self.outbox.config = OutboxConfig.from_routing(routing)
        self.pipeline = self._build()
        self.journal.append("routing.loaded", "", {}, now_ms)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Apply several calls in one transaction (one fsync): the runner wraps each batch of
        alarm events in it. A crash inside loses the whole batch, never part of it, and the
        runner re-delivers its input. The cached suppression view may hold what was rolled
        back, so a failed batch drops it."""
        try:
            with self.store.transaction():
                yield
        except BaseException:
            self._invalidate()
            raise

    def record_ruleset_change(
        self, version: str, now_ms: int, detail: dict[str, Any] | None = None, actor: str = "system"
    ) -> None:
        """Journal a rule-version change (the runner calls this on every reload)."""
        self.journal.append(
            "ruleset.changed", "", {"version": version, **(detail or {})}, now_ms, actor=actor
        )

    def link_for(self, subject_id: str) -> str:
        return self._link_for(subject_id)

    def _district(self, enterprise_code: str) -> str:
        return subject_for(self.routing, self.registry, enterprise_code).district

    def _enterprise_name(self, code: str) -> str:
        ent = self.routing.enterprises.get(code)
        return self._names.get(code) or (ent.name if ent else "") or code

    def _view(self) -> SuppressionView:
        if self._view_cache is None:
            inhibitors: dict[tuple[str, str, str], str] = {}
            for rec in self.store.list_alarms(kind=("gateway", "fault"), active=True, limit=None):
                key = inhibitor_key(rec)
                if key is not None and rec.phase is not Phase.CLOSED:
                    inhibitors.setdefault(key, rec.alarm_id)
            self._view_cache = SuppressionView(
                inhibitors=inhibitors,
                filings=tuple(self.store.list_filings(open_only=True)),
                shelves=tuple(self.store.list_shelves(open_only=True)),
                gateway_of=self._gateway_of,
            )
        return self._view_cache

    def _invalidate(self) -> None:
        self._view_cache = None

    def _put(self, rec: Record) -> None:
        if isinstance(rec, AlarmRecord):
            self.store.put_alarm(rec)
        else:
            self.store.put_warning(rec)
        if self.handover is not None:
            # a closed record is done with: the hand-over forgets it (it would grow forever);
            # the events applied go with the record, so the next worker recognises those a
            # failover makes the rules stage send again (same ids, same keys)
            data = (
                None
                if rec.phase is Phase.CLOSED
                else {"record": rec.to_dict(), "applied": self.store.applied_keys(rec.subject_id)}
            )
            self.handover.put(rec.enterprise_code, rec.subject_id, data)
        if isinstance(rec, AlarmRecord) and rec.kind in ("gateway", "fault"):
            self._invalidate()

    def _take_over(
        self, cls: type[AlarmRecord] | type[WarningRecord], enterprise: str, sid: str, now_ms: int
    ) -> None:
        """Copy into this store the record (and the events applied to it) another worker
        kept of a subject, when this store has none or an older one (it had the partition
        before, and another worker since)."""
        if self.handover is None:
            return
        doc = self.handover.get(enterprise, sid)
        if doc is None:
            return
        rec = cls.from_dict(doc["record"])
        is_alarm = cls is AlarmRecord
        mine = self.store.get_alarm(sid) if is_alarm else self.store.get_warning(sid)
        if mine is not None and mine.updated_ms >= rec.updated_ms:
            return
        if isinstance(rec, AlarmRecord):
            self.store.put_alarm(rec)
            self._invalidate()  # it may be an inhibitor (gateway, fault)
        else:
            self.store.put_warning(rec)
        for key in doc.get("applied", []):
            self.store.mark_applied(sid, key)
        self.journal.append(
            f"{'alarm' if is_alarm else 'warning'}.handed_over",
            sid,
            {"phase": str(rec.phase), "notified": rec.notified},
            now_ms,
        )

    def _run(
        self, rec: Record, event_type: EventType, key: str, now_ms: int, **kw: Any
    ) -> tuple[Record, list[Notification]]:
        """Send one intent through the pipeline and keep the record's suppression/notified
        flags in step with what happened."""
        intent = self.pipeline.run(
            Intent(subject=rec, event_type=event_type, key=key, now_ms=now_ms, **kw)
        )
        if intent.suppression is not None:
            rec = dataclasses.replace(rec, suppressed=str(intent.suppression))
        elif intent.people:
            rec = dataclasses.replace(rec, notified=True, suppressed="")
        return rec, list(intent.notifications)

    # -- alarms ---------------------------------------------------------------------------

    def _latched(self, ev: AlarmEvent) -> bool:
        lc_cfg = self.routing.lifecycle
        return str(ev.kind) in lc_cfg.latch_kinds or matches_glob(ev.rule, lc_cfg.latch_rules)

    def on_alarm(self, ev: AlarmEvent, now_ms: int) -> list[Notification]:
        """Apply one alarm transition; returns the notifications it stored."""
        event_key = f"{ev.state}|{ev.level}|{ev.ts_ms}"
        # The suppression view is rebuilt only when what it is built from changes (`_put` of a
        # gateway/fault alarm, filings, shelves, a registry swap, a rollback): rebuilding it for
        # every event made an alarm storm of N offline alarms cost O(N^2) and stalled the
        # pipeline for minutes (found by the soak benchmark).
        with self.batch():
            self._take_over(AlarmRecord, ev.enterprise_code, ev.alarm_id, now_ms)
            if not self.store.mark_applied(ev.alarm_id, event_key):
                return []  # replayed event: already applied, nothing changes
            level = None if ev.level is None else str(ev.level)
            colour = self.routing.alarm_colours.colour_of(str(ev.kind), level)
            old = self.store.get_alarm(ev.alarm_id)
            if old is None:
                rec, changes = lc.new_alarm(
                    ev,
                    district=self._district(ev.enterprise_code),
                    colour=colour,
                    latched=self._latched(ev),
                    now_ms=now_ms,
                )
            else:
                rec, changes = lc.apply_alarm_event(old, ev, colour=colour, now_ms=now_ms)
            self.journal.append(
                "alarm.event",
                ev.alarm_id,
                {
                    "event": ev.to_record(),
                    "changes": [str(c) for c in changes],
                    "phase": str(rec.phase),
                },
                now_ms,
            )
            notes: list[Notification] = []
            rec = self._alarm_changes(rec, changes, event_key, ev.backfill, now_ms, notes)
            self._put(rec)
            if rec.kind in ("gateway", "fault") and (old is None or old.active != rec.active):
                self._refresh_suppression(now_ms, notes, enterprise=rec.enterprise_code)
        return notes

    def _alarm_changes(
        self,
        rec: AlarmRecord,
        changes: list[Change],
        key: str,
        backfill: bool,
        now_ms: int,
        notes: list[Notification],
    ) -> AlarmRecord:
        lcfg = self.routing.lifecycle
        for ch in changes:
            if ch in (Change.RAISED, Change.REOPENED, Change.LEVEL_UP):
                if ch is Change.LEVEL_UP:
                    rec = dataclasses.replace(rec, tier_since_ms=now_ms)
                inh = hold_ms(
                    rec,
                    self.routing.inhibit.gateway_offline_hold_s,
                    self.routing.inhibit.fault_process_hold_s,
                    self._gateway_of,
                )
                people_hold = max(inh, int(lcfg.backfill_hold_s * 1000) if backfill else 0)
                rec, n = self._run(
                    rec, EventType.RAISED, key, now_ms, hold_ms=people_hold, platform_hold_ms=inh
                )
                notes += n
            elif ch is Change.LEVEL_DOWN:
                rec, n = self._run(rec, EventType.RAISED, key, now_ms, people=False)
                notes += n
            elif ch is Change.CLEARED:
                # Cleared while its messages to people are still held (a back-filled alarm
                # that had already cleared, an offline alarm released by its gateway that
                # recovers a moment later): nobody is texted about it at all; the platform
                # keeps the record.
                withdrawn = self.outbox.withdraw(
                    rec.alarm_id,
                    "cleared before its hold ended" + (" (back-filled)" if backfill else ""),
                    now_ms,
                    keep_channels=("platform",),
                    only_held=True,
                )
                people = rec.notified and not withdrawn
                if withdrawn:
                    rec = dataclasses.replace(rec, notified=False)
                rec, n = self._run(rec, EventType.CLEARED, key, now_ms, people=people)
                notes += n
            elif ch in (Change.LATCHED, Change.EVENT_AFTER_CLOSE):
                event = EventType.CLEARED if not rec.active else EventType.RAISED
                rec, n = self._run(rec, event, key, now_ms, people=False)
                notes += n
        return rec

    def _refresh_suppression(
        self, now_ms: int, notes: list[Notification], enterprise: str | None = None
    ) -> None:
        """Re-decide suppression for every open alarm and warning (of one enterprise): a new
        inhibitor, filing or shelf silences them (withdrawing what is still held); a lifted
        one lets a still-present alarm that nobody was told of be raised now."""
        self._invalidate()
        view = self._view()
        subjects: list[Record] = [
            *self.store.list_alarms(enterprise=enterprise, open_only=True, limit=None),
            *self.store.list_warnings(enterprise=enterprise, open_only=True, limit=None),
        ]
        for rec in subjects:
            s = decide(rec, view, now_ms)
            new = "" if s is None else str(s)
            if new == rec.suppressed:
                continue
            if new:
                withdrawn = self.outbox.withdraw(
                    rec.subject_id, f"suppressed ({new})", now_ms, only_held=True
                )
                notified = rec.notified and not withdrawn
                rec2 = dataclasses.replace(rec, suppressed=new, notified=notified)
                self.journal.append(
                    f"{self._kind(rec)}.suppressed",
                    rec.subject_id,
                    {"by": new, "withdrawn": withdrawn},
                    now_ms,
                )
            else:
                rec2 = dataclasses.replace(rec, suppressed="", tier_since_ms=now_ms)
                self.journal.append(
                    f"{self._kind(rec)}.released", rec.subject_id, {"was": rec.suppressed}, now_ms
                )
                if rec2.active and not rec2.notified and rec2.phase is not Phase.CLOSED:
                    # Held like a fresh raise: when a gateway recovers, its points' offline
                    # alarms usually clear a moment later, and then nobody is texted.
                    inh = 0
                    if isinstance(rec2, AlarmRecord):
                        inh = hold_ms(
                            rec2,
                            self.routing.inhibit.gateway_offline_hold_s,
                            self.routing.inhibit.fault_process_hold_s,
                            self._gateway_of,
                        )
                    rec2, n = self._run(
                        rec2,
                        EventType.RAISED,
                        f"released@{now_ms}",
                        now_ms,
                        hold_ms=inh,
                        platform_hold_ms=inh,
                    )
                    notes += n
            self._put(rec2)

    @staticmethod
    def _kind(rec: Record) -> str:
        return "alarm" if isinstance(rec, AlarmRecord) else "warning"

    # -- warnings -------------------------------------------------------------------------

    def on_warning(self, ev: WarningEvent, now_ms: int) -> list[Notification]:
        """Apply one warning event (raised / upgraded; the model's `closed` echo is recorded)."""
        key = f"{ev.state}|{ev.colour}|{ev.ts_ms}"
        with self.store.transaction():
            self._invalidate()
            self._take_over(WarningRecord, ev.enterprise_code, ev.warning_id, now_ms)
            if not self.store.mark_applied(ev.warning_id, key):
                return []
            old = self.store.get_warning(ev.warning_id)
            if old is None:
                rec, changes = lc.new_warning(
                    ev, district=self._district(ev.enterprise_code), now_ms=now_ms
                )
            else:
                rec, changes = lc.apply_warning_event(old, ev, now_ms)
            self.journal.append(
                "warning.event",
                ev.warning_id,
                {
                    "event": ev.to_record(),
                    "changes": [str(c) for c in changes],
                    "phase": str(rec.phase),
                },
                now_ms,
            )
            notes: list[Notification] = []
            for ch in changes:
                if ch in (Change.RAISED, Change.COLOUR_UP):
                    rec, n = self._run(
                        rec,
                        EventType.RAISED,
                        key,
                        now_ms,
                        hold_ms=int(self.routing.lifecycle.backfill_hold_s * 1000)
                        if ev.backfill
                        else 0,
                    )
                    notes += n
                elif ch is Change.EVENT_AFTER_CLOSE:
                    rec, n = self._run(rec, EventType.RAISED, key, now_ms, people=False)
                    notes += n
            self._put(rec)
        return notes

    # -- human actions --------------------------------------------------------------------

    def _subject(self, subject_id: str) -> Record:
        rec = self.store.get_subject(subject_id)
        if rec is None:
            raise NotFound(f"no alarm or warning {subject_id!r}")
        return rec

    def _action(
        self,
        action: str,
        subject_id: str,
        user: str,
        enterprise: str,
        data: dict[str, Any],
        now_ms: int,
    ) -> None:
        self.store.add_action(now_ms, action, subject_id, user, enterprise, data)
        self.journal.append(f"action.{action}", subject_id, data, now_ms, actor=user)

    def acknowledge(self, subject_id: str, user: str, now_ms: int, note: str = "") -> Record:
        """Acknowledge an alarm or warning (idempotent: a second acknowledge changes
        nothing but is still journaled as an action)."""
        with self.store.transaction():
            self._invalidate()
            rec = self._subject(subject_id)
            try:
                new, changes = lc.acknowledge(rec, user, now_ms)
            except LifecycleError as exc:
                raise InvalidAction(str(exc)) from None
            self._action(
                "acknowledge",
                subject_id,
                user,
                rec.enterprise_code,
                {"note": note, "changed": bool(changes)},
                now_ms,
            )
            if changes:
                new, _ = self._run(
                    new, EventType.ACKNOWLEDGED, f"ack@{now_ms}", now_ms, people=False
                )
                self._put(new)
        return new

    def dispose(
        self, subject_id: str, user: str, code: Disposition | str, note: str, now_ms: int
    ) -> Record:
        """File the disposition (处置) and close. A warning's close is passed to the warning
        model through `on_warning_closed`; an alarm still present fires again."""
        try:
            code = Disposition(code)
        except ValueError:
            raise InvalidAction(
                f"unknown disposition {code!r}; expected one of "
                f"{', '.join(d.value for d in Disposition)}"
            ) from None
        reset = False
        with self.store.transaction():
            self._invalidate()
            rec = self._subject(subject_id)
            try:
                closed, _ = lc.dispose(rec, user, code, note, now_ms)
            except LifecycleError as exc:
                raise InvalidAction(str(exc)) from None
            self._action(
                "dispose",
                subject_id,
                user,
                rec.enterprise_code,
                {"code": str(code), "note": note},
                now_ms,
            )
            closed, _ = self._run(
                closed, EventType.DISPOSED, f"dispose@{now_ms}", now_ms, people=False
            )
            result: Record = closed
            if isinstance(closed, AlarmRecord) and closed.active:
                if self.on_alarm_reset is not None:
                    # The source resets a latched alarm (and re-asserts it under a new id if
                    # still present); an unlatched one it leaves alone, so `tick` re-fires it
                    # here when no clear has come back within the grace time.
                    reset = True
                    result = dataclasses.replace(closed, reset_requested_ms=now_ms)
                else:
                    result = self._reopen(closed, now_ms)
            self._put(result)
        # Hooks run after the commit, outside the store lock (they may call back into us).
        if isinstance(rec, WarningRecord) and self.on_warning_closed is not None:
            self.on_warning_closed(subject_id, now_ms)
        if reset and self.on_alarm_reset is not None:
            self.on_alarm_reset(subject_id, now_ms)
        return result

    def _reopen(self, closed: AlarmRecord, now_ms: int) -> AlarmRecord:
        reopened, changes = lc.reopen_if_present(closed, now_ms)
        self.journal.append(
            "alarm.reopened", closed.alarm_id, {"reopened": reopened.reopened}, now_ms
        )
        return self._alarm_changes(
            reopened, changes, f"reopen{reopened.reopened}", False, now_ms, []
        )

    def shelve(self, subject_id: str, user: str, reason: str, until_ms: int, now_ms: int) -> Shelf:
        """Shelve an alarm (its rule on its point) until `until_ms`, with a reason."""
        if not user or not reason.strip():
            raise InvalidAction("shelve: the person and a reason are required")
        max_ms = int(self.routing.lifecycle.max_shelve_s * 1000)
        if until_ms <= now_ms:
            raise InvalidAction("shelve: the expiry must be in the future")
        if until_ms - now_ms > max_ms:
            raise InvalidAction(
                f"shelve: at most {self.routing.lifecycle.max_shelve_s:.0f} s "
                "(lifecycle.max_shelve_s)"
            )
        with self.store.transaction():
            self._invalidate()
            rec = self._subject(subject_id)
            if not isinstance(rec, AlarmRecord):
                raise InvalidAction("shelve: only alarms can be shelved, not warnings")
            shelf = Shelf(
                shelf_id="S-" + stable_id("shelf", subject_id, now_ms)[:12],
                subject_id=subject_id,
                enterprise_code=rec.enterprise_code,
                tag=rec.tag,
                rule=rec.rule,
                reason=reason,
                shelved_by=user,
                start_ms=now_ms,
                expires_ms=until_ms,
            )
            self.store.put_shelf(shelf)
            self._action(
                "shelve", subject_id, user, rec.enterprise_code, {**shelf.to_dict()}, now_ms
            )
            self._refresh_suppression(now_ms, [], enterprise=rec.enterprise_code)
        return shelf

    def unshelve(self, shelf_or_subject_id: str, user: str, now_ms: int) -> Shelf:
        with self.store.transaction():
            self._invalidate()
            shelf = self.store.get_shelf(shelf_or_subject_id)
            if shelf is None:
                open_ = self.store.list_shelves(subject_id=shelf_or_subject_id, open_only=True)
                shelf = open_[0] if open_ else None
            if shelf is None or shelf.ended_ms is not None:
                raise NotFound(f"no open shelf {shelf_or_subject_id!r}")
            shelf = dataclasses.replace(shelf, ended_ms=now_ms, ended_by=user)
            self.store.put_shelf(shelf)
            self._action(
                "unshelve",
                shelf.subject_id,
                user,
                shelf.enterprise_code,
                {"shelf_id": shelf.shelf_id},
                now_ms,
            )
            self._refresh_suppression(now_ms, [], enterprise=shelf.enterprise_code)
        return shelf

    def file(
        self,
        kind: FilingKind | str,
        enterprise_code: str,
        user: str,
        now_ms: int,
        *,
        hazard_code: str = "",
        tag: str = "",
        start_ms: int | None = None,
        planned_end_ms: int | None = None,
        interlock_bypassed: bool = False,
        note: str = "",
    ) -> Filing:
        """File maintenance, start-up/shutdown or decommission for an enterprise, an
        installation or a point."""
        try:
            kind = FilingKind(kind)
        except ValueError:
            raise InvalidAction(
                f"unknown filing kind {kind!r}; expected one of "
                f"{', '.join(k.value for k in FilingKind)}"
            ) from None
        if not user:
            raise InvalidAction("file: the person filing is required")
        points = self.registry.enterprise(enterprise_code)
        if not points and enterprise_code not in self.routing.enterprises:
            raise InvalidAction(f"file: unknown enterprise {enterprise_code!r}")
        if tag and self.registry.get(enterprise_code, tag) is None:
            raise InvalidAction(f"file: no point {enterprise_code}/{tag} in the registry")
        if hazard_code and points and not any(p.hazard_code == hazard_code for p in points):
            raise InvalidAction(f"file: no installation {hazard_code!r} in {enterprise_code}")
        start = now_ms if start_ms is None else start_ms
        if kind is not FilingKind.DECOMMISSION:
            if planned_end_ms is None:
                raise InvalidAction(f"file: {kind} needs a planned end")
            if planned_end_ms <= start:
                raise InvalidAction("file: the planned end must be after the start")
        if interlock_bypassed and kind is not FilingKind.STARTUP_SHUTDOWN:
            raise InvalidAction("file: interlock_bypassed applies to startup_shutdown only")
        f = Filing(
            filing_id="F-"
            + stable_id("filing", enterprise_code, hazard_code, tag, kind, now_ms, user)[:12],
            kind=kind,
            enterprise_code=enterprise_code,
            hazard_code=hazard_code,
            tag=tag,
            start_ms=start,
            planned_end_ms=planned_end_ms,
            actual_end_ms=None,
            interlock_bypassed=interlock_bypassed,
            filed_by=user,
            note=note,
            created_ms=now_ms,
        )
        with self.store.transaction():
            self._invalidate()
            self.store.put_filing(f)
            self._action("file", f.filing_id, user, enterprise_code, f.to_dict(), now_ms)
            if kind is FilingKind.STARTUP_SHUTDOWN and interlock_bypassed:
                # Informational 黄 to the district; suppresses nothing (DOMAIN.md §4).
                self._notify_filing(
                    f,
                    EventType.RAISED,
                    "开停车备案: 联锁已旁路",
                    ["district", "park"],
                    Colour.YELLOW,
                    now_ms,
                )
            self._refresh_suppression(now_ms, [], enterprise=enterprise_code)
        return f

    def end_filing(self, filing_id: str, user: str, now_ms: int, note: str = "") -> Filing:
        with self.store.transaction():
            self._invalidate()
            f = self.store.get_filing(filing_id)
            if f is None:
                raise NotFound(f"no filing {filing_id!r}")
            if f.actual_end_ms is not None:
                raise InvalidAction(f"filing {filing_id} already ended")
            f = dataclasses.replace(f, actual_end_ms=now_ms, ended_by=user)
            self.store.put_filing(f)
            self._action("end_filing", filing_id, user, f.enterprise_code, {"note": note}, now_ms)
            self._refresh_suppression(now_ms, [], enterprise=f.enterprise_code)
        return f

    def _notify_filing(
        self,
        f: Filing,
        event_type: EventType,
        text: str,
        roles: list[str],
        colour: Colour,
        now_ms: int,
    ) -> list[Notification]:
        subject = RouteSubject(f.enterprise_code, f.hazard_code, self._district(f.enterprise_code))
        recips = role_recipients(self.routing, subject, roles)
        if self.routing.channels.platform:
            recips.insert(0, platform_recipient())
        msg = render_filing(str(f.kind), f.scope, text, now_ms)
        notes = [
            Notification(
                id=stable_id(f.filing_id, event_type, text, r.channel, r.address),
                channel=r.channel,
                recipient=r.address,
                event_type=event_type,
                subject_kind="filing",
                subject_id=f.filing_id,
                enterprise_code=f.enterprise_code,
                hazard_code=f.hazard_code,
                colour=str(colour),
                title=msg.title,
                body=msg.body,
                params=msg.params,
                payload={
                    "event_type": str(event_type),
                    "subject": "filing",
                    **f.to_dict(),
                    "text": text,
                }
                if r.channel == "platform"
                else {},
                created_ms=now_ms,
            )
            for r in recips
        ]
        return self.outbox.enqueue(notes)

    # -- timers ---------------------------------------------------------------------------

    def tick(self, now_ms: int) -> list[Notification]:
        """Run every timer due at `now_ms`: shelf expiry, maintenance overdue, escalation,
        reminders, disposition overdue. Cheap to call every second."""
        notes: list[Notification] = []
        with self.store.transaction():
            self._invalidate()
            refresh: set[str] = set()
            for s in self.store.list_shelves(open_only=True):
                if s.expires_ms <= now_ms:
                    self.store.put_shelf(
                        dataclasses.replace(s, ended_ms=now_ms, ended_by="system:expired")
                    )
                    self.journal.append(
                        "shelf.expired", s.subject_id, {"shelf_id": s.shelf_id}, now_ms
                    )
                    refresh.add(s.enterprise_code)
            for f in self.store.list_filings(open_only=True):
                if f.overdue_at(now_ms) and f.overdue_notified_ms is None:
                    f = dataclasses.replace(f, overdue_notified_ms=now_ms)
                    self.store.put_filing(f)
                    self.journal.append("filing.overdue", f.filing_id, f.to_dict(), now_ms)
                    notes += self._notify_filing(
                        f,
                        EventType.MAINTENANCE_OVERDUE,
                        "检修/开停车超过计划结束时间, 已恢复推送",
                        ["enterprise_duty", "main", "district", "park"],
                        Colour.YELLOW,
                        now_ms,
                    )
                    refresh.add(f.enterprise_code)
            for ent in sorted(refresh):
                self._refresh_suppression(now_ms, notes, enterprise=ent)
            grace = int(self.routing.lifecycle.reset_grace_s * 1000)
            for rec in self.store.list_alarms(state=Phase.CLOSED, active=True, limit=None):
                if rec.reset_requested_ms is not None and now_ms >= rec.reset_requested_ms + grace:
                    # Still present and the source did not reset it: it fires again.
                    self._put(self._reopen(rec, now_ms))
            esc = self.routing.escalation
            subjects: list[Record] = [
                *self.store.list_alarms(open_only=True, limit=None),
                *self.store.list_warnings(open_only=True, limit=None),
            ]
            for rec in subjects:
                timers = due(rec, esc, now_ms)
                if not timers:
                    continue
                orig = rec
                if Timer.ESCALATE in timers:
                    deadline = ack_deadline(rec, esc)
                    while deadline is not None and deadline <= now_ms:
                        rec = dataclasses.replace(
                            rec, tier=rec.tier + 1, tier_since_ms=deadline, updated_ms=now_ms
                        )
                        self.journal.append(
                            f"{self._kind(rec)}.escalated",
                            rec.subject_id,
                            {"tier": rec.tier, "deadline_ms": deadline},
                            now_ms,
                        )
                        rec, n = self._run(
                            rec,
                            EventType.ESCALATED,
                            f"tier{rec.tier}",
                            now_ms,
                            only_new_since_tier=rec.tier - 1,
                        )
                        notes += n
                        deadline = ack_deadline(rec, esc)
                if Timer.REMIND in timers and Timer.ESCALATE not in timers:
                    rec = dataclasses.replace(
                        rec, reminders=rec.reminders + 1, last_reminder_ms=now_ms, updated_ms=now_ms
                    )
                    self.journal.append(
                        f"{self._kind(rec)}.reminder", rec.subject_id, {"n": rec.reminders}, now_ms
                    )
                    rec, n = self._run(
                        rec, EventType.REMINDER, f"reminder{rec.reminders}", now_ms, platform=False
                    )
                    notes += n
                if Timer.OVERDUE in timers:
                    rec = dataclasses.replace(rec, overdue=True, updated_ms=now_ms)
                    self.journal.append(
                        f"{self._kind(rec)}.disposition_overdue",
                        rec.subject_id,
                        {"raised_ms": rec.raised_ms},
                        now_ms,
                    )
                    if not rec.suppressed:
                        # Not disposed in time: the district/park duty officers hear of it
                        # once (and it is listed in the district's daily report).
                        rec, n = self._run(
                            rec,
                            EventType.REMINDER,
                            "disposition_overdue",
                            now_ms,
                            roles=("main", "district", "park"),
                            note="处置超期: 请尽快填报处置结果",
                        )
                        notes += n
                if rec != orig:
                    self._put(rec)
        return notes

    # -- reads the runner and API use -----------------------------------------------------

    def payload_of(self, subject_id: str) -> dict[str, Any]:
        """The platform-shaped record of a subject (what the API's detail view shows)."""
        rec = self._subject(subject_id)
        return platform_payload(rec, EventType.RAISED, self._enterprise_name(rec.enterprise_code))

    def is_alarm_firing(self, ev: AlarmEvent) -> bool:
        rec = self.store.get_alarm(ev.alarm_id)
        return rec is not None and rec.active and ev.state is AlarmState.FIRING
