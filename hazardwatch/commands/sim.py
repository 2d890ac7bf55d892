"""Simulator commands: `hazardwatch simulate` (generate a city, its readings and the ground
truth of the incidents injected; write replay files, publish over MQTT, or score detection in
process) and `hazardwatch sim score` (match an alarm file to a ground-truth file)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch.cli import fail, settings

sim_app = typer.Typer(
    help="Simulator tools: score alarms against injected incidents.", no_args_is_help=True
)

_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str, what: str = "duration") -> int:
    """'90s', '15m', '1h30m', '7d' -> milliseconds; a bare number means seconds."""
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return int(float(s) * 1000)
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise fail(
            f"{what} {text!r} is not a duration",
            hint="write it like 90s, 15m, 1h30m, 7d or 1w (a bare number is seconds)",
        )
    return int(total)


def _parse_start(text: str | None, default_ms: int) -> int:
    if text is None:
        return default_ms
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(
            f"--start {text!r} is not an ISO 8601 time", hint="e.g. 2026-11-29T08:00:00+08:00"
        ) from None
    if dt.tzinfo is None:
        raise fail(
            f"--start {text!r} has no UTC offset", hint="add one: 2026-11-29T08:00:00+08:00 or ...Z"
        )
    return int(dt.timestamp() * 1000)


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")

    @app.command("simulate")
    def simulate(
        points: Annotated[int, typer.Option(help="Points in the generated city.")] = 1000,
        seed: Annotated[int, typer.Option(help="Seed: same seed, same city and readings.")] = 7,
        duration: Annotated[str, typer.Option(help="Simulated time, e.g. 1h, 7d.")] = "1h",
        start: Annotated[
            str | None,
            typer.Option(
                help="Simulated start (ISO 8601 with offset). Default: now for --mqtt, "
                "else the current hour."
            ),
        ] = None,
        registry: Annotated[
            Path | None,
            typer.Option(
                "--registry", help="Simulate this registry CSV/YAML instead of generating a city."
            ),
        ] = None,
        registry_out: Annotated[
            Path | None, typer.Option(help="Write the generated registry CSV here.")
        ] = None,
        readings_out: Annotated[
            Path | None,
            typer.Option(help="Write the replay CSV (ts,enterprise_code,tag,value,unit,quality)."),
        ] = None,
        truth_out: Annotated[
            Path | None, typer.Option(help="Write the ground truth (JSON lines) here.")
        ] = None,
        iso: Annotated[
            bool, typer.Option("--iso", help="ISO 8601 times in the replay CSV (default epoch ms).")
        ] = False,
        incidents: Annotated[
            str,
            typer.Option(
                help="Incident kinds to schedule: 'all', 'none' or a comma list of "
                "leak, overfill, overfill_no_interlock, detector_fault, frozen, "
                "gateway_outage, chatter, over_quota, backfill."
            ),
        ] = "all",
        repeat: Annotated[int, typer.Option(help="How many of each kind.", min=1)] = 1,
        inject: Annotated[
            list[str] | None,
            typer.Option(
                help="Inject one incident on demand: KIND@OFFSET (e.g. leak@10m); repeatable."
            ),
        ] = None,
        mqtt: Annotated[
            bool,
            typer.Option(
                "--mqtt", help="Publish to the MQTT broker of the settings' mqtt section."
            ),
        ] = False,
        rate: Annotated[
            float | None, typer.Option(help="With --mqtt: target readings/s (e.g. 93000).")
        ] = None,
        speed: Annotated[
            float | None,
            typer.Option(
                help="Simulated seconds per real second (e.g. 60) for --mqtt, or for "
                "--readings-out written live (flushed every simulated second)."
            ),
        ] = None,
        max_seconds: Annotated[
            float | None, typer.Option(help="With --mqtt: stop after this wall time.")
        ] = None,
        max_readings: Annotated[
            int | None, typer.Option(help="With --mqtt: stop after this many readings.")
        ] = None,
        interval_scale: Annotated[
            float,
            typer.Option(
                help="Multiply every reporting interval (e.g. 0.01: gateways poll 100x "
                "faster) so a load run reaches --rate in real time."
            ),
        ] = 1.0,
        score: Annotated[
            bool,
            typer.Option(
                "--score",
                help="Run the readings through ingest and the rules "
                "engine (default packs) here and print the detection score.",
            ),
        ] = False,
        json_out: Annotated[
            bool, typer.Option("--json", help="Print the summary as JSON.")
        ] = False,
    ) -> None:
        """Generate a simulated city's readings and the ground truth of injected incidents."""

        from hazardwatch.sim import Simulation, generate_registry, write_registry_csv
        from hazardwatch.sim.city import scale_intervals
        from hazardwatch.sim.incidents import ALL_KINDS, IncidentKind, NoSubject
        from hazardwatch.sim.truth import write_truth

        if not (registry_out or readings_out or truth_out or mqtt or score):
            raise fail(
                "nothing to do: no output chosen",
                hint="add --readings-out X.csv --truth-out T.jsonl, --registry-out R.csv, "
                "--mqtt or --score",
            )
        if (rate or max_seconds or max_readings) and not mqtt:
            raise fail("--rate, --max-seconds and --max-readings apply to --mqtt only")
        if speed and not (mqtt or readings_out):
            raise fail("--speed paces --mqtt or --readings-out; neither was given")
        if rate and speed:
            raise fail(
                "give --rate or --speed, not both",
                hint="--rate paces by readings/s, --speed by simulated time",
            )
        dur_ms = parse_duration_ms(duration, "--duration")
        if dur_ms <= 0:
            raise fail(f"--duration must be > 0, got {duration!r}")
        now = datetime.now(UTC)
        default_start = (
            now.replace(microsecond=0) if mqtt else now.replace(minute=0, second=0, microsecond=0)
        )
        start_ms = _parse_start(start, int(default_start.timestamp() * 1000))
        end_ms = start_ms + dur_ms
        if registry is not None:
            from ingest.registry import RegistryError, load_registry

            try:
                reg = load_registry(registry)
            except (RegistryError, OSError) as exc:
                raise fail(
                    str(exc), hint="`hazardwatch registry check FILE` lists every problem"
                ) from None
        else:
            if points < 1:
                raise fail(f"--points must be >= 1, got {points}")
            reg = generate_registry(points, seed)
        if interval_scale != 1.0:
            if not interval_scale > 0:
                raise fail(f"--interval-scale must be > 0, got {interval_scale:g}")
            reg = scale_intervals(reg, interval_scale)
        prefix = settings().mqtt.topic_prefix if mqtt else "hw"
        sim = Simulation(reg, seed=seed, start_ms=start_ms, topic_prefix=prefix)
        natural = sim.model.readings_per_second
        if mqtt and start is None:
            # Live data is stamped from now: simulated time must not outrun the clock, or
            # ingest rejects readings from the future (its max_future_ms bound).
            pace = speed if speed else (rate / natural if rate else float("inf"))
            if pace > 1.0:
                what = (
                    f"--rate {rate:,.0f}"
                    if rate
                    else f"--speed {speed:g}"
                    if speed
                    else "publishing as fast as possible"
                )
                if rate:
                    need = interval_scale * natural / rate
                    # Intervals stay >= 0.1 s: past that only more points add readings.
                    floor = min(p.expected_interval_s for p in reg) / interval_scale * need
                    hint = (
                        f"add --interval-scale {need:.3g} (gateways poll faster) or more --points"
                        if floor >= 0.1
                        else "more --points (reporting intervals stay >= 0.1 s) or a lower --rate"
                    )
                else:
                    hint = "give --rate, or --speed 1"
                raise fail(
                    f"with --mqtt from now, this {len(reg):,}-point city makes {natural:,.1f} "
                    f"readings/s in real time; {what} would stamp readings in the future",
                    hint=hint + "; or give --start in the past to publish history (ingest "
                    "flags it back-filled)",
                )
        kinds_s = incidents.strip().lower()
        if kinds_s == "all":
            kinds = list(ALL_KINDS)
        elif kinds_s == "none":
            kinds = []
        else:
            kinds = []
            for k in kinds_s.split(","):
                try:
                    kinds.append(IncidentKind(k.strip()))
                except ValueError:
                    raise fail(
                        f"--incidents: unknown kind {k.strip()!r}",
                        hint="kinds: " + ", ".join(ALL_KINDS),
                    ) from None
        injections = []
        for spec in inject or []:
            kind_s, _, at = spec.partition("@")
            try:
                kind = IncidentKind(kind_s.strip())
            except ValueError:
                raise fail(
                    f"--inject {spec!r}: unknown kind {kind_s!r}",
                    hint="kinds: " + ", ".join(ALL_KINDS),
                ) from None
            offset = parse_duration_ms(at, f"--inject {spec!r} offset") if at else 0
            injections.append((kind, start_ms + offset))
        try:
            if kinds:
                sim.schedule(end_ms, kinds=kinds, repeats=repeat)
            for kind, at_ms in injections:
                injected = sim.inject(kind, at_ms)
                if injected.end_ms > end_ms:
                    raise ValueError(
                        f"--inject {kind}@{(at_ms - start_ms) / 60_000:g}m runs until "
                        f"{datetime.fromtimestamp(injected.end_ms / 1000, UTC):%H:%M:%S} UTC, "
                        "after the run ends; inject it earlier"
                    )
        except (ValueError, NoSubject) as exc:
            raise fail(
                str(exc), hint="make --duration longer, or choose fewer --incidents"
            ) from None
        console = _console(stderr=json_out)
        summary: dict = {
            "points": len(reg),
            "seed": seed,
            "start": datetime.fromtimestamp(start_ms / 1000, UTC).isoformat(),
            "duration_s": dur_ms / 1000,
            "incidents": len(sim.incidents),
            "readings_per_s_simulated": round(sim.model.readings_per_second, 2),
        }
        if registry_out:
            write_registry_csv(reg, registry_out)
            summary["registry_out"] = str(registry_out)
        if truth_out:
            write_truth(truth_out, sim.incidents)
            summary["truth_out"] = str(truth_out)
        if readings_out:
            from rich.progress import Progress

            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("writing readings", total=dur_ms)
                rows = sim.write_readings_csv(
                    readings_out,
                    end_ms,
                    ts_format="iso" if iso else "epoch_ms",
                    progress=lambda done: bar.update(task, completed=done),
                    speed=None if mqtt else speed,
                )
            summary["readings_out"] = str(readings_out)
            summary["readings"] = rows
        if mqtt:
            summary["mqtt"] = _publish(sim, end_ms, rate, speed, max_seconds, max_readings, console)
        if score:
            from rich.progress import Progress

            from hazardwatch.sim.evaluate import run_detection
            from hazardwatch.sim.report import score_table

            fresh = Simulation(reg, seed=seed, start_ms=start_ms, incidents=sim.incidents)
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("ingest + rules engine", total=dur_ms)
                run = run_detection(
                    fresh, end_ms, progress=lambda done, _total: bar.update(task, completed=done)
                )
            summary["score"] = run.score.to_dict()
            summary["score"]["readings"] = run.readings
            summary["score"]["rejects"] = run.rejects
            if not json_out:
                console.print(score_table(run.score))
        if json_out:
            typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        else:
            for k, v in summary.items():
                if k not in ("score", "mqtt"):
                    console.print(f"{k}: {v}")
            if truth_out and readings_out and registry_out and not score:
                typer.echo(
                    "next: hazardwatch replay --registry "
                    f"{registry_out} --readings {readings_out} --out alarms.jsonl && "
                    f"hazardwatch sim score --truth {truth_out} --alarms alarms.jsonl "
                    f"--registry {registry_out} --duration {duration}"
                )
        if score and not summary["score"]["missed"] == 0:
            raise typer.Exit(1)

    @sim_app.command("score")
    def score_cmd(
        truth: Annotated[Path, typer.Option(help="Ground truth JSONL from `simulate`.")],
        alarms: Annotated[Path, typer.Option(help="Alarm events JSONL (`replay --out`).")],
        registry: Annotated[
            Path | None, typer.Option(help="Registry, to count points for the false-alarm rate.")
        ] = None,
        points: Annotated[
            int | None, typer.Option(help="Number of points (instead of --registry).")
        ] = None,
        duration: Annotated[
            str | None, typer.Option(help="Simulated time covered, e.g. 7d (for the rate).")
        ] = None,
        grace: Annotated[
            str, typer.Option(help="How long after an incident its alarms still count.")
        ] = "15m",
        json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Match alarms to injected incidents: detected, missed, false, time to detect.
        Exit 1 if any incident was missed."""

        from hazardwatch.sim.report import score_table
        from hazardwatch.sim.scoring import DAY_MS, AlarmFileError, read_alarms
        from hazardwatch.sim.scoring import score as do_score
        from hazardwatch.sim.truth import TruthFileError, read_truth

        try:
            incidents = read_truth(truth)
            events = read_alarms(alarms)
        except (TruthFileError, AlarmFileError) as exc:
            raise fail(str(exc)) from None
        n_points = points
        if registry is not None:
            from ingest.registry import RegistryError, load_registry

            try:
                n_points = len(load_registry(registry))
            except (RegistryError, OSError) as exc:
                raise fail(str(exc)) from None
        point_days = None
        if n_points and duration:
            point_days = n_points * parse_duration_ms(duration, "--duration") / DAY_MS
        result = do_score(
            incidents, events, point_days=point_days, grace_ms=parse_duration_ms(grace, "--grace")
        )
        if json_out:
            typer.echo(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        else:
            _console().print(score_table(result))
            if point_days is None:
                typer.echo(
                    "(give --registry or --points, and --duration, for the false-alarm "
                    "rate per 1,000 point-days)"
                )
        if not result.all_detected:
            raise typer.Exit(1)


def _console(stderr: bool = False):
    """A rich console; when output is not a terminal (a file, CI logs) tables get room
    instead of the 80 columns rich assumes."""
    from rich.console import Console

    c = Console(stderr=stderr)
    return c if c.is_terminal else Console(stderr=stderr, width=160)


def _publish(sim, end_ms, rate, speed, max_seconds, max_readings, console) -> dict:
    from hazardwatch.sim.publish import MqttSink, PublishError, publish_simulation

    s = settings().mqtt
    try:
        sink = MqttSink(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            client_id=f"{s.client_id}-sim",
            qos=s.qos,
            protocol=s.protocol,
            tls=s.tls,
            ca_file=str(s.ca_file) if s.ca_file else None,
            cert_file=str(s.cert_file) if s.cert_file else None,
            key_file=str(s.key_file) if s.key_file else None,
        )
    except PublishError as exc:
        raise fail(
            str(exc),
            hint="check [mqtt] host/port/username in the settings, or "
            "`hazardwatch services status`",
        ) from None

    def show(st) -> None:
        console.print(
            f"published {st.readings:,} readings in {st.messages:,} messages "
            f"({st.readings_per_s:,.0f}/s), simulated {st.simulated_ms / 1000:,.0f} s",
            highlight=False,
        )

    try:
        stats = publish_simulation(
            sim,
            end_ms,
            sink,
            rate=rate,
            speed=speed,
            max_seconds=max_seconds,
            max_readings=max_readings,
            progress=show,
        )
    except PublishError as exc:
        raise fail(str(exc)) from None
    finally:
        sink.close()
    return {
        "readings": stats.readings,
        "messages": stats.messages,
        "bytes": stats.bytes,
        "seconds": round(stats.seconds, 3),
        "readings_per_s": round(stats.readings_per_s, 1),
        "simulated_s": stats.simulated_ms / 1000,
        "stopped_by": stats.stopped_by,
    }
