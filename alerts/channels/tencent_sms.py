"""Tencent Cloud SMS `SendSms` (API 2021-01-11) signed with TC3-HMAC-SHA256, one number per
request so each notification gets its own verdict; `SessionContext` carries the idempotency
key. Like Aliyun's, SendSms is not idempotent: an accepted notification is not sent again, and
per-number limits (30 s identical, daily) become retries at the time the provider names.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from alerts.channels.aliyun_sms import MemoryLedger, SendLedger
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

SERVICE = "sms"
API_VERSION = "2021-01-11"
DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com/"
ALGORITHM = "TC3-HMAC-SHA256"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host;x-tc-action"


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def tc3_authorization(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    action: str,
    payload: bytes,
    timestamp: int,
    service: str = SERVICE,
    sign_action: bool = True,
) -> str:
    """The `Authorization` header of TC3-HMAC-SHA256 (Tencent Cloud API 3.0 signature v3).

    Tencent's documented minimum signs `content-type;host`; signing `x-tc-action` as well (the
    SDKs' current default, `sign_action`) stops the signed body being replayed as another
    action."""
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    canonical_headers = f"content-type:{CONTENT_TYPE}\nhost:{host}\n"
    signed_headers = "content-type;host"
    if sign_action:
        canonical_headers += f"x-tc-action:{action.lower()}\n"
        signed_headers = SIGNED_HEADERS
    canonical_request = "\n".join(
        [
            "POST",
            "/",
            "",
            canonical_headers,
            signed_headers,
            hashlib.sha256(payload).hexdigest(),
        ]
    )
    scope = f"{date}/{service}/tc3_request"
    string_to_sign = "\n".join(
        [ALGORITHM, str(timestamp), scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    k_date = _hmac(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac(k_date, service)
    k_signing = _hmac(k_service, "tc3_request")
    signature = hmac.new(k_signing, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"{ALGORITHM} Credential={secret_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


def e164_cn(number: str) -> str:
    """Tencent wants E.164: a bare 11-digit mainland number gets +86."""
    number = number.strip().replace(" ", "")
    if number.startswith("+"):
        return number
    if number.startswith("0086"):
        return "+" + number[2:]
    if len(number) == 11 and number.isdigit():
        return "+86" + number
    return number


def _wait_for(code: str, now: float) -> float | None:
    if "ThirtySecond" in code:
        return 30.0
    if "OneHour" in code:
        return 3600.0
    if "Daily" in code:
        return seconds_to_beijing_midnight(now)
    return None


#: Error-code prefixes (Tencent's `Error.Code` and per-number `SendStatus.Code`) that are
#: worth retrying; everything else is about the request or the account and is not.
RETRYABLE_PREFIXES = (
    "InternalError",
    "RequestLimitExceeded",
    "LimitExceeded",
    "ResourceUnavailable",
    "FailedOperation.InsufficientBalanceInSmsPackage",
    "FailedOperation.FailResolvePacket",
    "AuthFailure.SignatureExpire",  # our clock was skewed; a fresh signature may pass
)


class TencentSmsChannel(HttpChannel):
    name = "tencent_sms"
    rate_limit = None

    def __init__(
        self,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        sign_name: str,
        template_id: str,
        *,
        param_names: Sequence[str] = (),
        endpoint: str = DEFAULT_ENDPOINT,
        region: str = "ap-guangzhou",
        ledger: SendLedger | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self.secret_id = secret_id
        self._secret_key = secret_key
        self.sdk_app_id = sdk_app_id
        self.sign_name = sign_name
        self.template_id = template_id
        # Tencent templates take positional parameters ({1}, {2}, ...): this is their order.
        self.param_names = tuple(param_names)
        self.endpoint = endpoint
        self.host = urlsplit(endpoint).netloc
        self.region = region
        self.ledger: SendLedger = ledger or MemoryLedger()

    def secrets(self) -> list[str]:
        return [self._secret_key]

    def template_params(self, n: Notification) -> list[str]:
        if not self.param_names:
            return [str(v) for v in n.params.values()]
        missing = [k for k in self.param_names if k not in n.params]
        if missing:
            raise ChannelMisconfigured(
                f"notification {n.id} lacks template parameter(s) {missing} "
                f"(template {self.template_id} takes {list(self.param_names)})"
            )
        return [str(n.params[k]) for k in self.param_names]

    def request(self, n: Notification, now: float) -> tuple[bytes, dict[str, str]]:
        """The JSON body and headers of one signed SendSms request."""
        body = json.dumps(
            {
                "PhoneNumberSet": [e164_cn(n.recipient)],
                "SmsSdkAppId": self.sdk_app_id,
                "SignName": self.sign_name,
                "TemplateId": self.template_id,
                "TemplateParamSet": self.template_params(n),
                "SessionContext": n.id,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        ts = int(now)
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-TC-Action": "SendSms",
            "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(ts),
            "X-TC-Region": self.region,
            "Authorization": tc3_authorization(
                secret_id=self.secret_id,
                secret_key=self._secret_key,
                host=self.host,
                action="SendSms",
                payload=body,
                timestamp=ts,
            ),
        }
        return body, headers

    def deliver(self, n: Notification) -> Verdict:
        if not (self.secret_id and self._secret_key and self.sdk_app_id and self.template_id):
            raise ChannelMisconfigured(
                "channels.tencent_sms needs secret_id, secret_key, sdk_app_id and template_id"
            )
        if self.ledger.was_sent(n.id):
            return Verdict(ok=True, reason="already accepted by Tencent; not sent again")
        now = self.clock()
        body, headers = self.request(n, now)
        resp = self._client.post(self.endpoint, content=body, headers=headers)
        if resp.status_code != 200:
            return self.classify(resp)
        doc = resp.json()["Response"]
        if "Error" in doc:
            code = str(doc["Error"].get("Code", ""))
            self._raise_for(code, str(doc["Error"].get("Message", "")), now)
        statuses = doc.get("SendStatusSet") or []
        if not statuses:
            raise ChannelUnavailable("Tencent answered without a SendStatusSet", 200)
        st = statuses[0]
        code = str(st.get("Code", ""))
        if code == "Ok":
            self.ledger.record(n.id, beijing_day(now), e164_cn(n.recipient), self.template_id)
            return Verdict.delivered(200)
        self._raise_for(code, str(st.get("Message", "")), now)
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, code: str, message: str, now: float) -> None:
        reason = f"Tencent {code}: {message[:200]}"
        wait = _wait_for(code, now)
        if code.startswith(("LimitExceeded", "RequestLimitExceeded")):
            raise ChannelRateLimited(reason, 200, retry_after_s=wait)
        if code.startswith(RETRYABLE_PREFIXES):
            raise ChannelUnavailable(reason, 200, retry_after_s=wait)
        raise ChannelRejected(reason, 200)
