"""Run commands: `run` (the embedded process), `worker` (a Faust worker of the distributed
pipeline), `bridge` (MQTT -> Kafka) and `demo` (the simulator through the embedded pipeline,
no services needed)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch.cli import fail, settings


def _configure_logging(s) -> None:
    from hazardwatch.logs import configure, secret_values

    configure(s.log.level, s.log.format, secret_values(s))


def _wait_for_signals(stop: threading.Event, on_hup=None, duration: float | None = None) -> None:
    """SIGTERM/SIGINT end the run gracefully; SIGHUP reloads the rules."""

    def ask_stop(signum, frame):
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        stop.wait(duration)
        return
    names = ["SIGTERM", "SIGINT"] + (["SIGHUP"] if on_hup is not None else [])
    sigs = [getattr(signal, n) for n in names if hasattr(signal, n)]
    previous = {sig: signal.getsignal(sig) for sig in sigs}
    try:
        for sig in sigs:
            hup = on_hup is not None and sig == getattr(signal, "SIGHUP", None)
            signal.signal(sig, (lambda *_: on_hup()) if hup else ask_stop)
        stop.wait(duration)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run_cmd(
        duration: Annotated[
            float | None,
            typer.Option(
                "--for",
                help="Stop gracefully after this many seconds (default: run until SIGTERM/SIGINT).",
            ),
        ] = None,
        metrics_port: Annotated[
            int | None, typer.Option(help="Override metrics.port (0 = any free port).")
        ] = None,
        api: Annotated[
            bool, typer.Option("--api/--no-api", help="Serve the alerts API on api.port.")
        ] = True,
        simulate: Annotated[
            int | None,
            typer.Option(
                "--simulate",
                metavar="POINTS",
                help="Read the simulated city (this many points) in real time "
                "instead of MQTT; no registry needed.",
            ),
        ] = None,
    ) -> None:
        """Run the embedded pipeline: MQTT in, rules, alerts, InfluxDB or line-protocol files."""
        from hazardwatch.wiring import (
            SimulatorSource,
            WiringError,
            build_embedded,
            dead_letter_sink,
            mqtt_source,
        )

        s = settings()
        if s.effective_mode == "distributed":
            raise fail(
                f"kafka.bootstrap_servers is set ({s.kafka.bootstrap_servers}): that is "
                "distributed mode",
                hint="run `hazardwatch bridge` and one or more `hazardwatch worker`, or set "
                'mode = "embedded" to run in one process',
            )
        if simulate is None and not s.mqtt.enabled:
            raise fail(
                "mqtt.enabled is false: the embedded runner has nothing to read",
                hint="set HW_MQTT__ENABLED=true with the broker's host/port, or try "
                "`hazardwatch demo` (the simulator, no services needed)",
            )
        _configure_logging(s)
        try:
            if simulate is not None:
                source = SimulatorSource(points=simulate, topic_prefix=s.mqtt.topic_prefix)
                emb = build_embedded(
                    s,
                    source=source,
                    registry=source.registry,
                    metrics_port=metrics_port,
                    serve_api=api,
                )
            else:
                source = mqtt_source(s)
                emb = build_embedded(
                    s,
                    source=source,
                    metrics_port=metrics_port,
                    on_reject=dead_letter_sink(s, source),
                    serve_api=api,
                )
        except WiringError as exc:
            raise fail(str(exc), hint=exc.hint) from None
        emb.runner.start()
        if simulate is None and not source.wait_ready(30):
            emb.runner.stop()
            raise fail(
                f"no MQTT subscription at {s.mqtt.host}:{s.mqtt.port} within 30 s",
                hint="check mqtt.host/port/username/password; `hazardwatch services status` "
                "probes the broker",
                code=1,
            )
        typer.echo(
            f"hazardwatch embedded: {len(emb.pipeline.stages.registry)} points, ruleset "
            f"{emb.pipeline.stages.ruleset_version}, "
            + ("simulated city" if simulate is not None else f"mqtt {s.mqtt.host}:{s.mqtt.port}")
            + (f", metrics :{emb.metrics_port}" if emb.metrics_port else "")
            + (f", api {emb.api.url}" if emb.api is not None else ""),
            err=True,
        )
        stop = threading.Event()
        watcher = threading.Thread(
            target=lambda: (emb.runner.stopped.wait(), stop.set()), daemon=True
        )
        watcher.start()
        _wait_for_signals(stop, on_hup=lambda: emb.reloader.request("signal"), duration=duration)
        emb.runner.stop()
        if emb.runner.failure is not None:
            raise fail(f"evaluation stopped: {emb.runner.failure}", code=1)

    @app.command("worker")
    def worker_cmd(
        worker_id: Annotated[
            str, typer.Option("--id", help="Worker name: its own state folder and alert store.")
        ] = "worker-0",
        loglevel: Annotated[
            str, typer.Option(help="Faust log level: crit, error, warn, info, debug.")
        ] = "warn",
    ) -> None:
        """Start a Faust worker of the distributed pipeline (several share the partitions)."""
        from hazardwatch.faust_app import create_app

        s = settings()
        if not s.kafka.bootstrap_servers:
            raise fail(
                "kafka.bootstrap_servers is empty: a worker needs Kafka",
                hint="set HW_KAFKA__BOOTSTRAP_SERVERS=host:port, or run the embedded "
                "`hazardwatch run`",
            )
        _configure_logging(s)
        from hazardwatch.wiring import WiringError, ensure_topics

        try:
            ensure_topics(s)
        except WiringError as exc:
            raise fail(str(exc), hint=exc.hint) from None
        try:
            faust_app = create_app(s, worker_id)
        except Exception as exc:  # noqa: BLE001 - one clear line, not a traceback
            raise fail(f"cannot build the Faust app: {exc}") from None
        sys.argv = ["hazardwatch-worker", "worker", "--without-web", "--loglevel", loglevel]
        faust_app.main()

    @app.command("bridge")
    def bridge_cmd(
        duration: Annotated[
            float | None, typer.Option("--for", help="Stop after this many seconds.")
        ] = None,
    ) -> None:
        """Bridge MQTT to the Kafka readings topic (keyed by enterprise, idempotent producer)."""
        from hazardwatch.wiring import WiringError, build_bridge

        s = settings()
        if not s.kafka.bootstrap_servers:
            raise fail(
                "kafka.bootstrap_servers is empty: the bridge writes to Kafka",
                hint="set HW_KAFKA__BOOTSTRAP_SERVERS=host:port",
            )
        _configure_logging(s)
        try:
            bridge = build_bridge(s)
        except WiringError as exc:
            raise fail(str(exc), hint=exc.hint) from None
        stop = threading.Event()
        try:
            bridge.start()
        except WiringError as exc:
            raise fail(str(exc), hint=exc.hint) from None
        typer.echo(
            f"hazardwatch bridge: mqtt {s.mqtt.host}:{s.mqtt.port} -> kafka "
            f"{s.kafka.bootstrap_servers} topic {s.kafka.readings_topic}",
            err=True,
        )

        def watch() -> None:
            # The bridge thread ends on its own only when Kafka failed for good (it then has
            # not acknowledged the MQTT messages in flight). End the process with it, so a
            # supervisor starts a fresh bridge instead of an idle one holding the session
            # (found by the fault suite: a Kafka restart left a live, idle bridge process).
            while not stop.wait(0.5):
                if not bridge.alive:
                    stop.set()

        threading.Thread(target=watch, name="hw-bridge-watch", daemon=True).start()
        try:
            _wait_for_signals(stop, duration=duration)
        finally:
            bridge.stop()
        if bridge.failure is not None:
            raise fail(
                f"the bridge stopped: {bridge.failure}",
                hint="is Kafka up? run it under a supervisor that restarts it "
                "(systemd Restart=always); MQTT redelivers what it did not acknowledge",
                code=1,
            )

    @app.command("demo")
    def demo_cmd(
        minutes: Annotated[float, typer.Option(help="Simulated minutes to run.")] = 180.0,
        speed: Annotated[
            float, typer.Option(help="Simulated seconds per wall second (0 = as fast as possible).")
        ] = 0.0,
        seed: Annotated[
            int, typer.Option(help="Simulator seed (same seed, same city and incidents).")
        ] = 7,
        points: Annotated[int, typer.Option(help="Points in the generated city.")] = 300,
        live: Annotated[bool, typer.Option("--live/--no-live", help="Live terminal view.")] = True,
        out: Annotated[
            Path | None,
            typer.Option(
                help="Folder for the demo's files (registry, alarms, truth, report); "
                "default: a fresh temporary folder."
            ),
        ] = None,
    ) -> None:
        """The whole product on a simulated city, no services needed: simulator -> embedded
        pipeline -> local receivers, with a live view and a detection report."""
        from hazardwatch.demo import DemoError, DemoOptions, run_demo

        opts = DemoOptions(
            minutes=minutes, speed=speed, seed=seed, points=points, live=live, out=out
        )
        try:
            report = run_demo(opts)
        except DemoError as exc:
            raise fail(
                str(exc), hint="the default --minutes 180 and --points 300 hold every incident kind"
            ) from None
        if not report.all_detected:
            raise typer.Exit(1)
