"""`hazardwatch demo`: the whole product on a simulated Qianjiang-like city, with no service
installed. The simulator's MQTT-shaped payloads go through the same evaluation core as the
embedded runner (normaliser, rules engine, warning model, alerts service with its SQLite outbox)
in accelerated time; notifications go over HTTP to local receivers that check the real request
shapes (platform push with HMAC, WeCom robots, Aliyun SMS); time series go to line-protocol
files. A live terminal view shows alarms and warnings opening and closing, deliveries and
throughput; the final report matches alarms to the incidents the simulator injected.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hazardwatch.runner import BatchOutcome, Pipeline, RawMessage

_CST = timezone(timedelta(hours=8))
#: A fixed start (08:00 Beijing time) so the same seed gives the same run, report included.
DEMO_START = datetime(2026, 7, 1, 8, 0, tzinfo=_CST)

_STATE_STYLE = {
    "firing": "bold red",
    "cleared": "green",
    "raised": "bold yellow",
    "upgraded": "bold magenta",
    "closed": "green",
}
_COLOUR_STYLE = {"blue": "blue", "yellow": "yellow", "orange": "dark_orange", "red": "red"}


class DemoError(Exception):
    """The demo cannot run as asked (e.g. too short for its incidents)."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    minutes: float = 180.0  # simulated minutes
    speed: float = 0.0  # simulated seconds per wall second; 0 = as fast as possible
    seed: int = 7
    points: int = 300
    live: bool = True
    out: Path | None = None
    # Five simulated seconds per step: readings keep their own timestamps, so this only sets
    # how often timers are checked, and the engine call per step is the demo's main cost.
    step_ms: int = 5000
    tick_ms: int = 10_000


@dataclass(slots=True)
class DemoReport:
    score: Any
    alarms: list[Any]
    warnings: list[Any]
    readings: int
    rejects: int
    wall_s: float
    sim_s: float
    delivered: dict[str, int]
    duplicates: dict[str, int]
    outbox_left: int
    out: Path

    @property
    def all_detected(self) -> bool:
        return bool(self.score.all_detected) and len(self.score.results) > 0


# ------------------------------------------------------------------------------------------------
# Local receivers and the channels pointed at them.


class _SimClock:
    """Seconds since the epoch in simulated time (the channels' and receivers' clock)."""

    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return self.ms / 1000.0


@dataclass(slots=True)
class _Receivers:
    platform: Any
    wecom: Any
    sms: Any
    channels: dict[str, Any] = field(default_factory=dict)

    def all(self) -> dict[str, Any]:
        return {"platform": self.platform, "wecom": self.wecom, "aliyun_sms": self.sms}

    def stop(self) -> None:
        for r in self.all().values():
            r.stop()


def _start_receivers(robots: list[str], clock: Any) -> _Receivers:
    from alerts.channels.aliyun_sms import AliyunSmsChannel
    from alerts.channels.platform import PlatformChannel
    from alerts.channels.receivers import AliyunSmsReceiver, PlatformReceiver, WecomReceiver
    from alerts.channels.wecom import WecomChannel

    # Fresh throwaway credentials each run: these receivers stand in for services that
    # cannot exist here, and they verify every signature with these.
    hmac_secret = secrets.token_hex(16)
    robot_keys = {name: secrets.token_hex(8) for name in robots}
    sms_id, sms_secret = "demo-" + secrets.token_hex(4), secrets.token_hex(16)
    # Everyone runs on the simulated clock: signature windows, WeCom's 20 per minute per
    # robot and the SMS daily caps then mean what they would at real speed.
    platform = PlatformReceiver(hmac_secret, clock=clock).start()
    wecom = WecomReceiver(robot_keys.values(), clock=clock).start()
    sms = AliyunSmsReceiver({sms_id: sms_secret}, clock=clock).start()
    channels = {
        "platform": PlatformChannel(platform.url, hmac_secret, timeout_s=5, clock=clock),
        "wecom": WecomChannel(robot_keys, base_url=wecom.url, timeout_s=5, clock=clock),
        "aliyun_sms": AliyunSmsChannel(
            sms_id,
            sms_secret,
            "潜江应急",
            "SMS_DEMO_001",
            endpoint=sms.url,
            timeout_s=5,
            clock=clock,
        ),
    }
    return _Receivers(platform, wecom, sms, channels)


