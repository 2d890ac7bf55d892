"""The durable outbox: every notification is stored (SQLite, fsynced) before any send, and
delivered at least once with its stable idempotency key (`Notification.id`).

`deliver_due(now_ms, channels)` sends what is due, in order per (channel, recipient,
subject): a later message about an alarm never overtakes an earlier one. Failures retry with
exponential backoff and deterministic jitter (derived from the id, so tests reproduce),
never sooner than a `Retry-After`. Per-(channel, recipient) rate limits declared by a channel
(WeCom: 20 a minute per robot) are respected by folding the excess into ONE digest that
lists every merged subject: nothing is dropped. After `dead_after_s` a failing notification
is dead-lettered and the operators are told (EventType.OPERATOR). A channel failing without
a success for `fallback_after_s` hands its traffic to its configured fallback channel.

A crash between a send and the commit of its result resends the same id after a restart:
that is the at-least-once contract, and the receivers deduplicate by the key. One
`deliver_due` runs at a time per outbox (a lock), normally in the runner's delivery thread.

Held rows (`AlertStore.holding`, the distributed worker's notifications whose Kafka
transitions are not committed yet) are never sent and keep the messages queued behind them
about the same subject waiting; `release` makes them deliverable once the offsets are
committed, `drop_unreleased` deletes those another worker took over. The one duplicate window
left is a send in flight when its worker dies: its row stays pending and is sent again under
the same key after the restart (a WeCom robot or a phone shows it twice).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import msgspec

from alerts.journal import Journal
from alerts.model import EventType, Notification, Verdict
from alerts.render import render_digest, render_operator
from alerts.routing import Recipient, RoutingConfig, operator_recipients
from alerts.store import AlertStore, Attempt, OutboxItem

log = logging.getLogger("alerts.outbox")


@runtime_checkable
class Channel(Protocol):
    """What the outbox needs of a channel (implemented in `alerts/channels/`)."""

    name: str
    rate_limit: tuple[int, float] | None

    def send(self, n: Notification) -> Verdict: ...


@dataclass(frozen=True)
class OutboxConfig:
    base_backoff_s: float = 5.0
    max_backoff_s: float = 300.0
    dead_after_s: float = 6 * 3600.0
    batch: int = 200  # heads considered per pass
    fallbacks: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    fallback_after_s: float = 600.0
    operators: tuple[Recipient, ...] = ()

    @classmethod
    def from_routing(cls, cfg: RoutingConfig) -> OutboxConfig:
        return cls(
            base_backoff_s=cfg.delivery.base_backoff_s,
            max_backoff_s=cfg.delivery.max_backoff_s,
            dead_after_s=cfg.delivery.dead_after_s,
            batch=cfg.delivery.batch,
            fallbacks=MappingProxyType(dict(cfg.channels.fallbacks)),
            fallback_after_s=cfg.channels.fallback_after_s,
            operators=tuple(operator_recipients(cfg)),
        )


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """One attempt's outcome, shaped like the `notification` measurement of
    docs/influx-schema.md (`dashboards.series.notification_row(**asdict(outcome))`)."""

    notification_id: str
    enterprise_code: str
    channel: str
    event_type: str
    result: str  # delivered | retrying | dead
    attempts: int
    latency_ms: float  # from being stored to this outcome
    ts_ms: int


@dataclass
class DeliveryReport:
    """What one `deliver_due` call did (the runner logs and meters it)."""

    attempted: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    digests: int = 0
    merged: int = 0
    via_fallback: int = 0
    rate_limited: int = 0  # heads left waiting for their rate-limit window
    outcomes: list[DeliveryOutcome] = field(default_factory=list)

    def _add(self, n: Notification, channel: str, result: str, attempts: int, now_ms: int) -> None:
        self.outcomes.append(
            DeliveryOutcome(
                n.id,
                n.enterprise_code,
                channel,
                str(n.event_type),
                result,
                attempts,
                float(max(now_ms - n.created_ms, 0)),
                now_ms,
            )
        )


def _frac(key: str) -> float:
    """A stable number in [0, 1) from a string (the deterministic jitter)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def backoff_ms(
    notification_id: str, attempt: int, cfg: OutboxConfig, retry_after_s: float | None = None
) -> int:
    """Delay before retry number `attempt` (1-based): exponential, capped, with "equal
    jitter" (between half and all of the step) so a fleet of retries does not stampede a
    recovering service; never sooner than the service's Retry-After."""
    step = min(cfg.max_backoff_s, cfg.base_backoff_s * 2 ** max(attempt - 1, 0))
    delay = step * (0.5 + 0.5 * _frac(f"{notification_id}:{attempt}"))
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return int(delay * 1000)


