"""SQLite persistence of the alerts stage: alarms, warnings, human actions, filings, shelves,
the outbox and the hash-chained journal, in one file (WAL, `synchronous=FULL`, so a committed
transition, notification or journal record survives `kill -9` and power loss).

One connection guarded by a re-entrant lock: the service thread and the outbox delivery
thread share it, and a state change, its journal records and its outbox rows commit in one
transaction (`with store.transaction():`). Query methods return frozen dataclasses.

Outbox rows can be stored *held* (`holding(partition, offset)`): the distributed worker holds
the notifications of a Kafka transition until that transition's offset is committed
(`release_held`), and drops the held ones whose transitions someone else committed
(`drop_unreleased`); see `hazardwatch/faust_app.py`. Rows stored outside `holding` (and every
row of a file from before the column existed) are released.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from alerts.lifecycle import OPEN_PHASES, AlarmRecord, Phase, WarningRecord
from alerts.model import Notification
from alerts.suppression import Filing, Shelf

SCHEMA_VERSION = 2
# Files of an older schema this code upgrades in place (see `_migrate`).
_MIGRATES_FROM = {1}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS alarms (
    alarm_id TEXT PRIMARY KEY, enterprise_code TEXT NOT NULL, district TEXT NOT NULL,
    hazard_code TEXT NOT NULL, tag TEXT NOT NULL, kind TEXT NOT NULL, level TEXT,
    colour TEXT NOT NULL, phase TEXT NOT NULL, active INTEGER NOT NULL,
    raised_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS alarms_ent ON alarms (enterprise_code, raised_ms);
CREATE INDEX IF NOT EXISTS alarms_phase ON alarms (phase);
CREATE TABLE IF NOT EXISTS warnings (
    warning_id TEXT PRIMARY KEY, enterprise_code TEXT NOT NULL, district TEXT NOT NULL,
    hazard_code TEXT NOT NULL, colour TEXT NOT NULL, phase TEXT NOT NULL,
    raised_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS warnings_ent ON warnings (enterprise_code, raised_ms);
CREATE TABLE IF NOT EXISTS applied_events (
    subject_id TEXT NOT NULL, event_key TEXT NOT NULL, PRIMARY KEY (subject_id, event_key));
CREATE TABLE IF NOT EXISTS actions (
    action_id INTEGER PRIMARY KEY AUTOINCREMENT, ts_ms INTEGER NOT NULL, action TEXT NOT NULL,
    subject_id TEXT NOT NULL, user TEXT NOT NULL, enterprise_code TEXT NOT NULL,
    data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS actions_subject ON actions (subject_id);
CREATE TABLE IF NOT EXISTS filings (
    filing_id TEXT PRIMARY KEY, kind TEXT NOT NULL, enterprise_code TEXT NOT NULL,
    start_ms INTEGER NOT NULL, actual_end_ms INTEGER, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shelves (
    shelf_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, enterprise_code TEXT NOT NULL,
    expires_ms INTEGER NOT NULL, ended_ms INTEGER, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, channel TEXT NOT NULL,
    recipient TEXT NOT NULL, subject_id TEXT NOT NULL, enterprise_code TEXT NOT NULL,
    event_type TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL,
    not_before_ms INTEGER NOT NULL, next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, first_failure_ms INTEGER, last_error TEXT NOT NULL
    DEFAULT '', delivered_ms INTEGER, via_channel TEXT NOT NULL DEFAULT '',
    digest_id TEXT NOT NULL DEFAULT '', data BLOB NOT NULL,
    held_partition INTEGER NOT NULL DEFAULT -1, held_offset INTEGER NOT NULL DEFAULT -1);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS outbox_subject ON outbox (subject_id);
CREATE TABLE IF NOT EXISTS attempts (
    attempt_id INTEGER PRIMARY KEY AUTOINCREMENT, notification_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, channel TEXT NOT NULL, recipient TEXT NOT NULL, ok INTEGER NOT NULL,
    retryable INTEGER NOT NULL, status INTEGER, reason TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_rate ON attempts (channel, recipient, ts_ms);
CREATE INDEX IF NOT EXISTS attempts_nid ON attempts (notification_id);
CREATE TABLE IF NOT EXISTS channel_health (
    channel TEXT PRIMARY KEY, failing_since_ms INTEGER, last_ok_ms INTEGER);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    subject_id TEXT NOT NULL, actor TEXT NOT NULL, data TEXT NOT NULL,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal_head (
    id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
"""


