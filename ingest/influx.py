"""Time-series writers (I/O): `InfluxWriter` sends line protocol to InfluxDB through
influxdb-client, and `LineProtocolFileWriter` writes the same lines to rotating files when no
InfluxDB is configured. Both take `write_lines(lines)`, `flush()`, `close()`, `stats()`.

InfluxDB being down must never delay alarms (DESIGN.md, Reliability), so `write_lines` only
appends to a bounded in-memory buffer; a background thread batches and sends. While InfluxDB
is down or pushing back (HTTP 429/503) the writer thread moves batches to spill files on disk,
which are replayed in order once it answers again, also after a restart.

When the spill folder cannot take a batch (its byte limit, or the disk answers ENOSPC/EIO), the
lines stay in memory and spilling is retried every `spill_retry_s`; a failed spill write leaves
no file behind. Only when memory holds `max_buffer_lines` are the oldest lines dropped: counted
(`dropped`, shown in the `pipeline` row's influx_dropped) and logged at ERROR naming the spill
folder. So an InfluxDB outage on a full spill disk loses nothing while it fits in memory.
Callers only ever append to memory: disk and network I/O happen on the writer thread alone.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

log = logging.getLogger(__name__)


class LineWriter(Protocol):
    def write_lines(self, lines: Iterable[str]) -> None: ...
    def flush(self, timeout_s: float = ...) -> bool: ...
    def persist(self, timeout_s: float = ...) -> bool: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, int | str | bool]: ...


# ------------------------------------------------------------------------ errors


class InfluxError(Exception):
    """Exception tree of this adapter (third-party errors are translated into these):

    InfluxError
    ├── InfluxUnavailable      connection refused/timeout, 5xx: retry later, spill meanwhile
    │   └── InfluxBackpressure 429/503: InfluxDB asks us to slow down (`retry_after_s`)
    └── InfluxRejected         4xx other than 429: the data itself is bad; retrying won't help
    """


class InfluxUnavailable(InfluxError):
    pass


class InfluxBackpressure(InfluxUnavailable):
    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class InfluxRejected(InfluxError):
    def __init__(self, message: str, dropped: int | None = None) -> None:
        super().__init__(message)
        self.dropped = dropped


_DROPPED_RE = re.compile(r"dropped=(\d+)")


def _translate(exc: Exception) -> InfluxError:
    """influxdb-client / urllib3 exception -> our tree, without echoing credentials."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status > 0:
        headers = getattr(exc, "headers", None) or {}
        body = str(getattr(exc, "body", "") or "")
        reason = (headers.get("X-Influxdb-Error") or body or str(getattr(exc, "reason", "")))[:300]
        if status in (429, 503):
            ra = headers.get("Retry-After")
            try:
                retry_after = float(ra) if ra is not None else None
            except ValueError:
                retry_after = None
            return InfluxBackpressure(f"InfluxDB asks to back off (HTTP {status})", retry_after)
        if 400 <= status < 500:
            m = _DROPPED_RE.search(reason)
            return InfluxRejected(
                f"InfluxDB rejected the batch (HTTP {status}): {reason}",
                int(m.group(1)) if m else None,
            )
        return InfluxUnavailable(f"InfluxDB error (HTTP {status})")
    # Connection refused, DNS, timeouts: the message of urllib3 names host and port only.
    return InfluxUnavailable(f"InfluxDB unreachable: {type(exc).__name__}: {str(exc)[-160:]}")


# ------------------------------------------------------------------------ spill files


#: A spill temp file older than this is left from a crash (a live writer renames its own
#: within milliseconds).
_STALE_TMP_S = 60.0


class SpillError(Exception):
    """A batch could not be written to the spill folder (full, or the disk failed)."""


