"""Aliyun SMS `SendSms` (API version 2017-05-25) over the RPC protocol with signature
version 1.0 (HMAC-SHA1 over the canonicalised query), `OutId` carrying the idempotency key.

SendSms is not idempotent, so a notification already accepted is never sent again by this
channel (a retry after a lost answer is the one duplicate we cannot rule out; the receiver
counts it by OutId). Aliyun allows 50 notification SMS per number per template per day: the
channel counts them and, at the cap, answers "retry after midnight Beijing time" (when the
provider's counter resets) instead of sending a request that would be refused — the outbox
keeps the message and a fallback channel (see `fallback.py`) can carry it meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol
from urllib.parse import quote

import httpx

from alerts.channels.base import (
    ChannelMisconfigured,
    ChannelRateLimited,
    ChannelRejected,
    ChannelUnavailable,
    Clock,
    HttpChannel,
    beijing_day,
    seconds_to_beijing_midnight,
)
from alerts.model import Notification, Verdict

API_VERSION = "2017-05-25"
DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com/"
DEFAULT_DAILY_CAP = 50  # notification SMS per number per template per day (Aliyun flow control)


def percent_encode(s: str) -> str:
    """RFC 3986 encoding as Aliyun's signature v1 wants it: unreserved characters kept,
    everything else %XX of its UTF-8 bytes (so space is %20, '*' is %2A, '~' stays)."""
    return quote(s, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def rpc_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """Signature v1: base64(HMAC-SHA1(secret + "&", METHOD&%2F&encode(canonical query)))."""
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"
    mac = hmac.new((access_key_secret + "&").encode(), string_to_sign.encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


class SendLedger(Protocol):
    """What an SMS channel remembers between sends: accepted notification ids (so a retry of
    an accepted one is not sent twice) and per-day counts for the daily cap. The outbox may
    back this with its store so caps and dedup survive restarts."""

    def was_sent(self, notification_id: str) -> bool: ...

    def count(self, day: str, number: str, template: str) -> int: ...

    def record(self, notification_id: str, day: str, number: str, template: str) -> None: ...


class MemoryLedger:
    """In-process `SendLedger` (forgets on restart)."""

    def __init__(self) -> None:
        self._sent: set[str] = set()
        self._counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def was_sent(self, notification_id: str) -> bool:
        with self._lock:
            return notification_id in self._sent

    def count(self, day: str, number: str, template: str) -> int:
        with self._lock:
            return self._counts[(day, number, template)]

    def record(self, notification_id: str, day: str, number: str, template: str) -> None:
        with self._lock:
            self._sent.add(notification_id)
            self._counts[(day, number, template)] += 1


#: Aliyun error codes -> (retryable, why). isv.* are about the request or the account, isp.*
#: about Aliyun's side. Flow-control codes are retryable; the wait depends on which window hit.
ERROR_CODES: dict[str, tuple[bool, str]] = {
    "isv.BUSINESS_LIMIT_CONTROL": (True, "flow control"),
    "isv.DAY_LIMIT_CONTROL": (True, "daily limit reached"),
    "Throttling.User": (True, "throttled"),
    "Throttling": (True, "throttled"),
    "SignatureNonceUsed": (True, "nonce reused"),
    "isp.SYSTEM_ERROR": (True, "Aliyun system error"),
    "isp.GATEWAY_ERROR": (True, "Aliyun gateway error"),
    "ServiceUnavailable": (True, "service unavailable"),
    "isv.AMOUNT_NOT_ENOUGH": (True, "account balance too low"),
    "isv.OUT_OF_SERVICE": (True, "account suspended (balance)"),
    "isv.MOBILE_NUMBER_ILLEGAL": (False, "invalid phone number"),
    "isv.MOBILE_COUNT_OVER_LIMIT": (False, "too many phone numbers"),
    "isv.TEMPLATE_MISSING_PARAMETERS": (False, "template parameter missing"),
    "isv.INVALID_JSON_PARAM": (False, "TemplateParam is not valid JSON"),
    "isv.PARAM_LENGTH_LIMIT": (False, "parameter too long"),
    "isv.SMS_TEMPLATE_ILLEGAL": (False, "template not approved or unknown"),
    "isv.SMS_SIGNATURE_ILLEGAL": (False, "sign name not approved or unknown"),
    "isv.BLACK_KEY_CONTROL_LIMIT": (False, "blocked keyword"),
    "isv.DENY_IP_RANGE": (False, "source IP denied"),
    "SignatureDoesNotMatch": (False, "signature does not match (check AccessKeySecret)"),
    "InvalidAccessKeyId.NotFound": (False, "unknown AccessKeyId"),
    "InvalidTimeStamp.Expired": (True, "timestamp expired (clock skew)"),
    "isp.RAM_PERMISSION_DENY": (False, "RAM permission denied"),
}


def _flow_control_wait(message: str, now: float) -> float:
    """Aliyun says which window tripped in the message (触发分钟级/小时级/天级流控)."""
    if "天级" in message or "day" in message.lower():
        return seconds_to_beijing_midnight(now)
    if "小时级" in message or "hour" in message.lower():
        return 3600.0
    return 60.0


class AliyunSmsChannel(HttpChannel):
    name = "aliyun_sms"
    rate_limit = None

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str,
        sign_name: str,
        template_code: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        region: str = "cn-hangzhou",
        daily_cap: int = DEFAULT_DAILY_CAP,
        ledger: SendLedger | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
        nonce: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self.access_key_id = access_key_id
        self._secret = access_key_secret
        self.sign_name = sign_name
        self.template_code = template_code
        self.endpoint = endpoint
        self.region = region
        self.daily_cap = daily_cap
        self.ledger: SendLedger = ledger or MemoryLedger()
        self._nonce = nonce

    def secrets(self) -> list[str]:
        return [self._secret]

    def request_params(self, n: Notification, now: float) -> dict[str, str]:
        """Every query parameter of the signed SendSms request, Signature included."""
        params = {
            "AccessKeyId": self.access_key_id,
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.region,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": self._nonce(),
            "SignatureVersion": "1.0",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "Version": API_VERSION,
            "PhoneNumbers": n.recipient,
            "SignName": self.sign_name,
            "TemplateCode": self.template_code,
            "TemplateParam": json.dumps(n.params, ensure_ascii=False, separators=(",", ":")),
            "OutId": n.id,
        }
        params["Signature"] = rpc_signature("POST", params, self._secret)
        return params

    def deliver(self, n: Notification) -> Verdict:
        if not (self.access_key_id and self._secret and self.sign_name and self.template_code):
            raise ChannelMisconfigured(
                "channels.aliyun_sms needs access_key_id, access_key_secret, sign_name and "
                "template_code"
            )
        if self.ledger.was_sent(n.id):
            return Verdict(ok=True, reason="already accepted by Aliyun; not sent again")
        now = self.clock()
        day = beijing_day(now)
        number = n.recipient
        if self.ledger.count(day, number, self.template_code) >= self.daily_cap:
            raise ChannelRateLimited(
                f"daily cap of {self.daily_cap} SMS per number per template reached for "
                f"{number}; retry after 00:00 Beijing time",
                retry_after_s=seconds_to_beijing_midnight(now),
            )
        resp = self._client.post(
            self.endpoint,
            content=canonical_query(self.request_params(n, now)).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            doc = resp.json()
        except ValueError:
            return (
                self.classify(resp)
                if resp.status_code != 200
                else Verdict.retry("unreadable answer from Aliyun", status=200)
            )
        code = str(doc.get("Code", ""))
        message = str(doc.get("Message", ""))[:200]
        if code == "OK":
            self.ledger.record(n.id, day, number, self.template_code)
            return Verdict.delivered(resp.status_code)
        if not code:
            return self.classify(resp)
        retryable, why = ERROR_CODES.get(
            code, (code.startswith("isp.") or resp.status_code >= 500, "unknown code")
        )
        reason = f"Aliyun {code} ({why}): {message}"
        if code in ("isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling.User"):
            wait = (
                seconds_to_beijing_midnight(now)
                if code == "isv.DAY_LIMIT_CONTROL"
                else _flow_control_wait(message, now)
            )
            raise ChannelRateLimited(reason, resp.status_code, retry_after_s=wait)
        if retryable:
            raise ChannelUnavailable(reason, resp.status_code)
        raise ChannelRejected(reason, resp.status_code)
