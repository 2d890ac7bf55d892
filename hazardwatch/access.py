"""MQTT access control generated from the point registry: a Mosquitto ACL file in which each
gateway may publish only under `<prefix>/<its enterprise>/<its gateway>/#` and the hazardwatch
service user reads everything and writes dead letters, and a password file hashed by
`mosquitto_passwd` from passwords kept in a restricted file or in the environment.

Planning and rendering are pure (`plan_users`, `render_acl`, `resolve_passwords`); only
`read_password_file` and `write_access_files` touch the disk. No function here puts a password
in a message, an exception or a process's command line.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ingest.model import Registry

DEFAULT_ENV_PREFIX = "MQTT_PASSWORD_"
DEFAULT_SERVICE_USER = "hazardwatch"
HASH_TOOL = "mosquitto_passwd"  # the program, on PATH
# Mosquitto's password file is `user:hash` and its ACL file is whitespace-separated: a name
# must not contain ':' or white space. Registry codes already exclude '/', '+', '#', spaces.
_BAD_NAME = re.compile(r"[:\s]")


class AccessError(Exception):
    """The ACL or password file cannot be generated; the message lists every problem, one per
    line, and never contains a password."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class UserKind(StrEnum):
    SERVICE = "service"
    GATEWAY = "gateway"
    # Points registered without a gateway may arrive through any gateway of their enterprise
    # (ingest.normalize), so such an enterprise gets one login for its whole subtree.
    ENTERPRISE = "enterprise"


@dataclass(frozen=True, slots=True)
class MqttUser:
    """One broker login and the topics it may use (Mosquitto ACL topic filters)."""

    name: str
    kind: UserKind
    enterprise_code: str = ""
    gateway_code: str = ""
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    points: int = 0


@dataclass(frozen=True, slots=True)
class AccessFiles:
    acl: Path
    passwd: Path
    users: tuple[MqttUser, ...]
    generated: Path | None = None  # passwords made up for users that had none (chmod 600)
    generated_users: tuple[str, ...] = field(default=())


def gateway_username(enterprise_code: str, gateway_code: str) -> str:
    """The login of one gateway: `<enterprise>.<gateway>` (an enterprise-wide login, for points
    registered without a gateway, is the enterprise code alone)."""
    return f"{enterprise_code}.{gateway_code}" if gateway_code else enterprise_code


def plan_users(
    registry: Registry,
    *,
    prefix: str = "hw",
    service_user: str = DEFAULT_SERVICE_USER,
    dead_letter_topic: str = "hw/_deadletter",
) -> list[MqttUser]:
    """The service user first, then one login per (enterprise, gateway) of the registry in
    registry order. Raises `AccessError` listing every name Mosquitto could not take and every
    two gateways whose logins would be the same."""
    problems: list[str] = []
    if not prefix or any(c in prefix for c in "+#") or prefix.strip("/") != prefix:
        problems.append(f"topic prefix {prefix!r}: expected a plain prefix such as 'hw'")
    if not service_user or _BAD_NAME.search(service_user):
        problems.append(f"service user {service_user!r}: expected a name without ':' or spaces")
    if not dead_letter_topic or any(c in dead_letter_topic for c in "+#"):
        problems.append(f"dead-letter topic {dead_letter_topic!r}: expected a topic, no wildcards")
    users = [
        MqttUser(
            service_user,
            UserKind.SERVICE,
            # Ingest subscribes to every enterprise; `#` does not match `$SYS/...`.
            read=("#",),
            write=(dead_letter_topic,),
        )
    ]
    owner: dict[str, tuple[str, str]] = {service_user: ("", "")}
    for (ent, gw), pts in registry.gateways().items():
        name = gateway_username(ent, gw)
        where = f"enterprise {ent!r} gateway {gw!r}" if gw else f"enterprise {ent!r} (no gateway)"
        if _BAD_NAME.search(name):
            problems.append(f"{where}: login {name!r} would contain ':' or white space")
            continue
        if name in owner:
            other = owner[name]
            first = (
                "the service user"
                if other == ("", "")
                else f"enterprise {other[0]!r} gateway {other[1]!r}"
            )
            problems.append(
                f"{where}: login {name!r} is already used by {first}; rename one of the codes"
            )
            continue
        owner[name] = (ent, gw)
        subtree = f"{prefix}/{ent}/{gw}/#" if gw else f"{prefix}/{ent}/#"
        users.append(
            MqttUser(
                name,
                UserKind.GATEWAY if gw else UserKind.ENTERPRISE,
                enterprise_code=ent,
                gateway_code=gw,
                write=(subtree,),
                points=len(pts),
            )
        )
    if problems:
        raise AccessError(problems)
    return users


