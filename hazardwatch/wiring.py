"""Wiring: settings -> the plain configs of the adapters, and the builders that assemble the
pure cores (normaliser, engine, warning model, alerts service), the channels and the
time-series writer. The runner, the Faust app and the demo all build through here, so the
modes cannot drift apart.

Domain packages never read settings or the environment; this module is where `Settings`
turns into their own config objects.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hazardwatch.metrics import Metrics
from hazardwatch.runner import BatchOutcome, Stages, wall_ms
from hazardwatch.settings import Settings

log = logging.getLogger(__name__)


class WiringError(Exception):
    """Settings or files do not let us build the pipeline. `hint` says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


# ------------------------------------------------------------------------------------------------
# Rules: registry + rule files + warning config, validated together (startup and hot reload).


@dataclass(frozen=True, slots=True)
class RuleSources:
    registry: Path
    rules_dir: Path | None = None
    pack_versions: Mapping[str, str] = field(default_factory=dict)

    def watched(self) -> list[Path | None]:
        """What the reload watcher polls."""
        return [self.registry, self.rules_dir]


def rule_sources(settings: Settings) -> RuleSources:
    if settings.rules.registry is None:
        raise WiringError(
            "rules.registry is not set: hazardwatch needs the point registry to run",
            hint="set HW_RULES__REGISTRY=/path/registry.csv (or [rules] registry in "
            "hazardwatch.toml); `hazardwatch demo` runs without one",
        )
    return RuleSources(
        settings.rules.registry,
        settings.rules.rules_dir,
        dict(settings.rules.standard_pack_versions),
    )


@dataclass(frozen=True, slots=True)
class RulesBundle:
    """A validated, ready-to-swap set of rules: what a hot reload hands to the pipeline."""

    registry: Any
    ruleset: Any
    warning_config: Any

    @property
    def version(self) -> str:
        return str(self.ruleset.version)


def load_rules(sources: RuleSources, registry: Any | None = None) -> RulesBundle:
    """Load and validate everything; raises (RegistryError, RuleFileError,
    WarningConfigError) listing every problem. Nothing is swapped if this raises."""
    from ingest.registry import load_registry
    from rules.loader import load_ruleset
    from rules.warnings import load_warning_config

    reg = registry if registry is not None else load_registry(sources.registry)
    ruleset = load_ruleset(sources.rules_dir, reg, pack_versions=dict(sources.pack_versions))
    wcfg = load_warning_config(sources.rules_dir)
    return RulesBundle(reg, ruleset, wcfg)


def normalize_config(settings: Settings) -> Any:
    from ingest.normalize import NormalizeConfig

    return NormalizeConfig(
        topic_prefix=settings.mqtt.topic_prefix,
        max_payload_bytes=settings.mqtt.max_payload_bytes,
    )


def build_stages(
    bundle: RulesBundle,
    *,
    normalizer_config: Any = None,
    previous: Stages | None = None,
    alerts: Any | None = None,
    witness: Callable[[str, str, int, int], None] | None = None,
) -> Stages:
    """The pure cores for one rules bundle. On reload, pass the running stages as `previous`
    so the normaliser keeps its duplicate memory and the alerts service is kept."""
    from ingest.normalize import Normalizer
    from rules.engine import Engine
    from rules.warnings import WarningModel

    if previous is not None:
        normalizer = previous.normalizer.with_registry(bundle.registry)
        alerts = alerts if alerts is not None else previous.alerts
    else:
        normalizer = Normalizer(bundle.registry, normalizer_config, witness=witness)
    return Stages(
        registry=bundle.registry,
        ruleset=bundle.ruleset,
        normalizer=normalizer,
        engine=Engine(bundle.ruleset, bundle.registry),
        warnings=WarningModel(bundle.warning_config, bundle.registry),
        alerts=alerts,
    )


# ------------------------------------------------------------------------------------------------
# Alerts: store, service, outbox and channels.


def _secret(v: Any) -> str:
    return v.get_secret_value() if v is not None else ""


