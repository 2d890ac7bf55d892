"""One shared test, run against EVERY channel, proving no secret (HMAC secret, robot key, SMS
AccessKeySecret/SecretKey, webhook token, WeChat AppSecret and access token) reaches a verdict
reason or a log line — including the error paths where the request URL carries the key and the
provider echoes the whole request back (after Alertmanager's notifier secret test)."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from .conftest import KINDS, WECHAT_TOKEN, build


def _echo(request: httpx.Request) -> str:
    """Everything the request carried: URL (query included), headers and body."""
    headers = "; ".join(f"{k}: {v}" for k, v in request.headers.items())
    return f"{request.method} {request.url} [{headers}] {request.content.decode(errors='replace')}"


def _error_doc(echo: str) -> dict:
    # One answer in every provider's error shape at once, each quoting the request.
    return {
        "errcode": 40058,
        "errmsg": echo,
        "Code": "SignatureDoesNotMatch",
        "Message": echo,
        "Response": {"Error": {"Code": "AuthFailure.SignatureFailure", "Message": echo}},
    }


def _raise_connect(r: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError(f"connection refused: {_echo(r)}", request=r)


def _raise_timeout(r: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout(f"timed out reading {r.url}", request=r)


SCENARIOS = {
    "500 echoing the request": lambda r: httpx.Response(500, text=_echo(r)),
    "400 echoing the request": lambda r: httpx.Response(400, text=_echo(r)),
    "429 echoing the request": lambda r: httpx.Response(
        429, text=_echo(r), headers={"Retry-After": "7"}
    ),
    "200 provider error quoting the request": lambda r: httpx.Response(
        200, json=_error_doc(_echo(r))
    ),
    "200 unreadable body quoting the request": lambda r: httpx.Response(200, text=_echo(r)),
    "200 JSON of the wrong shape quoting the request": lambda r: httpx.Response(
        200, json=[_echo(r)]
    ),
    "connection refused naming the URL": _raise_connect,
    "timeout naming the URL": _raise_timeout,
}


def _with_token(inner):
    """WeChat first fetches a token; give it one so the send path (token in URL) runs too."""

    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/cgi-bin/token"):
            return httpx.Response(200, json={"access_token": WECHAT_TOKEN, "expires_in": 7200})
        return inner(r)

    return handler


@pytest.mark.parametrize("token_first", [False, True], ids=["raw", "token-issued"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("kind", KINDS)
def test_no_channel_leaks_a_secret(kind, scenario, token_first, caplog):
    handler = SCENARIOS[scenario]
    if token_first:
        handler = _with_token(handler)
    wired = build(kind, "https://provider.example", transport=httpx.MockTransport(handler))
    caplog.set_level(logging.DEBUG)

    verdicts = [wired.channel.send(wired.notification) for _ in range(2)]

    shown = json.dumps([repr(v) for v in verdicts]) + "\n" + caplog.text
    shown += "\n".join(r.getMessage() for r in caplog.records)
    for secret in wired.secrets:
        assert secret not in shown, f"{kind}/{scenario}: secret leaked"
    # Redaction must not hide what happened: every failure still says why.
    for v in verdicts:
        assert v.ok or v.reason, f"{kind}/{scenario}: failure without a reason"


@pytest.mark.parametrize("kind", KINDS)
def test_misconfigured_channels_name_the_setting_not_the_secret(kind, caplog):
    """A channel missing part of its configuration gives up with a reason naming what is
    missing; the parts it does hold stay out of the message."""
    wired = build(
        kind,
        "https://provider.example",
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    n = wired.notification
    if kind == "wecom":
        n = n.__class__(
            **{**{f: getattr(n, f) for f in n.__struct_fields__}, "recipient": "unknown-robot"}
        )
        v = wired.channel.send(n)
        assert not v.ok and not v.retryable
        assert "unknown-robot" in v.reason and "qj001-duty" in v.reason
    else:
        # Blank the non-secret half of the credentials.
        for attr in ("url", "access_key_id", "secret_id", "app_id"):
            if hasattr(wired.channel, attr):
                setattr(wired.channel, attr, "")
        v = wired.channel.send(n)
        assert not v.ok and not v.retryable, v
    for secret in wired.secrets:
        assert secret not in v.reason and secret not in caplog.text
