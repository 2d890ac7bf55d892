"""bench/soak's "memory flat" verdict: judged after the warm-up, so a process that fills its
working set and then holds it is flat, and one that keeps growing is not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _soak():
    spec = importlib.util.spec_from_file_location("hw_soak_run", REPO / "bench/soak/run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["hw_soak_run"] = mod
    spec.loader.exec_module(mod)
    return mod


SOAK = _soak()
PER_MIN = 6  # samples every 10 s


def run(floors_mb: list[float]) -> list:
    """Samples whose per-minute RSS floor is `floors_mb` (a sawtooth of 30 MB above it)."""
    out = []
    for m, floor in enumerate(floors_mb):
        for i in range(PER_MIN):
            out.append(
                SOAK.Sample(
                    t_s=(m * PER_MIN + i) * 10.0,
                    feeding=True,
                    rss_mb=floor + (0 if i == 3 else 30.0 * (i % 2 + 0.5)),
                    readings_per_s=7500,
                    lag_p50_ms=20,
                    lag_p99_ms=300,
                    lag_max_ms=900,
                    source_behind_ms=100,
                    queue=10,
                    outbox=0,
                    alarms=0,
                )
            )
    return out


# The 30-minute soak of 2026-11-29 12:15 UTC: per-minute RSS floors (MB), from its note.
MEASURED = [808, 843, 878, 902, 899, 898, 898, 899, 899, 919, 896, 921, 922, 900, 900]
MEASURED += [901, 924, 901, 901, 878, 901, 877, 924, 903, 906, 909, 902, 916, 902, 925]


def test_a_warm_up_then_a_steady_working_set_is_flat():
    flat, _, lines = SOAK.verdicts(run(MEASURED), PER_MIN, 10_000)
    assert flat, lines
    assert "5-minute warm-up in which the minute floor went 808 -> 899 MB" in lines[0]
    assert "last/first 5 steady minutes (median floor) 1.011: 909 / 899 MB" in lines[0]


def test_the_same_run_judged_with_its_warm_up_was_not_flat():
    flat, _, lines = SOAK.verdicts(run(MEASURED), PER_MIN, 10_000, warmup_min=1)
    assert not flat, lines


def test_steady_growth_after_the_warm_up_is_not_flat():
    growing = MEASURED[:5] + [898 + 1.0 * m for m in range(25)]  # +60 MB/h
    flat, _, lines = SOAK.verdicts(run(growing), PER_MIN, 10_000)
    assert not flat, lines
    assert "floor slope +60.0 MB/h" in lines[0]
