"""Environment fault primitives for the fault suite: a full disk under a folder, and a wall
clock that steps (as an NTP step would) in a subprocess while its monotonic clock runs on.

API (both fail loudly, never skip, when the machine cannot provide the fault):

``full_disk(path: Path, size_bytes: int = 1 MiB) -> ContextManager[FullDisk]``
    Mounts a tmpfs of `size_bytes` at `path` (created if missing; it must be empty, since the
    mount would hide what is there), fills it with one filler file until the kernel answers
    ENOSPC, yields a `FullDisk` handle, and unmounts on exit, always, also on error (lazily
    if a process still holds a file open there). `FullDisk.free(n)` releases n bytes (all
    when None) so a test can let the disk recover, `FullDisk.refill()` fills it again.
    Needs root (CAP_SYS_ADMIN): `mount -t tmpfs -o size=1m tmpfs DIR`.

``ClockControl(tmpdir: Path, *, forward_only: bool = False)``
    `.env() -> dict[str, str]`: variables to ADD to a subprocess's environment (LD_PRELOAD of
    libfaketime, `FAKETIME_TIMESTAMP_FILE`, `FAKETIME_DONT_FAKE_MONOTONIC=1`,
    `NO_FAKE_STAT=1`), so only CLOCK_REALTIME (time.time, time_ns, datetime.now) moves, as in
    an NTP step; file times stay real. `.jump(seconds)` steps those processes' wall clock
    forward (+) or backward (-) at runtime, cumulatively. `.offset` is the current total;
    `.wall()` is the processes' wall time as seen from the test. The Debian package is
    `faketime` (scripts/system-deps).

    How often the children re-read the offset file is the trade-off:
    - default: on every clock read (`FAKETIME_NO_CACHE=1`), so a jump is effective at the
      next read, backward too. The cost is large in a multi-threaded process: libfaketime
      also intercepts `pthread_cond_timedwait`, which CPython's GIL hand-over calls every
      few milliseconds, and reads the file there too. An idle Faust worker went from 10 % to
      75-90 % of a core here (strace: ~4,700 file reads/s, from take_gil), which made its
      timers overrun by seconds and its alarms late by tens of seconds after a step.
    - `forward_only=True`: re-read at most once a second (`FAKETIME_CACHE_DURATION=1`); the
      idle worker uses 11 % of a core, and a jump is effective within about a second.
      libfaketime dates that cache in fake time, so after a backward step at runtime it would
      not re-read the file until fake time caught up: `.jump()` refuses a negative step once
      `.env()` was handed out (before that, the children start with the offset, which is
      how a host that booted behind is simulated).

libfaketime 0.9.10 (Debian 12) breaks Python >= 3.11's `time.sleep` when the monotonic clock
is not faked: Python sleeps with `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)`, which
libfaketime rewrites into a negative time, so every sleep raises `OSError: [Errno 22]`
(https://github.com/wolfcw/libfaketime/issues/426). Threading waits, queue/lock timeouts,
select and asyncio are unaffected (tests/unit/runner/test_clock_faketime.py checks them).
So `.env()` also puts a `sitecustomize` on PYTHONPATH that gives the child a `time.sleep` built on
select() over the real monotonic clock (same contract: at least `secs`, ValueError if
negative); any other `sitecustomize` on the path still runs after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

LIBFAKETIME_DIRS = (
    Path("/usr/lib/x86_64-linux-gnu/faketime"),
    Path("/usr/lib/aarch64-linux-gnu/faketime"),
    Path("/usr/lib/faketime"),
    Path("/usr/local/lib/faketime"),
)
FILLER = ".full-disk-filler"


class FaultSetupError(RuntimeError):
    """The machine cannot provide the fault (not root, no libfaketime, ...): the test fails."""


# ------------------------------------------------------------------------ full disk


class FullDisk:
    """Handle on a full tmpfs: usable as a path (`os.fspath`), can free and refill space."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        self.size_bytes = size_bytes
        self.filler = path / FILLER

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"FullDisk({str(self.path)!r}, size_bytes={self.size_bytes})"

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def refill(self) -> int:
        """Append to the filler until ENOSPC; returns the bytes added. Shrinks the chunk down
        to one byte so the last partial page is taken too."""
        added = 0
        chunk = 64 * 1024
        with open(self.filler, "ab", buffering=0) as f:
            while chunk >= 1:
                try:
                    n = f.write(b"\0" * chunk)
                    added += n or 0
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        if self.free_bytes() != 0:
            raise FaultSetupError(f"{self.path}: still {self.free_bytes()} bytes free after fill")
        return added

    def free(self, nbytes: int | None = None) -> None:
        """Release `nbytes` of the filler (all of it when None): the disk recovers."""
        size = self.filler.stat().st_size if self.filler.exists() else 0
        keep = 0 if nbytes is None else max(0, size - nbytes)
        with open(self.filler, "r+b") as f:
            f.truncate(keep)


def _is_mountpoint(path: Path) -> bool:
    return subprocess.run(["mountpoint", "-q", str(path)], check=False).returncode == 0


