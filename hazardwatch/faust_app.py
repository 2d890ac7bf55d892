"""The distributed pipeline on faust-streaming: the module `faust -A hazardwatch.faust_app
worker` (or `hazardwatch worker`) imports.

    readings topic (keyed by enterprise, from `hazardwatch bridge`)
      -> agent `rules`: engine + warning model per enterprise, state in Faust tables
         (changelog topics; RocksDB when rocksdict is installed, else memory + changelog)
      -> transitions topic (alarm and warning events, keyed by enterprise)
      -> agent `alerts`: AlertService with this worker's SQLite outbox -> channels

Agents stay thin: decode, call the core (`EnterpriseCore`/`LiveStates`, pure and tested
without Kafka), send. A 1 s timer ticks the enterprises of the partitions this worker owns, so
offline and on-delay timers fire without data. Why restarts are safe: the state is kept in
memory and written to the tables every `FLUSH_INTERVAL_S`; transitions are ACKED by Kafka
before a write of the state that follows from them, and a readings record is acknowledged
(its offset committable) only after a write of a state that includes it and once its readings
are in InfluxDB or a spill file (`TimeseriesFeed.sync`). A crash therefore re-reads records
whose effects are either not in the tables (re-applied: same deterministic alarm ids; the
alerts service ignores what it has) or in them with the record's offset (not evaluated again,
see `LiveStates.includes`, but their readings are written again: the same points).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from hazardwatch.read_guard import ReadGuard
from rules.model import AlarmEvent, WarningEvent

log = logging.getLogger(__name__)

#: Header on a readings-topic record that is a command, not readings (same key and partition
#: as the enterprise's readings, so it is ordered with them and reaches the owner of its state).
CONTROL_HEADER = "hw-control"
WORKER_ID_ENV = "HAZARDWATCH_WORKER_ID"  # not HW_*: it names a process, it is not a setting
#: How long an enterprise's newest state may live only in a worker's memory before it is
#: written to its table (changelog) and the readings records it includes are acknowledged.
#: Longer writes less; a crash re-processes up to this much more (harmless, see `flush`).
FLUSH_INTERVAL_S = 0.5
#: How long one round of acknowledgements waits for its readings to be durable in the
#: time-series path (InfluxDB, else spill files) before it is retried with the next round.
SYNC_TIMEOUT_S = 2.0


class Transition(msgspec.Struct, frozen=True, omit_defaults=True):
    """One record of the transitions topic: an alarm or a warning event."""

    alarm: AlarmEvent | None = None
    warning: WarningEvent | None = None


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Transition)


def encode_transition(ev: AlarmEvent | WarningEvent) -> bytes:
    if isinstance(ev, AlarmEvent):
        return _enc.encode(Transition(alarm=ev))
    return _enc.encode(Transition(warning=ev))


def decode_transition(data: bytes) -> AlarmEvent | WarningEvent:
    t = _dec.decode(data)
    ev = t.alarm or t.warning
    if ev is None:
        raise ValueError("transition record holds neither an alarm nor a warning")
    return ev


def wall_ms() -> int:
    # The guarded clock: a step of the system clock neither floods nor stalls the timers.
    from hazardwatch.clock import wall_ms as guarded_wall_ms

    return guarded_wall_ms()


# ------------------------------------------------------------------------------------------------
# Commit receipts: who committed a transitions offset.
#
# Each worker sends the notifications of the transitions whose offsets *it* committed, and only
# those (see `alerts_agent`). The alerts agent commits its transitions offsets itself, with a
# receipt in the commit's metadata: the worker, a token naming this commit, and the offset at
# which the worker's reading of the partition began in its current assignment. A live worker
# always learns whether its commit landed; a worker killed with a commit in flight finds the
# commit's intent in its store at the next start and resolves it with `intent_outcome`.

RECEIPT_VERSION = "hw1"
START_OFFSETS_TIMEOUT_S = 5.0  # asking the group's committed offsets (read guard)


def receipt(worker: str, token: str, start: int) -> str:
    """Commit metadata: `hw1 <worker> <token> <start offset of this assignment>`."""
    return f"{RECEIPT_VERSION} {worker.replace(' ', '_')} {token} {start}"


def parse_receipt(metadata: str | None) -> tuple[str, str, int] | None:
    """(worker, token, start) of a receipt, or None for metadata that is not one (a commit
    by Faust itself, an older hazardwatch or a tool)."""
    parts = (metadata or "").split(" ")
    if len(parts) != 4 or parts[0] != RECEIPT_VERSION:
        return None
    try:
        return parts[1], parts[2], int(parts[3])
    except ValueError:
        return None


HANDOVER_VERSION = 2


def handover_resolve(
    doc: dict[str, Any] | None, committed_of: Callable[[int], int | None]
) -> dict[str, Any] | None:
    """The alert record (with its applied events) a worker taking over should trust, from
    an `alert-records` table value.

    A batch's records are written before its transitions' commit, as `{"v": 2, "final":
    <the record before the batch>, "pending": <after it>, "p": <transitions partition>,
    "upto": <the offset committed with it>}`, and rewritten as `{"v": 2, "final": <after>}`
    once the commit lands. The pending record counts only if the group's committed offset
    of its partition (`committed_of(p)`, as the taking-over worker read it when its reading
    began) reached `upto`:
    - its writer was killed after the commit landed and before the rewrite: the pending
      record is what people were told; reading the older one, the next owner would notify
      again the transitions the rules stage re-sends after a failover;
    - the commit was refused or never made: the next owner reads those transitions again,
      and must apply them to the record as it was before them, or it would take them for
      replays and notify nobody (fault suite, 16:00 UTC: a tank temperature alarm's raise).
    A value without "v" was written by an older worker: the record itself."""
    if doc is None or doc.get("v") != HANDOVER_VERSION:
        return doc
    if "pending" in doc:
        committed = committed_of(int(doc["p"]))
        if committed is not None and committed >= int(doc["upto"]):
            return doc["pending"]
    return doc.get("final")


def intent_outcome(offset: int, token: str, committed: int | None, metadata: str | None) -> str:
    """Did the commit of `offset` under `token`, whose outcome a kill -9 hid, land?

    `committed`/`metadata` are the group's committed offset of the partition now. Committed
    offsets of the transitions topic only move forward (every worker commits from where its
    reading began, which is the committed offset at its assignment), so:

    - nothing committed at or past `offset`: it did not land ("refused");
    - the receipt is ours: it landed and is still the newest ("landed");
    - another worker's receipt: if its reading began at or past `offset`, our commit had
      landed before that worker was assigned the partition ("landed"); if it began before,
      that worker read our transitions again and sent their messages ("refused");
    - metadata that is no receipt: "unknown" (the caller releases: a possible duplicate
      message is better than a lost alarm).
    """
    if committed is None or committed < offset:
        return "refused"
    rc = parse_receipt(metadata)
    if rc is None:
        return "unknown"
    _, their_token, start = rc
    if their_token == token:
        return "landed"
    return "landed" if start >= offset else "refused"


# ------------------------------------------------------------------------------------------------
# The pure core the agents call: per-enterprise engine and warning state as bytes.


@dataclass(slots=True)
class Step:
    engine: bytes
    warnings: bytes
    alarms: list[AlarmEvent]
    events: list[WarningEvent]


class EnterpriseCore:
    """Evaluation for one enterprise at a time. State is per enterprise (the Kafka key), so a
    partition can move between workers with exactly the state of its enterprises; an engine
    per enterprise is built lazily over the enterprise's slice of the registry. These methods
    are pure, bytes in and bytes out; the worker keeps decoded state in `LiveStates`."""

    def __init__(self, bundle: Any) -> None:
        from rules.warnings import WarningModel

        self.bundle = bundle
        self.registry = bundle.registry
        self.warnings = WarningModel(bundle.warning_config, bundle.registry)
        self._engines: dict[str, Any] = {}
        self._wstate_type = type(self.warnings.initial_state())

    @property
    def version(self) -> str:
        return str(self.bundle.ruleset.version)

    def enterprises(self) -> tuple[str, ...]:
        return self.registry.enterprises()

    def engine(self, enterprise: str) -> Any:
        eng = self._engines.get(enterprise)
        if eng is None:
            from ingest.model import Registry
            from rules.engine import Engine

            sub = Registry(self.registry.enterprise(enterprise), version=self.registry.version)
            eng = self._engines[enterprise] = Engine(
                enterprise_ruleset(self.bundle.ruleset, enterprise), sub
            )
        return eng

    def decode(
        self, ent: str, est: bytes | None, wst: bytes | None, now_ms: int
    ) -> tuple[Any, Any]:
        """Engine and warning state from their stored bytes (fresh ones when there are none)."""
        eng = self.engine(ent)
        e = eng.load_state(est) if est else eng.initial_state(now_ms)
        w = self._wstate_type.load(wst) if wst else self.warnings.initial_state()
        return e, w

    def eval_process(self, ent: str, e: Any, w: Any, readings: Sequence[Any], now_ms: int):
        e, alarms = self.engine(ent).process(e, readings, now_ms)
        w, events = self.warnings.on_alarms(w, alarms, now_ms) if alarms else (w, [])
        return e, w, alarms, events

    def eval_tick(self, ent: str, e: Any, w: Any, now_ms: int, *, engine: bool = True):
        """Timers up to `now_ms`. `engine=False` ticks only the warning model: the engine's
        timers were evaluated up to (about) now by a batch an instant ago."""
        alarms: list[AlarmEvent] = []
        if engine:
            e, alarms = self.engine(ent).tick(e, now_ms)
        w, events = self.warnings.on_alarms(w, alarms, now_ms) if alarms else (w, [])
        w, more = self.warnings.tick(w, now_ms)
        return e, w, alarms, [*events, *more]

    def eval_close_warning(self, ent: str, e: Any, w: Any, warning_id: str, now_ms: int):
        try:
            w, events = self.warnings.close(w, warning_id, now_ms)
        except KeyError:
            events = []
        return e, w, [], list(events)

    def process(
        self, ent: str, est: bytes | None, wst: bytes | None, readings: Sequence[Any], now_ms: int
    ) -> Step:
        e, w = self.decode(ent, est, wst, now_ms)
        return _step(*self.eval_process(ent, e, w, readings, now_ms))

    def tick(self, ent: str, est: bytes | None, wst: bytes | None, now_ms: int) -> Step:
        e, w = self.decode(ent, est, wst, now_ms)
        return _step(*self.eval_tick(ent, e, w, now_ms))

    def close_warning(
        self, ent: str, est: bytes | None, wst: bytes | None, warning_id: str, now_ms: int
    ) -> Step:
        e, w = self.decode(ent, est, wst, now_ms)
        return _step(*self.eval_close_warning(ent, e, w, warning_id, now_ms))


def _step(e: Any, w: Any, alarms: list[AlarmEvent], events: list[WarningEvent]) -> Step:
    return Step(e.to_bytes(), w.to_bytes(), alarms, events)


class LiveStates:
    """The newest engine and warning state of the enterprises this worker serves, decoded and
    kept in memory, ahead of the Faust tables by at most one flush.

    Encoding an enterprise's state (~110 KB for 500 points) and sending it to the changelog
    after every batch cost more than evaluating the batch; the worker now writes each
    enterprise that changed (`take_dirty`) at most every `FLUSH_INTERVAL_S`, and acknowledges
    the Kafka records a flush covers only after it (see `create_app` for why that is safe).
    `stored(key)` reads the tables: the state of an enterprise not in memory is decoded from
    there once, after a start or a rebalance (`forget`).

    With each state goes the (partition, offset) of the newest readings record it includes,
    so a record consumed again after a crash or rebalance (its offset was not committed yet
    when the state was written) is recognised (`includes`) and not applied twice: the engine
    would take its readings as late data, not as a repeat."""

    def __init__(
        self,
        core: EnterpriseCore,
        stored: Callable[[bytes], tuple[bytes | None, bytes | None, bytes | None]],
        start_ms: int | None = None,
    ) -> None:
        self.core = core
        self._stored = stored
        self.start_ms = start_ms  # a fresh state starts here at the latest (worker start)
        self._live: dict[str, tuple[Any, Any]] = {}
        self._evaluated: dict[str, int] = {}  # wall ms of the last engine evaluation
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self._applied: dict[str, tuple[int, int]] = {}  # newest record in the state

    def _get(self, ent: str, now_ms: int, start_ms: int | None = None) -> tuple[Any, Any]:
        hit = self._live.get(ent)
        if hit is None:
            est, wst, applied = self._stored(ent.encode())
            start = min(x for x in (now_ms, start_ms, self.start_ms) if x is not None)
            hit = self._live[ent] = self.core.decode(ent, est, wst, start)
            if applied:
                part, _, off = applied.partition(b":")
                self._applied[ent] = (int(part), int(off))
            if est is None:
                self._dirty[ent] = None  # a fresh state is written so a restart resumes it
        return hit

    def _keep(
        self, ent: str, result: tuple, dirty: bool, record: tuple[int, int] | None = None
    ) -> tuple[list, list]:
        e, w, alarms, events = result
        self._live[ent] = (e, w)
        if record is not None:
            self._applied[ent] = record
        if dirty or alarms or events or record is not None:
            self._dirty[ent] = None
        return alarms, events

    def includes(
        self, ent: str, partition: int, offset: int, now_ms: int, first_seen_ms: int | None = None
    ) -> bool:
        """Whether the enterprise's state already includes this readings record."""
        self._get(ent, now_ms, first_seen_ms)
        done = self._applied.get(ent)
        return done is not None and done[0] == partition and offset <= done[1]

    def process(
        self,
        ent: str,
        readings: Sequence[Any],
        now_ms: int,
        first_seen_ms: int | None = None,
        record: tuple[int, int] | None = None,
    ) -> tuple[list, list]:
        """Evaluate a batch of the enterprise's readings: (alarm events, warning events).

        A fresh state starts at the worker's start or `first_seen_ms` (when the bridge received
        the oldest of these readings), whichever is earlier, as the embedded runner's state
        starts before its first reading: started at the (later) processing time instead, a
        backlog's readings would all be older than every point's last-seen time and take the
        engine's per-reading path (2-4x the cost) until event time caught up with that start,
        which a lagging worker never does. `record`: (partition, offset) of the newest
        readings record in the batch."""
        e, w = self._get(ent, now_ms, first_seen_ms)
        self._evaluated[ent] = now_ms
        return self._keep(ent, self.core.eval_process(ent, e, w, readings, now_ms), True, record)

    def tick(self, ent: str, now_ms: int, every_ms: int = 1000) -> tuple[list, list]:
        """Timers. The engine's are skipped when a batch evaluated them less than `every_ms`
        ago (under load, every enterprise has one: ticking it again only costs time)."""
        e, w = self._get(ent, now_ms)
        # also when the clock went back (an adopted backward step): never wait it out
        engine = not 0 <= now_ms - self._evaluated.get(ent, -every_ms) < every_ms
        if engine:
            self._evaluated[ent] = now_ms
        # a tick without transitions only advances timers a restart re-derives: not dirty
        return self._keep(ent, self.core.eval_tick(ent, e, w, now_ms, engine=engine), False)

    def close_warning(
        self, ent: str, warning_id: str, now_ms: int, record: tuple[int, int] | None = None
    ) -> tuple[list, list]:
        e, w = self._get(ent, now_ms)
        result = self.core.eval_close_warning(ent, e, w, warning_id, now_ms)
        return self._keep(ent, result, False, record)

    def dirty(self) -> bool:
        return bool(self._dirty)

    def take_dirty(self) -> list[tuple[bytes, bytes, bytes, bytes]]:
        """(key, engine bytes, warning bytes, newest record as b"partition:offset" or b"") of
        every enterprise changed since the last call."""
        out = []
        for ent in self._dirty:
            e, w = self._live[ent]
            done = self._applied.get(ent)
            mark = f"{done[0]}:{done[1]}".encode() if done else b""
            out.append((ent.encode(), e.to_bytes(), w.to_bytes(), mark))
        self._dirty.clear()
        return out

    def forget(self) -> None:
        """Drop everything in memory, changes not yet taken included: after a rebalance the
        tables (recovered from the changelogs) are the truth, and the records behind the
        dropped changes were never acknowledged, so they are consumed again."""
        self._live.clear()
        self._evaluated.clear()
        self._dirty.clear()
        self._applied.clear()


def enterprise_ruleset(ruleset: Any, enterprise: str) -> Any:
    """The slice of a compiled RuleSet that concerns one enterprise (its points, vote groups
    and gateways; nothing in a rule spans enterprises). Same version: the rules are the same,
    and every alarm names the ruleset that produced it."""
    import dataclasses

    prefix = enterprise + "/"
    return dataclasses.replace(
        ruleset,
        points={k: v for k, v in ruleset.points.items() if k.startswith(prefix)},
        votes=tuple(v for v in ruleset.votes if v.enterprise_code == enterprise),
        gateways=tuple(g for g in ruleset.gateways if g.enterprise_code == enterprise),
    )


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the bridge's producer) picks."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


# ------------------------------------------------------------------------------------------------
# The Faust app.


def _store_url() -> str:
    try:
        import rocksdict  # noqa: F401
    except ImportError:
        return "memory://"
    return "rocksdb://"


def create_app(settings: Any, worker_id: str | None = None) -> Any:
    """Build the Faust app, its topics, tables, agents and timers from settings."""
    import faust

    from hazardwatch.metrics import Metrics
    from hazardwatch.runner import BatchOutcome
    from hazardwatch.wiring import (
        TimeseriesFeed,
        build_alerts,
        build_channels,
        build_timeseries_writer,
        clock_witness,
        load_rules,
        rule_sources,
    )

    clock_witness(settings)  # the guarded clock weighs the gateways' timestamps as configured
    k = settings.kafka
    worker = worker_id or os.environ.get(WORKER_ID_ENV) or "worker-0"
    data_dir = Path(settings.storage.data_dir) / "faust" / worker
    data_dir.mkdir(parents=True, exist_ok=True)  # Faust creates only the last level
    brokers = ";".join(f"kafka://{b.strip()}" for b in k.bootstrap_servers.split(",") if b.strip())
    app = faust.App(
        k.app_id,
        broker=brokers or "kafka://127.0.0.1:9092",
        store=_store_url(),
        datadir=str(data_dir),
        topic_partitions=k.partitions,
        topic_replication_factor=1,
        web_enabled=False,
        # Offsets commit often so a restart re-processes little (re-processing is harmless).
        broker_commit_every=100,
        broker_commit_interval=1.0,
        producer_acks=-1,
        stream_wait_empty=False,
        table_standby_replicas=0,
        # A dead worker's partitions move after the session timeout: Faust's 60 s default
        # would hold alarms back for a minute.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        consumer_auto_offset_reset="earliest",
    )
    readings = app.topic(
        k.readings_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=k.partitions,
    )
    transitions = app.topic(
        k.alarms_topic,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=k.partitions,
    )

    # use_partitioner: the timer writes outside an event; the key's murmur2 partition is the
    # enterprise's readings partition, so changelog partitions stay co-located with readings.
    class EnterpriseTable(faust.Table):
        """State keyed by enterprise, stored in the changelog partition of the enterprise's
        readings partition. The 1 s tick writes outside any event, where Faust would either
        refuse (no event to take the partition from) or ask the producer's partitioner, which
        may not have the changelog's metadata yet; the partition is known, so say it."""

        def partition_for_key(self, key: Any) -> int:
            return partition_for(key, k.partitions)

    def table(name: str) -> Any:
        # bytes key and value types make Faust use the raw codec for the changelog too.
        return app.tables.add(
            EnterpriseTable(
                app,
                name=name,
                default=None,
                beacon=app.tables.beacon,
                key_type=bytes,
                value_type=bytes,
                partitions=k.partitions,
            )
        )

    class SubjectTable(faust.Table):
        """Alert records keyed `enterprise|subject id`, in the changelog partition of the
        enterprise's transitions partition (see `Handover`)."""

        def partition_for_key(self, key: Any) -> int:
            return partition_for(key.split(b"|", 1)[0], k.partitions)

    subject_table = app.tables.add(
        SubjectTable(
            app,
            name="alert-records",
            default=None,
            beacon=app.tables.beacon,
            key_type=bytes,
            value_type=bytes,
            partitions=k.partitions,
        )
    )

    # Alert records changed by the alerts batches not committed yet, by transitions
    # partition: `commit_alerts` writes them as pending on its commit before committing, and
    # as final once it lands (see handover_resolve).
    handover_pending: dict[int, dict[bytes, Any]] = {}
    in_alerts_batch = [False]

    class Handover:
        """The alerts service's records shared through the `alert-records` table: a worker
        that takes over a transitions partition restores the table with it, so it applies
        the next transition of an alarm another worker raised to that worker's record (its
        phase, its acknowledgement, whether people were told) instead of a blank one.
        Written on the event loop (Faust's producer is not thread-safe). An alerts batch's
        records are written as pending on its commit before the commit (`commit_alerts`
        flushes the producer in between) and as final once it lands; a reader trusts a
        pending one only if the group committed its offset (`handover_resolve`)."""

        def get(self, enterprise: str, subject_id: str) -> dict[str, Any] | None:
            return self.resolved(f"{enterprise}|{subject_id}".encode())

        def resolved(self, key: bytes) -> dict[str, Any] | None:
            raw = subject_table.get(key)
            doc = None if raw is None else msgspec.json.decode(raw)
            return handover_resolve(doc, transitions_committed)

        def put(self, enterprise: str, subject_id: str, data: dict[str, Any] | None) -> None:
            key = f"{enterprise}|{subject_id}".encode()
            if in_alerts_batch[0]:
                p = partition_for(enterprise.encode(), k.partitions)
                handover_pending.setdefault(p, {})[key] = data
                return
            self.write(key, data)

        def write_pending(self, key: bytes, data: dict[str, Any] | None, p: int, upto: int) -> None:
            """Before the commit of `upto` on transitions partition `p` (see handover_resolve);
            on the event loop."""
            doc = {
                "v": HANDOVER_VERSION,
                "final": self.resolved(key),
                "pending": data,
                "p": p,
                "upto": upto,
            }
            subject_table[key] = msgspec.json.encode(doc)

        def write(self, key: bytes, data: dict[str, Any] | None) -> None:
            def write() -> None:
                if data is None:
                    subject_table.pop(key, None)
                else:
                    subject_table[key] = msgspec.json.encode({"v": HANDOVER_VERSION, "final": data})

            if threading.current_thread() is threading.main_thread():
                write()
            else:
                app.loop.call_soon_threadsafe(write)

    handover = Handover()

    engine_table = table("engine-state")
    warning_table = table("warning-state")
    applied_table = table("applied-record")  # see LiveStates: the newest record in the state

    metrics = Metrics(process=worker)
    holder: dict[str, Any] = {}
    sources = rule_sources(settings)

    def feed() -> Any:
        """Readings, alarms and warnings for InfluxDB (or line-protocol files), written by a
        thread that never holds up the agents; `pipeline`/`reject` rows every 10 s."""
        f = holder.get("feed")
        if f is None:
            f = holder["feed"] = TimeseriesFeed(
                build_timeseries_writer(settings), core().registry, metrics, process=worker
            )
        return f

    def core() -> EnterpriseCore:
        c = holder.get("core")
        if c is None:
            c = holder["core"] = EnterpriseCore(load_rules(sources))
            metrics.set_ruleset(c.version)
        return c

    def alerts() -> Any:
        svc = holder.get("alerts")
        if svc is None:
            from alerts.store import AlertStore

            store = AlertStore(data_dir / "alerts.db")

            def closed(warning_id: str, now_ms: int) -> None:
                ent = warning_id_enterprise.get(warning_id)
                if ent is not None:
                    app.loop.call_soon_threadsafe(
                        lambda: app.loop.create_task(
                            readings.send(
                                key=ent.encode(),
                                value=warning_id.encode(),
                                headers={CONTROL_HEADER: b"close-warning"},
                            )
                        )
                    )

            svc = holder["alerts"] = build_alerts(
                settings, core().registry, store, on_warning_closed=closed, handover=handover
            )
            holder["store"] = store
        return svc

    warning_id_enterprise: dict[str, str] = {}

    # Everything that reads or changes live state, sends transitions or flushes runs under one
    # lock, so a flush never writes a state whose transitions are still on their way to Kafka,
    # and a rebalance never lands in the middle of a batch.
    lock = asyncio.Lock()
    started_ms = wall_ms()
    unacked: list[Any] = []  # readings records whose effects are in memory, not in a table yet
    # Records whose states are in the tables, waiting for their readings to be durable in the
    # time-series path before they are acknowledged: (round number, records), oldest first.
    durable_wait: list[tuple[int, list[Any]]] = []
    rounds = [0]
    acker_wake = asyncio.Event()
    flushed_at = [time.monotonic()]
    generation = [0]  # bumped when partitions are revoked
    rules_start: dict[int, int] = {}  # readings partition -> first offset read (for the log)

    async def group_offsets(topic: str, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        """The group's committed offsets and metadata of `topic`'s partitions, asked of the
        group coordinator directly (not Faust's bookkeeping, which records refused commits
        as done)."""
        from aiokafka.admin import AIOKafkaAdminClient
        from aiokafka.structs import TopicPartition

        admin = AIOKafkaAdminClient(bootstrap_servers=k.bootstrap_servers)
        await admin.start()
        try:
            got = await admin.list_consumer_group_offsets(
                app.conf.id, partitions=[TopicPartition(topic, p) for p in partitions]
            )
        finally:
            await admin.close()
        out: dict[int, tuple[int | None, str]] = {}
        for tp, om in got.items():
            off = om.offset if om.offset is not None and om.offset >= 0 else None
            out[tp.partition] = (off, om.metadata or "")
        return out

    async def committed_offsets(tps: list[Any]) -> dict[Any, int | None]:
        """Kafka's committed offsets of partitions (None: nothing committed), within
        START_OFFSETS_TIMEOUT_S, or an exception. Asked with an admin client of its own,
        never through Faust's consumer thread: during a rebalance that waits for the
        revocation handlers, which wait for the agents (a worker hung in a rebalance for good
        when this asked the consumer)."""
        out: dict[Any, int | None] = {}
        for topic in {tp.topic for tp in tps}:
            mine = [tp for tp in tps if tp.topic == topic]
            got = await asyncio.wait_for(
                group_offsets(topic, [tp.partition for tp in mine]), START_OFFSETS_TIMEOUT_S
            )
            out.update({tp: got.get(tp.partition, (None, ""))[0] for tp in mine})
        return out

    async def start_offsets(tps: list[Any]) -> dict[Any, int | None]:
        """Where the read guard's reading of each partition begins: `committed_offsets`, or
        Faust's own view when Kafka does not answer in time (an agent must not wait: one
        stuck here left a partition unread after a failover)."""
        try:
            return await committed_offsets(tps)
        except Exception as exc:  # noqa: BLE001 - Kafka slow or away
            log.warning(
                "asking Kafka for the committed offsets of %s failed (%s); using the "
                "consumer's own",
                sorted(f"{tp.topic}[{tp.partition}]" for tp in tps),
                type(exc).__name__,
            )
            return {tp: app.consumer._committed_offset.get(tp) for tp in tps}

    async def seek(tp: Any, offset: int) -> None:
        await app.consumer.seek(tp, offset)

    # See hazardwatch/read_guard.py: no record processed beyond one never read.
    readings_guard = ReadGuard("rules", start_offsets=start_offsets, seek=seek)
    transitions_guard = ReadGuard("alerts", start_offsets=start_offsets, seek=seek)

    def transitions_committed(p: int) -> int | None:
        """Transitions partition p's committed offset when this assignment began reading it
        (None: not read yet in this assignment)."""
        return transitions_guard.start_of(k.alarms_topic, p)

    def live() -> LiveStates:
        ls = holder.get("live")
        if ls is None:
            ls = holder["live"] = LiveStates(
                core(),
                lambda key: (
                    engine_table.get(key),
                    warning_table.get(key),
                    applied_table.get(key),
                ),
                started_ms,
            )
        return ls

    async def send(key: bytes, alarms: list[AlarmEvent], events: list[WarningEvent]) -> list:
        futs = [await transitions.send(key=key, value=encode_transition(a)) for a in alarms]
        futs += [await transitions.send(key=key, value=encode_transition(w)) for w in events]
        return futs

    def observe(alarms: list[AlarmEvent], events: list[WarningEvent]) -> None:
        for a in alarms:
            metrics.observe_alarm(str(a.kind), a.level and str(a.level), str(a.state))
        for w in events:
            metrics.observe_warning(str(w.colour), str(w.state))

    async def flush() -> None:
        """Write every changed enterprise state to the tables, then hand the readings records
        those states include to `acknowledger`, which acknowledges them once their readings
        are durable in the time-series path. Why no record is lost: Faust commits only
        acknowledged offsets and flushes its producer (the changelog writes) before
        committing, so a committed offset never runs ahead of the changelog, nor (the wait)
        of InfluxDB and the spill. A crash re-processes the records after the commit on the
        last flushed state; alarm ids are deterministic, so what was already sent is sent
        again under the same ids and dropped downstream. Caller holds the lock."""
        for key, est, wst, applied in live().take_dirty():
            engine_table[key] = est
            warning_table[key] = wst
            applied_table[key] = applied
        if holder.get("rules_stream") is not None and unacked:
            rounds[0] += 1
            durable_wait.append((rounds[0], list(unacked)))
            task = holder.get("acker")
            if task is None or task.done():
                holder["acker"] = asyncio.ensure_future(acknowledger())
            acker_wake.set()
        unacked.clear()
        flushed_at[0] = time.monotonic()

    async def acknowledger() -> None:
        """Acknowledges the flushed rounds, in order, once the time-series feed says the
        readings submitted up to them are in InfluxDB or a spill file (a kill -9 then loses
        none of them). The wait runs in a thread without the agent lock: InfluxDB being down
        or slow never delays alarms, it only holds back offset commits. A round whose wait
        fails stays and is retried with the next one (its records, re-read after a crash,
        are harmless); a rebalance drops the rounds of the revoked generation."""
        loop = asyncio.get_running_loop()
        while True:
            if not durable_wait:
                await acker_wake.wait()
                acker_wake.clear()
                continue
            # every round up to here was submitted to the feed before this call
            upto = durable_wait[-1][0]
            try:
                ok = await loop.run_in_executor(None, feed().sync, SYNC_TIMEOUT_S)
            except Exception:
                log.exception("time-series sync failed; acknowledgements wait")
                ok = False
            if not ok:
                # not durable yet (InfluxDB down on a full spill disk, a hanging request):
                # try again shortly, with whatever was flushed meanwhile
                acker_wake.clear()
                try:
                    await asyncio.wait_for(acker_wake.wait(), FLUSH_INTERVAL_S)
                except TimeoutError:
                    pass
                continue
            if app.rebalancing:
                # Faust forgets a revoked partition's acks and committed offset first and
                # signals the revocation (which clears `durable_wait`) later, after awaiting
                # its producer: an ack in between was taken as new (the committed offset
                # being unknown) and stayed in Faust's list for the partition, to be
                # committed if it came back to this worker, ahead of what that assignment
                # had read. So nothing is acknowledged while a rebalance is under way.
                await asyncio.sleep(FLUSH_INTERVAL_S)
                continue
            async with lock:
                if app.rebalancing:
                    continue  # began while waiting for the lock (see above)
                stream = holder.get("rules_stream")
                done = [r for r in durable_wait if r[0] <= upto]
                del durable_wait[: len(done)]
                if stream is None or not done:
                    continue
                for _, events in done:
                    for event in events:
                        await stream.ack(event)
            # commit now rather than on Faust's 1 s cadence (records re-read after a crash are
            # not evaluated, but still read), in the background: Faust runs one commit at a
            # time
            prev = holder.get("commit")
            if prev is None or prev.done():
                holder["commit"] = asyncio.ensure_future(app.consumer.commit())

    async def settled(events: list[Any], what: str) -> list[Any]:
        """The events of `events` to process: none while a rebalance is under way (waited
        out), and none fetched in an earlier consumer generation. Faust hands an agent what
        its take buffer held when the partitions were revoked, and processing those wrote
        states and alert records of partitions another worker had taken over, through the
        shared changelogs: that worker then took records as applied that it had not
        evaluated (fault suite: an alarm's second-level raise never notified). Every
        partition is revoked in a rebalance and read again from its committed offset, which
        an unprocessed event is never behind, so the dropped ones are read again."""
        while app.rebalancing:
            await asyncio.sleep(0.05)
        gen = app.consumer_generation_id
        fresh = [e for e in events if e.message.generation_id in (None, gen)]
        if len(fresh) != len(events):
            log.warning(
                "%s: %d events fetched before the rebalance to generation %s dropped "
                "(read again from the committed offsets)",
                what,
                len(events) - len(fresh),
                gen,
            )
        return fresh

    @app.agent(readings, name="rules")
    async def rules_agent(stream: Any) -> None:
        """Events are taken in small batches (up to 2,000 or 20 ms) and evaluated per
        enterprise in one engine call on its state in memory; transitions are sent and acked
        by Kafka within the batch, states are written to the tables by `flush` (at most every
        FLUSH_INTERVAL_S) and only then are the batch's records acknowledged."""
        holder["rules_stream"] = stream
        async for batch in stream.noack_take(2000, within=0.02):
            # the guard asks Kafka, maybe seeks: never with the lock, which the revocation
            # handler needs to let a rebalance finish
            events = await readings_guard.admit(await settled(batch, "readings"))
            async with lock:
                if app.rebalancing:  # began while waiting for the lock: settle again
                    events = await settled(events, "readings")
                if not events:
                    continue
                now = wall_ms()
                for event in events:
                    tp = event.message.tp
                    if tp.partition not in rules_start:
                        rules_start[tp.partition] = event.message.offset
                        log.warning(
                            "rules: readings partition %s read from offset %s (committed %s)",
                            tp.partition,
                            event.message.offset,
                            readings_guard.start(tp),
                        )
                n_readings = await evaluate(events, now)
                unacked.extend(events)
                # never during a rebalance: the revocation drops unflushed states instead
                if time.monotonic() - flushed_at[0] >= FLUSH_INTERVAL_S and not app.rebalancing:
                    await flush()
            oldest = min((e.message.timestamp for e in events), default=now / 1000)
            metrics.observe_batch(len(events), n_readings, now - oldest * 1000)

    async def evaluate(events: list[Any], now: int) -> int:
        """One batch of readings records, per enterprise: live state, transitions sent and
        acked, metrics and the time-series feed. Returns the number of readings."""
        from hazardwatch.clock import CLOCK
        from ingest.codec import decode_readings

        ls = live()
        futs: list[Any] = []
        n_readings = 0
        all_readings: list[Any] = []
        all_alarms: list[AlarmEvent] = []
        all_events: list[WarningEvent] = []

        async def sent(key: bytes, result: tuple[list, list]) -> None:
            futs.extend(await send(key, *result))
            all_alarms.extend(result[0])
            all_events.extend(result[1])

        by_key: dict[bytes, list[Any]] = {}
        for event in events:
            by_key.setdefault(event.key, []).append(event)
        for key, evs in by_key.items():
            ent = key.decode()
            seen = int(min(e.message.timestamp for e in evs) * 1000)
            pending: list[Any] = []
            last: tuple[int, int] | None = None
            for event in evs:
                msg = event.message
                control = dict(event.headers or {}).get(CONTROL_HEADER)
                if ls.includes(ent, msg.partition, msg.offset, now, seen):
                    # Consumed again after a crash or rebalance: already applied to the state,
                    # but its readings may not have reached InfluxDB before the crash (they
                    # are acknowledged only once durable there): write them again (the same
                    # points: InfluxDB keeps one per series and timestamp).
                    if control is None:
                        all_readings.extend(decode_readings(event.value))
                    continue
                if control is None:
                    rs = decode_readings(event.value)
                    if rs and CLOCK.held:
                        # Evidence for a held step of this worker's clock: the gateways' event
                        # time against `now` (one record is one gateway's payload).
                        p0 = core().registry.get(ent, rs[0].tag)
                        gw = p0.gateway_code if p0 is not None else rs[0].tag
                        CLOCK.witness(ent, gw, rs[0].ts_ms, now)
                    n_readings += len(rs)
                    pending.extend(rs)
                    last = (msg.partition, msg.offset)
                    continue
                # a command is ordered with the readings around it: evaluate those first
                if pending:
                    await sent(key, ls.process(ent, pending, now, seen, last))
                    all_readings.extend(pending)
                    pending = []
                record = (msg.partition, msg.offset)
                if control == b"close-warning":
                    await sent(key, ls.close_warning(ent, event.value.decode(), now, record))
            if pending:
                await sent(key, ls.process(ent, pending, now, seen, last))
                all_readings.extend(pending)
        for f in futs:
            await f  # acked by Kafka before any flush writes the states they follow from
        observe(all_alarms, all_events)
        feed().submit(BatchOutcome(readings=all_readings, alarms=all_alarms, warnings=all_events))
        return n_readings

    @app.timer(FLUSH_INTERVAL_S)
    async def flush_timer() -> None:
        # the agent flushes as it goes under load; this covers a quiet stream and the ticks
        if app.rebalancing or app.in_recovery or not (unacked or live().dirty()):
            return
        async with lock:
            if time.monotonic() - flushed_at[0] >= FLUSH_INTERVAL_S / 2:
                await flush()

    # The alerts agent's own bookkeeping of the transitions partitions (Faust never commits
    # them: their events are never acked to it). Per partition, in the current assignment:
    alerts_start: dict[int, int] = {}  # the offset reading began at
    alerts_pending: dict[int, int] = {}  # the offset to commit next (read, stored, held)
    incarnation = os.urandom(6).hex()  # names this process's commits (receipt tokens)
    commit_seq = [0]
    commit_lock = asyncio.Lock()

    async def fetch_committed(partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        """The group's committed offsets and metadata of transitions partitions, asked of the
        group coordinator directly (works whoever owns them, and before this worker joins)."""
        got = await group_offsets(k.alarms_topic, partitions)
        return {p: got.get(p, (None, "")) for p in partitions}

    async def resolve_intents() -> None:
        """Resolve the commit intents a previous incarnation (killed with a commit in flight)
        left in the store: release the held messages of a commit that landed, forget the
        rest (the transitions are read again, by this worker or another). Retries until
        Kafka answers: before that, nothing of the transitions topic is read."""
        store = holder["store"]
        intents = store.commit_intents()
        if not intents:
            return
        delay = 0.5
        while True:
            try:
                committed = await fetch_committed(sorted(intents))
                break
            except Exception as exc:  # noqa: BLE001 - Kafka not there yet: wait, say so
                log.warning("commit intents: cannot read the committed offsets yet (%s)", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for p, (off, token) in sorted(intents.items()):
            c_off, md = committed.get(p, (None, ""))
            outcome = intent_outcome(off, token, c_off, md)
            if outcome == "refused":
                store.forget_commit_intents([p])
                log.warning(
                    "transitions partition %s: the commit of %s before a restart did "
                    "not land; its transitions are read again",
                    p,
                    off,
                )
                continue
            released = store.commit_landed(p, off)
            if outcome == "unknown":
                log.warning(
                    "transitions partition %s: committed offset %s has no receipt "
                    "(metadata %r); released %s held messages (at least once)",
                    p,
                    c_off,
                    md[:80],
                    released,
                )
            else:
                log.warning(
                    "transitions partition %s: the commit of %s before a restart "
                    "landed; released %s held messages",
                    p,
                    off,
                    released,
                )
        wake = holder.get("outbox_wake")
        if wake is not None:
            wake.set()

    async def commit_alerts() -> None:
        """Commit the transitions read, stored and held so far, with a receipt, and release
        the messages held for them once Kafka confirms. A refused commit (the group
        rebalanced: the partition is someone else's now) releases nothing: the next owner
        reads those transitions again and sends their messages."""
        from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
        from aiokafka.structs import OffsetAndMetadata, TopicPartition

        async with commit_lock:
            if not alerts_pending:
                return
            store = holder["store"]
            commit_seq[0] += 1
            token = f"{incarnation}.{commit_seq[0]}"
            batch = dict(alerts_pending)
            store.record_commit_intents({p: (o, token) for p, o in batch.items()})
            # the alert records these transitions changed reach their changelog first, as
            # pending on this commit (see handover_resolve)
            for p, o in batch.items():
                for key, data in handover_pending.get(p, {}).items():
                    handover.write_pending(key, data, p, o)
            await app.producer.flush()
            thread = app.consumer._thread  # the aiokafka consumer runs in Faust's thread
            offsets = {
                TopicPartition(k.alarms_topic, p): OffsetAndMetadata(
                    o, receipt(worker, token, alerts_start.get(p, o))
                )
                for p, o in batch.items()
            }

            async def in_thread() -> set[int]:
                consumer = thread._ensure_consumer()
                mine = {tp: om for tp, om in offsets.items() if tp in consumer.assignment()}
                if mine:
                    await consumer.commit(mine)
                now = time.monotonic()  # Faust's "has not committed in a while" check
                thread.tp_last_committed_at.update({tp: now for tp in mine})
                return {tp.partition for tp in mine}

            try:
                landed = await thread.call_thread(in_thread)
            except (CommitFailedError, IllegalStateError, KafkaError) as exc:
                landed = set()
                log.warning(
                    "transitions commit of %s refused (%s); the next owner reads them again",
                    batch,
                    type(exc).__name__,
                )
            except BaseException:
                # outcome unknown (shutdown, a broken connection): the intent stays and is
                # resolved at the next start
                for p in batch:
                    handover_pending.pop(p, None)
                for p, o in batch.items():
                    if alerts_pending.get(p) == o:
                        del alerts_pending[p]
                raise
            released = sum(store.commit_landed(p, batch[p]) for p in sorted(landed))
            refused = [p for p in batch if p not in landed]
            for p in landed:
                for key, data in handover_pending.pop(p, {}).items():
                    handover.write(key, data)  # final now
            for p in refused:
                # the next owner reads them again, on the records as they were before them
                # (their values name this commit's offset, which the group never reached)
                handover_pending.pop(p, None)
            if refused:
                store.forget_commit_intents(refused)
            for p, o in batch.items():
                if alerts_pending.get(p) == o:
                    del alerts_pending[p]
            wake = holder.get("outbox_wake")
            if released and wake is not None:
                wake.set()

    @app.agent(transitions, name="alerts")
    async def alerts_agent(stream: Any) -> None:
        """Transitions in small batches, each batch one alerts-store transaction (one fsync)
        rather than one per transition.

        Each worker has its own alerts store and outbox, so a message must be sent by the
        worker whose processing of its transition is committed, and only by it: otherwise a
        worker killed after sending but before the commit, or restarted with messages still
        retrying, sends what the partition's next owner sends again after re-reading the
        transitions (a WeCom robot or a phone does not deduplicate). So the batch's
        notifications are stored held (partition, offset), the agent commits the batch's
        offsets itself with a receipt (`commit_alerts`), and only a commit Kafka confirmed
        releases them to the outbox. Held rows below the offset a partition is read from
        again were committed by another worker, which sent them: they are dropped. A kill -9
        with a commit in flight is resolved at the next start (`resolve_intents`). Left: a
        message in flight at a kill is sent again after the restart."""
        alerts()
        await resolve_intents()
        async for batch in stream.noack_take(500, within=0.005):
            events = await transitions_guard.admit(await settled(batch, "transitions"))
            if not events:
                continue
            now = wall_ms()
            svc = alerts()
            store = holder["store"]
            assigned = app.consumer.assignment()
            skipped: dict[tuple[int, str], list[int]] = {}
            in_alerts_batch[0] = True  # their alert records go out with the commit
            try:
                with svc.batch():
                    for event in events:
                        tp, off = event.message.tp, event.message.offset
                        # where this assignment's reading began: the committed offset (Faust
                        # never commits these partitions: the agent does, without it)
                        p, s = tp.partition, transitions_guard.start(tp)
                        if tp not in assigned or (s is not None and off < s):
                            # read before a rebalance: its partition's owner reads it again
                            why = "not assigned now" if tp not in assigned else f"below {s}"
                            skipped.setdefault((p, why), []).append(off)
                            continue
                        if p not in alerts_start:
                            start = alerts_start[p] = s if s is not None else off
                            dropped = svc.outbox.drop_unreleased(
                                now,
                                f"transitions of partition {p} before offset {start} "
                                "were committed by another worker",
                                partition=p,
                                below_offset=start,
                            )
                            log.warning(
                                "alerts: transitions partition %s read from offset %s (first %s)%s",
                                p,
                                start,
                                off,
                                f"; dropped {len(dropped)} held messages another worker sent"
                                if dropped
                                else "",
                            )
                        alerts_pending[p] = off + 1
                        ev = decode_transition(event.value)
                        with store.holding(p, off):
                            if isinstance(ev, AlarmEvent):
                                svc.on_alarm(ev, now)
                            else:
                                warning_id_enterprise[ev.warning_id] = ev.enterprise_code
                                svc.on_warning(ev, now)
            finally:
                in_alerts_batch[0] = False
            for (p, why), offs in skipped.items():
                log.warning(
                    "transitions %s@%s..%s (%s) skipped: %s",
                    p,
                    offs[0],
                    offs[-1],
                    len(offs),
                    why,
                )
            # never acked to Faust: its own commits would overwrite the receipts
            await commit_alerts()

    @app.timer(1.0)
    async def retry_alerts_commit() -> None:
        # a batch whose commit failed without a rebalance (the coordinator moving, say)
        if alerts_pending and not app.rebalancing:
            await commit_alerts()

    @app.on_partitions_revoked.connect
    async def _alerts_revoked(app_: Any, *args: Any, **kwargs: Any) -> None:
        # Reading restarts at the committed offset, re-assigned or not; what was read since
        # the last commit is read again by the partition's next owner.
        alerts_start.clear()
        alerts_pending.clear()
        transitions_guard.reset()
        handover_pending.clear()  # their batches are read again by the next owner

    def owned(c: EnterpriseCore) -> list[str]:
        mine = {
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == k.readings_topic
        }
        return [e for e in c.enterprises() if partition_for(e.encode(), k.partitions) in mine]

    @app.timer(1.0)
    async def tick() -> None:
        # Never tick while tables recover: a missing state would be re-created fresh.
        if app.rebalancing or app.in_recovery:
            return
        c, ls, gen = core(), live(), generation[0]
        for ent in owned(c):
            async with lock:
                if app.rebalancing or app.in_recovery or generation[0] != gen:
                    return
                alarms, events = ls.tick(ent, wall_ms())
                if alarms or events:
                    for f in await send(ent.encode(), alarms, events):
                        await f
                    observe(alarms, events)
            # one enterprise at a time: a batch of readings waits for one tick, not for all
            await asyncio.sleep(0)
        if "alerts" in holder:
            holder["alerts"].tick(wall_ms())

    @app.on_partitions_revoked.connect
    async def _revoked(app_: Any, *args: Any, **kwargs: Any) -> None:
        # The next owner (maybe this worker) recovers the tables and re-reads from the last
        # commit: drop the unflushed states and forget their records (see `flush`).
        async with lock:
            generation[0] += 1
            rules_start.clear()
            readings_guard.reset()
            unacked.clear()
            durable_wait.clear()  # never acknowledged: the next owner re-reads them
            if "live" in holder:
                holder["live"].forget()

    @app.timer(5.0)
    async def consumer_lag() -> None:
        for tp in app.assignor.assigned_actives():
            try:
                pos = await app.consumer.position(tp)
                hw = app.consumer.highwater(tp)
            except Exception:  # noqa: BLE001, S112 - a partition being revoked now: skip it
                continue
            if pos is not None and hw is not None:
                metrics.kafka_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(0, hw - pos)
                )

    @app.task
    async def start_outbox() -> None:
        """Delivery runs in a thread: channels are synchronous HTTP clients."""
        from alerts.outbox import Outbox

        alerts()
        wake = holder["outbox_wake"] = threading.Event()
        outbox = Outbox(holder["store"])
        channels = holder.get("channels") or build_channels(settings)
        metrics.watch_outbox(lambda: _outbox_depth(holder["store"]))
        stop = holder["outbox_stop"] = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                wake.wait(0.2)
                wake.clear()
                try:
                    outbox.deliver_due(wall_ms(), channels)
                except Exception:
                    log.exception("outbox delivery round failed; will retry")

        threading.Thread(target=loop, name="hw-outbox", daemon=True).start()
        if settings.metrics.port:
            metrics.serve(settings.metrics.port)

    async def reposition(generation_id: int) -> None:
        """After a rebalance, read every readings and transitions partition of this worker
        again from its committed offset, whatever Faust's fetcher did (hazardwatch/
        read_guard.py). Faust skips its own seek when another rebalance began during the
        recovery, and the guard sees a hole only when a newer record arrives: a partition
        whose last records were fetched before the rebalance and dropped stayed unread
        (e2e: a worker's alarms after a failover never came). Records read twice are
        recognised downstream by their deterministic ids."""
        while app.rebalancing:
            await asyncio.sleep(0.05)
        if app.consumer_generation_id != generation_id:
            return  # another rebalance: its own reposition follows
        tps = [
            tp for tp in app.consumer.assignment() if tp.topic in (k.readings_topic, k.alarms_topic)
        ]
        if not tps:
            return
        try:
            # Kafka's answer only: a guess (Faust's bookkeeping) could send a partition back to
            # its start
            committed = await committed_offsets(tps)
            done = []
            for tp in tps:
                c = committed.get(tp)
                if app.rebalancing or app.consumer_generation_id != generation_id:
                    return
                # nothing committed: from the start (the group's policy is "earliest"; an
                # offset below the log start resets to it). A failover once left such a
                # partition unread: its records had been read only by the worker killed.
                await app.consumer.seek(tp, 0 if c is None else c)
                done.append(f"{tp.topic}[{tp.partition}]@{c if c is not None else 'start'}")
            log.warning("reading again from the committed offsets: %s", ", ".join(done) or "-")
        except Exception:  # revoked meanwhile, Kafka away: the guard still stands
            log.exception("repositioning partitions at their committed offsets failed")

    @app.on_rebalance_complete.connect
    async def _reposition(app_: Any, **kwargs: Any) -> None:
        holder["reposition"] = asyncio.ensure_future(reposition(app.consumer_generation_id))

    @app.on_rebalance_complete.connect
    async def _announce(app_: Any, **kwargs: Any) -> None:
        # One line operators (and the e2e tests) can wait for: tables recovered, serving.
        mine = sorted(
            tp.partition for tp in app.assignor.assigned_actives() if tp.topic == k.readings_topic
        )
        log.warning("hazardwatch worker %s ready: readings partitions %s", worker, mine)

    @app.on_before_shutdown.connect
    async def _stop_outbox(app_: Any, **kwargs: Any) -> None:
        if "outbox_stop" in holder:
            holder["outbox_stop"].set()
        if "feed" in holder:
            holder["feed"].close()

    app.hw_metrics = metrics  # type: ignore[attr-defined]
    app.hw_holder = holder  # type: ignore[attr-defined]
    app.hw_worker = worker  # type: ignore[attr-defined]
    return app


def _outbox_depth(store: Any) -> float:
    fn = getattr(store, "outbox_depth", None)
    return float(fn()) if callable(fn) else 0.0


def _module_app() -> Any:
    from hazardwatch.settings import load_settings

    return create_app(load_settings())


_app: Any = None


def __getattr__(name: str) -> Any:
    """`faust -A hazardwatch.faust_app` finds `app`; building it needs settings, so it is
    built on first access rather than at import (tests import the pure parts)."""
    global _app
    if name == "app":
        if _app is None:
            _app = _module_app()
        return _app
    raise AttributeError(name)