def build_channels(settings: Settings) -> dict[str, Any]:
    """Every channel that settings configure, by name. Unconfigured channels are absent (the
    outbox keeps their notifications pending and reports them)."""
    from hazardwatch.clock import wall_s  # signed timestamps on the guarded clock

    c = settings.channels
    out: dict[str, Any] = {}
    if settings.platform.url:
        from alerts.channels.platform import PlatformChannel

        out["platform"] = PlatformChannel(
            settings.platform.url,
            _secret(settings.platform.hmac_secret),
            timeout_s=settings.platform.timeout_s,
            clock=wall_s,
        )
    if c.wecom.robot_keys:
        from alerts.channels.wecom import WecomChannel

        out["wecom"] = WecomChannel(
            {k: _secret(v) for k, v in c.wecom.robot_keys.items()},
            base_url=c.wecom.base_url,
            per_minute=c.wecom.per_robot_per_minute,
            clock=wall_s,
        )
    if c.aliyun_sms.access_key_id:
        from alerts.channels.aliyun_sms import AliyunSmsChannel

        out["aliyun_sms"] = AliyunSmsChannel(
            c.aliyun_sms.access_key_id,
            _secret(c.aliyun_sms.access_key_secret),
            c.aliyun_sms.sign_name,
            c.aliyun_sms.template_code,
            endpoint=c.aliyun_sms.endpoint,
            clock=wall_s,
        )
    if c.tencent_sms.secret_id:
        from alerts.channels.tencent_sms import TencentSmsChannel

        out["tencent_sms"] = TencentSmsChannel(
            c.tencent_sms.secret_id,
            _secret(c.tencent_sms.secret_key),
            c.tencent_sms.sdk_app_id,
            c.tencent_sms.sign_name,
            c.tencent_sms.template_id,
            endpoint=c.tencent_sms.endpoint,
            clock=wall_s,
        )
    if c.webhook.url:
        from alerts.channels.webhook import WebhookChannel

        out["webhook"] = WebhookChannel(
            c.webhook.url, _secret(c.webhook.secret) or None, clock=wall_s
        )
    return out


def load_routing_config(path: Path | None) -> Any:
    """The routing file, or the built-in ladder with no recipients (platform push only)."""
    from alerts.routing import RoutingConfig, load_routing

    return load_routing(path) if path is not None else RoutingConfig()


def build_alerts(
    settings: Settings,
    registry: Any,
    store: Any,
    *,
    routing: Any = None,
    on_warning_closed: Callable[[str, int], None] | None = None,
    on_alarm_reset: Callable[[str, int], None] | None = None,
    handover: Any = None,
) -> Any:
    from alerts.service import AlertService

    if routing is None:
        routing = load_routing_config(settings.channels.routing_file)
    link_for = None
    signer = link_signer(settings)
    if signer is not None:
        base = settings.api.public_url.rstrip("/")

        def link_for(subject_id: str) -> str:
            # on the clock start_api verifies links with
            expires = wall_ms() + int(settings.api.link_ttl_s * 1000)
            return f"{base}/a/{subject_id}?t={signer.sign(subject_id, expires)}"

    return AlertService(
        store,
        routing,
        registry,
        public_url=settings.api.public_url,
        on_warning_closed=on_warning_closed,
        on_alarm_reset=on_alarm_reset,
        link_for=link_for,
        handover=handover,
    )


def link_signer(settings: Settings) -> Any:
    from alerts.auth import LinkSigner

    secret = _secret(settings.api.link_secret)
    return LinkSigner(secret) if secret else None


def start_api(settings: Settings, service: Any, store: Any) -> Any:
    """The alerts HTTP API (acknowledge, dispose, filings, the mobile page) under uvicorn in
    a thread, on api.host:api.port."""
    from alerts.api import ApiServer, create_app
    from alerts.auth import TokenAuth
    from hazardwatch.tls import TlsError, uvicorn_ssl_kwargs

    try:
        ssl = uvicorn_ssl_kwargs(settings)  # {} unless api.tls_cert_file/tls_key_file are set
    except TlsError as exc:
        raise WiringError(str(exc)) from None
    auth = (
        TokenAuth.from_file(settings.api.tokens_file) if settings.api.tokens_file else TokenAuth()
    )
    # Acknowledgements, dispositions and shelves are timed on the clock the alerts stage's
    # timers run on: a step of the system clock must not shift them against each other.
    app = create_app(service, store, auth, links=link_signer(settings), clock_ms=wall_ms)
    return ApiServer(app, settings.api.host, settings.api.port, ssl=ssl or None).start()


def state_paths(settings: Settings, process: str = "embedded") -> tuple[Path, Path]:
    """(engine state db, alert store db) under storage.data_dir."""
    d = Path(settings.storage.data_dir)
    return d / f"{process}-engine.db", d / f"{process}-alerts.db"