class _Spill:
    """Batches on disk, replayed oldest first. Each file holds one batch of lines; a file is
    written under a temporary name and renamed, so neither a crash nor a full disk leaves half
    a batch under a name that replay reads. File names carry a token of this writer as well
    as the sequence number: distributed workers sharing one `storage.data_dir` spill to the
    same folder, and with the sequence alone one worker's batch replaced the other's (lost)."""

    def __init__(self, folder: Path, max_bytes: int) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        folder.mkdir(parents=True, exist_ok=True)
        for tmp in folder.glob("*.tmp"):
            # Half-written when a crash hit; never counted as spilled. A fresh one may be a
            # live peer's batch in the making (workers sharing the folder): leave it be.
            try:
                if time.time() - tmp.stat().st_mtime > _STALE_TMP_S:
                    tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self._files: deque[Path] = deque(sorted(folder.glob("spill-*.lp")))
        # sizes of the files in `_files`: a file a peer replayed and deleted first can no
        # longer be stat()ed, and its bytes must still leave the count
        self._sizes = {f: f.stat().st_size for f in self._files}
        self.bytes = sum(self._sizes.values())
        last = self._files[-1].stem.split("-")[1] if self._files else "0"
        self._seq = int(last) + 1 if last.isdigit() else 1
        self._token = secrets.token_hex(4)

    def __len__(self) -> int:
        return len(self._files)

    def put(self, lines: list[str]) -> None:
        """Write one batch, or raise SpillError and leave nothing behind."""
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if self.bytes + len(data) > self.max_bytes:
            raise SpillError(f"it holds {self.bytes} bytes, its limit is {self.max_bytes}")
        path = self.folder / f"spill-{self._seq:012d}-{self._token}.lp"
        self._seq += 1
        tmp = path.with_suffix(".tmp")
        try:
            # No fsync: the spill covers InfluxDB outages and process restarts (the page cache
            # survives both); an fsync per batch would hold up the writer for milliseconds.
            with open(tmp, "wb") as f:
                f.write(data)
            tmp.rename(path)
        except OSError as exc:
            # ENOSPC mid-write leaves a partial temp file: remove it so it neither holds the
            # space nor ever looks like a batch.
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            raise SpillError(f"{type(exc).__name__}: {exc.strerror or exc}") from None
        self._files.append(path)
        self._sizes[path] = len(data)
        self.bytes += len(data)

    def adopt(self, min_age_s: float) -> int:
        """Take on the files other writers sharing the folder left (a worker killed while
        InfluxDB was down, and not restarted, or restarted without new readings to write:
        nobody else would replay them). Only files older than `min_age_s`: a live peer
        replays its own as soon as InfluxDB answers. Should it replay one at the same time,
        the points are written twice (InfluxDB keeps one per series and timestamp) and the
        second delete finds nothing. Returns how many files were adopted."""
        known = set(self._files)
        now = time.time()
        found: list[Path] = []
        for path in self.folder.glob("spill-*.lp"):
            if path in known or path.stem.endswith(f"-{self._token}"):
                continue
            try:
                st = path.stat()
            except OSError:
                continue  # replayed by its writer meanwhile
            if now - st.st_mtime < min_age_s:
                continue
            found.append(path)
            self._sizes[path] = st.st_size
            self.bytes += st.st_size
        if found:
            self._files = deque(sorted([*self._files, *found]))
        return len(found)

    def peek(self) -> tuple[Path, list[str]] | None:
        while self._files:
            path = self._files[0]
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                self._files.popleft()  # a peer replayed it (see `adopt`)
                self.bytes -= self._sizes.pop(path, 0)
                continue
            except OSError as exc:
                # An unreadable file must not block the ones behind it: set it aside.
                self._files.popleft()
                self._quarantine(path, exc)
                continue
            # Damaged bytes become U+FFFD: InfluxDB rejects those lines (counted as failed)
            # and writes the rest, instead of replay stopping at this file forever.
            text = data.decode("utf-8", errors="replace")
            return path, [ln for ln in text.split("\n") if ln]
        return None

    def _quarantine(self, path: Path, exc: OSError) -> None:
        self.bytes -= self._sizes.pop(path, 0)
        try:
            path.rename(path.with_suffix(".bad"))
        except OSError:
            pass
        log.error("influx spill file %s is unreadable (%s); set aside as .bad", path, exc)

    def pop(self, path: Path) -> None:
        if self._files and self._files[0] == path:
            self._files.popleft()
        self.bytes -= self._sizes.pop(path, 0)
        try:
            path.unlink()
        except OSError:
            pass  # gone already (a peer replayed it), or undeletable: replayed again later


# ------------------------------------------------------------------------ InfluxDB


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    url: str
    token: str  # InfluxDB 1.8 compatibility API: "user:password"
    org: str = "-"
    bucket: str = "hazardwatch/autogen"
    batch_size: int = 5000
    flush_interval_ms: int = 1000
    spill_dir: Path = Path("var/influx-spill")
    spill_max_bytes: int = 1 << 30
    # Memory bound. While InfluxDB is down (or memory is over half of this), the writer thread
    # moves lines to the spill; beyond it (spill failing too), the oldest lines are dropped.
    max_buffer_lines: int = 200_000
    spill_retry_s: float = 1.0  # after a failed spill write (full disk), try again this often
    # Files of other writers sharing the spill folder, untouched this long, are replayed by
    # this one too (their writer died); looked for every `spill_adopt_every_s`.
    spill_adopt_after_s: float = 30.0
    spill_adopt_every_s: float = 10.0
    timeout_ms: int = 5000
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0

    def __repr__(self) -> str:  # the token is a secret
        return (
            f"InfluxConfig(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r}, token=***)"
        )


