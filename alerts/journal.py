"""The audit journal: an append-only, hash-chained record of every alarm and warning
transition, notification attempt and result, human action and rule-version change.

Record n stores `hash_n = sha256(hash_{n-1} + "\\n" + canonical JSON of (seq, ts_ms, kind,
subject_id, actor, data))`; the head (last seq and hash) is kept in its own row, written in
the same transaction. `verify()` recomputes the chain, so an edited record (its hash no
longer matches), a removed one (a gap in seq, or the next record's `prev_hash` no longer
matches, or the head points past the end) and a reordering (seq is inside the hash) are all
found, with the first bad record named. Appends join the caller's store transaction, so a
transition and its journal record commit together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alerts.store import AlertStore

GENESIS = "0" * 64


def canonical(obj: Any) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 kept (so the hash is stable)."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def record_hash(
    prev_hash: str, seq: int, ts_ms: int, kind: str, subject_id: str, actor: str, data: Any
) -> str:
    return _hash_text(prev_hash, seq, ts_ms, kind, subject_id, actor, canonical(data))


def _hash_text(
    prev_hash: str, seq: int, ts_ms: int, kind: str, subject_id: str, actor: str, data_text: str
) -> str:
    """Same as `record_hash` with the data already in canonical text: the canonical JSON of
    the record object, built by hand (keys in sorted order) so the data is encoded once."""
    d = json.dumps
    body = (
        f'{{"actor":{d(actor, ensure_ascii=False)},"data":{data_text},'
        f'"kind":{d(kind, ensure_ascii=False)},"seq":{int(seq)},'
        f'"subject_id":{d(subject_id, ensure_ascii=False)},"ts_ms":{int(ts_ms)}}}'
    )
    return hashlib.sha256((prev_hash + "\n" + body).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class JournalEntry:
    seq: int
    ts_ms: int
    kind: str  # alarm.raised, warning.closed, action.acknowledge, notify.attempt, ruleset, ...
    subject_id: str
    actor: str  # "system", a user name, or a channel name
    data: dict[str, Any]
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "kind": self.kind,
            "subject_id": self.subject_id,
            "actor": self.actor,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    reason: str
    records: int


def _entry(r: tuple) -> JournalEntry:
    return JournalEntry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7])


class Journal:
    """Append and verify the hash chain kept in an `AlertStore`."""

    def __init__(self, store: AlertStore) -> None:
        self.store = store

    def append(
        self, kind: str, subject_id: str, data: dict[str, Any], ts_ms: int, actor: str = "system"
    ) -> JournalEntry:
        text = canonical(data)  # what is hashed is exactly what is stored
        with self.store.transaction() as db:
            seq, prev = self.store.journal_head()
            prev = prev or GENESIS
            seq += 1
            h = _hash_text(prev, seq, ts_ms, kind, subject_id, actor, text)
            db.execute(
                "INSERT INTO journal (seq, ts_ms, kind, subject_id, actor, data, prev_hash,"
                " hash) VALUES (?,?,?,?,?,?,?,?)",
                (seq, ts_ms, kind, subject_id, actor, text, prev, h),
            )
            db.execute(
                "INSERT INTO journal_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id)"
                " DO UPDATE SET seq=excluded.seq, hash=excluded.hash",
                (seq, h),
            )
        return JournalEntry(seq, ts_ms, kind, subject_id, actor, json.loads(text), prev, h)

    def entries(
        self,
        since_ms: int | None = None,
        until_ms: int | None = None,
        subject_id: str | None = None,
    ) -> Iterator[JournalEntry]:
        after = 0
        while True:
            rows = self.store.journal_rows(
                since_ms, until_ms, subject_id, after_seq=after, limit=5000
            )
            if not rows:
                return
            for r in rows:
                yield _entry(r)
            after = rows[-1][0]

    def verify(self) -> VerifyResult:
        """Recompute the whole chain; the first record that does not fit is reported."""
        prev_hash = GENESIS
        expected = 1
        n = 0
        for r in self._raw_rows():
            seq, ts_ms, kind, subject_id, actor, data_s, stored_prev, stored_hash = r
            n += 1
            if seq != expected:
                return VerifyResult(
                    False,
                    expected,
                    f"record {expected} is missing (found {seq} after {expected - 1})",
                    n,
                )
            if stored_prev != prev_hash:
                return VerifyResult(
                    False,
                    seq,
                    f"record {seq} does not follow record "
                    f"{seq - 1} (prev_hash differs: removed or reordered)",
                    n,
                )
            try:
                data = json.loads(data_s)
            except ValueError:
                return VerifyResult(False, seq, f"record {seq}: data is not valid JSON", n)
            if canonical(data) != data_s:
                return VerifyResult(False, seq, f"record {seq}: data was rewritten", n)
            h = _hash_text(prev_hash, seq, ts_ms, kind, subject_id, actor, data_s)
            if h != stored_hash:
                return VerifyResult(False, seq, f"record {seq} was edited (hash differs)", n)
            prev_hash = h
            expected += 1
        head_seq, head_hash = self.store.journal_head()
        if head_seq != expected - 1 or (head_seq and head_hash != prev_hash):
            return VerifyResult(
                False,
                expected if head_seq >= expected else head_seq,
                f"the journal ends at record {expected - 1} but its head "
                f"says {head_seq}: records were removed from the end",
                n,
            )
        return VerifyResult(True, None, f"{n} records, chain intact", n)

    def _raw_rows(self) -> Iterator[tuple]:
        after = 0
        while True:
            rows = self.store.journal_rows(after_seq=after, limit=5000)
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def export(self, path: Path, since_ms: int | None = None, until_ms: int | None = None) -> int:
        """Write the records (with their hashes, so an inspector can re-verify the chain)
        as JSON lines; returns how many."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = 0
        with path.open("w", encoding="utf-8") as f:
            for e in self.entries(since_ms, until_ms):
                f.write(canonical(e.to_dict()) + "\n")
                n += 1
        return n


def verify_export(path: Path) -> VerifyResult:
    """Check the chain inside an exported JSONL file (a contiguous range of records)."""
    prev: str | None = None
    last_seq: int | None = None
    n = 0
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            n += 1
            seq = d["seq"]
            if last_seq is not None and seq != last_seq + 1:
                return VerifyResult(False, last_seq + 1, f"record {last_seq + 1} is missing", n)
            if prev is not None and d["prev_hash"] != prev:
                return VerifyResult(False, seq, f"record {seq} does not follow its predecessor", n)
            h = record_hash(
                d["prev_hash"], seq, d["ts_ms"], d["kind"], d["subject_id"], d["actor"], d["data"]
            )
            if h != d["hash"]:
                return VerifyResult(False, seq, f"record {seq} was edited (hash differs)", n)
            prev, last_seq = h, seq
    return VerifyResult(True, None, f"{n} records, chain intact", n)