# ------------------------------------------------------------------------------------------------
# Time series: never on the alarm path.


def build_timeseries_writer(settings: Settings) -> Any:
    """InfluxDB when `influx.url` is set, else rotating line-protocol files."""
    if settings.influx.url:
        from ingest.influx import InfluxConfig, InfluxWriter

        cfg = InfluxConfig(
            url=settings.influx.url,
            token=_secret(settings.influx.token),
            org=settings.influx.org,
            bucket=settings.influx.bucket,
            batch_size=settings.influx.batch_size,
            flush_interval_ms=settings.influx.flush_interval_ms,
            spill_dir=Path(settings.storage.data_dir) / "spill",
            spill_max_bytes=settings.influx.spill_max_bytes,
        )
        return InfluxWriter(cfg)
    from ingest.influx import LineProtocolFileWriter

    return LineProtocolFileWriter(Path(settings.storage.data_dir))


class TimeseriesFeed:
    """Hands batches to a writer thread through a bounded queue. `submit` never blocks: when
    the writer falls behind (InfluxDB slow or down and its own buffer full), batches are
    dropped and counted rather than delaying the next alarm. Every `pipeline_every_s` the
    runner's figures are written as the `pipeline` and `reject` measurements."""

    def __init__(
        self,
        writer: Any,
        registry: Any,
        metrics: Metrics,
        *,
        process: str = "embedded",
        queue_max: int = 1000,
        pipeline_every_s: float = 10.0,
        clock: Callable[[], int] = wall_ms,  # the pipeline's guarded clock, as the readings'
    ) -> None:
        self.writer = writer
        self.registry = registry
        self.metrics = metrics
        self.process = process
        self.clock = clock
        self.dropped = 0
        self._q: queue.Queue[BatchOutcome | None] = queue.Queue(queue_max)
        self._every = pipeline_every_s
        self._last_figures: Any = None
        self._last_ms = 0
        # For the enterprises' dynamic risk and online rate (written when the pipeline hands
        # over a RiskContext): when each point last reported, and the last day's firings.
        self.recent_alarms: collections.deque[Any] = collections.deque(maxlen=100_000)
        # enterprise -> tag -> [the point's `reading` line up to its value, the point's key,
        # when it last reported]: nested so the loop below looks up the strings the reading
        # carries (hashes cached) instead of building a key string for every reading, and
        # keeps the last-seen time in the slot instead of a dict keyed by that string.
        self._prefixes: dict[str, dict[str, list[Any]]] = {}
        self._seen_before: dict[str, int] = {}  # last-seen times of the slots of a registry swap
        self._registry_changed = False
        # Batches put on the queue (by the submitting thread) and handed to the writer (by the
        # feed's thread), for `sync`.
        self._submitted = 0
        self._handed = 0
        self._handed_cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="hw-timeseries", daemon=True)
        self._thread.start()

    @property
    def last_seen(self) -> dict[str, int]:
        """Point key -> timestamp of its latest reading written (read on the feed's thread)."""
        seen = dict(self._seen_before)
        for by_tag in self._prefixes.values():
            for _, key, ts in by_tag.values():
                if ts > seen.get(key, -1):
                    seen[key] = ts
        return seen

    def set_registry(self, registry: Any) -> None:
        # The cached prefixes are dropped by the feed's thread before its next batch (they
        # hold the last-seen times, which a batch in flight is still updating).
        self.registry = registry
        self._registry_changed = True

    def submit(self, outcome: BatchOutcome) -> None:
        try:
            self._q.put_nowait(outcome)
        except queue.Full:
            self.dropped += len(outcome.readings) + len(outcome.alarms) + len(outcome.warnings)
            self.metrics.timeseries_dropped.set(self.dropped)
        else:
            self._submitted += 1

    def sync(self, timeout_s: float = 2.0) -> bool:
        """Whether every batch submitted before the call is durable: handed to the writer and
        in InfluxDB or a spill file (the writer's `persist`), within `timeout_s`. Blocks: call
        it from a thread, never the event loop. A batch dropped by a full queue is counted
        (`dropped`, the pipeline row's influx_dropped), not reported here."""
        deadline = time.monotonic() + timeout_s
        with self._handed_cv:
            target = self._submitted
            while self._handed < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._handed_cv.wait(left)
        left = max(0.0, deadline - time.monotonic())
        persist = getattr(self.writer, "persist", None)
        return bool(persist(left) if persist is not None else self.writer.flush(left))

    def lines(self, outcome: BatchOutcome) -> list[str]:
        from dashboards.series import alarm_rows, warning_rows
        from ingest.lineprotocol import reading_line

        if self._registry_changed:
            self._registry_changed = False
            self._seen_before = self.last_seen
            self._prefixes = {}
        reg = self.registry
        out: list[str] = []
        append = out.append
        prefixes = self._prefixes
        # This loop runs for every reading in the process (it was the largest CPU consumer
        # at 93,000 readings/s). A plain reading (finite float, no event, not back-filled)
        # is written from the point's cached line prefix; anything else by `reading_line`,
        # which defines the format (a unit test holds the two equal). A gateway upload is
        # one enterprise and one timestamp, so both are carried over from the last reading.
        ent: str | None = None
        by_tag: dict[str, list[Any]] = {}
        ts = quality = -1
        tail = ""
        for r in outcome.readings:
            if r.enterprise_code != ent:
                ent = r.enterprise_code
                by_tag = prefixes.get(ent)
                if by_tag is None:
                    by_tag = prefixes[ent] = {}
            hit = by_tag.get(r.tag)
            if hit is None:
                p = reg.get(ent, r.tag)
                if p is None:
                    continue
                hit = by_tag[r.tag] = [_reading_prefix(p) + " value=", p.key, -1]
            v = r.value
            if (
                type(v) is float
                and v - v == 0.0  # finite (NaN and inf give NaN)
                and not r.backfill
                and r.event_type is None
                and r.text is None
            ):
                if r.ts_ms != ts or r.quality != quality:
                    ts, quality = r.ts_ms, r.quality
                    tail = f",quality={quality}i,backfill=false {ts}"
                append(f"{hit[0]}{v!r}{tail}")
            else:
                append(reading_line(r, reg.get(ent, r.tag)))
            if r.ts_ms > hit[2]:
                hit[2] = r.ts_ms
        out.extend(row.line() for row in alarm_rows(outcome.alarms, reg))
        out.extend(row.line() for row in warning_rows(outcome.warnings, reg))
        self.recent_alarms.extend(a for a in outcome.alarms if str(a.state) == "firing")
        if outcome.risk is not None:
            out.extend(self.risk_lines(outcome.risk))
        return out

    def risk_lines(self, ctx: Any) -> list[str]:
        """`risk` and `online` rows for every enterprise at `ctx.now_ms` (DOMAIN.md §4:
        grades, open warnings and their age, repeated alarms, overdue dispositions, online
        rate; filings are the alerts stage's and are not counted here)."""
        from dashboards.series import RiskSnapshot, online_rows, risk_rows
        from rules.risk import enterprise_risk, risk_inputs

        reg, now = self.registry, ctx.now_ms
        day_ago = now - 86_400_000
        while self.recent_alarms and self.recent_alarms[0].ts_ms < day_ago:
            self.recent_alarms.popleft()
        timeouts: dict[str, int] = {}
        for p in reg:
            pr = ctx.ruleset.rules_for(p.key) if ctx.ruleset is not None else None
            if pr is not None and pr.offline is not None:
                timeouts[p.key] = pr.offline.timeout_ms
        online = online_rows(reg, self.last_seen, now, offline_after=0.0, timeouts_ms=timeouts)
        rate = {row.tags["enterprise"]: row.fields["rate"] for row in online}
        snapshots = []
        for ent in reg.enterprises():
            inputs = risk_inputs(
                reg,
                ent,
                now,
                open_warnings=ctx.open_warnings,
                alarms=self.recent_alarms,
                overdue_dispositions=sum(1 for w in ctx.overdue if w.enterprise_code == ent),
                online_rate=rate.get(ent),
            )
            colours = [w.colour for w in ctx.open_warnings if w.enterprise_code == ent]
            snapshots.append(RiskSnapshot.of(enterprise_risk(inputs, ctx.weights), colours))
        return [row.line() for row in [*risk_rows(snapshots, reg, now), *online]]

    def pipeline_lines(self, now_ms: int) -> list[str]:
        """Figures of the interval since the last call (counters as deltas)."""
        from dashboards.series import PipelineStats, pipeline_rows

        f = self.metrics.figures()
        stats = _writer_stats(self.writer)
        last = self._last_figures
        self._last_figures = f
        interval_s = max(0.001, (now_ms - self._last_ms) / 1000) if self._last_ms else self._every
        self._last_ms = now_ms
        rejects = {
            reason: int(n - (last.rejects_by_reason.get(reason, 0) if last else 0))
            for reason, n in f.rejects_by_reason.items()
        }
        ps = PipelineStats(
            process=self.process,
            interval_s=interval_s,
            readings_in=int(f.readings_in - (last.readings_in if last else 0)),
            rejects=rejects,
            alarms=int(f.alarms - (last.alarms if last else 0)),
            eval_lag_ms=f.eval_lag_ms,
            outbox_depth=int(f.outbox_depth),
            influx_errors=int(stats.get("failed", 0) or 0),
            influx_dropped=int(stats.get("dropped", 0) or 0) + self.dropped,
        )
        return [row.line() for row in pipeline_rows(ps, now_ms)]

    def _run(self) -> None:
        next_pipeline = time.monotonic() + self._every
        while True:
            try:
                item = self._q.get(timeout=max(0.0, next_pipeline - time.monotonic()))
            except queue.Empty:
                item = ...  # nothing new: only the periodic row
            if item is None:
                return
            try:
                if item is not ...:
                    try:
                        lines = self.lines(item)
                        if lines:
                            self.writer.write_lines(lines)
                    finally:
                        # a batch that failed counts as handed too: `sync` must not wait on it
                        with self._handed_cv:
                            self._handed += 1
                            self._handed_cv.notify_all()
                if time.monotonic() >= next_pipeline:
                    next_pipeline = time.monotonic() + self._every
                    self.writer.write_lines(self.pipeline_lines(self.clock()))
            except Exception:
                log.exception("time-series write failed (alarms are not affected)")

    def close(self) -> None:
        """Write what is queued, the final pipeline row, and flush the writer."""
        self._q.put(None)
        self._thread.join(30)
        try:
            self.writer.write_lines(self.pipeline_lines(self.clock()))
            self.writer.flush()
        finally:
            self.writer.close()


