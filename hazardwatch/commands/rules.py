"""`hazardwatch rules ...`: `check` (schema, registry references and the compliance lint --
the same loader the service runs) and `schema` (the published JSON Schema of rule files).
rules-tooling adds `test` and `diff` to `rules_app` from its own module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hazardwatch.cli import fail, settings

rules_app = typer.Typer(help="Rule files: check, schema, test, diff.", no_args_is_help=True)


def _pack_option(values: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values or []:
        name, sep, version = v.partition("=")
        if not sep or not name or not version:
            raise fail(f"--pack {v!r}: expected NAME=VERSION", hint="e.g. --pack gbt50493=2019")
        out[name.strip()] = version.strip()
    return out


@rules_app.command("check")
def rules_check(
    registry: Annotated[
        Path | None,
        typer.Option("--registry", "-r", help="Point registry (default: rules.registry)."),
    ] = None,
    rules: Annotated[
        Path | None,
        typer.Option(
            "--rules",
            help="Directory of rule files (default: rules.rules_dir; "
            "without one the standard packs alone are checked).",
        ),
    ] = None,
    pack: Annotated[
        list[str] | None,
        typer.Option("--pack", help="Standard pack version NAME=VERSION (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check rule files against the schema and the registry, and lint compliance: gas set
    points not above GB/T 50493, every point covered by a limit and an offline rule.
    Exit 1 when there is any problem."""
    from ingest.registry import RegistryError, load_registry
    from rules.lint import compliance_problems
    from rules.loader import RuleFileError, load_ruleset

    s = settings()
    reg_path = registry or s.rules.registry
    if reg_path is None:
        raise fail(
            "no point registry given",
            hint="pass --registry FILE or set rules.registry in hazardwatch.toml",
        )
    rules_dir = rules if rules is not None else s.rules.rules_dir
    versions = {**s.rules.standard_pack_versions, **_pack_option(pack)}
    try:
        reg = load_registry(reg_path)
    except RegistryError as exc:
        raise fail(
            str(exc), hint="fix the registry first (hazardwatch registry check)", code=1
        ) from None
    except OSError as exc:
        raise fail(f"cannot read registry {reg_path}: {exc.strerror}") from None
    ruleset = None
    try:
        ruleset = load_ruleset(rules_dir, reg, pack_versions=versions or None)
        problems = compliance_problems(ruleset, reg, str(reg_path))
    except RuleFileError as exc:
        problems = exc.problems
    if as_json:
        out: dict[str, Any] = {
            "ok": not problems,
            "registry": str(reg_path),
            "rules": str(rules_dir) if rules_dir else None,
            "ruleset": ruleset.version if ruleset else None,
            "packs": dict(ruleset.packs) if ruleset else None,
            "problems": [
                {
                    "file": p.file,
                    "path": p.path,
                    "expected": p.expected,
                    "got": p.got,
                    "message": p.message,
                }
                for p in problems
            ],
        }
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        for p in problems:
            typer.echo(p.message)
        if problems:
            typer.secho(f"{len(problems)} problem(s)", err=True, fg=typer.colors.RED)
        elif ruleset is not None:
            packs = ", ".join(f"{k} {v}" for k, v in ruleset.packs.items())
            typer.echo(
                f"rules OK: {len(reg)} points, {len(ruleset.files)} rule file(s), "
                f"packs {packs}; ruleset {ruleset.version}"
            )
    if problems:
        raise typer.Exit(1)


@rules_app.command("schema")
def rules_schema(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to a file.")] = None,
) -> None:
    """Print the JSON Schema of rule files (for editor completion and CI checks)."""
    from rules.schema import json_schema_text

    text = json_schema_text()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")
