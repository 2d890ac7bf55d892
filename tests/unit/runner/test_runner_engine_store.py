"""The SQLite snapshot: one atomic row per batch, surviving a reopen (what `kill -9` leaves)."""

from __future__ import annotations

import multiprocessing
import os
import signal

import pytest

from hazardwatch.engine_store import EngineStore, EngineStoreError, Snapshot


def test_fresh_store_has_no_snapshot(tmp_path):
    assert EngineStore(tmp_path / "state.db").load() is None


def test_save_then_reopen_returns_the_last_snapshot(tmp_path):
    path = tmp_path / "state.db"
    s = EngineStore(path)
    s.save(b"e1", b"w1", {"sim_index": 1}, "rs-a", 1000)
    s.save(b"e2", b"w2", {"sim_index": 2}, "rs-b", 2000)
    s.close()
    snap = EngineStore(path).load()
    assert snap == Snapshot(b"e2", b"w2", {"sim_index": 2}, "rs-b", 2000, 2)


def _writer(path: str, ready) -> None:  # runs in a child that gets SIGKILLed
    s = EngineStore(path)
    i = 0
    while True:
        i += 1
        s.save(b"E" * 10000 + str(i).encode(), b"W" + str(i).encode(), {"n": i}, "rs", i)
        if i == 50:
            ready.set()


def test_kill_9_mid_write_leaves_a_consistent_snapshot(tmp_path):
    path = tmp_path / "state.db"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_writer, args=(str(path), ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    snap = EngineStore(path).load()
    assert snap is not None
    n = snap.position["n"]
    assert n >= 50
    # engine, warnings and position all belong to the same batch
    assert snap.engine.endswith(str(n).encode()) and snap.warnings == b"W" + str(n).encode()
    assert snap.saved_ms == n


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "state.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(EngineStoreError, match=r"state\.db: cannot open the state database"):
        EngineStore(bad)