def stable_id(*parts: object) -> str:
    """An idempotency key from the parts that identify one message (32 hex chars)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Outbox:
    def __init__(
        self, store: AlertStore, config: OutboxConfig | None = None, journal: Journal | None = None
    ) -> None:
        self.store = store
        self.config = config or OutboxConfig()
        self.journal = journal or Journal(store)
        self._lock = threading.Lock()

    # -- enqueue --------------------------------------------------------------------------

    def enqueue(
        self, notifications: Iterable[Notification], *, hold_ms: int = 0
    ) -> list[Notification]:
        """Store notifications (before any send); ids already stored are skipped, so
        enqueueing the same message twice sends it once. Returns the newly stored ones."""
        stored = []
        with self.store.transaction():
            for n in notifications:
                if self.store.insert_notification(n, n.created_ms + max(hold_ms, 0)):
                    stored.append(n)
                    self.journal.append(
                        "notify.enqueued",
                        n.subject_id,
                        {
                            "id": n.id,
                            "channel": n.channel,
                            "recipient": n.recipient,
                            "event_type": str(n.event_type),
                            "hold_ms": hold_ms,
                        },
                        n.created_ms,
                    )
        return stored

    def withdraw(
        self,
        subject_id: str,
        reason: str,
        now_ms: int,
        keep_channels: Sequence[str] = (),
        only_held: bool = False,
    ) -> list[str]:
        """Withdraw what is not yet delivered for a subject (an inhibitor arrived in the
        hold window, or a back-filled alarm turned out to be cleared already). With
        `only_held`, only messages still inside their hold window and never tried."""
        with self.store.transaction():
            ids = self.store.withdraw(
                subject_id, keep_channels=keep_channels, held_after_ms=now_ms if only_held else None
            )
            if ids:
                self.journal.append(
                    "notify.withdrawn", subject_id, {"ids": ids, "reason": reason}, now_ms
                )
        return ids

    def release(self, partition: int, below_offset: int) -> int:
        """Make the rows held for inputs of `partition` before `below_offset` deliverable
        (those offsets are committed); returns how many."""
        return self.store.release_held(partition, below_offset)

    def drop_unreleased(
        self,
        now_ms: int,
        reason: str,
        partition: int | None = None,
        below_offset: int | None = None,
    ) -> list[str]:
        """Delete held rows (see `AlertStore.drop_unreleased`) and journal it per subject;
        returns their ids."""
        with self.store.transaction():
            rows = self.store.drop_unreleased(partition, below_offset)
            by_subject: dict[str, list[str]] = {}
            for r in rows:
                by_subject.setdefault(r.notification.subject_id, []).append(r.notification.id)
            for subject_id, ids in by_subject.items():
                self.journal.append(
                    "notify.dropped", subject_id, {"ids": ids, "reason": reason}, now_ms
                )
        return [r.notification.id for r in rows]

    # -- delivery -------------------------------------------------------------------------

    def deliver_due(self, now_ms: int, channels: Mapping[str, Channel]) -> DeliveryReport:
        """Send everything due at `now_ms`; safe to call as often as wanted."""
        report = DeliveryReport()
        with self._lock:
            for _ in range(64):  # each pass sends the current head of every subject queue
                progressed = self._pass(now_ms, channels, report)
                if not progressed:
                    break
        return report

    def _pass(self, now_ms: int, channels: Mapping[str, Channel], report: DeliveryReport) -> bool:
        dead_ms = self.config.dead_after_s * 1000
        heads: list[OutboxItem] = []
        seen: set[tuple[str, str, str]] = set()
        # Schedule from light rows; decode only the heads that are actionable now.
        index = self.store.outbox_index(("pending", "merged"))
        for row_ in index:
            _seq, nid, chan_, rcpt, subj, state, not_before, next_at, attempts, created = row_[:10]
            k = (chan_, rcpt, subj)
            if k in seen:
                continue  # an earlier message about this subject goes first
            seen.add(k)
            if row_[10] or state != "pending" or not_before > now_ms:  # held: not released
                continue
            if next_at > now_ms and not (attempts > 0 and now_ms - created >= dead_ms):
                continue
            item = self.store.get_notification(nid)
            if item is not None and item.state == "pending":  # not withdrawn meanwhile
                heads.append(item)
        progressed = False
        groups: dict[tuple[str, str], list[tuple[OutboxItem, str]]] = {}
        for row in heads:
            n = row.notification
            if row.attempts > 0 and now_ms - row.created_ms >= dead_ms:
                self._dead(
                    row,
                    f"undelivered after {self.config.dead_after_s:.0f} s: {row.last_error}",
                    now_ms,
                    report,
                )
                progressed = True
                continue
            if row.next_attempt_ms > now_ms:
                continue
            chan = self._pick_channel(n.channel, channels, now_ms)
            if chan is None:
                self._dead(row, f"no channel {n.channel!r} is configured", now_ms, report)
                progressed = True
                continue
            groups.setdefault((chan, n.recipient), []).append((row, chan))
            if len(groups) > self.config.batch:
                break
        for (chan_name, recipient), items in groups.items():
            ch = channels[chan_name]
            limit = getattr(ch, "rate_limit", None)
            if limit:
                max_n, per_s = limit
                used = len(
                    self.store.attempts_since(chan_name, recipient, now_ms - int(per_s * 1000) + 1)
                )
                cap = max_n - used
                if cap <= 0:
                    report.rate_limited += len(items)
                    continue
                if len(items) > cap:
                    # Earlier digests go first and are never folded again (a digest of
                    # digests would hide the alarms they list); the rest share what is left
                    # of the window, the last slot being one new digest.
                    digests = [x for x in items if x[0].notification.event_type is EventType.DIGEST]
                    others = [x for x in items if x not in digests]
                    for row, _ in digests[:cap]:
                        self._send(row, ch, now_ms, report)
                    cap -= min(cap, len(digests))
                    if cap == 0 or not others:
                        report.rate_limited += len(others)
                        progressed = True
                        continue
                    if len(others) > cap:
                        keep, fold = others[: cap - 1], others[cap - 1 :]
                    else:
                        keep, fold = others, []
                    for row, _ in keep:
                        self._send(row, ch, now_ms, report)
                    if len(fold) == 1:
                        self._send(fold[0][0], ch, now_ms, report)
                    elif fold:
                        digest_row = self._merge([r for r, _ in fold], now_ms, report)
                        self._send(digest_row, ch, now_ms, report)
                    progressed = True
                    continue
            for row, _ in items:
                if self._send(row, ch, now_ms, report):
                    progressed = True
        return progressed

    def _pick_channel(self, name: str, channels: Mapping[str, Channel], now_ms: int) -> str | None:
        fb = self.config.fallbacks.get(name)
        if name in channels:
            since = self.store.channel_failing_since(name)
            if (
                fb in channels
                and since is not None
                and now_ms - since >= self.config.fallback_after_s * 1000
            ):
                return fb
            return name
        return fb if fb in channels else None

    def _merge(self, rows: list[OutboxItem], now_ms: int, report: DeliveryReport) -> OutboxItem:
        """Fold rows for one (channel, recipient) into one digest notification, stored first."""
        first = rows[0].notification
        ids = [r.notification.id for r in rows]
        msg = render_digest(
            [(r.notification.subject_id, r.notification.title) for r in rows],
            first.recipient,
            min(r.created_ms for r in rows),
            now_ms,
        )
        enterprises = sorted({r.notification.enterprise_code for r in rows})
        digest = Notification(
            id=stable_id("digest", *ids),
            channel=first.channel,
            recipient=first.recipient,
            event_type=EventType.DIGEST,
            subject_kind="digest",
            subject_id=stable_id("digest-subject", *ids),
            enterprise_code=enterprises[0] if len(enterprises) == 1 else "*",
            title=msg.title,
            body=msg.body,
            params=msg.params,
            payload={"merged": ids, "subjects": [r.notification.subject_id for r in rows]},
            created_ms=now_ms,
        )
        with self.store.transaction():
            self.store.insert_notification(digest, now_ms)
            for r in rows:
                self.store.update_outbox(r.notification.id, state="merged", digest_id=digest.id)
            self.journal.append(
                "notify.digest",
                digest.subject_id,
                {
                    "id": digest.id,
                    "merged": ids,
                    "recipient": first.recipient,
                    "channel": first.channel,
                },
                now_ms,
            )
        report.digests += 1
        report.merged += len(rows)
        item = self.store.get_notification(digest.id)
        assert item is not None
        return item

    def _send(self, row: OutboxItem, ch: Channel, now_ms: int, report: DeliveryReport) -> bool:
        n = row.notification
        used = ch.name
        if used != n.channel:
            n = msgspec.structs.replace(n, channel=used)
            report.via_fallback += 1
        report.attempted += 1
        try:
            verdict = ch.send(n)
        except Exception as exc:  # noqa: BLE001 - a channel must not stop the outbox
            # Only the type: a message could carry a URL with a key in it.
            verdict = Verdict.retry(f"channel raised {type(exc).__name__}")
        attempt_no = row.attempts + 1
        with self.store.transaction():
            self.store.add_attempt(
                Attempt(
                    n.id,
                    now_ms,
                    used,
                    n.recipient,
                    verdict.ok,
                    verdict.retryable,
                    verdict.status,
                    verdict.reason,
                )
            )
            self.store.set_channel_health(used, verdict.ok, now_ms)
            self.journal.append(
                "notify.attempt",
                n.subject_id,
                {
                    "id": n.id,
                    "channel": used,
                    "recipient": n.recipient,
                    "attempt": attempt_no,
                    "ok": verdict.ok,
                    "retryable": verdict.retryable,
                    "status": verdict.status,
                    "reason": verdict.reason,
                },
                now_ms,
                actor=used,
            )
            if verdict.ok:
                self.store.update_outbox(
                    n.id,
                    state="delivered",
                    delivered_ms=now_ms,
                    attempts=attempt_no,
                    via_channel=used,
                    last_error="",
                )
                if n.event_type is EventType.DIGEST:
                    for r in self.store.list_outbox(state="merged"):
                        if r.digest_id == n.id:
                            self.store.update_outbox(
                                r.notification.id, state="digested", delivered_ms=now_ms
                            )
                report.delivered += 1
                report._add(n, used, "delivered", attempt_no, now_ms)
                return True
            first_fail = row.first_failure_ms if row.first_failure_ms is not None else now_ms
            if verdict.retryable:
                nxt = now_ms + backoff_ms(n.id, attempt_no, self.config, verdict.retry_after_s)
                self.store.update_outbox(
                    n.id,
                    attempts=attempt_no,
                    next_attempt_ms=nxt,
                    first_failure_ms=first_fail,
                    last_error=verdict.reason,
                )
                report.retried += 1
                report._add(n, used, "retrying", attempt_no, now_ms)
                return False
            self.store.update_outbox(
                n.id, attempts=attempt_no, first_failure_ms=first_fail, last_error=verdict.reason
            )
        fresh = self.store.get_notification(n.id)
        self._dead(fresh or row, f"refused by {used}: {verdict.reason}", now_ms, report)
        return True

    def _dead(self, row: OutboxItem, reason: str, now_ms: int, report: DeliveryReport) -> None:
        n = row.notification
        with self.store.transaction():
            self.store.update_outbox(n.id, state="dead", last_error=reason)
            if n.event_type is EventType.DIGEST:
                for r in self.store.list_outbox(state="merged"):
                    if r.digest_id == n.id:
                        self.store.update_outbox(
                            r.notification.id, state="dead", last_error=f"digest dead: {reason}"
                        )
            self.journal.append(
                "notify.dead",
                n.subject_id,
                {"id": n.id, "channel": n.channel, "recipient": n.recipient, "reason": reason},
                now_ms,
            )
            if n.event_type is not EventType.OPERATOR:
                # The operators must hear of it; their own dead letters tell nobody (no loop).
                msg = render_operator(
                    f"通知投递失败 {n.channel}->{n.recipient} ({n.subject_id}): {reason}"[:200],
                    now_ms,
                )
                self.enqueue(
                    [
                        Notification(
                            id=stable_id("operator", n.id, r.channel, r.address),
                            channel=r.channel,
                            recipient=r.address,
                            event_type=EventType.OPERATOR,
                            subject_kind="operator",
                            subject_id=n.id,
                            enterprise_code=n.enterprise_code,
                            title=msg.title,
                            body=msg.body,
                            params=msg.params,
                            payload={"dead": n.id, "reason": reason},
                            created_ms=now_ms,
                        )
                        for r in self.config.operators
                    ]
                )
        log.error("outbox: dead-lettered %s (%s -> %s): %s", n.id, n.channel, n.recipient, reason)
        report.dead += 1
        report._add(n, n.channel, "dead", row.attempts, now_ms)
