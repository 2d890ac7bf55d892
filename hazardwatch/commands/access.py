"""Access-control commands: `hazardwatch mqtt acl` writes the Mosquitto ACL and password files
from the point registry (one login per gateway, publishing only under its own enterprise and
gateway). Passwords come from a chmod-600 file or the environment and are never printed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from hazardwatch.cli import fail, settings

mqtt_app = typer.Typer(help="MQTT broker access control.", no_args_is_help=True)


@mqtt_app.command("acl")
def mqtt_acl(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for `acl` and `passwd` (chmod 600).")
    ],
    registry: Annotated[
        Path | None,
        typer.Option("--registry", "-r", help="Point registry CSV/YAML (default: rules.registry)."),
    ] = None,
    passwords: Annotated[
        Path | None,
        typer.Option(
            "--passwords",
            help="File of `login:password` lines, readable only by its owner (chmod 600).",
        ),
    ] = None,
    env_prefix: Annotated[
        str,
        typer.Option(
            "--password-env-prefix",
            help="Else a login's password is in $<PREFIX><LOGIN> (upper case, non-alphanumerics "
            "as _), e.g. MQTT_PASSWORD_E001_GW01.",
        ),
    ] = "MQTT_PASSWORD_",
    service_user: Annotated[
        str | None,
        typer.Option(help="The hazardwatch service login (default: mqtt.username or hazardwatch)."),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Topic prefix (default: mqtt.topic_prefix).")
    ] = None,
    generate_missing: Annotated[
        bool,
        typer.Option(
            "--generate-missing",
            help="Make up passwords for logins without one and write them to "
            "<out>/generated-passwords (chmod 600) for the gateways' installers.",
        ),
    ] = False,
) -> None:
    """Generate the Mosquitto ACL and password files from the point registry: each gateway
    logs in as `<enterprise>.<gateway>` and may publish only under
    `<prefix>/<enterprise>/<gateway>/#`; the service login reads everything and writes dead
    letters. Point Mosquitto's `acl_file` and `password_file` at the results."""
    from rich.console import Console
    from rich.table import Table

    from hazardwatch.access import (
        DEFAULT_SERVICE_USER,
        AccessError,
        env_var_for,
        plan_users,
        read_password_file,
        resolve_passwords,
        write_access_files,
    )
    from ingest.registry import RegistryError, load_registry

    s = settings()
    reg_path = registry or s.rules.registry
    if reg_path is None:
        raise fail(
            "no point registry given",
            hint="pass --registry FILE or set rules.registry in hazardwatch.toml",
        )
    try:
        reg = load_registry(reg_path)
    except RegistryError as exc:
        raise fail(str(exc), code=1) from None
    service = service_user or s.mqtt.username or DEFAULT_SERVICE_USER
    try:
        users = plan_users(
            reg,
            prefix=prefix or s.mqtt.topic_prefix,
            service_user=service,
            dead_letter_topic=s.mqtt.dead_letter_topic,
        )
        entries = read_password_file(passwords) if passwords is not None else {}
        fallback = {}
        if s.mqtt.password is not None and s.mqtt.password.get_secret_value():
            fallback[service] = s.mqtt.password.get_secret_value()
        pw, generated = resolve_passwords(
            users,
            file_entries=entries,
            environ=os.environ,
            env_prefix=env_prefix,
            fallback=fallback,
            generate_missing=generate_missing,
        )
        files = write_access_files(
            out,
            users,
            pw,
            source=str(reg_path),
            version=reg.version,
            generated_users=generated,
        )
    except AccessError as exc:
        n = len(exc.problems)
        raise fail(
            f"cannot generate MQTT access files ({n} problem(s)):\n  " + "\n  ".join(exc.problems),
            hint=f"passwords come from --passwords FILE or ${env_var_for('<LOGIN>', env_prefix)}"
            "; --generate-missing makes up the missing ones",
            code=1,
        ) from None
    table = Table("login", "kind", "may publish", "may read", "points", "password from")
    for u in files.users:
        origin = (
            "generated"
            if u.name in generated
            else "file"
            if u.name in entries
            else f"${env_var_for(u.name, env_prefix)}"
            if os.environ.get(env_var_for(u.name, env_prefix))
            else "mqtt.password"
        )
        table.add_row(
            u.name,
            str(u.kind),
            " ".join(u.write),
            " ".join(u.read) or "-",
            "all" if u.kind == "service" else str(u.points),
            origin,
        )
    Console().print(table)
    typer.echo(
        f"wrote {files.acl} and {files.passwd} (chmod 600) for {len(files.users)} login(s)"
        + (
            f"; {len(generated)} generated password(s) in {files.generated}"
            if files.generated
            else ""
        )
    )


def register(app: typer.Typer) -> None:
    app.add_typer(mqtt_app, name="mqtt")