def demo_routing(registry: Any) -> Any:
    """Recipients for the generated city: per enterprise a 操作/技术/主要负责人 with phone
    numbers and a duty WeCom robot, a duty office per district, and the city bureau."""
    from alerts.routing import Contact, Enterprise, Office, RoutingConfig

    enterprises: dict[str, Enterprise] = {}
    districts: dict[str, Office] = {}
    n = 0

    def phone() -> str:
        nonlocal n
        n += 1
        return f"+86138{n:08d}"

    for code in registry.enterprises():
        pts = registry.enterprise(code)
        name = pts[0].enterprise_name
        district = pts[0].district
        if district and district not in districts:
            districts[district] = Office(
                name=f"{district}应急管理局值班室",
                kind="district",
                duty_officers=[Contact(name=f"{district}值班员", phone=phone())],
                duty_robot=f"district-{len(districts) + 1}",
            )
        enterprises[code] = Enterprise(
            name=name,
            duty_robot=f"duty-{code}",
            operator=Contact(name=f"{name}操作负责人", phone=phone()),
            technical=Contact(name=f"{name}技术负责人", phone=phone()),
            main=Contact(name=f"{name}主要负责人", phone=phone()),
        )
    city = Office(
        name="潜江市应急管理局值班室",
        kind="city",
        duty_officers=[Contact(name="市局值班员", phone=phone())],
        duty_robot="city-duty",
    )
    return RoutingConfig(city=city, districts=districts, enterprises=enterprises)


def _robots(routing: Any) -> list[str]:
    names = {e.duty_robot for e in routing.enterprises.values() if e.duty_robot}
    names |= {o.duty_robot for o in routing.districts.values() if o.duty_robot}
    if routing.city and routing.city.duty_robot:
        names.add(routing.city.duty_robot)
    return sorted(names)


# ------------------------------------------------------------------------------------------------
# The live view.


class _View:
    """Collects what the pipeline emits and renders the live terminal view."""

    def __init__(
        self, opts: DemoOptions, start_ms: int, end_ms: int, receivers: _Receivers, registry: Any
    ) -> None:
        self.opts = opts
        self.start_ms, self.end_ms = start_ms, end_ms
        self.receivers = receivers
        self.registry = registry
        self.alarms: list[Any] = []
        self.warnings: list[Any] = []
        self.recent: deque[tuple[int, Text]] = deque(maxlen=14)
        self.open_alarms: set[str] = set()
        self.open_warnings: dict[str, str] = {}
        self.readings = 0
        self.now_ms = start_ms
        self.wall0 = time.monotonic()

    def on_batch(self, out: BatchOutcome, now_ms: int) -> None:
        self.readings += len(out.readings)
        for a in out.alarms:
            self.alarms.append(a)
            if a.state == "firing":
                self.open_alarms.add(a.alarm_id)
            else:
                self.open_alarms.discard(a.alarm_id)
            self.recent.append((a.ts_ms, self._alarm_line(a)))
        for w in out.warnings:
            self.warnings.append(w)
            if w.state == "closed":
                self.open_warnings.pop(w.warning_id, None)
            else:
                self.open_warnings[w.warning_id] = str(w.colour)
            self.recent.append((w.ts_ms, self._warning_line(w)))

    def _clock(self, ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, _CST).strftime("%H:%M:%S")

    def _alarm_line(self, a: Any) -> Text:
        t = Text(f"{self._clock(a.ts_ms)} ")
        t.append("alarm   ", style="dim")
        t.append(f"{a.state!s:8}", style=_STATE_STYLE.get(str(a.state), ""))
        t.append(f" {a.enterprise_code} {a.tag} {a.kind}")
        if a.level:
            t.append(f" {a.level}", style="bold")
        if a.value is not None and a.value == a.value:
            t.append(f"  {a.value:g} {a.unit}", style="dim")
        return t

    def _warning_line(self, w: Any) -> Text:
        t = Text(f"{self._clock(w.ts_ms)} ")
        t.append("warning ", style="dim")
        t.append(f"{w.state!s:8}", style=_STATE_STYLE.get(str(w.state), ""))
        colour = str(w.colour)
        t.append(f" {w.enterprise_code} {w.hazard_code or '-'} ")
        t.append(f"{w.colour.zh} {colour}", style=_COLOUR_STYLE.get(colour, ""))
        t.append(f"  {w.reason}", style="dim")
        return t

    def render(self) -> Group:
        wall = max(1e-6, time.monotonic() - self.wall0)
        span = max(1, self.end_ms - self.start_ms)
        done = min(1.0, (self.now_ms - self.start_ms) / span)
        head = Table.grid(expand=True, padding=(0, 2))
        for _ in range(4):
            head.add_column()
        head.add_row(
            f"[bold]simulated[/] {self._clock(self.now_ms)}  ({done:5.1%})",
            f"[bold]readings[/] {self.readings:,} ({self.readings / wall:,.0f}/s)",
            f"[bold]open alarms[/] [red]{len(self.open_alarms)}[/]",
            f"[bold]open warnings[/] [yellow]{len(self.open_warnings)}[/]",
        )
        events = Table.grid()
        events.add_column()
        for _, line in self.recent:
            events.add_row(line)
        rec = Table("receiver", "delivered", "duplicate keys", box=None, padding=(0, 2))
        for name, r in self.receivers.all().items():
            rec.add_row(name, str(r.delivered), str(r.duplicates))
        return Group(
            Panel(
                head,
                title=f"hazardwatch demo · {len(self.registry)} points · seed {self.opts.seed}",
                border_style="cyan",
            ),
            Panel(events, title="alarms and warnings", height=17),
            Panel(rec, title="notifications at the local receivers"),
        )