def render_acl(users: Iterable[MqttUser], *, source: str = "", version: str = "") -> str:
    """The Mosquitto ACL file. Nothing matches a login that is not listed, so anything not
    granted here is refused (MQTT 5: PUBACK/SUBACK reason 0x87 'not authorized')."""
    lines = [
        "# Mosquitto ACL generated by `hazardwatch mqtt acl` -- regenerate, do not edit.",
        f"# registry: {source or '-'} (version {version or '-'})",
        "# Each gateway may publish only under its own enterprise and gateway; no `pattern`",
        "# lines, so a login not listed here may do nothing.",
        "",
    ]
    for u in users:
        if u.kind is UserKind.SERVICE:
            lines.append("# hazardwatch: reads all site data, writes dead letters")
        else:
            lines.append(f"# {u.kind}: {u.points} point(s)")
        lines.append(f"user {u.name}")
        both = set(u.read) & set(u.write)
        for t in u.read:
            lines.append(f"topic {'readwrite' if t in both else 'read'} {t}")
        for t in u.write:
            if t not in both:
                lines.append(f"topic write {t}")
        lines.append("")
    return "\n".join(lines)


def env_var_for(username: str, env_prefix: str = DEFAULT_ENV_PREFIX) -> str:
    """`E001.GW-01` -> `MQTT_PASSWORD_E001_GW_01`: upper case, anything but letters and digits
    becomes `_` (what a shell variable name may hold)."""
    return env_prefix + re.sub(r"[^A-Za-z0-9]", "_", username).upper()


