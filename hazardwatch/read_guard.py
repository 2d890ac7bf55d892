"""Reading a Kafka partition without a hole, whatever Faust's fetcher does (distributed mode).

An agent may only process a partition's records in order from where its assignment's reading
began: the group's committed offset. Records it never processed are, by the commit protocol,
read again by whoever owns the partition next, but only if nobody reads past them. Faust does
not guarantee that after a rebalance:

- it seeks to the committed offsets when the recovery after a rebalance completes, but skips
  the seek when another rebalance began meanwhile ("Recovery rebalancing again"), and the
  fetcher then goes on from wherever it was;
- records fetched before the rebalance reach the agents stamped with the new generation when
  they are handed out after it;
- the agents drop records fetched in an earlier generation (`settled` in faust_app.py),
  counting on them being read again, which holds only if the fetch position went back.

Each showed in the fault suite: a worker read readings partition 1 from offset 834 while 752
was committed (4 alarms never raised), and another from 185 with 184 committed.

So `ReadGuard.admit` checks every record against the next offset it expects per partition,
starting at the committed offset (asked of Kafka, not of Faust's bookkeeping, which also
records refused commits; with none committed, from the first record read). A record beyond
it is a hole: the guard seeks the partition back to the expected offset and drops what was
read ahead until the record at the expected offset arrives again. Records below it (read
again after a crash or a rebalance) pass: the stages downstream recognise them by their
deterministic ids. A seek that shows no effect within `reseek_after_s` is repeated; after
`max_attempts` the records are taken as gone from the topic (retention) and reading goes on
from what is there, with an ERROR line.

The guard knows nothing of Faust: the caller gives it a function that asks the start offsets
of partitions, and one that seeks; `reset()` is called when partitions are revoked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("hazardwatch.read_guard")

E = TypeVar("E")
TP = Hashable


@dataclass
class _Seek:
    target: int
    since: float
    first_ahead: int
    dropped: int = 0
    attempts: int = 1


def _name(tp: Any) -> str:
    topic, partition = getattr(tp, "topic", None), getattr(tp, "partition", None)
    return f"{topic}[{partition}]" if topic is not None else str(tp)


def message_position(event: Any) -> tuple[TP, int]:
    """(topic partition, offset) of a Faust event."""
    return event.message.tp, event.message.offset


class ReadGuard:
    def __init__(
        self,
        what: str,
        *,
        start_offsets: Callable[[list[TP]], Awaitable[dict[TP, int | None]]],
        seek: Callable[[TP, int], Awaitable[None]],
        position: Callable[[Any], tuple[TP, int]] = message_position,
        reseek_after_s: float = 15.0,
        max_attempts: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what = what
        self._start_offsets = start_offsets
        self._seek = seek
        self._position = position
        self.reseek_after_s = reseek_after_s
        self.max_attempts = max_attempts
        self._clock = clock
        self._start: dict[TP, int | None] = {}
        self._next: dict[TP, int | None] = {}
        self._seeking: dict[TP, _Seek] = {}
        self.holes = 0  # holes found (each one seek back); the unit tests read it
        self._epoch = 0  # bumped by reset(): an admit() that awaited across one drops all

    def reset(self) -> None:
        """Partitions were revoked: every partition starts again at its committed offset."""
        self._epoch += 1
        self._start.clear()
        self._next.clear()
        self._seeking.clear()

    def start(self, tp: TP) -> int | None:
        """Where this assignment's reading of `tp` began (None: not read yet, or unknown)."""
        return self._start.get(tp)

    def start_of(self, topic: str, partition: int) -> int | None:
        """`start` by topic name and partition number."""
        for tp, start in self._start.items():
            if getattr(tp, "topic", None) == topic and getattr(tp, "partition", None) == partition:
                return start
        return None

    async def admit(self, events: Sequence[E]) -> list[E]:
        """The events of `events` to process, in order: none beyond a hole. If the partitions
        are revoked (`reset`) while this waits for Kafka, none: they are read again."""
        epoch = self._epoch
        new = []
        for e in events:
            tp = self._position(e)[0]
            if tp not in self._next and tp not in new:
                new.append(tp)
        if new:
            starts = await self._start_offsets(new)
            if epoch != self._epoch:
                return []
            for tp in new:
                self._start[tp] = self._next[tp] = starts.get(tp)
        out: list[E] = []
        blocked: set[TP] = set()
        for e in events:
            tp, off = self._position(e)
            if tp in blocked:
                self._seeking[tp].dropped += 1
                continue
            sk = self._seeking.get(tp)
            if sk is not None:
                if off > sk.target and self._clock() - sk.since >= self.reseek_after_s:
                    if sk.attempts >= self.max_attempts:
                        # the records are not there to read (deleted by retention, say):
                        # going on from what is there loses nothing that exists
                        log.error(
                            "%s: partition %s: records %s..%s cannot be read (%d seeks back "
                            "to %s had no effect: deleted by retention?); going on from %s",
                            self.what,
                            _name(tp),
                            sk.target,
                            off - 1,
                            sk.attempts,
                            sk.target,
                            off,
                        )
                        del self._seeking[tp]
                        self._next[tp] = None
                        sk = None
                if sk is not None and off > sk.target:
                    sk.dropped += 1
                    if self._clock() - sk.since >= self.reseek_after_s:
                        sk.attempts += 1
                        log.warning(
                            "%s: partition %s still read from beyond offset %s %.0f s after "
                            "seeking back to it; seeking again",
                            self.what,
                            _name(tp),
                            sk.target,
                            self._clock() - sk.since,
                        )
                        await self._seek_to(tp, sk.target)
                        if epoch != self._epoch:
                            return []
                        sk.since = self._clock()
                    continue
            if sk is not None:
                del self._seeking[tp]
                log.warning(
                    "%s: partition %s read again from offset %s (%d records read ahead of "
                    "the hole, from offset %s, dropped: they are read again in order)",
                    self.what,
                    _name(tp),
                    off,
                    sk.dropped,
                    sk.first_ahead,
                )
            nxt = self._next.get(tp)
            if nxt is not None and off > nxt:
                self.holes += 1
                log.warning(
                    "%s: partition %s: offset %s read while %s is the next to process "
                    "(reading began at %s): records %s..%s were never read; seeking back",
                    self.what,
                    _name(tp),
                    off,
                    nxt,
                    self._start.get(tp),
                    nxt,
                    off - 1,
                )
                self._seeking[tp] = _Seek(nxt, self._clock(), off, dropped=1)
                blocked.add(tp)
                await self._seek_to(tp, nxt)
                if epoch != self._epoch:
                    return []
                continue
            out.append(e)
            if nxt is None or off >= nxt:
                self._next[tp] = off + 1
        return out

    async def _seek_to(self, tp: TP, offset: int) -> None:
        try:
            await self._seek(tp, offset)
        except Exception:  # revoked meanwhile, say: the next assignment starts over
            log.exception(
                "%s: seeking partition %s back to %s failed", self.what, _name(tp), offset
            )