def _default_sender(cfg: InfluxConfig) -> tuple[Callable[[list[str]], None], Callable[[], None]]:
    from influxdb_client import InfluxDBClient, WritePrecision
    from influxdb_client.client.write_api import SYNCHRONOUS

    client = InfluxDBClient(url=cfg.url, token=cfg.token, org=cfg.org, timeout=cfg.timeout_ms)
    api = client.write_api(write_options=SYNCHRONOUS)

    def send(lines: list[str]) -> None:
        try:
            api.write(
                bucket=cfg.bucket,
                org=cfg.org,
                record="\n".join(lines),
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]  # a str constant
            )
        except Exception as exc:  # noqa: BLE001 - translated into our tree right here
            raise _translate(exc) from None

    return send, client.close


class InfluxWriter:
    """Batched, non-blocking InfluxDB writer with disk spill and replay (see module doc).

    `sender` can be injected (tests); by default it is influxdb-client's synchronous write API
    at millisecond precision.
    """

    def __init__(
        self,
        config: InfluxConfig,
        sender: Callable[[list[str]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        if sender is None:
            self._send, self._close_client = _default_sender(config)
        else:
            self._send, self._close_client = sender, lambda: None
        self._clock = clock
        self._buf: deque[str] = deque()
        self._lock = threading.Lock()  # buffer, counters, state; never held during I/O
        self._spill_lock = threading.Lock()  # the spill folder
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._spill = _Spill(config.spill_dir, config.spill_max_bytes)
        self._counts = {
            "written": 0,
            "failed": 0,
            "spilled": 0,
            "dropped": 0,
            "replayed": 0,
            "retries": 0,
            "backpressure": 0,
            "spill_errors": 0,
        }
        self._down_until = 0.0
        self._backoff = config.backoff_initial_s
        self._last_error = ""
        self._spill_error = ""  # set while the spill folder refuses batches
        self._spill_retry_at = 0.0
        self._adopt_at = 0.0  # next look for files dead writers left in the spill folder
        self._drop_logged_at: float | None = None
        self._drops_unlogged = 0
        self._sending = False
        # Lines handed in so far, and those taken out of memory and not yet sent or spilled:
        # lines leave memory oldest first, so every line before `taken - buffered - inflight`
        # is done with (written, rejected, spilled or dropped), which `persist` waits for.
        self._taken = 0
        self._inflight = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- caller side

    def write_lines(self, lines: Iterable[str]) -> None:
        """Queue lines; returns at once, never touching disk or network. Over the memory
        bound (the writer thread could neither send nor spill them), the oldest are dropped."""
        with self._lock:
            if self._closed:
                raise RuntimeError("InfluxWriter is closed")
            before = len(self._buf)
            self._buf.extend(lines)
            self._taken += len(self._buf) - before
            dropped = self._trim_locked()
            n = len(self._buf)
        if dropped:
            self._log_dropped(dropped)
        if n >= self.config.batch_size or n > self.config.max_buffer_lines // 2:
            self._wake.set()

    def _trim_locked(self) -> int:
        over = len(self._buf) - self.config.max_buffer_lines
        if over <= 0:
            return 0
        for _ in range(over):
            self._buf.popleft()
        self._counts["dropped"] += over
        return over

    def _log_dropped(self, n: int) -> None:
        """ERROR naming the folder: at once for the first drop, then at most once a minute
        with the count since, so a long outage does not flood the log."""
        now = time.monotonic()
        with self._lock:
            self._drops_unlogged += n
            if self._drop_logged_at is not None and now - self._drop_logged_at < 60:
                return
            self._drop_logged_at = now
            n, self._drops_unlogged = self._drops_unlogged, 0
            total, why = self._counts["dropped"], self._spill_error or self._last_error
        log.error(
            "influx writer memory is full (%d lines) and the spill folder %s cannot take more "
            "(%s): dropped %d lines (%d in all)",
            self.config.max_buffer_lines,
            self.config.spill_dir,
            why or "the writer thread has not caught up yet",
            n,
            total,
        )

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until memory and spill are written (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._lock:
            while self._buf or len(self._spill) or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(left, 0.05))
        return True

    def persist(self, timeout_s: float = 2.0) -> bool:
        """Whether everything handed in before the call is in InfluxDB or in a spill file
        (on disk: survives a kill of this process), waiting up to `timeout_s`. The writer
        thread gets the first part of the time to send as usual; after that (InfluxDB down or
        slow), this thread moves the lines still in memory to the spill itself. False when
        the spill folder refuses them (full disk: they stay in memory, nothing is lost) or a
        request holding some of them has not finished in time. Dropped lines (memory full
        and the spill refusing) count as done: they are counted and logged where dropped."""
        start = time.monotonic()
        deadline = start + timeout_s
        grace = start + min(timeout_s / 2, max(0.2, self.config.flush_interval_ms / 1000))
        with self._lock:
            target = self._taken
        self._wake.set()
        while True:
            with self._lock:
                done = self._taken - len(self._buf) - self._inflight
                if done >= target:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                batch: list[str] = []
                down = self._clock() < self._down_until
                if now >= grace or down:
                    # the oldest lines in memory up to the target (an in-flight batch ahead of
                    # them is the writer thread's: it sends or spills it)
                    n = min(target - done - self._inflight, len(self._buf), self.config.batch_size)
                    if n > 0:
                        batch = [self._buf.popleft() for _ in range(n)]
                        self._inflight += n
                if not batch:
                    self._idle.wait(min(deadline - now, 0.02))
                    continue
            if self._spill_batch(batch):
                with self._lock:
                    self._inflight -= len(batch)
                    self._idle.notify_all()
            else:
                self._put_back(batch)
                # refused (full disk): the writer thread keeps retrying every spill_retry_s;
                # InfluxDB may still take them before the deadline
                with self._lock:
                    self._idle.wait(max(0.0, min(deadline - time.monotonic(), 0.05)))

    def close(self, timeout_s: float = 5.0) -> None:
        """Try to write what is buffered for up to `timeout_s`; spill the rest to disk (it is
        replayed by the next writer on the same spill folder), then stop. What neither InfluxDB
        nor the spill takes is dropped, counted and logged."""
        self.flush(timeout_s)
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=timeout_s + self.config.timeout_ms / 1000)
        with self._lock:
            rest = list(self._buf)
            self._buf.clear()
        if rest and not self._spill_batch(rest, retry_now=True):
            with self._lock:
                self._counts["dropped"] += len(rest)
            log.error(
                "influx writer closing: InfluxDB did not take %d lines and the spill folder %s "
                "cannot (%s): dropped them",
                len(rest),
                self.config.spill_dir,
                self._spill_error,
            )
        self._close_client()

    def stats(self) -> dict[str, int | str | bool]:
        with self._lock:
            return {
                **self._counts,
                "buffered": len(self._buf),
                "spill_files": len(self._spill),
                "spill_bytes": self._spill.bytes,
                "spill_error": self._spill_error,
                "down": self._clock() < self._down_until,
                "last_error": self._last_error,
            }

    # ---------------------------------------------------------------- background

    def _spill_batch(self, batch: list[str], retry_now: bool = False) -> bool:
        """Write a batch to the spill; False (lines not taken, error noted) when the folder
        refuses it or refused one less than `spill_retry_s` ago."""
        with self._lock:
            if self._spill_error and not retry_now and self._clock() < self._spill_retry_at:
                return False
        try:
            with self._spill_lock:
                self._spill.put(batch)
        except SpillError as exc:
            with self._lock:
                first = not self._spill_error
                self._spill_error = str(exc)
                self._counts["spill_errors"] += 1
                self._spill_retry_at = self._clock() + self.config.spill_retry_s
                held = len(self._buf) + len(batch)
            if first:
                log.error(
                    "influx spill folder %s refuses batches (%s): keeping lines in memory "
                    "(%d now, at most %d) and retrying every %g s",
                    self.config.spill_dir,
                    exc,
                    held,
                    self.config.max_buffer_lines,
                    self.config.spill_retry_s,
                )
            return False
        with self._lock:
            self._counts["spilled"] += len(batch)
            recovered, self._spill_error = self._spill_error, ""
        if recovered:
            log.warning("influx spill folder %s takes batches again", self.config.spill_dir)
        return True

    def _put_back(self, batch: list[str]) -> None:
        """Lines that could be neither sent nor spilled go back in front: order is kept."""
        with self._lock:
            self._buf.extendleft(reversed(batch))
            self._inflight -= len(batch)
            dropped = self._trim_locked()
        if dropped:
            self._log_dropped(dropped)

    def _relieve(self) -> None:
        """Move memory to the spill, oldest first: all of it while InfluxDB is down (a crash
        then loses at most one flush interval), or what is over half the memory bound while it
        is merely slow. Stops at the first refusal; the lines then wait in memory."""
        half = self.config.max_buffer_lines // 2
        while True:
            with self._lock:
                if self._spill_error and self._clock() < self._spill_retry_at:
                    return  # refused a moment ago: don't churn the buffer on every wake
                down = self._clock() < self._down_until
                keep = 0 if down else half
                n = min(len(self._buf) - keep, self.config.batch_size)
                if n <= 0 or (self._closed and not down):
                    return
                batch = [self._buf.popleft() for _ in range(n)]
                self._inflight += n
            if not self._spill_batch(batch):
                self._put_back(batch)
                return
            with self._lock:
                self._inflight -= n

    def _run(self) -> None:
        interval = self.config.flush_interval_ms / 1000
        while True:
            self._wake.wait(interval)
            self._wake.clear()
            with self._lock:
                if self._closed and not self._buf:
                    self._idle.notify_all()
                    return
            try:
                self._adopt_orphans()
                self._relieve()
                self._drain()
            except Exception:  # the writer thread must never die
                log.exception("influx writer loop failed; continuing")
            with self._lock:
                self._idle.notify_all()
                if self._closed and self._clock() < self._down_until:
                    return  # close() spills what is left; no point waiting out the backoff

    def _adopt_orphans(self) -> None:
        now = self._clock()
        if now < self._adopt_at:
            return
        self._adopt_at = now + self.config.spill_adopt_every_s
        with self._spill_lock:
            n = self._spill.adopt(self.config.spill_adopt_after_s)
        if n:
            log.warning(
                "influx spill: replaying %d file(s) another writer left in %s",
                n,
                self.config.spill_dir,
            )

    def _wait_for_backoff(self) -> bool:
        return self._clock() < self._down_until

    def _drain(self) -> None:
        """Send spill files first (order), then memory, until empty or InfluxDB fails."""
        while not self._wait_for_backoff():
            with self._spill_lock:
                item = self._spill.peek()
            with self._lock:
                if item is None:
                    n = min(len(self._buf), self.config.batch_size)
                    if n == 0:
                        return
                    batch = [self._buf.popleft() for _ in range(n)]
                    self._inflight += n
                self._sending = True
            try:
                if item is not None:
                    path, lines = item
                    if self._try_send(lines):
                        with self._spill_lock:
                            self._spill.pop(path)
                        with self._lock:
                            self._counts["replayed"] += len(lines)
                    else:
                        return
                else:
                    try:
                        sent = self._try_send(batch)
                    except Exception:
                        self._put_back(batch)  # a sender error outside our tree: keep them
                        raise
                    if sent or self._spill_batch(batch):
                        with self._lock:
                            self._inflight -= len(batch)
                    else:
                        self._put_back(batch)
                    if not sent:
                        return
            finally:
                with self._lock:
                    self._sending = False
                    self._idle.notify_all()

    def _try_send(self, lines: list[str]) -> bool:
        """True when the lines are done with (written, or rejected as bad data)."""
        size = self.config.batch_size
        for i in range(0, len(lines), size):
            chunk = lines[i : i + size]
            try:
                self._send(chunk)
            except InfluxRejected as exc:
                with self._lock:
                    self._counts["failed"] += exc.dropped if exc.dropped is not None else len(chunk)
                    self._counts["written"] += len(chunk) - (exc.dropped or len(chunk))
                    self._last_error = str(exc)
                log.error("%s", exc)
                continue
            except InfluxUnavailable as exc:
                # Chunks already written are sent again on the retry: harmless, InfluxDB keeps
                # one point per series and timestamp.
                self._mark_down(exc)
                return False
            with self._lock:
                self._counts["written"] += len(chunk)
                self._backoff = self.config.backoff_initial_s
                self._last_error = ""
        return True

    def _mark_down(self, exc: InfluxUnavailable) -> None:
        with self._lock:
            self._counts["retries"] += 1
            delay = self._backoff
            if isinstance(exc, InfluxBackpressure):
                self._counts["backpressure"] += 1
                if exc.retry_after_s:
                    delay = max(delay, exc.retry_after_s)
            self._down_until = self._clock() + delay
            self._backoff = min(self._backoff * 2, self.config.backoff_max_s)
            first = not self._last_error
            self._last_error = str(exc)
        if first:
            log.warning(
                "%s; spilling to %s and retrying in %.1f s", exc, self.config.spill_dir, delay
            )


# ------------------------------------------------------------------------ files


class LineProtocolFileWriter:
    """Line protocol to rotating files under `<data_dir>/lineprotocol/` for when no InfluxDB is
    configured. Load them later with `influx write --precision ms --file <file>` (2.x) or
    `curl -XPOST '<url>/write?db=hazardwatch&precision=ms' --data-binary @<file>` (1.x)."""

    HEADER = "# hazardwatch line protocol, timestamps in milliseconds (precision=ms)\n"
    _HEADER_BYTES = HEADER.encode("utf-8")

    def __init__(
        self, data_dir: Path, max_file_bytes: int = 64 << 20, clock: Callable[[], float] = time.time
    ) -> None:
        self.folder = Path(data_dir) / "lineprotocol"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_file_bytes = max_file_bytes
        self._clock = clock
        self._lock = threading.Lock()
        # Binary: each batch is encoded to UTF-8 once here, and its size for rotation is the
        # length of those bytes (the text layer would encode it a second time).
        self._f: BinaryIO | None = None
        self.path: Path | None = None
        self._size = 0
        self._counts = {"written": 0, "files": 0, "bytes": 0}
        self._closed = False

    def _open(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(self._clock()))
        n = 0
        while True:
            path = self.folder / f"hw-{stamp}-{n:03d}.lp"
            if not path.exists():
                break
            n += 1
        f = open(path, "ab")  # kept open across writes
        f.write(self._HEADER_BYTES)
        self._f = f
        self._size = len(self._HEADER_BYTES)
        self._counts["files"] += 1
        self.path = path

    def write_lines(self, lines: Iterable[str]) -> None:
        """Append the lines, each followed by a newline, UTF-8. A new file is started before
        a line when the current one has reached `max_file_bytes` (so a file ends at most one
        line past it). The batch is joined and encoded once; only a batch that reaches the
        limit is split, line by line, at the same places."""
        batch = lines if isinstance(lines, list) else list(lines)
        data = ("\n".join(batch) + "\n").encode("utf-8") if batch else b""
        with self._lock:
            if self._closed:
                raise RuntimeError("LineProtocolFileWriter is closed")
            if not batch:
                return
            f = self._f
            if f is not None:
                # Every line goes to this file when the size before the last one is under
                # the limit: the size before each earlier line is smaller still.
                last = len(batch[-1].encode("utf-8")) + 1
                if self._size + len(data) - last < self.max_file_bytes:
                    f.write(data)
                    self._size += len(data)
                    self._counts["bytes"] += len(data)
                    self._counts["written"] += len(batch)
                    return
            self._write_each_locked(data, batch)

    def _write_each_locked(self, data: bytes, batch: list[str]) -> None:
        start = 0
        for line in batch:
            end = start + len(line.encode("utf-8")) + 1
            if self._f is None or self._size >= self.max_file_bytes:
                if self._f is not None:
                    self._f.close()
                self._open()
            assert self._f is not None
            self._f.write(data[start:end])
            self._size += end - start
            self._counts["bytes"] += end - start
            self._counts["written"] += 1
            start = end

    def flush(self, timeout_s: float = 10.0) -> bool:
        with self._lock:
            if self._f is not None:
                self._f.flush()
        return True

    def persist(self, timeout_s: float = 2.0) -> bool:
        """Everything written so far is in the file (handed to the OS: survives a kill of
        this process, as the InfluxWriter's spill files do)."""
        return self.flush(timeout_s)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._f is not None:
                self._f.close()
                self._f = None

    def stats(self) -> dict[str, int | str | bool]:
        with self._lock:
            return dict(self._counts)


def open_line_writer(
    url: str, token: str, org: str, bucket: str, data_dir: Path, **kwargs: object
) -> LineWriter:
    """`InfluxWriter` when a URL is configured, else `LineProtocolFileWriter` under data_dir."""
    if url:
        return InfluxWriter(
            InfluxConfig(
                url=url,
                token=token,
                org=org,
                bucket=bucket,
                spill_dir=Path(data_dir) / "influx-spill",
                **kwargs,  # type: ignore[arg-type]
            )
        )
    return LineProtocolFileWriter(Path(data_dir))