def _reading_prefix(point: Any) -> str:
    """The part of a point's `reading` line before the fields (measurement and tags), cut from
    what `reading_line` writes for a plain reading: its fields and time hold no space."""
    from ingest.lineprotocol import reading_line
    from ingest.model import Reading

    line = reading_line(Reading(point.enterprise_code, point.tag, 0, 0.0), point)
    return line.rsplit(" ", 2)[0]


def _writer_stats(writer: Any) -> dict[str, Any]:
    return dict(writer.stats()) if hasattr(writer, "stats") else {}


# ------------------------------------------------------------------------------------------------
# The embedded process, assembled.


@dataclass(slots=True)
class Embedded:
    """A built embedded pipeline: start it with `runner.start()`, stop with `runner.stop()`
    (which also closes the writer, the watcher, the endpoints and the stores)."""

    runner: Any
    pipeline: Any
    reloader: Any
    alert_store: Any
    metrics: Metrics
    channels: dict[str, Any]
    metrics_port: int | None = None
    watcher: Any = None
    api: Any = None


def build_embedded(
    settings: Settings,
    *,
    source: Any = None,
    channels: dict[str, Any] | None = None,
    registry: Any = None,
    metrics_port: int | None = None,
    watch_interval_s: float = 2.0,
    runner_config: Any = None,
    clock: Callable[[], int] | None = None,
    on_reject: Callable[[Any], None] | None = None,
    serve_api: bool = False,
) -> Embedded:
    """Everything of `hazardwatch run` except the signal handlers and the source's settings:
    rules, state stores, alerts, channels, time series, metrics/reload endpoint, file watcher.

    `registry` overrides the registry file (`run --simulate` passes the simulated city's);
    `channels` overrides the configured channels (tests pass local receivers).
    """
    from alerts.outbox import Outbox, OutboxConfig
    from alerts.store import AlertStore
    from hazardwatch.engine_store import EngineStore
    from hazardwatch.reload import FileWatcher, Reloader
    from hazardwatch.runner import EmbeddedRunner, Pipeline, RunnerConfig, wall_ms

    # The gateways' timestamps are the evidence the guarded clock needs to adopt a step of
    # the host clock that corrects it (hazardwatch/clock.py); an injected clock has none.
    witness = clock_witness(settings) if clock is None else None
    clock = clock or wall_ms
    sources = (
        rule_sources(settings)
        if registry is None
        else RuleSources(
            Path("<generated>"),
            settings.rules.rules_dir,
            dict(settings.rules.standard_pack_versions),
        )
    )
    try:
        bundle = load_rules(sources, registry)
    except Exception as exc:  # noqa: BLE001 - the loaders list every problem in the message
        raise WiringError(
            f"cannot load the rules: {exc}",
            hint="`hazardwatch rules check` and `hazardwatch registry check` show every problem",
        ) from None
    engine_db, alerts_db = state_paths(settings)
    alert_store = AlertStore(alerts_db)
    routing = load_routing_config(settings.channels.routing_file)
    holder: dict[str, Any] = {}

    # Both are called from the API thread: engine and warning state belong to the
    # evaluation thread, so the work is queued to run there between batches.
    def warning_closed(warning_id: str, now_ms: int) -> None:
        holder["runner"].call_soon(lambda: holder["pipeline"].close_warning(warning_id, now_ms))

    def alarm_reset(alarm_id: str, now_ms: int) -> None:
        holder["runner"].call_soon(lambda: holder["pipeline"].reset_alarm(alarm_id, now_ms))

    alerts = build_alerts(
        settings,
        bundle.registry,
        alert_store,
        routing=routing,
        on_warning_closed=warning_closed,
        on_alarm_reset=alarm_reset,
    )
    metrics = Metrics("embedded")
    feed = TimeseriesFeed(build_timeseries_writer(settings), bundle.registry, metrics)
    stages = build_stages(
        bundle, normalizer_config=normalize_config(settings), alerts=alerts, witness=witness
    )
    pipeline = Pipeline(
        stages,
        start_ms=clock(),
        store=EngineStore(engine_db),
        metrics=metrics,
        sink=feed,
        on_reject=on_reject or _log_reject,
    )
    holder["pipeline"] = pipeline

    def apply(b: RulesBundle) -> None:
        now = clock()
        old = pipeline.stages.ruleset_version
        if b.registry is not pipeline.stages.registry:
            alerts.with_registry(b.registry, now)
        pipeline.swap(build_stages(b, previous=pipeline.stages))
        feed.set_registry(b.registry)
        # Every alarm names its ruleset; the journal says when and from what it changed.
        alerts.record_ruleset_change(b.version, now, {"previous": old})

    def reloaded(outcome: Any) -> None:
        metrics.reloads.labels(result="ok" if outcome.ok else "refused").inc()
        if not outcome.ok:
            alerts.journal.append(
                "ruleset.refused",
                "",
                {"trigger": outcome.trigger, "error": outcome.error, "running": outcome.version},
                clock(),
            )

    # A generated registry (`run --simulate`) has no file to re-read; rule files still reload.
    reloader = Reloader(
        lambda: load_rules(sources, registry), apply, lambda b: b.version, on_outcome=reloaded
    )
    watcher = None
    if watch_interval_s > 0:
        watcher = FileWatcher(
            lambda: sources.watched() if registry is None else [sources.rules_dir],
            lambda: reloader.request("file"),
            interval_s=watch_interval_s,
        ).start()

    def http_reload() -> dict[str, Any]:
        gen = reloader.generation
        reloader.request("api")
        out = reloader.wait(gen, 60)
        if out is None:
            return {"ok": False, "error": "reload did not finish within 60 s"}
        return {"ok": out.ok, "trigger": out.trigger, "version": out.version, "error": out.error}

    chans = build_channels(settings) if channels is None else channels
    outbox = Outbox(alert_store, OutboxConfig.from_routing(routing))
    metrics.watch_outbox(alert_store.outbox_depth)
    port = settings.metrics.port if metrics_port is None else metrics_port
    bound: int | None = None
    if port or metrics_port == 0:
        bound = metrics.serve(port, reload=http_reload)

    def close_stores() -> None:
        alert_store.close()
        if pipeline.store is not None:
            pipeline.store.close()

    stops: list[Callable[[], None]] = [feed.close]
    api = None
    if serve_api:
        try:
            api = start_api(settings, alerts, alert_store)
        except Exception as exc:  # noqa: BLE001 - port taken, bad tokens file: one clear line
            feed.close()
            raise WiringError(
                f"cannot serve the API on {settings.api.host}:{settings.api.port}: {exc}",
                hint="set api.port (HW_API__PORT) to a free port",
            ) from None
        stops.append(api.stop)
    if watcher is not None:
        stops.append(watcher.stop)
    stops += [metrics.stop, close_stores]
    runner = EmbeddedRunner(
        pipeline,
        source,
        config=runner_config
        or RunnerConfig(commit_interval_ms=settings.storage.commit_interval_ms),
        outbox=outbox,
        channels=chans,
        reloader=reloader,
        clock=clock,
        on_stop=stops,
    )
    holder["runner"] = runner
    return Embedded(runner, pipeline, reloader, alert_store, metrics, chans, bound, watcher, api)


