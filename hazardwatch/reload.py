"""Hot reload of rule files and the point registry: notice a change (file poll, SIGHUP or the
`POST /-/reload` endpoint), validate the new files completely, and hand a ready bundle to the
evaluation thread, which swaps it in between two batches. A bad file leaves the old rules
running; the failure is logged, counted and kept for the status endpoint.

The watcher only observes and builds; it never touches pipeline state itself, so the swap is
atomic from the pipeline's point of view.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

B = TypeVar("B")

#: (path, mtime_ns, size) of every watched file, sorted: equal fingerprints = nothing changed.
Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(paths: Iterable[Path | None]) -> Fingerprint:
    """Fingerprint of the given files and of every file inside the given directories."""
    found: list[tuple[str, int, int]] = []
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                found.append((str(f), -1, -1))  # missing: a change too, validation will say why
                continue
            found.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    ok: bool
    trigger: str  # file | signal | api | startup
    version: str = ""  # ruleset version now running
    error: str = ""  # why the new files were refused (old rules still running)


class Reloader(Generic[B]):
    """Builds a new bundle with `build()` (which must raise on any invalid file) and passes it
    to `apply(bundle)`; `version(bundle)` names it in logs and outcomes.

    `request(trigger)` may be called from any thread (signal handler, HTTP, watcher); it only
    sets a flag. The owner of the pipeline calls `poll()` between batches, so validation and
    the swap happen on the evaluation thread's schedule, never in the middle of a batch.
    """

    def __init__(
        self,
        build: Callable[[], B],
        apply: Callable[[B], None],
        version: Callable[[B], str],
        *,
        on_outcome: Callable[[ReloadOutcome], None] | None = None,
    ) -> None:
        self._build = build
        self._apply = apply
        self._version = version
        self._on_outcome = on_outcome
        self._lock = threading.Lock()
        self._pending: str | None = None
        self.last: ReloadOutcome | None = None
        self._done = threading.Condition(self._lock)
        self._generation = 0

    def request(self, trigger: str) -> None:
        with self._lock:
            self._pending = self._pending or trigger

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def poll(self) -> ReloadOutcome | None:
        """Run a requested reload now (evaluation thread). Returns its outcome, if any."""
        with self._lock:
            trigger, self._pending = self._pending, None
        if trigger is None:
            return None
        return self.reload(trigger)

    def reload(self, trigger: str) -> ReloadOutcome:
        try:
            bundle = self._build()
        except Exception as exc:  # noqa: BLE001 - any invalid file keeps the old rules running
            outcome = ReloadOutcome(
                False, trigger, self.last.version if self.last else "", _one_paragraph(exc)
            )
            log.error(
                "rule reload (%s) refused, old rules keep running: %s", trigger, outcome.error
            )
        else:
            self._apply(bundle)
            outcome = ReloadOutcome(True, trigger, self._version(bundle))
            log.info("rules reloaded (%s): ruleset %s", trigger, outcome.version)
        with self._lock:
            self.last = outcome
            self._generation += 1
            self._done.notify_all()
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        return outcome

    def wait(self, after_generation: int, timeout: float) -> ReloadOutcome | None:
        """Block until a reload newer than `after_generation` finished (for the HTTP trigger)."""
        with self._lock:
            self._done.wait_for(lambda: self._generation > after_generation, timeout)
            return self.last if self._generation > after_generation else None

    @property
    def generation(self) -> int:
        with self._lock:
            return self._generation


def _one_paragraph(exc: BaseException) -> str:
    """The loader's message (it names the file and lists every problem) on one line."""
    text = str(exc).strip()
    problems = getattr(exc, "problems", None)
    if not text and problems:
        text = f"{len(problems)} problem(s): " + "; ".join(str(p) for p in problems)
    return f"{type(exc).__name__}: " + "; ".join(x.strip() for x in text.splitlines() if x.strip())


class FileWatcher:
    """Polls the fingerprint of the watched paths and requests a reload when it changes.

    Polling (every `interval_s`) rather than inotify: it works on every filesystem (NFS,
    bind mounts, editors that replace files by rename) and costs a few stat calls.
    """

    def __init__(
        self,
        paths: Callable[[], Iterable[Path | None]],
        on_change: Callable[[], None],
        interval_s: float = 2.0,
    ) -> None:
        self._paths = paths
        self._on_change = on_change
        self._interval = interval_s
        self._stop = threading.Event()
        self._last = fingerprint(paths())
        self._thread = threading.Thread(target=self._run, name="hw-reload-watch", daemon=True)

    def start(self) -> FileWatcher:
        self._thread.start()
        return self

    def check(self) -> bool:
        """One poll; True (and on_change called) when something changed."""
        now = fingerprint(self._paths())
        if now != self._last:
            self._last = now
            self._on_change()
            return True
        return False

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # a watcher glitch must not kill the process
                log.exception("rule file watcher failed; will retry")

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
