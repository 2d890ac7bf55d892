"""SQLite persistence of the embedded runner's evaluation state: the rules engine state, the
warning model state and the input position, saved together in ONE transaction per batch so a
`kill -9` leaves either the old snapshot or the new one, never half of each.

The alerts stage keeps its own store (`alerts.store.AlertStore`); the runner hands events to it
before committing here, so a crash between the two only re-processes a batch whose alarm ids
are deterministic and which the alerts service ignores the second time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    engine    BLOB NOT NULL,
    warnings  BLOB NOT NULL,
    position  TEXT NOT NULL,
    ruleset   TEXT NOT NULL,
    saved_ms  INTEGER NOT NULL,
    batches   INTEGER NOT NULL
);
"""


class EngineStoreError(Exception):
    """The state database cannot be opened or holds something we cannot read."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the last committed batch left behind."""

    engine: bytes
    warnings: bytes
    position: dict[str, Any] = field(default_factory=dict)
    ruleset: str = ""
    saved_ms: int = 0
    batches: int = 0


class EngineStore:
    """One-row snapshot table in a SQLite file (WAL, synchronous=FULL).

    `save` replaces the snapshot atomically; `load` returns the last one or None on a fresh
    file. The connection is shared by the evaluation thread only, but a lock keeps a status
    read from another thread (metrics, API) safe.
    """

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed batch survives power loss, not only a process crash.
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise EngineStoreError(f"{self.path}: cannot open the state database: {exc}") from None
        self._lock = threading.Lock()
        self._batches = self._read_batches()

    def _read_batches(self) -> int:
        row = self._db.execute("SELECT batches FROM snapshot WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def load(self) -> Snapshot | None:
        with self._lock:
            row = self._db.execute(
                "SELECT engine, warnings, position, ruleset, saved_ms, batches "
                "FROM snapshot WHERE id = 1"
            ).fetchone()
        if row is None:
            return None
        try:
            position = json.loads(row[2])
        except json.JSONDecodeError as exc:
            raise EngineStoreError(f"{self.path}: snapshot position is not JSON: {exc}") from None
        return Snapshot(bytes(row[0]), bytes(row[1]), position, row[3], int(row[4]), int(row[5]))

    def save(
        self,
        engine: bytes,
        warnings: bytes,
        position: dict[str, Any],
        ruleset: str,
        now_ms: int,
    ) -> None:
        """Replace the snapshot in one transaction (the commit point of a batch)."""
        pos = json.dumps(position, sort_keys=True, separators=(",", ":"))
        with self._lock:
            self._batches += 1
            self._db.execute(
                "INSERT INTO snapshot (id, engine, warnings, position, ruleset, saved_ms, batches) "
                "VALUES (1, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                "engine = excluded.engine, warnings = excluded.warnings, "
                "position = excluded.position, ruleset = excluded.ruleset, "
                "saved_ms = excluded.saved_ms, batches = excluded.batches",
                (engine, warnings, pos, ruleset, now_ms, self._batches),
            )

    @property
    def batches(self) -> int:
        return self._batches

    def close(self) -> None:
        with self._lock:
            self._db.close()
