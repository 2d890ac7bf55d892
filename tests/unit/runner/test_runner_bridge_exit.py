"""`hazardwatch bridge` ends (exit 1, one error line) when its bridge thread stops because
Kafka failed for good, instead of living on idle with the MQTT session. Found by the fault
suite (tests/faults, bridge kill + Kafka restart): the producer gave up with
LeaderNotAvailableError while the broker came back, the thread ended, the process stayed up
and nothing restarted it; the readings waited in Mosquitto until the case gave up."""

from __future__ import annotations

import threading
import time

from hazardwatch.cli import main


class DyingBridge:
    """A bridge whose thread fails shortly after start, as KafkaBridge.run() does when a
    send fails for good."""

    def __init__(self) -> None:
        self.failure: BaseException | None = None
        self.stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> DyingBridge:
        def run() -> None:
            time.sleep(0.2)
            self.failure = RuntimeError(
                "Kafka did not accept what the bridge produced: LeaderNotAvailableError()"
            )

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        self.stopped = True


def test_bridge_process_exits_when_its_bridge_thread_fails(
    clean_env, monkeypatch, capsys, tmp_path
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    dying = DyingBridge()
    monkeypatch.setattr("hazardwatch.wiring.build_bridge", lambda s: dying)
    t = time.monotonic()
    assert main(["bridge", "--for", "30"]) == 1
    assert time.monotonic() - t < 10, "the process must not wait out --for"
    err = capsys.readouterr().err
    assert "error: the bridge stopped:" in err and "LeaderNotAvailableError" in err
    assert "hint:" in err and "Traceback" not in err
    assert dying.stopped


def test_bridge_process_still_ends_cleanly_at_the_end_of_its_time(
    clean_env, monkeypatch, capsys, tmp_path
):
    class HealthyBridge(DyingBridge):
        def start(self) -> HealthyBridge:
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._stop.wait, daemon=True)
            self._thread.start()
            return self

        def stop(self, timeout_s: float = 30.0) -> None:
            super().stop()
            self._stop.set()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HW_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    healthy = HealthyBridge()
    monkeypatch.setattr("hazardwatch.wiring.build_bridge", lambda s: healthy)
    assert main(["bridge", "--for", "1"]) == 0
    assert healthy.stopped
    assert "error:" not in capsys.readouterr().err