def _log_reject(dl: Any) -> None:
    log.warning("rejected (%s) on %s: %s", dl.reason, dl.topic, dl.detail)


# ------------------------------------------------------------------------------------------------
# MQTT in (embedded) and the MQTT -> Kafka bridge (distributed).


def mqtt_config(settings: Settings, client_id: str | None = None) -> Any:
    from ingest.mqtt import MqttConfig

    m = settings.mqtt
    return MqttConfig(
        host=m.host,
        port=m.port,
        protocol=m.protocol,
        username=m.username,
        password=_secret(m.password) or None,
        client_id=client_id or m.client_id,
        topic_prefix=m.topic_prefix,
        qos=m.qos,
        shared_group=m.shared_group,
        session_expiry_s=m.session_expiry_s,
        keepalive_s=m.keepalive_s,
        tls=m.tls,
        ca_file=m.ca_file,
        cert_file=m.cert_file,
        key_file=m.key_file,
        dead_letter_topic=m.dead_letter_topic,
    )


class MqttIngress:
    """The embedded runner's MQTT source: QoS 1, persistent session, and acks deferred until
    the runner has committed the batch holding the message (so `kill -9` means redelivery,
    never loss). `pause()` stops taking new messages (left unacked for the next session)
    while the runner drains and acks what it has; `stop()` then disconnects."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self._source: Any = None
        self._paused = False

    def start(self, deliver: Callable[[Any], None]) -> None:
        from hazardwatch.runner import RawMessage, wall_ms
        from ingest.mqtt import MqttSource

        def on_message(topic: str, payload: bytes, received_ms: int, ack: Any) -> None:
            if not self._paused:
                deliver(RawMessage(topic, payload, received_ms, ack))

        # Receive times on the runner's guarded clock: a system clock step must not make
        # ingest reject every reading as from the future (hazardwatch/clock.py).
        self._source = MqttSource(self.config, on_message, defer_ack=True, clock=wall_ms).start()

    def wait_ready(self, timeout_s: float = 10.0) -> bool:
        return self._source is not None and self._source.wait_ready(timeout_s)

    def publish(self, topic: str, payload: bytes) -> None:
        self._source.publish(topic, payload)

    def pause(self) -> None:
        self._paused = True

    def stop(self) -> None:
        if self._source is not None:
            self._source.stop()


def clock_witness(settings: Settings) -> Callable[[str, str, int, int], None]:
    """Configure the process's guarded clock from `[clock]` and return the callback that
    feeds it the gateways' timestamps (`Normalizer(witness=...)`, hazardwatch/clock.py)."""
    from hazardwatch.clock import CLOCK

    c = settings.clock
    CLOCK.configure_witnesses(
        tolerance_ms=int(c.witness_tolerance_s * 1000),
        min_gateways=c.witness_gateways,
        window_ms=int(c.witness_window_s * 1000),
    )
    return CLOCK.witness