def read_password_file(path: Path) -> dict[str, str]:
    """`user:password` lines (`#` comments and blank lines ignored) from a file only its owner
    may read; the first ':' separates (a ':' in a password is refused later, see
    `resolve_passwords`)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise AccessError([f"{path}: cannot read the password file: {exc.strerror}"]) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AccessError(
            [
                f"{path}: the password file is readable by group or others "
                f"(mode {stat.filemode(mode)}); expected chmod 600"
            ]
        )
    out: dict[str, str] = {}
    problems: list[str] = []
    text = path.read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        user, sep, pw = s.partition(":")
        user = user.strip()
        if not sep or not user or not pw:
            problems.append(f"{path}:{n}: expected `user:password`")  # the line is not echoed
            continue
        if user in out:
            problems.append(f"{path}:{n}: user {user!r} appears twice")
        out[user] = pw
    if problems:
        raise AccessError(problems)
    return out


def resolve_passwords(
    users: Iterable[MqttUser],
    *,
    file_entries: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    env_prefix: str = DEFAULT_ENV_PREFIX,
    fallback: Mapping[str, str] | None = None,
    generate_missing: bool = False,
) -> tuple[dict[str, str], list[str]]:
    """Password per login, looked up in order: the password file, the environment variable
    `env_var_for(name, env_prefix)`, `fallback` (the service's own `mqtt.password`). Missing
    ones are generated when `generate_missing`, else `AccessError` names each login and the
    variable it was looked up in. Returns (passwords, logins whose password was generated)."""
    file_entries = file_entries or {}
    environ = os.environ if environ is None else environ
    fallback = fallback or {}
    users = list(users)
    problems: list[str] = []
    by_var: dict[str, str] = {}
    for u in users:
        var = env_var_for(u.name, env_prefix)
        if var in by_var:
            problems.append(
                f"logins {by_var[var]!r} and {u.name!r} share the variable {var}; "
                "give them passwords in the password file instead"
            )
        by_var[var] = u.name
    known = {u.name for u in users}
    for name in sorted(set(file_entries) - known):
        problems.append(f"password file: {name!r} is not a login of this registry")
    out: dict[str, str] = {}
    generated: list[str] = []
    missing: list[str] = []
    for u in users:
        var = env_var_for(u.name, env_prefix)
        pw = file_entries.get(u.name) or environ.get(var) or fallback.get(u.name)
        if not pw:
            if generate_missing:
                pw = secrets.token_urlsafe(18)
                generated.append(u.name)
            else:
                missing.append(f"no password for {u.name!r} (password file, or ${var})")
                continue
        if any(c in pw for c in "\r\n\0"):
            problems.append(f"the password of {u.name!r} contains a line break or NUL")
            continue
        if ":" in pw:
            # mosquitto_passwd -U (2.0) hashes only the part before a second ':' of a line,
            # so the broker would silently expect another password.
            problems.append(f"the password of {u.name!r} contains ':'; Mosquitto cannot take it")
            continue
        out[u.name] = pw
    problems.extend(missing)
    if problems:
        raise AccessError(problems)
    return out, generated


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 600 from the first byte, replacing it atomically."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hash_password_file(path: Path, hash_tool: str = HASH_TOOL) -> None:
    """Hash a plain `user:password` file in place with `mosquitto_passwd -U`: passwords go
    through the file (mode 600), never through a command line that `ps` would show."""
    exe = shutil.which(hash_tool)
    if exe is None:
        raise AccessError(
            [
                f"{hash_tool} not found; install Mosquitto's tools "
                "(Debian: apt-get install mosquitto)"
            ]
        )
    r = subprocess.run([exe, "-U", str(path)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        # Its messages name the file and the problem, not the password.
        detail = (r.stderr or r.stdout).strip().splitlines()
        raise AccessError([f"mosquitto_passwd -U {path} failed: {' '.join(detail[:3])}"])


def write_access_files(
    out_dir: Path,
    users: Iterable[MqttUser],
    passwords: Mapping[str, str],
    *,
    source: str = "",
    version: str = "",
    generated_users: Iterable[str] = (),
    hash_tool: str = HASH_TOOL,
) -> AccessFiles:
    """Write `<out_dir>/acl` and `<out_dir>/passwd` (hashed), both chmod 600, and, if any
    password was generated, `<out_dir>/generated-passwords` (plain `user:password`, chmod 600)
    to hand to the gateways' installers."""
    users = tuple(users)
    missing = [u.name for u in users if u.name not in passwords]
    if missing:
        raise AccessError([f"no password for {n!r}" for n in missing])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    acl = out_dir / "acl"
    passwd = out_dir / "passwd"
    # Hash into a private temporary file first: a failed run leaves the old passwd in place.
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=".passwd.")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for u in users:
                f.write(f"{u.name}:{passwords[u.name]}\n")
        hash_password_file(tmp, hash_tool)
        tmp.chmod(0o600)
        os.replace(tmp, passwd)
    finally:
        tmp.unlink(missing_ok=True)
    _write_private(acl, render_acl(users, source=source, version=version))
    gen = tuple(generated_users)
    gen_path = None
    if gen:
        gen_path = out_dir / "generated-passwords"
        _write_private(
            gen_path,
            "# passwords generated by `hazardwatch mqtt acl`; give each gateway its own, then\n"
            "# keep this file offline or delete it\n"
            + "".join(f"{n}:{passwords[n]}\n" for n in gen),
        )
    return AccessFiles(acl, passwd, users, gen_path, gen)


__all__ = [
    "DEFAULT_ENV_PREFIX",
    "DEFAULT_SERVICE_USER",
    "AccessError",
    "AccessFiles",
    "MqttUser",
    "UserKind",
    "env_var_for",
    "gateway_username",
    "hash_password_file",
    "plan_users",
    "read_password_file",
    "render_acl",
    "resolve_passwords",
    "write_access_files",
]
