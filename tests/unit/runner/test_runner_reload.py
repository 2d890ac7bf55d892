"""Hot reload: validate first, swap only a good bundle, keep the old rules on a bad one."""

from __future__ import annotations

import os
import time

from hazardwatch.reload import FileWatcher, Reloader, fingerprint


class Problem(Exception):
    """Like the loaders' errors: a message with every problem, and the list."""

    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def test_good_reload_swaps_and_bad_reload_keeps_old_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n")
    applied: list[str] = []
    outcomes = []

    def build():
        text = rules.read_text()
        if "oops" in text:
            raise Problem(["rules.yaml: $.limits[0].h: expected a number, got 'x'"])
        return text.strip()

    r = Reloader(build, applied.append, lambda b: b, on_outcome=outcomes.append)
    assert r.reload("startup").ok
    rules.write_text("version: 2\n")
    r.request("signal")
    assert r.pending
    out = r.poll()
    assert out.ok and out.version == "version: 2" and out.trigger == "signal"
    rules.write_text("oops\n")
    r.request("file")
    bad = r.poll()
    assert not bad.ok
    assert "expected a number" in bad.error and "rules.yaml" in bad.error
    assert bad.version == "version: 2"  # what keeps running
    assert applied == ["version: 1", "version: 2"]
    assert [o.ok for o in outcomes] == [True, True, False]
    assert r.poll() is None  # nothing pending


def test_watcher_notices_edits_new_and_removed_files(tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    f = d / "a.yaml"
    f.write_text("a")
    reg = tmp_path / "registry.csv"
    reg.write_text("x")
    changes = []
    w = FileWatcher(lambda: [d, reg, None], lambda: changes.append(1), interval_s=3600)
    assert not w.check()
    f.write_text("ab")
    assert w.check()
    (d / "b.yaml").write_text("b")
    assert w.check()
    (d / "b.yaml").unlink()
    assert w.check()
    st = reg.stat()
    os.utime(reg, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert w.check()
    assert not w.check()
    assert len(changes) == 4


def test_watcher_thread_requests_reload(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("1")
    r = Reloader(lambda: f.read_text(), lambda b: None, lambda b: b)
    w = FileWatcher(lambda: [f], lambda: r.request("file"), interval_s=0.05).start()
    try:
        time.sleep(0.1)
        f.write_text("22")
        deadline = time.monotonic() + 5
        while not r.pending and time.monotonic() < deadline:
            time.sleep(0.02)
        assert r.pending
    finally:
        w.stop()


def test_fingerprint_of_missing_file_differs_from_present(tmp_path):
    f = tmp_path / "x"
    missing = fingerprint([f])
    f.write_text("1")
    assert fingerprint([f]) != missing