def mqtt_source(settings: Settings) -> MqttIngress:
    return MqttIngress(mqtt_config(settings))


def dead_letter_sink(settings: Settings, ingress: MqttIngress) -> Callable[[Any], None]:
    """Rejected messages: logged with their reason and published to the dead-letter topic."""
    from ingest.mqtt import DeadLetterPublisher

    publish = DeadLetterPublisher(ingress.publish, settings.mqtt.dead_letter_topic)

    def sink(dl: Any) -> None:
        _log_reject(dl)
        publish(dl)

    return sink


def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create the readings, transitions and dead-letter topics with `kafka.partitions`
    partitions if they do not exist (a broker's auto-create would make them with its own
    default count, and the rules state is partitioned like the readings). Returns the names
    created."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError

    k = settings.kafka
    wanted = [k.readings_topic, k.alarms_topic, k.deadletter_topic]

    async def go() -> list[str]:
        admin = AIOKafkaAdminClient(
            bootstrap_servers=k.bootstrap_servers, request_timeout_ms=int(timeout_s * 1000)
        )
        await admin.start()
        try:
            have = set(await admin.list_topics())
            missing = [t for t in wanted if t not in have]
            if missing:
                try:
                    await admin.create_topics(
                        [
                            NewTopic(t, num_partitions=k.partitions, replication_factor=1)
                            for t in missing
                        ]
                    )
                except TopicAlreadyExistsError:
                    pass  # another process created them first
            return missing
        finally:
            await admin.close()

    try:
        return asyncio.run(go())
    except Exception as exc:  # noqa: BLE001 - one clear error naming the broker
        raise WiringError(
            f"cannot create the Kafka topics at {k.bootstrap_servers}: {exc}",
            hint="is Kafka up? `hazardwatch services status` probes it",
        ) from None


