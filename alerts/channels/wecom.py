"""WeCom (企业微信) group robot: `POST <base>?key=KEY` with a markdown (or text) message.

A robot takes at most 20 messages a minute and answers errcode 45009 (or 130101) beyond
that; this channel declares the limit so the outbox buckets and digests, and turns the error
into a retry after the minute, never a drop. Routing names robots; keys stay in settings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Literal

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

DEFAULT_URL = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"

#: WeCom documents markdown content up to 4096 bytes and text up to 2048 bytes (UTF-8).
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048

#: Robot error codes (企业微信 全局错误码) that mean "too many messages, later".
RATE_LIMIT_CODES = frozenset({45009, 130101})
#: Codes that say the request itself (or the robot key) is wrong: a retry cannot help.
REJECT_CODES = {
    93000: "invalid webhook key",
    93004: "robot disabled or removed",
    40008: "invalid message type",
    44004: "empty content",
    40058: "invalid parameter",
    301002: "no permission",
    40035: "invalid parameter",
}
BUSY_CODES = frozenset({-1})

ELLIPSIS = "…"
REF_LABEL = "编号"


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` cut to at most `max_bytes` UTF-8 bytes without splitting a character, with an
    ellipsis marking the cut."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    budget = max_bytes - len(ELLIPSIS.encode("utf-8"))
    return raw[: max(budget, 0)].decode("utf-8", errors="ignore") + ELLIPSIS


def render_markdown(n: Notification) -> str:
    """WeCom markdown: a coloured title, the body quoted, and the acknowledge/dispose link."""
    colour = {"red": "warning", "orange": "warning", "yellow": "comment", "blue": "info"}
    title = n.title
    if n.colour in colour:
        title = f'<font color="{colour[n.colour]}">{n.title}</font>'
    lines = [f"**{title}**"]
    lines += [f"> {line}" for line in n.body.splitlines() if line.strip()]
    link = f"\n[确认 / 处置]({n.link})" if n.link else ""
    # The reference number lets staff quote a message to support, and lets receivers count
    # duplicates (a robot has no idempotency header).
    tail = link + f'\n<font color="comment">{REF_LABEL} {n.id}</font>'
    # Cut the body, never the link: the link is what the reader acts on.
    head = "\n".join(lines)
    return truncate_utf8(head, MARKDOWN_MAX_BYTES - len(tail.encode("utf-8"))) + tail


def render_text(n: Notification) -> str:
    tail = (f"\n{n.link}" if n.link else "") + f"\n{REF_LABEL} {n.id}"
    return truncate_utf8(f"{n.title}\n{n.body}", TEXT_MAX_BYTES - len(tail.encode())) + tail


class WecomChannel(HttpChannel):
    name = "wecom"

    def __init__(
        self,
        robot_keys: Mapping[str, str],
        *,
        base_url: str = DEFAULT_URL,
        per_minute: int = 20,
        msgtype: Literal["markdown", "text"] = "markdown",
        mentioned_mobiles: Mapping[str, list[str]] | None = None,
        timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(timeout_s=timeout_s, transport=transport, clock=clock)
        self._keys = dict(robot_keys)
        self.base_url = base_url
        self.rate_limit = (per_minute, 60.0)
        self.msgtype = msgtype
        self.mentioned_mobiles = dict(mentioned_mobiles or {})

    def secrets(self) -> list[str]:
        return list(self._keys.values())

    def message(self, n: Notification) -> dict:
        if self.msgtype == "text":
            text: dict = {"content": render_text(n)}
            if n.recipient in self.mentioned_mobiles:
                text["mentioned_mobile_list"] = list(self.mentioned_mobiles[n.recipient])
            return {"msgtype": "text", "text": text}
        return {"msgtype": "markdown", "markdown": {"content": render_markdown(n)}}

    def deliver(self, n: Notification) -> Verdict:
        key = self._keys.get(n.recipient)
        if not key:
            raise ChannelMisconfigured(
                f"no key configured for WeCom robot {n.recipient!r} "
                f"(channels.wecom.robot_keys has {sorted(self._keys) or 'none'})"
            )
        resp = self._client.post(self.base_url, params={"key": key}, json=self.message(n))
        if resp.status_code != 200:
            return self.classify(resp)
        doc = resp.json()
        code = int(doc.get("errcode", -1))
        msg = str(doc.get("errmsg", ""))[:200]
        if code == 0:
            return Verdict.delivered(200)
        if code in RATE_LIMIT_CODES:
            # The robot's budget is a rolling minute: the earliest useful retry is a minute on.
            raise ChannelRateLimited(f"robot rate limit, errcode {code}", 200, retry_after_s=60.0)
        if code in REJECT_CODES:
            raise ChannelRejected(f"errcode {code} ({REJECT_CODES[code]}): {msg}", 200)
        if code in BUSY_CODES:
            raise ChannelUnavailable(f"errcode {code} (system busy): {msg}", 200)
        # Unknown codes are retried: the outbox's dead-letter deadline bounds the cost, while
        # giving up would drop an alarm over a code WeCom added later.
        raise ChannelUnavailable(f"errcode {code}: {msg}", 200)
