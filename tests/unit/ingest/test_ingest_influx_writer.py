"""InfluxWriter with an injected sender (no network): batching, spill while down, replay in
order when back, backpressure, bad data, bounded spill with a dropped count, restart replay.
The same writer against the real InfluxDB is in tests/integration/test_ingest_influx.py."""

from __future__ import annotations

import threading
import time

import pytest

from ingest.influx import (
    InfluxBackpressure,
    InfluxConfig,
    InfluxRejected,
    InfluxUnavailable,
    InfluxWriter,
    LineProtocolFileWriter,
    _translate,
)


class FakeInflux:
    """Records batches; `down` makes it raise like an unreachable server."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.down = False
        self.error: Exception | None = None
        self.lock = threading.Lock()

    def __call__(self, lines: list[str]) -> None:
        with self.lock:
            if self.error is not None:
                raise self.error
            if self.down:
                raise InfluxUnavailable("InfluxDB unreachable: connection refused")
            self.batches.append(list(lines))

    @property
    def lines(self) -> list[str]:
        with self.lock:
            return [ln for b in self.batches for ln in b]


def cfg(tmp_path, **kw) -> InfluxConfig:
    base = dict(
        url="http://x",
        token="u:secret-token",
        spill_dir=tmp_path / "spill",
        batch_size=100,
        flush_interval_ms=20,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    base.update(kw)
    return InfluxConfig(**base)


def lines(n, start=0):
    return [f"reading,tag=T value={i}.0 {1795910400000 + i}" for i in range(start, start + n)]


def test_batches_and_counts(tmp_path):
    fake = FakeInflux()
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    w.write_lines(lines(250))
    assert w.flush(5)
    assert fake.lines == lines(250)
    assert max(len(b) for b in fake.batches) <= 100
    s = w.stats()
    assert s["written"] == 250 and s["spilled"] == 0 and s["dropped"] == 0
    w.close()


def test_down_spills_and_replays_in_order_without_blocking_the_caller(tmp_path):
    fake = FakeInflux()
    fake.down = True
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    t = time.perf_counter()
    for k in range(10):
        w.write_lines(lines(100, k * 100))
    assert time.perf_counter() - t < 0.5  # the caller never waits for InfluxDB
    assert not w.flush(0.3)
    s = w.stats()
    assert s["written"] == 0 and s["spilled"] > 0 and s["last_error"]
    fake.down = False
    assert w.flush(5)
    assert fake.lines == lines(1000)  # nothing lost, order kept
    s = w.stats()
    assert s["written"] == 1000 and s["spill_files"] == 0 and s["dropped"] == 0
    w.close()


def test_backpressure_is_counted_and_honours_retry_after(tmp_path):
    now = [1000.0]
    fake = FakeInflux()
    fake.error = InfluxBackpressure("HTTP 429", retry_after_s=30.0)
    w = InfluxWriter(cfg(tmp_path), sender=fake, clock=lambda: now[0])
    w.write_lines(lines(10))
    deadline = time.monotonic() + 5
    while w.stats()["backpressure"] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert w.stats()["backpressure"] == 1 and w.stats()["down"]
    fake.error = None
    assert not w.flush(0.3)  # InfluxDB asked for 30 s: no retry before that
    assert fake.lines == []
    now[0] += 31
    assert w.flush(5)
    assert fake.lines == lines(10)
    w.close()


def test_bad_data_is_counted_as_failed_not_retried(tmp_path):
    fake = FakeInflux()
    fake.error = InfluxRejected("HTTP 400: field type conflict", dropped=3)
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    w.write_lines(lines(10))
    assert w.flush(5)
    s = w.stats()
    assert s["failed"] == 3 and s["written"] == 7 and s["spill_files"] == 0
    assert "field type conflict" in s["last_error"]
    w.close()


def test_full_spill_drops_and_counts(tmp_path):
    fake = FakeInflux()
    fake.down = True
    w = InfluxWriter(cfg(tmp_path, spill_max_bytes=4000, max_buffer_lines=100), sender=fake)
    for k in range(20):
        w.write_lines(lines(100, k * 100))
    w.flush(0.3)
    s = w.stats()
    assert s["dropped"] > 0
    assert s["spill_bytes"] <= 4000
    fake.down = False
    assert w.flush(5)
    s = w.stats()
    # everything is accounted for: written + dropped = what was offered
    assert s["written"] + s["dropped"] == 2000
    w.close()


def test_spill_survives_a_restart(tmp_path):
    fake = FakeInflux()
    fake.down = True
    w = InfluxWriter(cfg(tmp_path), sender=fake)
    w.write_lines(lines(150))
    w.close(timeout_s=0.2)
    assert list((tmp_path / "spill").glob("spill-*.lp"))
    fake.down = False
    w2 = InfluxWriter(cfg(tmp_path), sender=fake)
    assert w2.flush(5)
    assert fake.lines == lines(150)
    w2.close()


def test_write_after_close_is_an_error(tmp_path):
    w = InfluxWriter(cfg(tmp_path), sender=FakeInflux())
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write_lines(lines(1))


def test_config_repr_hides_the_token(tmp_path):
    assert "secret-token" not in repr(cfg(tmp_path))


class _ApiExc(Exception):
    def __init__(self, status, headers=None, body=""):
        super().__init__(f"({status})")
        self.status, self.headers, self.body = status, headers or {}, body


@pytest.mark.parametrize(
    ("exc", "kind", "retry_after"),
    [
        (_ApiExc(429, {"Retry-After": "7"}), InfluxBackpressure, 7.0),
        (_ApiExc(503), InfluxBackpressure, None),
        (_ApiExc(500), InfluxUnavailable, None),
        (_ApiExc(400, {"X-Influxdb-Error": "partial write: dropped=2"}), InfluxRejected, None),
        (_ApiExc(401, body="authorization failed"), InfluxRejected, None),
        (ConnectionRefusedError("[Errno 111] Connection refused"), InfluxUnavailable, None),
    ],
)
def test_http_status_to_verdict(exc, kind, retry_after):
    got = _translate(exc)
    assert type(got) is kind
    if retry_after is not None:
        assert got.retry_after_s == retry_after
    if isinstance(got, InfluxRejected) and exc.status == 400:
        assert got.dropped == 2


def test_line_protocol_files_rotate(tmp_path):
    clock = [1795910400.0]
    w = LineProtocolFileWriter(tmp_path, max_file_bytes=2000, clock=lambda: clock[0])
    w.write_lines(lines(100))
    w.close()
    files = sorted((tmp_path / "lineprotocol").glob("*.lp"))
    assert len(files) > 1
    assert files[0].name.startswith("hw-20261129T000000Z-")
    body = [ln for f in files for ln in f.read_text().splitlines() if not ln.startswith("#")]
    assert body == lines(100)
    assert w.stats()["written"] == 100
