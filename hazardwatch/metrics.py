"""Prometheus metrics of a hazardwatch process (prometheus-client): readings in, rejects by
reason, evaluation lag, alarms by kind and level, warnings by colour, outbox depth, Kafka
consumer lag, rule reloads; served over HTTP, and summarised into the `pipeline`/`reject`
rows of docs/influx-schema.md every 10 s by the runner.

Each process owns one `Metrics` with its own CollectorRegistry, so tests and several runners
in one interpreter never share counters.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from hazardwatch.clock import ClockCollector

# Lag buckets in ms: the city-load target is p99 < 100 ms, a backlog shows in the upper ones.
_LAG_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 60000)


@dataclass(frozen=True, slots=True)
class PipelineFigures:
    """Cumulative counters read back for the `pipeline` measurement."""

    readings_in: float
    rejects: float
    alarms: float
    eval_lag_ms: float
    outbox_depth: float
    rejects_by_reason: dict[str, float]


class Metrics:
    def __init__(self, process: str = "embedded") -> None:
        self.process = process
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.readings_in = Counter("hw_readings_in", "Readings accepted by ingest", registry=r)
        self.messages_in = Counter("hw_messages_in", "MQTT/Kafka messages received", registry=r)
        self.rejects = Counter(
            "hw_rejects", "Messages or readings dead-lettered, by reason", ["reason"], registry=r
        )
        self.eval_lag = Histogram(
            "hw_eval_lag_ms",
            "Receive-to-evaluated lag of readings, per batch (ms)",
            buckets=_LAG_BUCKETS_MS,
            registry=r,
        )
        self.last_eval_lag = Gauge("hw_last_eval_lag_ms", "Lag of the last batch (ms)", registry=r)
        self.batches = Counter("hw_batches", "Evaluation batches committed", registry=r)
        self.alarms = Counter(
            "hw_alarms",
            "Alarm transitions, by kind, level and state",
            ["kind", "level", "state"],
            registry=r,
        )
        self.warnings = Counter(
            "hw_warnings", "Warning events, by colour and state", ["colour", "state"], registry=r
        )
        self.outbox_depth = Gauge(
            "hw_outbox_depth", "Notifications waiting in the outbox", registry=r
        )
        self.notifications = Counter(
            "hw_notifications",
            "Delivery attempts, by channel and result",
            ["channel", "result"],
            registry=r,
        )
        self.kafka_lag = Gauge(
            "hw_kafka_consumer_lag",
            "Kafka consumer lag (messages), per topic partition",
            ["topic", "partition"],
            registry=r,
        )
        self.reloads = Counter(
            "hw_rule_reloads", "Rule/registry reloads, by result", ["result"], registry=r
        )
        self.ruleset_info = Gauge(
            "hw_ruleset_info", "Loaded ruleset version (value 1)", ["version"], registry=r
        )
        self.timeseries_dropped = Gauge(
            "hw_timeseries_dropped",
            "Time-series lines dropped because the writer queue was full",
            registry=r,
        )
        # System clock steps the pipeline's guarded clock refused (hazardwatch/clock.py).
        r.register(ClockCollector())
        self._ruleset_version = ""
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # -- recording helpers (called from the evaluation thread) --------------------------------
    def observe_batch(self, n_messages: int, n_readings: int, lag_ms: float | None) -> None:
        self.messages_in.inc(n_messages)
        self.readings_in.inc(n_readings)
        self.batches.inc()
        if lag_ms is not None:
            self.eval_lag.observe(lag_ms)
            self.last_eval_lag.set(lag_ms)

    def observe_reject(self, reason: str, n: int = 1) -> None:
        self.rejects.labels(reason=reason).inc(n)

    def observe_alarm(self, kind: str, level: str | None, state: str) -> None:
        self.alarms.labels(kind=kind, level=level or "none", state=state).inc()

    def observe_warning(self, colour: str, state: str) -> None:
        self.warnings.labels(colour=colour, state=state).inc()

    def set_ruleset(self, version: str) -> None:
        if self._ruleset_version:
            self.ruleset_info.remove(self._ruleset_version)
        self._ruleset_version = version
        self.ruleset_info.labels(version=version).set(1)

    def watch_outbox(self, depth: Callable[[], float]) -> None:
        """Outbox depth is read when scraped, so it is never stale."""
        self.outbox_depth.set_function(depth)

    # -- read-back ----------------------------------------------------------------------------
    def _sum(self, name: str) -> float:
        total = 0.0
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == name:
                    total += s.value
        return total

    def figures(self) -> PipelineFigures:
        by_reason: dict[str, float] = {}
        for metric in self.registry.collect():
            for s in metric.samples:
                if s.name == "hw_rejects_total":
                    by_reason[s.labels["reason"]] = s.value
        return PipelineFigures(
            readings_in=self._sum("hw_readings_in_total"),
            rejects=sum(by_reason.values()),
            alarms=self._sum("hw_alarms_total"),
            eval_lag_ms=self._sum("hw_last_eval_lag_ms"),
            outbox_depth=self._sum("hw_outbox_depth"),
            rejects_by_reason=by_reason,
        )

    # -- HTTP endpoint ------------------------------------------------------------------------
    def serve(
        self,
        port: int,
        host: str = "127.0.0.1",
        reload: Callable[[], dict[str, Any]] | None = None,
    ) -> int:
        """Start `GET /metrics` (and, when `reload` is given, Prometheus-style `POST /-/reload`
        answering the reload outcome as JSON) in a daemon thread. Returns the bound port.

        The reload endpoint has no authentication, like Prometheus' lifecycle API, so the
        server binds to loopback unless told otherwise.
        """
        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
            path = environ.get("PATH_INFO", "")
            if path == "/-/reload":
                if reload is None:
                    return _respond(start_response, "404 Not Found", {"error": "reload disabled"})
                if environ.get("REQUEST_METHOD") != "POST":
                    return _respond(
                        start_response, "405 Method Not Allowed", {"error": "use POST /-/reload"}
                    )
                outcome = reload()
                status = "200 OK" if outcome.get("ok") else "422 Unprocessable Entity"
                return _respond(start_response, status, outcome)
            return metrics_app(environ, start_response)

        server = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="hw-metrics", daemon=True)
        thread.start()
        self._server, self._thread = server, thread
        return int(server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # stdlib signature
        """Scrapes every few seconds would drown the log."""


def _respond(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body, ensure_ascii=False).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
