"""HTTPS for the alerts API: `api.tls_cert_file`/`api.tls_key_file` through
`hazardwatch.tls.uvicorn_ssl_kwargs` into uvicorn, with a throwaway CA made in the test. A
client that trusts the CA gets its alarms over HTTPS (bearer token and all); one that does not
is refused by certificate verification; plain HTTP gets no answer; bad settings are one clear
line naming the setting, never the key password."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from hazardwatch.settings import load_settings
from hazardwatch.tls import TlsError, api_scheme, uvicorn_ssl_kwargs
from tests.integration.test_api_fixtures import ADMIN, build_world
from tests.pki import ca_and_server_cert

pytestmark = pytest.mark.integration


def _settings(**api):
    return load_settings(None, environ={}, api=api)


@pytest.fixture(autouse=True)
def _no_checkout_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a hazardwatch.toml in the working directory would apply


def _trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class _Served:
    def __init__(self, app, **ssl_kwargs) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_config=None, lifespan="off", **ssl_kwargs)
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture
def world(tmp_path: Path):
    w = build_world(tmp_path / "alerts.sqlite")
    yield w
    w.store.close()


def test_api_over_https_verifies_with_the_ca_and_refuses_plain_http(tmp_path: Path, world):
    pki = ca_and_server_cert(tmp_path, "api")
    other = ca_and_server_cert(tmp_path, "other")
    s = _settings(tls_cert_file=pki["cert"], tls_key_file=pki["key"])
    kwargs = uvicorn_ssl_kwargs(s)
    assert kwargs == {"ssl_certfile": str(pki["cert"]), "ssl_keyfile": str(pki["key"])}
    assert api_scheme(s) == "https"
    with _Served(world.app(), **kwargs) as srv:
        url = f"https://127.0.0.1:{srv.port}/api/v1/alarms"
        r = httpx.get(
            url, headers={"Authorization": ADMIN}, verify=_trusting(pki["ca"]), timeout=10
        )
        assert r.status_code == 200
        assert {a["alarm_id"] for a in r.json()["items"]} >= {"a-e001-1", "a-e002-1"}
        # A client that does not trust this CA refuses the server (no silent downgrade).
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(
                url, headers={"Authorization": ADMIN}, verify=_trusting(other["ca"]), timeout=10
            )
        # Plain HTTP on the TLS port gets no HTTP answer at all.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{srv.port}/api/v1/health", timeout=5)


def test_encrypted_key_with_its_password(tmp_path: Path, world):
    pki = ca_and_server_cert(tmp_path, "enc", key_password="k3y-pass-SECRET")
    s = _settings(
        tls_cert_file=pki["cert"],
        tls_key_file=pki["key"],
        tls_key_password="k3y-pass-SECRET",
    )
    kwargs = uvicorn_ssl_kwargs(s)
    assert kwargs["ssl_keyfile_password"] == "k3y-pass-SECRET"
    with _Served(world.app(), **kwargs) as srv:
        r = httpx.get(
            f"https://127.0.0.1:{srv.port}/api/v1/health", verify=_trusting(pki["ca"]), timeout=10
        )
        assert r.status_code == 200
    wrong = _settings(tls_cert_file=pki["cert"], tls_key_file=pki["key"], tls_key_password="nope")
    with pytest.raises(TlsError) as e:
        uvicorn_ssl_kwargs(wrong)
    assert "not a usable pair" in str(e.value) and "tls_key_password" in str(e.value)
    assert "nope" not in str(e.value) and "SECRET" not in str(e.value)
    # No password for an encrypted key: an error, not a prompt on the terminal.
    with pytest.raises(TlsError, match="not a usable pair"):
        uvicorn_ssl_kwargs(_settings(tls_cert_file=pki["cert"], tls_key_file=pki["key"]))


def test_bad_tls_settings_are_one_clear_error(tmp_path: Path):
    pki = ca_and_server_cert(tmp_path, "bad")
    other = ca_and_server_cert(tmp_path, "mismatch")
    assert uvicorn_ssl_kwargs(_settings()) == {}
    assert api_scheme(_settings()) == "http"
    cases = [
        ({"tls_cert_file": pki["cert"]}, "api.tls_key_file is not set"),
        ({"tls_key_file": pki["key"]}, "api.tls_cert_file is not set"),
        (
            {"tls_cert_file": tmp_path / "nope.crt", "tls_key_file": pki["key"]},
            "api.tls_cert_file: cannot read",
        ),
        ({"tls_cert_file": pki["cert"], "tls_key_file": other["key"]}, "not a usable pair"),
        ({"tls_cert_file": pki["cert"], "tls_key_file": tmp_path}, "is not a file"),
    ]
    for api, msg in cases:
        with pytest.raises(TlsError, match=msg):
            uvicorn_ssl_kwargs(_settings(**api))
    pki["key"].chmod(0o644)
    with pytest.raises(TlsError, match=r"readable by group or others .*expected chmod 600"):
        uvicorn_ssl_kwargs(_settings(tls_cert_file=pki["cert"], tls_key_file=pki["key"]))


def test_the_runner_serves_the_api_over_https_when_configured(tmp_path: Path, world):
    """`hazardwatch run` starts the API through wiring.start_api: with the TLS settings it
    answers on https (and says so in its URL); a bad pair stops it with one clear error."""
    from hazardwatch.wiring import WiringError, start_api

    pki = ca_and_server_cert(tmp_path, "run")
    with socket.socket() as probe:  # a free loopback port for api.port (which must be >= 1)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = _settings(tls_cert_file=pki["cert"], tls_key_file=pki["key"], port=port)
    server = start_api(s, world.service, world.store)
    try:
        assert server.url.startswith("https://")
        r = httpx.get(f"{server.url}/api/v1/health", verify=_trusting(pki["ca"]), timeout=10)
        assert r.status_code == 200
    finally:
        server.stop()
    other = ca_and_server_cert(tmp_path, "other2")
    with pytest.raises(WiringError, match="not a usable pair"):
        start_api(
            _settings(tls_cert_file=pki["cert"], tls_key_file=other["key"], port=port),
            world.service,
            world.store,
        )
