"""Engine state as a value: one numpy record per point, gateway and vote group (struct of
arrays, under 256 bytes a point), serialised to bytes keyed by point key so a state saved by
one ruleset loads into an Engine built from a new ruleset or registry (hot reload) and keeps
the open alarms and timers of the points that still exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import numpy as np

NO_TS = -(1 << 62)  # "no time": timer not pending, alarm not open
STATE_FORMAT = 1

# Limit slots: side 0 = high (H/HH, L1/L2), side 1 = low (L/LL); slot = side * 2 + level.
POINT_DTYPE = np.dtype(
    [
        ("off_base", "i8"),  # silence is measured from here (last reading, start, gw recovery)
        ("offline", "i1"),  # 0 reporting, 1 offline alarm open, 2 silent but inhibited by gw
        ("offline_start", "i8"),
        ("fault", "i1"),
        ("fault_start", "i8"),
        ("last_value", "f8"),  # the last reading of any quality (manual reset re-evaluates it)
        ("last_q", "i1"),
        ("good_ts", "i8"),  # last evaluable reading (rate, frozen value, interlock valve)
        ("good_value", "f8"),
        ("run_start", "i8"),  # frozen-value run began here
        ("stuck", "i1"),
        ("stuck_start", "i8"),
        ("rate", "i1"),
        ("rate_start", "i8"),
        ("on", "u1"),  # bit per limit slot: level asserted (after its on-delay)
        ("latched", "u1"),  # bit per side: latched until manual reset
        ("since", "i8", (4,)),  # on-delay pending since (per slot)
        ("below", "i8", (4,)),  # off-delay pending since (per slot)
        ("act", "i1", (2,)),  # active level per side, 0 = none
        ("act_start", "i8", (2,)),
        ("ev", "i1"),
        ("ev_start", "i8"),
        ("ev_due", "i8"),
        ("il", "i1"),
        ("il_start", "i8"),
        ("il_due", "i8"),
        # episodes begun in the same ms as the previous one, per alarm slot (ids stay unique):
        # 0-1 limit sides, 2 offline, 3 fault, 4 stuck, 5 rate, 6 event, 7 interlock
        ("dup", "u1", (8,)),
        # the point's latest reading was back-filled: a delay it completes is back-fill too
        ("bf", "u1"),
    ]
)
GATEWAY_DTYPE = np.dtype(
    [("last", "i8"), ("alarm", "i1"), ("start", "i8"), ("inh", "i4"), ("dup", "u1")]
)
VOTE_DTYPE = np.dtype(
    [
        ("lvl", "i1"),
        ("start", "i8"),
        ("deg", "i1"),
        ("deg_start", "i8"),
        ("dup", "u1"),
        ("deg_dup", "u1"),
    ]
)

_POINT_DEFAULTS = {
    "off_base": NO_TS,
    "offline_start": NO_TS,
    "fault_start": NO_TS,
    "last_value": np.nan,
    "last_q": -1,
    "good_ts": NO_TS,
    "good_value": np.nan,
    "run_start": NO_TS,
    "stuck_start": NO_TS,
    "rate_start": NO_TS,
    "since": NO_TS,
    "below": NO_TS,
    "act_start": NO_TS,
    "ev_start": NO_TS,
    "ev_due": NO_TS,
    "il_start": NO_TS,
    "il_due": NO_TS,
}


def new_points(n: int, start_ms: int) -> np.ndarray:
    a = np.zeros(n, dtype=POINT_DTYPE)
    for k, v in _POINT_DEFAULTS.items():
        a[k] = v
    a["off_base"] = start_ms
    return a


def new_gateways(n: int, start_ms: int) -> np.ndarray:
    a = np.zeros(n, dtype=GATEWAY_DTYPE)
    a["last"] = start_ms
    a["start"] = NO_TS
    return a


def new_votes(n: int) -> np.ndarray:
    a = np.zeros(n, dtype=VOTE_DTYPE)
    a["start"] = NO_TS
    a["deg_start"] = NO_TS
    return a


@dataclass(frozen=True, eq=False)
class EngineState:
    """Immutable snapshot of the engine (arrays are never written after construction)."""

    points: np.ndarray
    gateways: np.ndarray
    votes: np.ndarray
    point_keys: tuple[str, ...]
    gateway_keys: tuple[str, ...]
    vote_keys: tuple[str, ...]
    start_ms: int
    now_ms: int  # timers up to here have been evaluated
    # open gateway/vote alarms whose group a hot reload removed: (kind, key, start, dup);
    # the next call clears them
    orphans: tuple[tuple[str, str, int, int], ...] = ()

    def to_bytes(self) -> bytes:
        """msgpack: records keyed by point/gateway/vote key (see module doc)."""
        return msgspec.msgpack.encode(
            {
                "format": STATE_FORMAT,
                "start_ms": self.start_ms,
                "now_ms": self.now_ms,
                "points": _table(self.points, self.point_keys),
                "gateways": _table(self.gateways, self.gateway_keys),
                "votes": _table(self.votes, self.vote_keys),
                "orphans": [list(o) for o in self.orphans],
            }
        )

    def nbytes(self) -> int:
        """In-memory bytes of the numpy records."""
        return self.points.nbytes + self.gateways.nbytes + self.votes.nbytes

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EngineState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]


def _table(arr: np.ndarray, keys: tuple[str, ...]) -> dict:
    return {
        "keys": "\n".join(keys),
        "fields": [
            [name, arr.dtype[name].base.str, list(arr.dtype[name].shape)]
            for name in arr.dtype.names
        ],
        "data": arr.tobytes(),
    }


class StateFormatError(ValueError):
    """Bytes that are not an engine state of a known format."""


def decode(data: bytes) -> dict:
    try:
        obj = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise StateFormatError(f"not an engine state: {exc}") from None
    if not isinstance(obj, dict) or obj.get("format") != STATE_FORMAT:
        raise StateFormatError("not an engine state of format 1")
    return obj


def saved_records(table: dict, like: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The keys and records of a saved table (field types as in `like` when in doubt)."""
    keys = table["keys"].split("\n") if table["keys"] else []
    fields = []
    for n, s, sh in table["fields"]:
        if s.startswith("|V") and n in (like.dtype.names or ()):
            s, sh = like.dtype[n].base.str, list(like.dtype[n].shape)
        fields.append((n, s, tuple(sh)))
    try:
        saved = np.frombuffer(table["data"], dtype=np.dtype(fields))
    except (TypeError, ValueError, KeyError) as exc:
        raise StateFormatError(f"engine state: unreadable records ({exc})") from None
    if len(saved) != len(keys):
        raise StateFormatError("engine state: record count does not match its keys")
    return keys, saved


def restore(table: dict, target: np.ndarray, keys: tuple[str, ...]) -> np.ndarray:
    """Copy saved records into `target` by key and field name (fields or keys that no longer
    exist are dropped; new ones keep the defaults already in `target`)."""
    saved_keys, saved = saved_records(table, target)
    dtype = saved.dtype
    index = {k: i for i, k in enumerate(keys)}
    src = [i for i, k in enumerate(saved_keys) if k in index]
    dst = [index[saved_keys[i]] for i in src]
    out = target.copy()
    for name in dtype.names:
        if name in (target.dtype.names or ()):
            out[name][dst] = saved[name][src]
    return out
