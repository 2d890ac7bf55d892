"""The clock-step primitive (tests/faults/env.py ClockControl) on this machine's Python: a
subprocess's wall clock steps forward and back at runtime while its monotonic clock, sleeps,
thread waits and asyncio timers run on undisturbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.env import ClockControl

# Prints one JSON line per request on stdin: wall minus monotonic drift, from main thread,
# a worker thread and an asyncio task, after a sleep, an Event.wait and an asyncio.sleep.
CHILD = r"""
import asyncio, json, sys, threading, time
m0, w0 = time.monotonic(), time.time()
def skew():
    return (time.time() - w0) - (time.monotonic() - m0)
async def in_loop():
    t = time.monotonic(); await asyncio.sleep(0.05)
    return skew(), time.monotonic() - t
for line in sys.stdin:
    t = time.monotonic(); time.sleep(0.05); slept = time.monotonic() - t
    box = {}
    def work():
        t = time.monotonic(); threading.Event().wait(0.05)
        box["thread"] = skew(); box["waited"] = time.monotonic() - t
    th = threading.Thread(target=work); th.start(); th.join()
    loop_skew, loop_slept = asyncio.run(in_loop())
    print(json.dumps({"main": skew(), "slept": slept, "thread": box["thread"],
                      "waited": box["waited"], "loop": loop_skew, "loop_slept": loop_slept,
                      "time_ns": time.time_ns() / 1e9 - time.time()}), flush=True)
"""


def _ask(proc: subprocess.Popen[str]) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("?\n")
    proc.stdin.flush()
    return json.loads(proc.stdout.readline())


def test_jump_steps_the_wall_clock_only_and_sleeps_keep_working(tmp_path: Path) -> None:
    clock = ClockControl(tmp_path)
    env = {**os.environ, **clock.env()}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = _ask(proc)
        assert abs(first["main"]) < 0.5
        clock.jump(600)
        fwd = _ask(proc)
        clock.jump(-1200)  # net -600
        back = _ask(proc)
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    for got, want in ((fwd, 600.0), (back, -600.0)):
        for where in ("main", "thread", "loop"):
            assert abs(got[where] - want) < 0.5, (where, got)
        # Sleeping and waiting still take their real time, not 0 and not 10 minutes.
        for k in ("slept", "waited", "loop_slept"):
            assert 0.045 < got[k] < 1.0, (k, got)
        assert abs(got["time_ns"]) < 0.1
    assert clock.offset == -600.0


def test_wall_reports_what_the_child_sees_and_the_offset_file_is_atomic(tmp_path: Path) -> None:
    clock = ClockControl(tmp_path)
    clock.jump(-90.25)
    marker = tmp_path / "marker"
    marker.write_text("x")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import os, time; print(time.time(), os.stat({str(marker)!r}).st_mtime)",
        ],
        env={**os.environ, **clock.env()},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    now, mtime = map(float, out.stdout.split())
    assert abs(now - clock.wall()) < 1.0
    assert mtime == marker.stat().st_mtime  # file times are not shifted: a step does not
    assert abs(clock.wall() - (time.time() - 90.25)) < 0.01
    assert clock.file.read_text() == "-90.250000\n"
    assert not list(tmp_path.glob("*.new"))


def test_forward_only_sees_a_step_within_about_a_second_and_refuses_a_backward_one(
    tmp_path: Path,
) -> None:
    clock = ClockControl(tmp_path, forward_only=True)
    clock.jump(-600)  # before env(): the children start 10 min behind
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env={**os.environ, **clock.env()},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert abs(_ask(proc)["main"]) < 0.5
        with pytest.raises(ValueError, match="backward step"):
            clock.jump(-1)
        clock.jump(600)
        stepped_at = time.monotonic()
        while abs((got := _ask(proc))["main"] - 600.0) >= 0.5:
            assert abs(got["main"]) < 0.5, got  # not stepped yet, or stepped by 600 s
            assert time.monotonic() - stepped_at < 3.0, "the step was not seen within 3 s"
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert clock.offset == 0.0
