"""Push to the bureau's 安全风险隐患管理平台 (DESIGN.md "Platform push"): a signed JSON POST
with an idempotency key, delivered at least once; the platform deduplicates by the key."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from alerts.channels.base import ChannelMisconfigured, Clock, HttpChannel
from alerts.model import Notification, Verdict
from ingest.model import iso_ms

SIGNATURE_HEADER = "X-HW-Signature"
TIMESTAMP_HEADER = "X-HW-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 over "<timestamp>.<body>">` (the platform contract)."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = 300.0,
) -> str | None:
    """Check a signed push the way a receiver must; None if good, else why not. The timestamp
    window stops a captured request being replayed later."""
    try:
        ts = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not integer epoch seconds"
    if abs(now - ts) > tolerance_s:
        return (
            f"{TIMESTAMP_HEADER} is {now - ts:+.0f} s away from now (tolerance {tolerance_s:.0f} s)"
        )
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        return f"{SIGNATURE_HEADER} does not match the body"
    return None


def push_body(n: Notification) -> dict[str, Any]:
    """The JSON the platform receives: the event type, the subject (alarm or warning record
    in full), and the fields a platform indexes pulled up to the top level."""
    p = n.payload
    return {
        "id": n.id,
        "event_type": str(n.event_type),
        "subject_kind": n.subject_kind,
        "subject_id": n.subject_id,
        "enterprise_code": n.enterprise_code,
        "hazard_code": n.hazard_code,
        "point": p.get("tag", ""),
        "parameter": p.get("parameter", ""),
        "level": n.level,
        "colour": n.colour,
        "value": p.get("value"),
        "threshold": p.get("threshold"),
        "unit": p.get("unit", ""),
        "event_time": p.get("ts"),
        "created": iso_ms(n.created_ms),
        "title": n.title,
        "text": n.body,
        "link": n.link,
        n.subject_kind if n.subject_kind in ("alarm", "warning") else "subject": p,
    }


def encode_body(doc: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; the exact bytes that are signed are the bytes that are sent."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


class PlatformChannel(HttpChannel):
    name = "platform"
    rate_limit = None

    def __init__(
        self,
        url: str,
        hmac_secret: str,
        *,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self.url = url
        self._secret = hmac_secret

    def secrets(self) -> list[str]:
        return [self._secret]

    def deliver(self, n: Notification) -> Verdict:
        if not self.url or not self._secret:
            raise ChannelMisconfigured("platform.url and platform.hmac_secret must both be set")
        body = encode_body(push_body(n))
        ts = str(int(self.clock()))
        resp = self._client.post(
            self.url,
            content=body,
            headers={
                "Content-Type": "application/json; charset=utf-8",
                TIMESTAMP_HEADER: ts,
                SIGNATURE_HEADER: sign(self._secret, ts, body),
                IDEMPOTENCY_HEADER: n.id,
            },
        )
        if resp.status_code == 409:
            # The platform already holds this key: an earlier attempt got through.
            return Verdict.delivered(409)
        return self.classify(resp)