class StoreError(Exception):
    """The alert store cannot be opened or used (names the file and what went wrong)."""


@dataclass(frozen=True, slots=True)
class Action:
    """A human action (acknowledge, dispose, shelve, unshelve, file, end_filing)."""

    action_id: int
    ts_ms: int
    action: str
    subject_id: str
    user: str
    enterprise_code: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row: the stored notification and its delivery state.

    `state`: pending | delivered | dead | withdrawn (an inhibitor or a clear arrived during
    the hold window) | merged (folded into the digest `digest_id`) | digested (its digest was
    delivered).
    """

    seq: int
    notification: Notification
    state: str
    created_ms: int
    not_before_ms: int
    next_attempt_ms: int
    attempts: int
    first_failure_ms: int | None
    last_error: str
    delivered_ms: int | None
    via_channel: str
    digest_id: str


@dataclass(frozen=True, slots=True)
class Attempt:
    notification_id: str
    ts_ms: int
    channel: str
    recipient: str
    ok: bool
    retryable: bool
    status: int | None
    reason: str


def _in(column: str, values: str | Iterable[str] | None, args: list[Any]) -> str:
    if values is None:
        return ""
    vals = [values] if isinstance(values, str) else [str(v) for v in values]
    if not vals:
        return " AND 0"
    args.extend(vals)
    return f" AND {column} IN ({','.join('?' * len(vals))})"


class AlertStore:
    """The alerts stage's SQLite file. Safe to share between threads of one process."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                str(path), isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: every commit of the outbox and the journal is on disk before we go on.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
                )
            elif int(row[0]) in _MIGRATES_FROM:
                self._migrate()
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: alert store schema {row[0]}, this hazardwatch expects "
                    f"{SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: cannot open the alert store: {exc}") from None
        self._lock = threading.RLock()
        self._depth = 0
        self._hold = threading.local()  # per thread: the delivery thread's rows are never held

    def _migrate(self) -> None:
        """Schema 1 -> 2: the outbox's held columns; existing rows get the default -1,
        "released", so what an older version stored is delivered as before."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")  # one transaction: a crash leaves schema 1 or 2
        try:
            cols = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
            for col in ("held_partition", "held_offset"):
                if col not in cols:
                    db.execute(f"ALTER TABLE outbox ADD COLUMN {col} INTEGER NOT NULL DEFAULT -1")
            db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- transactions ---------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit (nested uses join the outer one). Holds the store lock."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self._db
            except BaseException:
                self._depth -= 1
                if outer:
                    self._db.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._db.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- alarms ---------------------------------------------------------------------------

    def put_alarm(self, rec: AlarmRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO alarms (alarm_id, enterprise_code, district, hazard_code,"
                " tag, kind, level, colour, phase, active, raised_ms, updated_ms, data)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.alarm_id,
                    rec.enterprise_code,
                    rec.district,
                    rec.hazard_code,
                    rec.tag,
                    rec.kind,
                    rec.level,
                    str(rec.colour),
                    str(rec.phase),
                    int(rec.active),
                    rec.raised_ms,
                    rec.updated_ms,
                    json.dumps(rec.to_dict(), ensure_ascii=False),
                ),
            )

    def get_alarm(self, alarm_id: str) -> AlarmRecord | None:
        rows = self._query("SELECT data FROM alarms WHERE alarm_id=?", (alarm_id,))
        return AlarmRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def _alarm_where(
        self,
        args: list[Any],
        *,
        enterprise: str | Iterable[str] | None = None,
        district: str | Iterable[str] | None = None,
        state: str | Iterable[str] | None = None,
        colour: str | Iterable[str] | None = None,
        kind: str | Iterable[str] | None = None,
        hazard_code: str | None = None,
        tag: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        open_only: bool = False,
        active: bool | None = None,
    ) -> str:
        sql = " WHERE 1"
        sql += _in("enterprise_code", enterprise, args)
        sql += _in("district", district, args)
        sql += _in("phase", state, args)
        sql += _in("colour", colour, args)
        sql += _in("kind", kind, args)
        if hazard_code is not None:
            sql += " AND hazard_code=?"
            args.append(hazard_code)
        if tag is not None:
            sql += " AND tag=?"
            args.append(tag)
        if open_only:
            sql += _in("phase", [str(p) for p in OPEN_PHASES], args)
        if active is not None:
            sql += " AND active=?"
            args.append(int(active))
        if since_ms is not None:
            sql += " AND raised_ms>=?"
            args.append(since_ms)
        if until_ms is not None:
            sql += " AND raised_ms<?"
            args.append(until_ms)
        return sql

    def list_alarms(
        self, *, limit: int | None = 100, offset: int = 0, **filters: Any
    ) -> list[AlarmRecord]:
        """Alarms matching every given filter, newest raise first. Filters: `enterprise`,
        `district`, `state` (a `Phase` value), `colour`, `kind` (each a value or several),
        `hazard_code`, `tag`, `since_ms`/`until_ms` (raise time, until exclusive),
        `open_only`, `active`."""
        args: list[Any] = []
        sql = "SELECT data FROM alarms" + self._alarm_where(args, **filters)  # noqa: S608 - values are bound
        sql += " ORDER BY raised_ms DESC, alarm_id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [AlarmRecord.from_dict(json.loads(r[0])) for r in self._query(sql, args)]

    def count_alarms(self, **filters: Any) -> int:
        """How many alarms `list_alarms` would return without a limit."""
        filters.pop("limit", None)
        filters.pop("offset", None)
        args: list[Any] = []
        sql = "SELECT count(*) FROM alarms" + self._alarm_where(args, **filters)  # noqa: S608
        return int(self._query(sql, args)[0][0])

    # -- warnings -------------------------------------------------------------------------

    def put_warning(self, rec: WarningRecord) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO warnings (warning_id, enterprise_code, district,"
                " hazard_code, colour, phase, raised_ms, updated_ms, data)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    rec.warning_id,
                    rec.enterprise_code,
                    rec.district,
                    rec.hazard_code,
                    str(rec.colour),
                    str(rec.phase),
                    rec.raised_ms,
                    rec.updated_ms,
                    json.dumps(rec.to_dict(), ensure_ascii=False),
                ),
            )

    def get_warning(self, warning_id: str) -> WarningRecord | None:
        rows = self._query("SELECT data FROM warnings WHERE warning_id=?", (warning_id,))
        return WarningRecord.from_dict(json.loads(rows[0][0])) if rows else None

    def _warning_where(
        self,
        args: list[Any],
        *,
        enterprise: str | Iterable[str] | None = None,
        district: str | Iterable[str] | None = None,
        state: str | Iterable[str] | None = None,
        colour: str | Iterable[str] | None = None,
        hazard_code: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        open_only: bool = False,
    ) -> str:
        sql = " WHERE 1"
        sql += _in("enterprise_code", enterprise, args)
        sql += _in("district", district, args)
        sql += _in("phase", state, args)
        sql += _in("colour", colour, args)
        if hazard_code is not None:
            sql += " AND hazard_code=?"
            args.append(hazard_code)
        if open_only:
            sql += _in("phase", [str(p) for p in OPEN_PHASES], args)
        if since_ms is not None:
            sql += " AND raised_ms>=?"
            args.append(since_ms)
        if until_ms is not None:
            sql += " AND raised_ms<?"
            args.append(until_ms)
        return sql

    def list_warnings(
        self, *, limit: int | None = 100, offset: int = 0, **filters: Any
    ) -> list[WarningRecord]:
        """Warnings matching every given filter, newest raise first. Filters: `enterprise`,
        `district`, `state`, `colour` (each a value or several), `hazard_code`,
        `since_ms`/`until_ms` (raise time, until exclusive), `open_only`."""
        args: list[Any] = []
        sql = "SELECT data FROM warnings" + self._warning_where(args, **filters)  # noqa: S608
        sql += " ORDER BY raised_ms DESC, warning_id"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [limit, offset]
        return [WarningRecord.from_dict(json.loads(r[0])) for r in self._query(sql, args)]

    def count_warnings(self, **filters: Any) -> int:
        """How many warnings `list_warnings` would return without a limit."""
        filters.pop("limit", None)
        filters.pop("offset", None)
        args: list[Any] = []
        sql = "SELECT count(*) FROM warnings" + self._warning_where(args, **filters)  # noqa: S608
        return int(self._query(sql, args)[0][0])

    def get_subject(self, subject_id: str) -> AlarmRecord | WarningRecord | None:
        """An alarm or a warning by id (the ids of the two never collide in practice; an
        alarm wins if they did)."""
        return self.get_alarm(subject_id) or self.get_warning(subject_id)

    # -- idempotency of input events ------------------------------------------------------

    def mark_applied(self, subject_id: str, event_key: str) -> bool:
        """Record that an input event was applied; False if it already was (a replay)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO applied_events (subject_id, event_key) VALUES (?, ?)",
                (subject_id, event_key),
            )
            return cur.rowcount == 1

    def applied_keys(self, subject_id: str, limit: int = 64) -> list[str]:
        """The newest `limit` input events applied to a subject, oldest first."""
        rows = self._query(
            "SELECT event_key FROM applied_events WHERE subject_id=? ORDER BY rowid DESC LIMIT ?",
            (subject_id, limit),
        )
        return [r[0] for r in reversed(rows)]

    # -- human actions --------------------------------------------------------------------

    def add_action(
        self,
        ts_ms: int,
        action: str,
        subject_id: str,
        user: str,
        enterprise_code: str,
        data: dict[str, Any],
    ) -> int:
        with self.transaction() as db:
            cur = db.execute(
                "INSERT INTO actions (ts_ms, action, subject_id, user, enterprise_code, data)"
                " VALUES (?,?,?,?,?,?)",
                (
                    ts_ms,
                    action,
                    subject_id,
                    user,
                    enterprise_code,
                    json.dumps(data, ensure_ascii=False, sort_keys=True),
                ),
            )
            return int(cur.lastrowid or 0)

    def list_actions(
        self,
        *,
        subject_id: str | None = None,
        enterprise: str | Iterable[str] | None = None,
        limit: int | None = 1000,
    ) -> list[Action]:
        args: list[Any] = []
        sql = (
            "SELECT action_id, ts_ms, action, subject_id, user, enterprise_code, data"
            " FROM actions WHERE 1"
        )
        if subject_id is not None:
            sql += " AND subject_id=?"
            args.append(subject_id)
        sql += _in("enterprise_code", enterprise, args)
        sql += " ORDER BY action_id"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [
            Action(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]))
            for r in self._query(sql, args)
        ]

    # -- filings and shelves --------------------------------------------------------------

    def put_filing(self, f: Filing) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO filings (filing_id, kind, enterprise_code, start_ms,"
                " actual_end_ms, data) VALUES (?,?,?,?,?,?)",
                (
                    f.filing_id,
                    str(f.kind),
                    f.enterprise_code,
                    f.start_ms,
                    f.actual_end_ms,
                    json.dumps(f.to_dict(), ensure_ascii=False),
                ),
            )

    def get_filing(self, filing_id: str) -> Filing | None:
        rows = self._query("SELECT data FROM filings WHERE filing_id=?", (filing_id,))
        return Filing.from_dict(json.loads(rows[0][0])) if rows else None

    def list_filings(
        self,
        *,
        enterprise: str | Iterable[str] | None = None,
        open_only: bool = False,
        kind: str | None = None,
    ) -> list[Filing]:
        args: list[Any] = []
        sql = "SELECT data FROM filings WHERE 1"
        sql += _in("enterprise_code", enterprise, args)
        if open_only:
            sql += " AND actual_end_ms IS NULL"
        if kind is not None:
            sql += " AND kind=?"
            args.append(kind)
        sql += " ORDER BY start_ms, filing_id"
        return [Filing.from_dict(json.loads(r[0])) for r in self._query(sql, args)]

    def put_shelf(self, s: Shelf) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO shelves (shelf_id, subject_id, enterprise_code,"
                " expires_ms, ended_ms, data) VALUES (?,?,?,?,?,?)",
                (
                    s.shelf_id,
                    s.subject_id,
                    s.enterprise_code,
                    s.expires_ms,
                    s.ended_ms,
                    json.dumps(s.to_dict(), ensure_ascii=False),
                ),
            )

    def get_shelf(self, shelf_id: str) -> Shelf | None:
        rows = self._query("SELECT data FROM shelves WHERE shelf_id=?", (shelf_id,))
        return Shelf.from_dict(json.loads(rows[0][0])) if rows else None

    def list_shelves(
        self,
        *,
        enterprise: str | Iterable[str] | None = None,
        open_only: bool = False,
        subject_id: str | None = None,
    ) -> list[Shelf]:
        args: list[Any] = []
        sql = "SELECT data FROM shelves WHERE 1"
        sql += _in("enterprise_code", enterprise, args)
        if open_only:
            sql += " AND ended_ms IS NULL"
        if subject_id is not None:
            sql += " AND subject_id=?"
            args.append(subject_id)
        sql += " ORDER BY expires_ms, shelf_id"
        return [Shelf.from_dict(json.loads(r[0])) for r in self._query(sql, args)]

    # -- outbox rows (the Outbox class owns the delivery logic) -----------------------------

    _OUTBOX_COLS = (
        "seq, data, state, created_ms, not_before_ms, next_attempt_ms, attempts,"
        " first_failure_ms, last_error, delivered_ms, via_channel, digest_id"
    )

    @staticmethod
    def _outbox_item(r: tuple) -> OutboxItem:
        return OutboxItem(
            seq=r[0],
            notification=msgspec.json.decode(r[1], type=Notification),
            state=r[2],
            created_ms=r[3],
            not_before_ms=r[4],
            next_attempt_ms=r[5],
            attempts=r[6],
            first_failure_ms=r[7],
            last_error=r[8],
            delivered_ms=r[9],
            via_channel=r[10],
            digest_id=r[11],
        )

    def insert_notification(
        self,
        n: Notification,
        not_before_ms: int,
        state: str = "pending",
    ) -> bool:
        """Store a notification unless one with the same id exists; True if inserted."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (id, channel, recipient, subject_id,"
                " enterprise_code, event_type, state, created_ms, not_before_ms,"
                " next_attempt_ms, data, held_partition, held_offset)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    n.id,
                    n.channel,
                    n.recipient,
                    n.subject_id,
                    n.enterprise_code,
                    str(n.event_type),
                    state,
                    n.created_ms,
                    not_before_ms,
                    not_before_ms,
                    msgspec.json.encode(n),
                    *getattr(self._hold, "at", (-1, -1)),
                ),
            )
            return cur.rowcount == 1

    @contextmanager
    def holding(self, partition: int, offset: int) -> Iterator[None]:
        """Rows this thread stores inside are held: not delivered until `release_held`
        covers (partition, offset), the Kafka position of the input they follow from."""
        if partition < 0 or offset < 0:
            raise ValueError(
                f"holding: partition and offset must be >= 0, got {partition}, {offset}"
            )
        prev = getattr(self._hold, "at", None)
        self._hold.at = (partition, offset)
        try:
            yield
        finally:
            if prev is None:
                del self._hold.at
            else:
                self._hold.at = prev

    def release_held(self, partition: int, below_offset: int) -> int:
        """Release the rows held for inputs of `partition` before `below_offset` (their
        offsets are committed); returns how many."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE outbox SET held_partition=-1, held_offset=-1"
                " WHERE held_partition=? AND held_offset<?",
                (partition, below_offset),
            )
            return cur.rowcount

    def drop_unreleased(
        self, partition: int | None = None, below_offset: int | None = None
    ) -> list[OutboxItem]:
        """Delete held rows (all, or those of `partition`, optionally only before
        `below_offset`); released rows are never touched. Returns the deleted rows."""
        where, args = " WHERE held_partition>=0", []
        if partition is not None:
            where += " AND held_partition=?"
            args.append(partition)
        if below_offset is not None:
            where += " AND held_offset<?"
            args.append(below_offset)
        with self.transaction() as db:
            rows = db.execute(
                f"SELECT {self._OUTBOX_COLS} FROM outbox{where} ORDER BY seq",  # noqa: S608
                args,
            ).fetchall()
            db.execute(f"DELETE FROM outbox{where}", args)  # noqa: S608 - constant clauses
        return [self._outbox_item(r) for r in rows]

    # -- commit intents: "this worker is about to commit offset O of partition p" -------------
    # Written (durably) before the worker sends a Kafka offset commit carrying `token` in its
    # metadata, removed once the outcome is known. One left behind by a kill -9 is resolved at
    # the next start against the group's committed offset and its metadata (faust_app.py).

    _INTENT = "commit-intent/"

    def record_commit_intents(self, intents: dict[int, tuple[int, str]]) -> None:
        """`{partition: (offset, token)}`: replaces the partitions' previous intents."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(f"{self._INTENT}{p}", f"{o} {t}") for p, (o, t) in intents.items()],
            )

    def commit_intents(self) -> dict[int, tuple[int, str]]:
        """The intents whose outcome is not known yet: `{partition: (offset, token)}`."""
        out: dict[int, tuple[int, str]] = {}
        for key, value in self._query(
            "SELECT key, value FROM meta WHERE key LIKE ?", (self._INTENT + "%",)
        ):
            off, _, token = value.partition(" ")
            out[int(key[len(self._INTENT) :])] = (int(off), token)
        return out

    def commit_landed(self, partition: int, offset: int) -> int:
        """Offset `offset` of `partition` is committed by this worker: release the rows held
        below it and forget the partition's intent, in one transaction. Returns how many rows
        were released."""
        with self.transaction() as db:
            released = self.release_held(partition, offset)
            db.execute("DELETE FROM meta WHERE key=?", (f"{self._INTENT}{partition}",))
        return released

    def forget_commit_intents(self, partitions: Iterable[int]) -> None:
        """The commits were refused (or resolved): the intents no longer say anything."""
        with self.transaction() as db:
            db.executemany(
                "DELETE FROM meta WHERE key=?", [(f"{self._INTENT}{p}",) for p in partitions]
            )

    def held_count(self) -> int:
        """Rows held until their inputs' offsets are committed."""
        return int(self._query("SELECT count(*) FROM outbox WHERE held_partition>=0")[0][0])

    def has_notification(self, notification_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM outbox WHERE id=?", (notification_id,)))

    def get_notification(self, notification_id: str) -> OutboxItem | None:
        rows = self._query(
            f"SELECT {self._OUTBOX_COLS} FROM outbox WHERE id=?",  # noqa: S608 - constant
            (notification_id,),
        )
        return self._outbox_item(rows[0]) if rows else None

    def list_outbox(
        self,
        *,
        state: str | Iterable[str] | None = None,
        subject_id: str | None = None,
        channel: str | None = None,
        enterprise: str | Iterable[str] | None = None,
        limit: int | None = None,
    ) -> list[OutboxItem]:
        """Outbox rows in the order they were stored."""
        args: list[Any] = []
        sql = f"SELECT {self._OUTBOX_COLS} FROM outbox WHERE 1"  # noqa: S608 - constant
        sql += _in("state", state, args)
        sql += _in("enterprise_code", enterprise, args)
        if subject_id is not None:
            sql += " AND subject_id=?"
            args.append(subject_id)
        if channel is not None:
            sql += " AND channel=?"
            args.append(channel)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [self._outbox_item(r) for r in self._query(sql, args)]

    def outbox_index(self, states: Iterable[str]) -> list[tuple]:
        """Light rows for scheduling, in stored order, without decoding the messages:
        (seq, id, channel, recipient, subject_id, state, not_before_ms, next_attempt_ms,
        attempts, created_ms, held) where held is 1 for a row not released yet."""
        args: list[Any] = []
        sql = (
            "SELECT seq, id, channel, recipient, subject_id, state, not_before_ms,"
            " next_attempt_ms, attempts, created_ms, held_partition>=0 FROM outbox WHERE 1"
        )
        sql += _in("state", states, args)
        return self._query(sql + " ORDER BY seq", args)

    def outbox_depth(self) -> int:
        """Notifications not yet delivered, dead or withdrawn (the runner's metric); held
        rows are not counted (they wait for a Kafka commit, not for a channel)."""
        return int(
            self._query(
                "SELECT count(*) FROM outbox WHERE state IN ('pending', 'merged')"
                " AND held_partition<0"
            )[0][0]
        )

    def update_outbox(self, notification_id: str, **cols: Any) -> None:
        allowed = {
            "state",
            "next_attempt_ms",
            "attempts",
            "first_failure_ms",
            "last_error",
            "delivered_ms",
            "via_channel",
            "digest_id",
            "not_before_ms",
        }
        bad = set(cols) - allowed
        if bad:
            raise ValueError(f"update_outbox: unknown column(s) {sorted(bad)}")
        sets = ", ".join(f"{k}=?" for k in cols)
        with self.transaction() as db:
            db.execute(
                f"UPDATE outbox SET {sets} WHERE id=?",  # noqa: S608 - names checked
                (*cols.values(), notification_id),
            )

    def withdraw(
        self,
        subject_id: str,
        *,
        keep_channels: Iterable[str] = (),
        held_after_ms: int | None = None,
    ) -> list[str]:
        """Withdraw the not-yet-delivered notifications of a subject (except on the given
        channels; with `held_after_ms`, only those still held past that time and never
        attempted); returns their ids."""
        keep = list(keep_channels)
        args: list[Any] = [subject_id]
        sql = "SELECT id FROM outbox WHERE subject_id=? AND state='pending'"
        if held_after_ms is not None:
            sql += " AND not_before_ms>? AND attempts=0"
            args.append(held_after_ms)
        if keep:
            sql += f" AND channel NOT IN ({','.join('?' * len(keep))})"
            args += keep
        with self.transaction() as db:
            ids = [r[0] for r in db.execute(sql, args).fetchall()]
            for i in ids:
                db.execute("UPDATE outbox SET state='withdrawn' WHERE id=?", (i,))
        return ids

    def add_attempt(self, a: Attempt) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO attempts (notification_id, ts_ms, channel, recipient, ok,"
                " retryable, status, reason) VALUES (?,?,?,?,?,?,?,?)",
                (
                    a.notification_id,
                    a.ts_ms,
                    a.channel,
                    a.recipient,
                    int(a.ok),
                    int(a.retryable),
                    a.status,
                    a.reason,
                ),
            )

    def list_attempts(self, notification_id: str | None = None) -> list[Attempt]:
        args: list[Any] = []
        sql = (
            "SELECT notification_id, ts_ms, channel, recipient, ok, retryable, status, reason"
            " FROM attempts"
        )
        if notification_id is not None:
            sql += " WHERE notification_id=?"
            args.append(notification_id)
        sql += " ORDER BY attempt_id"
        return [
            Attempt(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), r[6], r[7])
            for r in self._query(sql, args)
        ]

    def attempts_since(self, channel: str, recipient: str, since_ms: int) -> list[int]:
        """Times of the attempts on (channel, recipient) since `since_ms` (rate limits)."""
        return [
            r[0]
            for r in self._query(
                "SELECT ts_ms FROM attempts WHERE channel=? AND recipient=? AND ts_ms>=?"
                " ORDER BY ts_ms",
                (channel, recipient, since_ms),
            )
        ]

    def channel_failing_since(self, channel: str) -> int | None:
        rows = self._query(
            "SELECT failing_since_ms FROM channel_health WHERE channel=?", (channel,)
        )
        return rows[0][0] if rows else None

    def set_channel_health(self, channel: str, ok: bool, now_ms: int) -> None:
        with self.transaction() as db:
            if ok:
                db.execute(
                    "INSERT INTO channel_health (channel, failing_since_ms, last_ok_ms)"
                    " VALUES (?, NULL, ?) ON CONFLICT(channel) DO UPDATE SET"
                    " failing_since_ms=NULL, last_ok_ms=excluded.last_ok_ms",
                    (channel, now_ms),
                )
            else:
                db.execute(
                    "INSERT INTO channel_health (channel, failing_since_ms, last_ok_ms)"
                    " VALUES (?, ?, NULL) ON CONFLICT(channel) DO UPDATE SET"
                    " failing_since_ms=coalesce(failing_since_ms, excluded.failing_since_ms)",
                    (channel, now_ms),
                )

    # -- journal rows (the Journal class owns hashing and verification) ---------------------

    def journal_head(self) -> tuple[int, str]:
        rows = self._query("SELECT seq, hash FROM journal_head WHERE id=1")
        return (rows[0][0], rows[0][1]) if rows else (0, "")

    def journal_rows(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject_id: str | None = None,
        after_seq: int = 0,
        limit: int | None = None,
    ) -> list[tuple]:
        args: list[Any] = [after_seq]
        sql = (
            "SELECT seq, ts_ms, kind, subject_id, actor, data, prev_hash, hash FROM journal"
            " WHERE seq>?"
        )
        if since_ms is not None:
            sql += " AND ts_ms>=?"
            args.append(since_ms)
        if until_ms is not None:
            sql += " AND ts_ms<?"
            args.append(until_ms)
        if subject_id is not None:
            sql += " AND subject_id=?"
            args.append(subject_id)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self._query(sql, args)


__all__ = ["Action", "AlertStore", "Attempt", "OutboxItem", "Phase", "StoreError"]