def _umount(path: Path) -> None:
    last = ""
    for _ in range(20):  # a writer thread may be closing its last file there
        r = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
        if r.returncode == 0 or not _is_mountpoint(path):
            return
        last = r.stderr.strip()
        time.sleep(0.05)
    # Still busy (a process keeps a file open): detach now, the kernel frees it when closed.
    r = subprocess.run(["umount", "-l", str(path)], capture_output=True, text=True, check=False)
    if r.returncode != 0 and _is_mountpoint(path):
        raise FaultSetupError(f"cannot unmount the full disk at {path}: {last}; {r.stderr.strip()}")


@contextlib.contextmanager
def full_disk(path: Path, size_bytes: int = 1 << 20) -> Iterator[FullDisk]:
    """A full filesystem mounted at `path` for the duration of the block (see module doc)."""
    path = Path(path)
    if size_bytes < 4096:
        raise ValueError(
            f"full_disk: size_bytes must be at least one page (4096), got {size_bytes}"
        )
    path.mkdir(parents=True, exist_ok=True)
    if any(path.iterdir()):
        raise FaultSetupError(
            f"full_disk: {path} is not empty; a mount there would hide its files "
            "(start the writer on the full disk, or point it at an empty folder)"
        )
    if _is_mountpoint(path):
        raise FaultSetupError(f"full_disk: {path} is already a mount point")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0777", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        raise FaultSetupError(
            f"full_disk: cannot mount a tmpfs at {path} (uid {os.getuid()}): "
            f"{r.stderr.strip() or r.returncode}; the fault suite needs root / CAP_SYS_ADMIN"
        )
    try:
        disk = FullDisk(path, size_bytes)
        disk.refill()
        yield disk
    finally:
        _umount(path)


# ------------------------------------------------------------------------ clock steps

_SITECUSTOMIZE = '''\
"""Written by tests/faults/env.py ClockControl: libfaketime 0.9.10 with
FAKETIME_DONT_FAKE_MONOTONIC=1 turns Python's absolute monotonic clock_nanosleep into EINVAL
(wolfcw/libfaketime#426); sleep with select() on the real monotonic clock instead."""
import os as _os
import select as _select
import sys as _sys
import time as _time


def _hw_faketime_sleep(secs):
    secs = float(secs)
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = _time.monotonic() + secs
    while True:
        left = deadline - _time.monotonic()
        if left <= 0:
            return
        _select.select([], [], [], left)


_time.sleep = _hw_faketime_sleep

# Let another sitecustomize further down the path run too.
_here = _os.path.dirname(_os.path.abspath(__file__))
for _d in _sys.path:
    if _d and _os.path.abspath(_d) != _here:
        _p = _os.path.join(_d, "sitecustomize.py")
        if _os.path.isfile(_p):
            with open(_p, encoding="utf-8") as _f:
                exec(compile(_f.read(), _p, "exec"), {"__name__": "sitecustomize", "__file__": _p})
            break
'''


def find_libfaketime() -> Path:
    for d in LIBFAKETIME_DIRS:
        # The MT build serialises its own state for threaded programs (our workers are).
        for name in ("libfaketimeMT.so.1", "libfaketime.so.1"):
            if (d / name).is_file():
                return d / name
    raise FaultSetupError(
        "libfaketime is not installed (Debian package `faketime`; scripts/system-deps "
        "installs it, or `apt-get install -y faketime`)"
    )


class ClockControl:
    """Steps the wall clock of subprocesses started with `.env()` (see module doc)."""

    def __init__(self, tmpdir: Path, *, forward_only: bool = False) -> None:
        self.dir = Path(tmpdir)
        self.forward_only = forward_only
        self._handed_out = False
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lib = find_libfaketime()
        self.file = self.dir / "faketime-offset"
        self.site = self.dir / "faketime-site"
        self.site.mkdir(exist_ok=True)
        (self.site / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        self.offset = 0.0
        self._write()

    def env(self) -> dict[str, str]:
        self._handed_out = True
        preload = " ".join(p for p in (str(self.lib), os.environ.get("LD_PRELOAD", "")) if p)
        pythonpath = os.pathsep.join(
            p for p in (str(self.site), os.environ.get("PYTHONPATH", "")) if p
        )
        return {
            "LD_PRELOAD": preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            # re-read the offset file at most once a second (see the module doc)
            **(
                {"FAKETIME_CACHE_DURATION": "1"}
                if self.forward_only
                # re-read it on every call: jumps, backward too, are immediate
                else {"FAKETIME_NO_CACHE": "1"}
            ),
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",  # an NTP step moves the wall clock only
            "NO_FAKE_STAT": "1",  # file times stay real (and stat() stays cheap)
            "PYTHONPATH": pythonpath,
        }

    def jump(self, seconds: float) -> None:
        """Step the subprocesses' wall clock by `seconds` (negative: backward), from now on."""
        if self.forward_only and self._handed_out and seconds < 0:
            raise ValueError(
                f"ClockControl(forward_only=True): a backward step ({seconds:+g} s) after "
                "env() was handed out would not be seen (libfaketime dates its cache in fake "
                "time); use ClockControl(forward_only=False) for backward steps"
            )
        self.offset += float(seconds)
        self._write()

    def wall(self) -> float:
        """The wall time the controlled processes see now (epoch seconds)."""
        return time.time() + self.offset

    def _write(self) -> None:
        # Write and rename: a process reading the file mid-write would see no offset at all.
        tmp = self.file.with_name(self.file.name + ".new")
        tmp.write_text(f"{self.offset:+.6f}\n", encoding="utf-8")
        tmp.replace(self.file)
