"""WeChat official account (微信公众号) template message: `touser` (openid), `template_id`,
`url` (the acknowledge/dispose page) and `data`, with `client_msg_id` = idempotency key
(WeChat drops a repeat of the same id to the same user). The access token is fetched with the
AppID/AppSecret and cached until shortly before it expires; an expired or revoked token is
dropped and the send retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import httpx

from alerts.channels.base import (
    ChannelMisconfigured,
    ChannelRateLimited,
    ChannelRejected,
    ChannelUnavailable,
    Clock,
    HttpChannel,
)
from alerts.model import Notification, Verdict

DEFAULT_API = "https://api.weixin.qq.com"

#: Token problems: drop the cached token and retry with a fresh one.
TOKEN_CODES = frozenset({40001, 40014, 42001, 41001})
RATE_CODES = frozenset({45009, 45047})
BUSY_CODES = frozenset({-1})
REJECT_CODES = {
    40003: "invalid openid",
    43004: "user has not followed the account",
    43101: "user refused messages",
    40037: "invalid template_id",
    47003: "template data does not match the template",
    40013: "invalid AppID",
    40125: "invalid AppSecret",
    40164: "server IP not whitelisted",
}


class WechatTemplateChannel(HttpChannel):
    name = "wechat"
    rate_limit = None

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        template_id: str,
        *,
        api_base: str = DEFAULT_API,
        data_fields: Mapping[str, str] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self.app_id = app_id
        self._app_secret = app_secret
        self.template_id = template_id
        self.api_base = api_base.rstrip("/")
        # Template keyword -> notification param name (e.g. {"thing2": "enterprise"}); empty
        # means the params are the template keywords already.
        self.data_fields = dict(data_fields or {})
        self._token = ""
        self._token_expires = 0.0
        self._old_tokens: list[str] = []
        self._lock = threading.RLock()  # _raise_for may run inside _access_token

    def secrets(self) -> list[str]:
        # Recently dropped tokens too: an error raised just after dropping may still quote one.
        return [s for s in (self._app_secret, self._token, *self._old_tokens) if s]

    def _access_token(self) -> str:
        with self._lock:
            # Refresh five minutes early: a token that dies in flight costs a retry.
            if self._token and self.clock() < self._token_expires - 300:
                return self._token
            resp = self._client.get(
                f"{self.api_base}/cgi-bin/token",
                params={
                    "grant_type": "client_credential",
                    "appid": self.app_id,
                    "secret": self._app_secret,
                },
            )
            if resp.status_code != 200:
                v = self.classify(resp)
                raise (ChannelUnavailable if v.retryable else ChannelRejected)(
                    f"token request failed: {v.reason}", v.status, v.retry_after_s
                )
            doc = resp.json()
            if "access_token" not in doc:
                code = int(doc.get("errcode", -1))
                self._raise_for(code, str(doc.get("errmsg", "")), "token request")
            self._token = str(doc["access_token"])
            self._token_expires = self.clock() + float(doc.get("expires_in", 7200))
            return self._token

    def message(self, n: Notification) -> dict:
        if self.data_fields:
            missing = [p for p in self.data_fields.values() if p not in n.params]
            if missing:
                raise ChannelMisconfigured(
                    f"notification {n.id} lacks template parameter(s) {missing}"
                )
            data = {kw: {"value": n.params[p]} for kw, p in self.data_fields.items()}
        elif n.params:
            data = {k: {"value": v} for k, v in n.params.items()}
        else:
            data = {"first": {"value": n.title}, "remark": {"value": n.body}}
        msg = {
            "touser": n.recipient,
            "template_id": self.template_id,
            "data": data,
            "client_msg_id": n.id,
        }
        if n.link:
            msg["url"] = n.link
        return msg

    def deliver(self, n: Notification) -> Verdict:
        if not (self.app_id and self._app_secret and self.template_id):
            raise ChannelMisconfigured(
                "the WeChat channel needs app_id, app_secret and template_id"
            )
        message = self.message(n)
        token = self._access_token()
        resp = self._client.post(
            f"{self.api_base}/cgi-bin/message/template/send",
            params={"access_token": token},
            json=message,
        )
        if resp.status_code != 200:
            return self.classify(resp)
        doc = resp.json()
        code = int(doc.get("errcode", -1))
        if code == 0:
            return Verdict.delivered(200)
        self._raise_for(code, str(doc.get("errmsg", "")), "template send")
        raise AssertionError("unreachable")  # pragma: no cover

    def _raise_for(self, code: int, msg: str, what: str) -> None:
        reason = f"WeChat {what}: errcode {code}: {msg[:200]}"
        if code in TOKEN_CODES:
            with self._lock:
                if self._token:
                    self._old_tokens = [*self._old_tokens[-4:], self._token]
                self._token, self._token_expires = "", 0.0
            raise ChannelUnavailable(reason + " (access token dropped)", 200, retry_after_s=0.0)
        if code in RATE_CODES:
            raise ChannelRateLimited(reason, 200, retry_after_s=60.0)
        if code in REJECT_CODES:
            raise ChannelRejected(f"{reason} ({REJECT_CODES[code]})", 200)
        if code in BUSY_CODES:
            raise ChannelUnavailable(reason, 200)
        raise ChannelUnavailable(reason, 200)
