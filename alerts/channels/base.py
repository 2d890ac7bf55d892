"""The one small interface every notification channel implements, the shared HTTP-status ->
verdict table, and the plumbing HTTP channels share (an injectable httpx transport, exception
translation, secret scrubbing). Channels do I/O; the outbox decides what to do with a verdict.

Errors raised inside a channel (never outside it: `send` always returns a `Verdict`)::

    ChannelError                 base; `retryable` and `retry_after_s` drive the verdict
    ├── ChannelUnavailable       timeout, connection refused/reset, DNS, TLS: retry
    ├── ChannelRateLimited       the provider said "too many" (429, WeCom 45009, ...): retry
    │                            after `retry_after_s`
    ├── ChannelRejected          the provider refused this message (bad number, template,
    │                            signature): retrying the same request cannot help
    └── ChannelMisconfigured     our side is wrong (no key for a robot, missing template
                                 parameter): give up and tell the operators
"""

from __future__ import annotations

import email.utils
import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import httpx

from alerts.model import Notification, Verdict

log = logging.getLogger("alerts.channels")

REDACTED = "********"

#: Statuses that mean "not now" rather than "never" (RFC 9110: 408 Request Timeout, 425 Too
#: Early, 429 Too Many Requests; every 5xx is the server's own trouble).
RETRYABLE_4XX = frozenset({408, 425, 429})

#: How much of a response body a verdict reason quotes (enough for an error code).
BODY_SNIPPET = 200

Clock = Callable[[], float]  # seconds since the epoch; tests pass a fixed or stepped clock


@runtime_checkable
class Channel(Protocol):
    """A way to deliver a `Notification`.

    `send` is synchronous, never raises for delivery problems, and returns a `Verdict`:
    delivered, or failed and worth retrying or not (with `retry_after_s` when the other side
    said when). `rate_limit` is `(messages, per_seconds)` per recipient (e.g. per WeCom robot)
    or None; the outbox buckets and digests to stay within it.
    """

    name: str
    rate_limit: tuple[int, float] | None

    def send(self, n: Notification) -> Verdict: ...


class ChannelError(Exception):
    """Base of the errors a channel raises internally and turns into a `Verdict`."""

    retryable = False

    def __init__(self, reason: str, status: int | None = None, retry_after_s: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s

    def verdict(self) -> Verdict:
        if self.retryable:
            return Verdict.retry(self.reason, status=self.status, retry_after_s=self.retry_after_s)
        return Verdict.give_up(self.reason, status=self.status)


class ChannelUnavailable(ChannelError):
    retryable = True


class ChannelRateLimited(ChannelError):
    retryable = True


class ChannelRejected(ChannelError):
    retryable = False


class ChannelMisconfigured(ChannelError):
    retryable = False


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date (RFC 9110
    §10.2.3). None when absent or unreadable; never negative."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def classify_http(
    status: int,
    body: str = "",
    retry_after: str | None = None,
    now: float | None = None,
) -> Verdict:
    """The shared table: 2xx delivered; 408/425/429 and 5xx retry (honouring Retry-After);
    any other status (1xx, 3xx, other 4xx) gives up. The reason quotes the start of the body so
    an operator can see the provider's error code; callers scrub secrets from it."""
    if 200 <= status < 300:
        return Verdict.delivered(status)
    snippet = " ".join(body.split())[:BODY_SNIPPET]
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status in RETRYABLE_4XX or 500 <= status < 600:
        wait = parse_retry_after(retry_after, time.time() if now is None else now)
        return Verdict.retry(reason, status=status, retry_after_s=wait)
    return Verdict.give_up(reason, status=status)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (longest first, so one containing another goes whole) replaced;
    secrets shorter than 4 characters are ignored (they would mangle ordinary words)."""
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text


_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")


class _HttpxQueryFilter(logging.Filter):
    """httpx logs every request URL at INFO; a WeCom key or a WeChat token rides in the query
    string, so the query is cut from httpx's log lines before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if "?" in msg:
            record.msg = _QUERY.sub(r"\1?" + REDACTED, msg)
            record.args = None
        return True


for _name in ("httpx", "httpcore"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _HttpxQueryFilter) for f in _logger.filters):
        _logger.addFilter(_HttpxQueryFilter())


def _describe_transport_error(exc: httpx.HTTPError) -> str:
    """A reason for a transport failure that names its kind but not the URL (the URL may carry
    a robot key or an access token in its query string)."""
    kind = type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({kind})"
    return f"could not reach the service ({kind})"


class HttpChannel:
    """Plumbing shared by the HTTP channels: one `httpx.Client` with timeouts (transport
    injectable for tests), translation of httpx exceptions into `ChannelError`, and one place
    where every reason and log line is scrubbed of this channel's secrets."""

    name = "http"
    rate_limit: tuple[int, float] | None = None

    def __init__(
        self,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.clock = clock
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            follow_redirects=False,  # a redirect may leak the signed request elsewhere
            trust_env=False,  # never route alarms through a proxy picked up from the env
        )

    # Subclasses list every secret they hold (keys, tokens, signing secrets, URLs with keys).
    def secrets(self) -> list[str]:
        return []

    def deliver(self, n: Notification) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def send(self, n: Notification) -> Verdict:
        try:
            verdict = self.deliver(n)
        except ChannelError as exc:
            verdict = exc.verdict()
        except httpx.HTTPError as exc:
            verdict = Verdict.retry(_describe_transport_error(exc))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError, UnicodeError) as exc:
            # A provider answering with something we cannot read is a provider problem.
            verdict = Verdict.retry(f"unreadable answer ({type(exc).__name__}: {exc})")
        verdict = self._scrubbed(verdict)
        if verdict.ok:
            log.info("%s: delivered %s to %s", self.name, n.id, self._who(n))
        else:
            log.warning(
                "%s: %s %s to %s: %s",
                self.name,
                "will retry" if verdict.retryable else "gave up on",
                n.id,
                self._who(n),
                verdict.reason,
            )
        return verdict

    def _who(self, n: Notification) -> str:
        return scrub(n.recipient, self.secrets())

    def _scrubbed(self, v: Verdict) -> Verdict:
        if not v.reason:
            return v
        clean = scrub(v.reason, self.secrets())
        if clean == v.reason:
            return v
        return Verdict(
            ok=v.ok,
            retryable=v.retryable,
            reason=clean,
            status=v.status,
            retry_after_s=v.retry_after_s,
        )

    def classify(self, resp: httpx.Response) -> Verdict:
        return classify_http(
            resp.status_code, resp.text, resp.headers.get("Retry-After"), now=self.clock()
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def seconds_to_beijing_midnight(now: float) -> float:
    """Seconds from `now` to the next 00:00 China Standard Time (UTC+8, no DST): when the SMS
    providers' per-day counters reset."""
    day = 86400.0
    local = now + 8 * 3600.0
    return day - (local % day)


def beijing_day(now: float) -> str:
    """The China Standard Time calendar day of `now` as YYYY-MM-DD."""
    return time.strftime("%Y-%m-%d", time.gmtime(now + 8 * 3600.0))
