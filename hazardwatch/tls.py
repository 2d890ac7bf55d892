"""HTTPS for the alerts API: checks `api.tls_cert_file`/`api.tls_key_file` (both or neither, the
key readable only by its owner, the certificate and key a matching pair) and turns them into
the keyword arguments `uvicorn.Config` takes. Errors name the setting and the file, never the
key password.

    config = uvicorn.Config(app, ..., **uvicorn_ssl_kwargs(settings))
"""

from __future__ import annotations

import ssl
import stat
from pathlib import Path
from typing import Any

from hazardwatch.settings import ApiSettings, Settings


class TlsError(Exception):
    """The API's TLS settings cannot be used; the message says which setting and why."""


def _api(settings: Settings | ApiSettings) -> ApiSettings:
    return settings.api if isinstance(settings, Settings) else settings


def tls_enabled(settings: Settings | ApiSettings) -> bool:
    api = _api(settings)
    return api.tls_cert_file is not None or api.tls_key_file is not None


def api_scheme(settings: Settings | ApiSettings) -> str:
    """`https` when the API serves TLS, else `http` (for URLs the process prints)."""
    return "https" if tls_enabled(settings) else "http"


def uvicorn_ssl_kwargs(settings: Settings | ApiSettings) -> dict[str, Any]:
    """`{}` when TLS is off; else `ssl_certfile`, `ssl_keyfile` (and `ssl_keyfile_password`)
    for `uvicorn.Config`, after checking the files so that a bad setting is one clear error at
    start-up rather than a traceback inside uvicorn. Python's default server context applies
    (TLS 1.2 or newer, no client certificate)."""
    api = _api(settings)
    if not tls_enabled(api):
        return {}
    if api.tls_cert_file is None or api.tls_key_file is None:
        missing = "api.tls_key_file" if api.tls_key_file is None else "api.tls_cert_file"
        raise TlsError(
            f"{missing} is not set: HTTPS needs both api.tls_cert_file and api.tls_key_file"
        )
    cert, key = Path(api.tls_cert_file), Path(api.tls_key_file)
    for name, p in (("api.tls_cert_file", cert), ("api.tls_key_file", key)):
        try:
            mode = p.stat().st_mode
        except OSError as exc:
            raise TlsError(f"{name}: cannot read {p}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise TlsError(f"{name}: {p} is not a file")
    key_mode = key.stat().st_mode
    if key_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise TlsError(
            f"api.tls_key_file: {key} is readable by group or others "
            f"(mode {stat.filemode(key_mode)}); expected chmod 600"
        )
    password = api.tls_key_password.get_secret_value() if api.tls_key_password is not None else None
    # Load the pair once here: a wrong key, a bad PEM or a wrong password fails now, named.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # Always a callback: without one OpenSSL would prompt on the terminal for the
        # password of an encrypted key and hang a service.
        ctx.load_cert_chain(cert, key, lambda: password or "")
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or exc.__class__.__name__
        raise TlsError(
            f"api.tls_cert_file {cert} and api.tls_key_file {key} are not a usable pair "
            f"({reason}); expected a PEM certificate chain and its private key"
            + (" (is api.tls_key_password right?)" if password else "")
        ) from None
    kwargs: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    if password:
        kwargs["ssl_keyfile_password"] = password
    return kwargs


__all__ = ["TlsError", "api_scheme", "tls_enabled", "uvicorn_ssl_kwargs"]
