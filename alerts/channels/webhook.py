"""Generic webhook: the notification as JSON, POSTed with an `Idempotency-Key` and, when a
secret is configured, the same `X-HW-Timestamp`/`X-HW-Signature` HMAC scheme as the
platform push, so one receiver library verifies both."""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec

from alerts.channels.base import ChannelMisconfigured, Clock, HttpChannel
from alerts.channels.platform import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    encode_body,
    sign,
)
from alerts.model import Notification, Verdict


def webhook_body(n: Notification) -> dict[str, Any]:
    """Every field of the notification, as the outbox stored it."""
    return msgspec.to_builtins(n)


class WebhookChannel(HttpChannel):
    name = "webhook"
    rate_limit = None

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        *,
        bearer_token: str | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self.url = url
        self._secret = secret or ""
        self._token = bearer_token or ""

    def secrets(self) -> list[str]:
        # A webhook URL often embeds its own token (Slack, DingTalk style): treat the query
        # string as secret too.
        query = self.url.partition("?")[2]
        return [s for s in (self._secret, self._token, query) if s]

    def deliver(self, n: Notification) -> Verdict:
        if not self.url:
            raise ChannelMisconfigured("channels.webhook.url is not set")
        body = encode_body(webhook_body(n))
        headers = {"Content-Type": "application/json; charset=utf-8", IDEMPOTENCY_HEADER: n.id}
        if self._secret:
            ts = str(int(self.clock()))
            headers[TIMESTAMP_HEADER] = ts
            headers[SIGNATURE_HEADER] = sign(self._secret, ts, body)
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        resp = self._client.post(self.url, content=body, headers=headers)
        if resp.status_code == 409:
            return Verdict.delivered(409)  # the receiver already holds this key
        return self.classify(resp)
