"""Deterministic alarm ids: a hash of what alarms (kind, subject, side) and when its episode
began, so a replay, a restart or a re-processed partition gives the same ids. The rule name
is left out on purpose: a hot reload that renames a rule keeps the open alarm's id.
"""

from __future__ import annotations

from hashlib import blake2b


def alarm_id(kind: str, subject: str, side: str, started_ms: int, dup: int = 0) -> str:
    """16 hex characters, stable across processes and Python versions. `dup` numbers the
    episodes of one subject that began in the same millisecond (readings with equal times)."""
    raw = f"{kind}|{subject}|{side}|{started_ms}".encode()
    if dup:
        raw += f"|{dup}".encode()
    return blake2b(raw, digest_size=8).hexdigest()