class BridgeProcess:
    """`hazardwatch bridge`: the ingest KafkaBridge on its own event loop thread, with the
    registry hot-reloaded into its normaliser when the file changes."""

    def __init__(self, settings: Settings, watch_interval_s: float = 2.0) -> None:
        from hazardwatch.clock import wall_ms
        from ingest.bridge import BridgeConfig, KafkaBridge
        from ingest.normalize import Normalizer
        from ingest.registry import load_registry

        src = rule_sources(settings)
        self.settings = settings
        self._registry_path = src.registry
        self.bridge = KafkaBridge(
            mqtt_config(settings, client_id=settings.mqtt.client_id + "-bridge"),
            BridgeConfig(
                bootstrap_servers=settings.kafka.bootstrap_servers,
                readings_topic=settings.kafka.readings_topic,
                deadletter_topic=settings.kafka.deadletter_topic,
            ),
            Normalizer(
                load_registry(src.registry),
                normalize_config(settings),
                witness=clock_witness(settings),  # evidence for a host clock step
            ),
            clock=wall_ms,  # receive times on the guarded clock (hazardwatch/clock.py)
        )
        self._watch_interval_s = watch_interval_s
        self._thread: threading.Thread | None = None
        self._watcher: Any = None
        self.failure: BaseException | None = None

    def _reload_registry(self) -> None:
        from ingest.registry import load_registry

        try:
            reg = load_registry(self._registry_path)
        except Exception as exc:  # noqa: BLE001 - any bad file keeps the old registry
            log.error("registry reload refused, the bridge keeps the old one: %s", exc)
            return
        self.bridge.reload(self.bridge.normalizer.with_registry(reg))
        log.info("bridge registry reloaded: %s (%d points)", reg.version, len(reg))

    def start(self) -> BridgeProcess:
        import asyncio

        from hazardwatch.reload import FileWatcher

        ensure_topics(self.settings)

        def run() -> None:
            try:
                asyncio.run(self.bridge.run())
            except BaseException as exc:  # noqa: BLE001 - reported by stop()/alive
                self.failure = exc
                log.error("bridge stopped: %s", exc)

        self._thread = threading.Thread(target=run, name="hw-bridge", daemon=True)
        self._thread.start()
        if self._watch_interval_s > 0:
            self._watcher = FileWatcher(
                lambda: [self._registry_path], self._reload_registry, self._watch_interval_s
            ).start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        self.bridge.stop()
        if self._thread is not None:
            self._thread.join(timeout_s)


