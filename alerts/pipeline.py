"""The notification pipeline, readable in one function like Alertmanager's:
inhibit -> filings -> shelve -> route -> dedup -> enqueue.

An `Intent` ("tell people that this alarm was raised / escalated / cleared ...") flows through
small stages; the suppression stages only annotate it (a suppressed subject is still
recorded and journaled by the service), `route` picks recipients with the same pure
`alerts.routing.route` that `hazardwatch route test` calls, `dedup` gives every message its
stable idempotency key and drops the ones already stored, `enqueue` stores them in the outbox.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alerts.lifecycle import AlarmRecord, WarningRecord
from alerts.model import EventType, Notification
from alerts.outbox import Outbox, stable_id
from alerts.render import platform_payload, render
from alerts.routing import (
    Recipient,
    RouteSubject,
    RoutingConfig,
    colour_at_tier,
    platform_recipient,
    role_recipients,
    route,
)
from alerts.suppression import (
    Suppression,
    SuppressionView,
    filing_suppression,
    inhibition,
    shelf_suppression,
)
from rules.model import Colour


@dataclass(frozen=True)
class Intent:
    """One reason to notify about one subject, as it moves through the stages.

    `key` identifies the occurrence (an input event, an escalation tier, a reminder number):
    the same intent built twice yields the same notification ids.
    """

    subject: AlarmRecord | WarningRecord
    event_type: EventType
    key: str
    now_ms: int
    people: bool = True  # SMS / WeCom / WeChat to the routed recipients
    platform: bool = True  # the record to the bureau's platform
    tier: int | None = None  # route at this tier (default: the subject's own)
    only_new_since_tier: int | None = None  # escalation: skip who the lower tier already told
    colour: Colour | None = None  # route at this colour (default: the subject's)
    roles: tuple[str, ...] | None = None  # only these roles instead of the colour ladder
    hold_ms: int = 0  # people's messages wait this long for a late inhibitor / clear
    platform_hold_ms: int = 0  # the platform's record waits (inhibition hold only)
    note: str = ""
    suppression: Suppression | None = None
    recipients: tuple[Recipient, ...] = ()
    notifications: tuple[Notification, ...] = ()


Stage = Callable[[Intent], Intent]


@dataclass(frozen=True)
class Pipeline:
    stages: tuple[tuple[str, Stage], ...]

    def run(self, intent: Intent) -> Intent:
        for _name, stage in self.stages:
            intent = stage(intent)
        return intent

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.stages)


def _subject_of(rec: AlarmRecord | WarningRecord) -> RouteSubject:
    return RouteSubject(rec.enterprise_code, rec.hazard_code, rec.district)


def build_pipeline(
    *,
    routing: RoutingConfig,
    view: Callable[[], SuppressionView],
    outbox: Outbox,
    link_for: Callable[[str], str],
    enterprise_name: Callable[[str], str] = lambda code: "",
) -> Pipeline:
    """The alert pipeline, in order. `view` loads the current inhibitors, filings and
    shelves (the service reads them from the store)."""

    def suppressed(intent: Intent, s: Suppression | None) -> Intent:
        if intent.suppression is not None or s is None:
            return intent
        return dataclasses.replace(intent, suppression=s, people=False, platform=False)

    def inhibit(intent: Intent) -> Intent:
        return suppressed(intent, inhibition(intent.subject, view()))

    def filings(intent: Intent) -> Intent:
        return suppressed(intent, filing_suppression(intent.subject, view().filings, intent.now_ms))

    def shelve(intent: Intent) -> Intent:
        return suppressed(intent, shelf_suppression(intent.subject, view().shelves, intent.now_ms))

    def route_stage(intent: Intent) -> Intent:
        rec = intent.subject
        out: list[Recipient] = []
        if intent.people:
            colour = intent.colour or Colour(rec.colour)
            tier = rec.tier if intent.tier is None else intent.tier
            if intent.roles is not None:
                out = role_recipients(routing, _subject_of(rec), list(intent.roles))
            else:
                out = route(routing, _subject_of(rec), colour, tier)
            if intent.only_new_since_tier is not None and intent.roles is None:
                before = {
                    r.key
                    for r in route(routing, _subject_of(rec), colour, intent.only_new_since_tier)
                }
                out = [r for r in out if r.key not in before]
        if intent.platform and routing.channels.platform:
            out.insert(0, platform_recipient())
        return dataclasses.replace(intent, recipients=tuple(out))

    def dedup(intent: Intent) -> Intent:
        rec = intent.subject
        link = link_for(rec.subject_id)
        name = enterprise_name(rec.enterprise_code)
        tier = rec.tier if intent.tier is None else intent.tier
        shown = intent.colour or colour_at_tier(Colour(rec.colour), tier)
        msg = render(
            rec, intent.event_type, link=link, enterprise_name=name, colour=shown, note=intent.note
        )
        payload = platform_payload(rec, intent.event_type, name)
        notes: list[Notification] = []
        for r in intent.recipients:
            nid = stable_id(rec.subject_id, intent.event_type, intent.key, r.channel, r.address)
            if outbox.store.has_notification(nid):
                continue
            notes.append(
                Notification(
                    id=nid,
                    channel=r.channel,
                    recipient=r.address,
                    event_type=intent.event_type,
                    subject_kind="alarm" if isinstance(rec, AlarmRecord) else "warning",
                    subject_id=rec.subject_id,
                    enterprise_code=rec.enterprise_code,
                    hazard_code=rec.hazard_code,
                    colour=str(shown),
                    level=getattr(rec, "level", None),
                    title=msg.title,
                    body=msg.body,
                    params=msg.params,
                    payload=payload if r.channel == "platform" else {},
                    link=link,
                    created_ms=intent.now_ms,
                )
            )
        return dataclasses.replace(intent, notifications=tuple(notes))

    def enqueue(intent: Intent) -> Intent:
        # The platform record is the bureau's system of record: held only for inhibition.
        held = [n for n in intent.notifications if n.channel != "platform"]
        now = [n for n in intent.notifications if n.channel == "platform"]
        stored: Sequence[Notification] = outbox.enqueue(
            now, hold_ms=intent.platform_hold_ms
        ) + outbox.enqueue(held, hold_ms=intent.hold_ms)
        return dataclasses.replace(intent, notifications=tuple(stored))

    return Pipeline(
        (
            ("inhibit", inhibit),
            ("filings", filings),
            ("shelve", shelve),
            ("route", route_stage),
            ("dedup", dedup),
            ("enqueue", enqueue),
        )
    )
