"""The `hazardwatch` console script: verb subcommands over the composition root.

Handlers return an exit code and can be called from tests (`main([...])`). Heavy imports
stay inside the commands so `hazardwatch rules check` starts fast and needs no Kafka.
Errors are one clear line plus a hint; `--debug` shows the traceback.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch import __version__

app = typer.Typer(
    name="hazardwatch",
    help="Risk-hazard monitoring and early warning for hazardous-chemical and fireworks sites.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect settings.", no_args_is_help=True)
services_app = typer.Typer(
    help="Check the external services hazardwatch is configured to use.", no_args_is_help=True
)
app.add_typer(config_app, name="config")
app.add_typer(services_app, name="services")


class _State:
    config: Path | None = None
    debug: bool = False


STATE = _State()

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Settings TOML file (default: $HW_CONFIG or ./hazardwatch.toml)."
    ),
]


@app.callback()
def _root(
    config: ConfigOpt = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    STATE.config = config
    STATE.debug = debug


def fail(message: str, hint: str | None = None, code: int = 2) -> typer.Exit:
    """Print one clear error line (and a hint) to stderr; return the Exit to raise."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    return typer.Exit(code)


def settings():
    """Load settings for a command, turning problems into one clear error."""
    from hazardwatch.settings import SettingsError, load_settings

    try:
        return load_settings(STATE.config)
    except SettingsError as exc:
        raise fail(str(exc)) from None


@app.command()
def version() -> None:
    """Print the hazardwatch version."""
    typer.echo(f"hazardwatch {__version__}")


@config_app.command("show")
def config_show(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON instead of TOML-like text.")
    ] = False,
) -> None:
    """Print the effective settings, with every secret masked."""
    from hazardwatch.settings import masked_dump

    data = masked_dump(settings())
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))
        return
    _print_toml(data)


def _print_toml(data: dict, prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and (scalars or not tables):
        typer.echo(f"\n[{prefix}]")
    for k, v in scalars.items():
        typer.echo(f"{k} = {json.dumps(v, ensure_ascii=False)}")
    for k, v in tables.items():
        _print_toml(v, f"{prefix}.{k}" if prefix else k)


@services_app.command("status")
def services_status(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each service.")] = 3.0,
) -> None:
    """Probe MQTT, Kafka and InfluxDB as configured; exit 1 if any configured one is down."""
    from rich.console import Console
    from rich.table import Table

    from hazardwatch.probe import probe_all

    results = probe_all(settings(), timeout=timeout)
    table = Table("service", "address", "state", "detail")
    bad = False
    for r in results:
        colour = {"up": "green", "down": "red", "not configured": "dim"}[r.state]
        table.add_row(r.service, r.address, f"[{colour}]{r.state}[/]", r.detail)
        bad |= r.state == "down"
    Console().print(table)
    if bad:
        raise typer.Exit(1)


# Subcommand groups owned by each area live in hazardwatch/commands/<area>.py and expose
# `register(app)`.
COMMAND_MODULES = (
    "hazardwatch.commands.ingest",
    "hazardwatch.commands.rules",
    "hazardwatch.commands.replay",
    "hazardwatch.commands.alerts",
    "hazardwatch.commands.dashboards",
    "hazardwatch.commands.run",
    "hazardwatch.commands.sim",
    "hazardwatch.commands.access",
)

# A missing module is an installation error: fail loudly rather than lose its commands.
for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (tests call this directly)."""
    try:
        rc = app(args=argv, prog_name="hazardwatch", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:  # click usage errors
        return int(exc.code or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Usage errors (typer bundles its own click): show them the way click does.
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            return exc.exit_code
        if type(exc).__name__ == "Abort":
            return 1
        if STATE.debug:
            raise
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        typer.echo("hint: run with --debug for the traceback", err=True)
        return 1
    return rc if isinstance(rc, int) else 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