def build_bridge(settings: Settings) -> BridgeProcess:
    try:
        return BridgeProcess(settings)
    except WiringError:
        raise
    except Exception as exc:  # noqa: BLE001 - the registry loader lists every problem
        raise WiringError(f"cannot start the bridge: {exc}") from None


class SimulatorSource:
    """The simulated city in real time instead of MQTT (`hazardwatch run --simulate`): the
    same payloads a gateway would publish, stamped with the wall clock, incidents included."""

    def __init__(
        self, points: int = 300, seed: int = 7, hours: float = 6.0, topic_prefix: str = "hw"
    ) -> None:
        from hazardwatch.sim.simulation import Simulation

        self.sim = Simulation.demo(
            points=points,
            seed=seed,
            start_ms=time.time_ns() // 60_000_000_000 * 60_000,  # this minute: live readings
            duration_ms=int(hours * 3_600_000),
            topic_prefix=topic_prefix,
        )
        self.registry = self.sim.registry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, deliver: Callable[[Any], None]) -> None:
        from hazardwatch.runner import RawMessage, wall_ms

        def run() -> None:
            for step in self.sim.stream(None, step_ms=1000, speed=1.0):
                if self._stop.is_set():
                    return
                now = wall_ms()
                for topic, payload in step.messages:
                    deliver(RawMessage(topic, payload, now))

        self._thread = threading.Thread(target=run, name="hw-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