# ------------------------------------------------------------------------------------------------
# The run.


def _demo_kinds() -> list[Any]:
    """Every incident kind, the longest (a frozen value must outlast the stuck-value window)
    first, so that a few simulated hours hold them all."""
    from hazardwatch.sim.incidents import ALL_KINDS, DEFAULT_DURATION_MS

    return sorted(ALL_KINDS, key=lambda k: -DEFAULT_DURATION_MS[k])


def run_demo(opts: DemoOptions, console: Console | None = None) -> DemoReport:
    from alerts.outbox import Outbox, OutboxConfig
    from alerts.service import AlertService
    from alerts.store import AlertStore
    from hazardwatch.metrics import Metrics
    from hazardwatch.sim.city import write_registry_csv
    from hazardwatch.sim.scoring import score
    from hazardwatch.sim.simulation import Simulation
    from hazardwatch.sim.truth import write_truth
    from hazardwatch.wiring import (
        RuleSources,
        TimeseriesFeed,
        build_stages,
        load_rules,
    )
    from ingest.influx import LineProtocolFileWriter
    from ingest.normalize import NormalizeConfig

    console = console or Console()
    out = Path(opts.out) if opts.out else Path(tempfile.mkdtemp(prefix="hazardwatch-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    var = out / "var"
    var.mkdir(exist_ok=True)
    start_ms = int(DEMO_START.timestamp() * 1000)
    duration_ms = int(opts.minutes * 60_000)
    end_ms = start_ms + duration_ms

    with console.status("generating the city and its incidents…"):
        try:
            sim = Simulation.demo(
                points=opts.points,
                seed=opts.seed,
                start_ms=start_ms,
                duration_ms=duration_ms,
                kinds=_demo_kinds(),
            )
        except (ValueError, LookupError) as exc:  # too short, or too few points for a kind
            raise DemoError(str(exc)) from None
        registry = sim.registry
        write_registry_csv(registry, out / "registry.csv")
        write_truth(out / "truth.jsonl", sim.incidents)
        bundle = load_rules(RuleSources(out / "registry.csv"), registry)
        routing = demo_routing(registry)
        sim_clock = _SimClock(start_ms)
        receivers = _start_receivers(_robots(routing), sim_clock)
        store_path = var / "demo-alerts.db"
        for p in var.glob("demo-alerts.db*"):
            p.unlink()  # every demo starts from a clean alert state
        alert_store = AlertStore(store_path)
        alerts = AlertService(alert_store, routing, registry, public_url="http://127.0.0.1:8470")
        outbox = Outbox(alert_store, OutboxConfig.from_routing(routing))
        stages = build_stages(bundle, normalizer_config=NormalizeConfig(), alerts=alerts)
        metrics = Metrics("demo")
        view = _View(opts, start_ms, end_ms, receivers, registry)
        feed = TimeseriesFeed(
            LineProtocolFileWriter(var),
            registry,
            metrics,
            pipeline_every_s=3600,
            clock=lambda: view.now_ms,
        )
        pipeline = Pipeline(
            stages,
            start_ms=start_ms,
            metrics=metrics,
            sink=feed,
            listeners=[view],
            alerts_tick_ms=15_000,
        )

    console.print(
        f"[bold]hazardwatch demo[/]: {len(registry)} points in {len(registry.enterprises())} "
        f"enterprises, {len(sim.incidents)} incidents injected over {opts.minutes:g} simulated "
        f"minutes (ruleset {bundle.version}); files in {out}"
    )
    wall0 = time.monotonic()
    last_deliver = last_tick = start_ms
    deliver_every_ms = 5_000
    live = (
        Live(view.render(), console=console, refresh_per_second=4, transient=False)
        if opts.live
        else None
    )
    next_note = 0.1
    try:
        if live is not None:
            live.start()
        last_render = 0.0
        for step in sim.stream(end_ms, step_ms=opts.step_ms, speed=opts.speed or None):
            now = step.now_ms
            view.now_ms = sim_clock.ms = now
            if step.messages:
                # process() also runs the engine's timers up to `now`
                pipeline.process([RawMessage(t, p, now) for t, p in step.messages], now)
            if not step.messages or now - last_tick >= opts.tick_ms:
                pipeline.tick(now)
                last_tick = now
            if now - last_deliver >= deliver_every_ms:
                outbox.deliver_due(now, receivers.channels)
                last_deliver = now
            t = time.monotonic()
            if live is not None and t - last_render >= 0.25:
                live.update(view.render())
                last_render = t
            elif live is None and (now - start_ms) / max(1, duration_ms) >= next_note:
                console.print(
                    f"  {next_note:4.0%} simulated {view._clock(now)}: {view.readings:,} "
                    f"readings, {len(view.alarms)} alarm transitions, "
                    f"{len(view.open_warnings)} open warnings"
                )
                next_note += 0.1
        # Let the outbox finish: retries and rate-limited digests are due within minutes.
        now = end_ms
        for _ in range(30):
            sim_clock.ms = now
            outbox.deliver_due(now, receivers.channels)
            if alert_store.outbox_depth() == 0:
                break
            now += 60_000
        if live is not None:
            live.update(view.render())
    finally:
        if live is not None:
            live.stop()
        feed.close()
        receivers.stop()
    wall = time.monotonic() - wall0
    point_days = len(registry) * duration_ms / 86_400_000
    sc = score(sim.incidents, view.alarms, point_days=point_days)
    report = DemoReport(
        score=sc,
        alarms=view.alarms,
        warnings=view.warnings,
        readings=view.readings,
        rejects=int(metrics.figures().rejects),
        wall_s=wall,
        sim_s=duration_ms / 1000,
        delivered={k: r.delivered for k, r in receivers.all().items()},
        duplicates={k: r.duplicates for k, r in receivers.all().items()},
        outbox_left=alert_store.outbox_depth(),
        out=out,
    )
    alert_store.close()
    _write_files(report)
    print_report(report, console)
    return report


def _write_files(r: DemoReport) -> None:
    with (r.out / "alarms.jsonl").open("w", encoding="utf-8") as f:
        for a in r.alarms:
            f.write(json.dumps(a.to_record(), ensure_ascii=False) + "\n")
    with (r.out / "warnings.jsonl").open("w", encoding="utf-8") as f:
        for w in r.warnings:
            f.write(json.dumps(w.to_record(), ensure_ascii=False) + "\n")
    summary = {
        "score": r.score.to_dict(),
        "readings": r.readings,
        "rejects": r.rejects,
        "wall_s": round(r.wall_s, 2),
        "simulated_s": r.sim_s,
        "delivered": r.delivered,
        "duplicates": r.duplicates,
        "outbox_left": r.outbox_left,
    }
    (r.out / "report.json").write_text(
        json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8"
    )


def print_report(r: DemoReport, console: Console) -> None:
    from hazardwatch.sim.report import score_table

    sc = r.score
    console.print(score_table(sc))
    deliveries = ", ".join(f"{k} {v}" for k, v in r.delivered.items())
    dups = sum(r.duplicates.values())
    verdict = (
        "[bold green]every injected incident detected[/]"
        if r.all_detected
        else f"[bold red]{sc.missed} of {len(sc.results)} incidents MISSED[/]"
    )
    console.print(
        f"{verdict}\n{r.readings:,} readings ({r.rejects} rejected) over "
        f"{r.sim_s / 3600:.1f} simulated hours in {r.wall_s:.1f} s "
        f"({r.readings / max(r.wall_s, 1e-6):,.0f} readings/s); {len(r.alarms)} alarm "
        f"transitions, {len(r.warnings)} warning events\nnotifications delivered: "
        f"{deliveries}; duplicate idempotency keys at the receivers: {dups}; still in the "
        f"outbox: {r.outbox_left}\nfiles: {r.out}/report.json, alarms.jsonl, warnings.jsonl, "
        "truth.jsonl, registry.csv, var/lineprotocol/"
    )


__all__ = ["DemoError", "DemoOptions", "DemoReport", "demo_routing", "print_report", "run_demo"]
