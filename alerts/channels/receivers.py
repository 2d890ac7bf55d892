"""Local HTTP receivers standing in for services that cannot exist on a test machine (the
bureau's platform, WeCom robots, Aliyun and Tencent SMS, WeChat, a webhook). Each speaks the
real request shape and CHECKS it — signatures, required fields, size and rate limits — and
answers the way the real service does, so channel tests, the demo and end-to-end tests prove
the requests would be accepted. Each can be told to answer 500/429, hang (a timeout), or go
down for a while, and counts deliveries per idempotency key (duplicates included).

Servers are stdlib `ThreadingHTTPServer`s on 127.0.0.1, port 0, in daemon threads.
"""

from __future__ import annotations

import calendar
import json
import re
import secrets
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from alerts.channels import aliyun_sms, platform, tencent_sms
from alerts.channels.base import beijing_day
from alerts.channels.wecom import MARKDOWN_MAX_BYTES, REF_LABEL, TEXT_MAX_BYTES

Clock = Callable[[], float]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)  # dict/list -> JSON, bytes/str as is
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Accepted:
    """One message the receiver accepted, in arrival order."""

    key: str  # idempotency key (Idempotency-Key, OutId, SessionContext, client_msg_id, 编号)
    at: float
    target: str  # endpoint-specific recipient: robot key name, phone number, openid
    doc: Any  # the parsed message


@dataclass
class _Fault:
    kind: str  # "status" | "hang"
    status: int = 500
    retry_after: str | None = None
    seconds: float = 0.0
    process: bool = False  # for "hang": accept the message before stalling (a lost answer)


class Receiver:
    """Base receiver: a threaded HTTP server, fault injection, and the shared counters."""

    name = "receiver"

    def __init__(self, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._faults: deque[_Fault] = deque()
        self._down: _Fault | None = None
        self._release = threading.Event()
        self.requests = 0
        self.accepted: list[Accepted] = []
        self.by_key: Counter[str] = Counter()
        self.rejected: list[str] = []  # why requests failed verification
        self.faults_served = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                req = Request(
                    method=self.command,
                    path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = receiver._dispatch(req)
                if reply is None:  # hung until released: drop the connection
                    self.close_connection = True
                    return
                if isinstance(reply.body, bytes):
                    data = reply.body
                elif isinstance(reply.body, str):
                    data = reply.body.encode()
                else:
                    data = json.dumps(reply.body, ensure_ascii=False).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up (timeout): nothing to tell it

            do_GET = do_POST = do_PUT = _serve  # http.server's naming

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: tests read counters, not access logs

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name=f"{self.name}-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "receiver not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- fault injection -------------------------------------------------------------------
    def fail_next(self, n: int = 1, status: int = 500, retry_after: float | str | None = None):
        """Answer the next `n` requests with `status` (and a Retry-After header if given)."""
        ra = None if retry_after is None else str(retry_after)
        with self._lock:
            self._faults.extend(_Fault("status", status=status, retry_after=ra) for _ in range(n))
        return self

    def hang_next(self, n: int = 1, seconds: float = 30.0, process: bool = False):
        """Stall the next `n` requests for `seconds` (the client times out). With `process`,
        the message is accepted before the stall — the real provider got it but the answer
        was lost, the case where at-least-once delivery shows a duplicate."""
        with self._lock:
            self._faults.extend(_Fault("hang", seconds=seconds, process=process) for _ in range(n))
        return self

    def go_down(self, status: int = 503, retry_after: float | None = None):
        """Answer every request with `status` until `come_up()`."""
        with self._lock:
            ra = None if retry_after is None else str(retry_after)
            self._down = _Fault("status", status=status, retry_after=ra)
        return self

    def come_up(self):
        with self._lock:
            self._down = None
        return self

    # -- counters --------------------------------------------------------------------------
    @property
    def delivered(self) -> int:
        """Distinct messages accepted."""
        with self._lock:
            return len(self.by_key)

    @property
    def duplicates(self) -> int:
        """Messages accepted more than once (each extra copy counts)."""
        with self._lock:
            return sum(c - 1 for c in self.by_key.values() if c > 1)

    def keys(self) -> list[str]:
        with self._lock:
            return [a.key for a in self.accepted]

    def _accept(self, key: str, target: str, doc: Any) -> bool:
        """Record a message; True if this key was new."""
        with self._lock:
            self.accepted.append(Accepted(key=key, at=self.clock(), target=target, doc=doc))
            self.by_key[key] += 1
            return self.by_key[key] == 1

    def _reject(self, why: str) -> None:
        with self._lock:
            self.rejected.append(why)

    # -- dispatch --------------------------------------------------------------------------
    def _dispatch(self, req: Request) -> Reply | None:
        with self._lock:
            self.requests += 1
            fault = self._down or (self._faults.popleft() if self._faults else None)
            if fault is not None:
                self.faults_served += 1
        if fault is None:
            return self.handle(req)
        if fault.kind == "hang":
            if fault.process:
                self.handle(req)
            self._release.wait(fault.seconds)
            return None
        headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
        return Reply(fault.status, {"error": f"injected {fault.status}"}, headers)

    def handle(self, req: Request) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError


class PlatformReceiver(Receiver):
    """The bureau platform's push endpoint: checks the HMAC over "<timestamp>.<body>", the
    timestamp window and the Idempotency-Key; answers 200 (a repeat key included, with
    `"duplicate": true`), 401 for a bad signature, 400 for a malformed body."""

    name = "platform"
    path = "/api/push"

    def __init__(self, secret: str, *, tolerance_s: float = 300.0, clock: Clock = time.time):
        super().__init__(clock)
        self._secret = secret
        self.tolerance_s = tolerance_s

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != self.path:
            return Reply(404, {"error": "not found"})
        ts = req.headers.get(platform.TIMESTAMP_HEADER.lower(), "")
        sig = req.headers.get(platform.SIGNATURE_HEADER.lower(), "")
        key = req.headers.get(platform.IDEMPOTENCY_HEADER.lower(), "")
        why = platform.verify(self._secret, ts, req.body, sig, self.clock(), self.tolerance_s)
        if why:
            self._reject(why)
            return Reply(401, {"error": why})
        try:
            doc = req.json()
        except ValueError:
            self._reject("body is not JSON")
            return Reply(400, {"error": "body is not JSON"})
        missing = [
            k
            for k in ("id", "event_type", "subject_kind", "subject_id", "enterprise_code")
            if not doc.get(k)
        ]
        if not key or doc.get("id") != key or missing:
            why = f"Idempotency-Key {key!r} vs body id {doc.get('id')!r}; missing {missing}"
            self._reject(why)
            return Reply(400, {"error": why})
        new = self._accept(key, doc["enterprise_code"], doc)
        return Reply(200, {"ok": True, "duplicate": not new})

    def events_for(self, subject_id: str) -> list[str]:
        """Event types received for one alarm/warning, in arrival order (first copies)."""
        seen: set[str] = set()
        out = []
        with self._lock:
            for a in self.accepted:
                if a.doc.get("subject_id") == subject_id and a.key not in seen:
                    seen.add(a.key)
                    out.append(a.doc["event_type"])
        return out


_REF = re.compile(re.escape(REF_LABEL) + r" ([^\s<]+)")


class WecomReceiver(Receiver):
    """WeCom group robot webhook: `POST /cgi-bin/webhook/send?key=KEY`. Checks the key, the
    message type and the byte limits (markdown 4096, text 2048) and enforces 20 messages per
    rolling minute per robot with errcode 45009, as WeCom does."""

    name = "wecom"
    path = "/cgi-bin/webhook/send"

    def __init__(
        self, keys: Iterable[str], *, per_minute: int = 20, clock: Clock = time.time
    ) -> None:
        super().__init__(clock)
        self._keys = set(keys)
        self.per_minute = per_minute
        self._recent: dict[str, deque[float]] = defaultdict(deque)
        self._rate_limit_next = 0
        self.rate_limited = 0
        self.sent_at: dict[str, list[float]] = defaultdict(list)

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def rate_limit_next(self, n: int) -> WecomReceiver:
        """Answer errcode 45009 to the next `n` sends (as if other senders used the budget)."""
        with self._lock:
            self._rate_limit_next += n
        return self

    def max_per_minute(self, key: str) -> int:
        """The most messages accepted for `key` in any 60 s window."""
        times = sorted(self.sent_at.get(key, []))
        best, j = 0, 0
        for i, t in enumerate(times):
            while times[j] <= t - 60.0:
                j += 1
            best = max(best, i - j + 1)
        return best

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != self.path:
            return Reply(404, {"errcode": 404, "errmsg": "not found"})
        key = req.query.get("key", "")
        if key not in self._keys:
            self._reject("unknown robot key")
            return Reply(200, {"errcode": 93000, "errmsg": "invalid webhook url"})
        try:
            doc = req.json()
        except ValueError:
            self._reject("body is not JSON")
            return Reply(200, {"errcode": 40058, "errmsg": "invalid json"})
        msgtype = doc.get("msgtype")
        if msgtype not in ("markdown", "text") or not isinstance(doc.get(msgtype), dict):
            self._reject(f"bad msgtype {msgtype!r}")
            return Reply(200, {"errcode": 40008, "errmsg": "invalid message type"})
        content = doc[msgtype].get("content")
        limit = MARKDOWN_MAX_BYTES if msgtype == "markdown" else TEXT_MAX_BYTES
        if not isinstance(content, str) or not content:
            self._reject("empty content")
            return Reply(200, {"errcode": 44004, "errmsg": "empty content"})
        if len(content.encode("utf-8")) > limit:
            self._reject(f"{msgtype} content over {limit} bytes")
            return Reply(200, {"errcode": 40058, "errmsg": f"content exceed max length {limit}"})
        now = self.clock()
        with self._lock:
            if self._rate_limit_next > 0:
                self._rate_limit_next -= 1
                self.rate_limited += 1
                return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
            window = self._recent[key]
            while window and window[0] <= now - 60.0:
                window.popleft()
            if len(window) >= self.per_minute:
                self.rate_limited += 1
                return Reply(200, {"errcode": 45009, "errmsg": "api freq out of limit"})
            window.append(now)
            self.sent_at[key].append(now)
        m = _REF.search(content)
        self._accept(m.group(1) if m else content, key, doc)
        return Reply(200, {"errcode": 0, "errmsg": "ok"})

    def contents(self) -> list[str]:
        with self._lock:
            return [a.doc[a.doc["msgtype"]]["content"] for a in self.accepted]


class AliyunSmsReceiver(Receiver):
    """Aliyun SMS RPC endpoint (`SendSms`, version 2017-05-25): recomputes the v1 signature,
    checks the timestamp window, nonce reuse, required parameters, the phone number and that
    TemplateParam is a JSON object of strings; enforces 50 per number per template per
    (Beijing) day with `isv.BUSINESS_LIMIT_CONTROL`, as Aliyun does."""

    name = "aliyun_sms"

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        daily_cap: int = aliyun_sms.DEFAULT_DAILY_CAP,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock)
        self._credentials = dict(credentials)
        self.daily_cap = daily_cap
        self._nonces: set[str] = set()
        self._daily: Counter[tuple[str, str, str]] = Counter()
        self._limit_next = 0

    @property
    def url(self) -> str:
        return self.base_url + "/"

    def limit_next(self, n: int) -> AliyunSmsReceiver:
        """Answer isv.BUSINESS_LIMIT_CONTROL (minute flow control) to the next `n` sends."""
        with self._lock:
            self._limit_next += n
        return self

    def _err(self, status: int, code: str, message: str) -> Reply:
        self._reject(f"{code}: {message}")
        return Reply(status, {"Code": code, "Message": message, "RequestId": "local"})

    def handle(self, req: Request) -> Reply:
        params = dict(req.query)
        if req.method == "POST":
            params.update(parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
        required = [
            "AccessKeyId",
            "Action",
            "Format",
            "SignatureMethod",
            "SignatureNonce",
            "SignatureVersion",
            "Timestamp",
            "Version",
            "Signature",
            "PhoneNumbers",
            "SignName",
            "TemplateCode",
        ]
        missing = [k for k in required if not params.get(k)]
        if missing:
            return self._err(400, "MissingParameter", f"missing {missing}")
        secret = self._credentials.get(params["AccessKeyId"])
        if secret is None:
            return self._err(
                404, "InvalidAccessKeyId.NotFound", "Specified access key is not found."
            )
        signature = params.pop("Signature")
        expected = aliyun_sms.rpc_signature(req.method, params, secret)
        if signature != expected:
            return self._err(400, "SignatureDoesNotMatch", "Specified signature is not matched.")
        if params["SignatureMethod"] != "HMAC-SHA1" or params["SignatureVersion"] != "1.0":
            return self._err(400, "InvalidParameter", "signature method/version")
        if params["Action"] != "SendSms" or params["Version"] != aliyun_sms.API_VERSION:
            return self._err(400, "InvalidAction.NotFound", "Specified api is not found.")
        try:
            ts = calendar.timegm(time.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            return self._err(400, "InvalidTimeStamp.Format", "Timestamp format")
        if abs(self.clock() - ts) > 900:
            return self._err(400, "InvalidTimeStamp.Expired", "Specified time stamp expired.")
        with self._lock:
            if params["SignatureNonce"] in self._nonces:
                nonce_used = True
            else:
                nonce_used = False
                self._nonces.add(params["SignatureNonce"])
        if nonce_used:
            return self._err(400, "SignatureNonceUsed", "Specified signature nonce was used.")
        number = params["PhoneNumbers"]
        if not re.fullmatch(r"(\+?86)?1\d{10}", number):
            return self._err(200, "isv.MOBILE_NUMBER_ILLEGAL", "invalid mobile number")
        try:
            tp = json.loads(params.get("TemplateParam") or "{}")
        except ValueError:
            return self._err(200, "isv.INVALID_JSON_PARAM", "TemplateParam is not JSON")
        if not isinstance(tp, dict) or not all(isinstance(v, str) for v in tp.values()):
            return self._err(200, "isv.INVALID_JSON_PARAM", "TemplateParam must map to strings")
        day_key = (beijing_day(self.clock()), number, params["TemplateCode"])
        with self._lock:
            limited = self._limit_next > 0
            if limited:
                self._limit_next -= 1
            over = self._daily[day_key] >= self.daily_cap
            if not (limited or over):
                self._daily[day_key] += 1
        if limited:
            return self._err(200, "isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控Permits:1")
        if over:
            return self._err(
                200, "isv.BUSINESS_LIMIT_CONTROL", f"触发天级流控Permits:{self.daily_cap}"
            )
        key = params.get("OutId") or params["SignatureNonce"]
        self._accept(key, number, {**params, "TemplateParam": tp})
        return Reply(200, {"Code": "OK", "Message": "OK", "BizId": key[:20], "RequestId": "local"})


_TC3 = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<svc>\w+)"
    r"/tc3_request,"
    r" SignedHeaders=(?P<signed>[\w;-]+), Signature=(?P<sig>[0-9a-f]{64})"
)


class TencentSmsReceiver(Receiver):
    """Tencent Cloud SMS API 3.0 endpoint: recomputes the TC3-HMAC-SHA256 signature from the
    request as received, checks the action, version, timestamp window, SmsSdkAppId,
    +86 numbers and positional string parameters; answers one identical message per number
    per 30 s (`LimitExceeded.PhoneNumberThirtySecondLimit`), as Tencent does by default."""

    name = "tencent_sms"

    def __init__(
        self,
        credentials: Mapping[str, str],
        *,
        sdk_app_ids: Iterable[str] = (),
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock)
        self._credentials = dict(credentials)
        self.sdk_app_ids = set(sdk_app_ids)
        self._last_same: dict[tuple[str, str], float] = {}

    @property
    def url(self) -> str:
        return self.base_url + "/"

    def _err(self, code: str, message: str) -> Reply:
        self._reject(f"{code}: {message}")
        return Reply(
            200, {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "local"}}
        )

    def handle(self, req: Request) -> Reply:
        m = _TC3.fullmatch(req.headers.get("authorization", ""))
        if not m:
            return self._err("AuthFailure.InvalidAuthorization", "Authorization malformed")
        secret = self._credentials.get(m["id"])
        if secret is None:
            return self._err("AuthFailure.SecretIdNotFound", "SecretId not found")
        if m["signed"] not in (tencent_sms.SIGNED_HEADERS, "content-type;host") or (
            m["svc"] != tencent_sms.SERVICE
        ):
            return self._err("AuthFailure.InvalidAuthorization", "signed headers / service")
        try:
            ts = int(req.headers.get("x-tc-timestamp", ""))
        except ValueError:
            return self._err("MissingParameter", "X-TC-Timestamp")
        if abs(self.clock() - ts) > 300:
            return self._err("AuthFailure.SignatureExpire", "signature expired")
        action = req.headers.get("x-tc-action", "")
        expected = tencent_sms.tc3_authorization(
            secret_id=m["id"],
            secret_key=secret,
            host=req.headers.get("host", ""),
            action=action,
            payload=req.body,
            timestamp=ts,
            sign_action=m["signed"] == tencent_sms.SIGNED_HEADERS,
        )
        if expected != req.headers["authorization"]:
            return self._err("AuthFailure.SignatureFailure", "signature does not match")
        if req.headers.get("content-type") != tencent_sms.CONTENT_TYPE:
            return self._err("InvalidParameter", "Content-Type")
        if action != "SendSms" or req.headers.get("x-tc-version") != tencent_sms.API_VERSION:
            return self._err("InvalidAction", f"action {action!r}")
        try:
            doc = req.json()
        except ValueError:
            return self._err("InvalidParameter", "body is not JSON")
        phones = doc.get("PhoneNumberSet")
        params = doc.get("TemplateParamSet", [])
        if not isinstance(phones, list) or not phones:
            return self._err("MissingParameter", "PhoneNumberSet")
        if self.sdk_app_ids and doc.get("SmsSdkAppId") not in self.sdk_app_ids:
            return self._err("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "SmsSdkAppId")
        if (
            not doc.get("TemplateId")
            or not isinstance(params, list)
            or not all(isinstance(p, str) for p in params)
        ):
            return self._err("InvalidParameterValue.TemplateParameterFormatError", "params")
        now = self.clock()
        statuses = []
        for phone in phones:
            if not re.fullmatch(r"\+861\d{10}", str(phone)):
                statuses.append(self._status(phone, "InvalidParameterValue.IncorrectPhoneNumber"))
                continue
            same = (phone, json.dumps([doc["TemplateId"], params], ensure_ascii=False))
            with self._lock:
                last = self._last_same.get(same)
                limited = last is not None and now - last < 30.0
                if not limited:
                    self._last_same[same] = now
            if limited:
                statuses.append(self._status(phone, "LimitExceeded.PhoneNumberThirtySecondLimit"))
                continue
            self._accept(doc.get("SessionContext") or phone, phone, doc)
            statuses.append(self._status(phone, "Ok", doc.get("SessionContext", "")))
        return Reply(200, {"Response": {"SendStatusSet": statuses, "RequestId": "local"}})

    @staticmethod
    def _status(phone: str, code: str, ctx: str = "") -> dict:
        return {
            "SerialNo": "local",
            "PhoneNumber": phone,
            "Fee": 1 if code == "Ok" else 0,
            "SessionContext": ctx,
            "Code": code,
            "Message": "send success" if code == "Ok" else code,
            "IsoCode": "CN",
        }


class WechatReceiver(Receiver):
    """WeChat official-account API: `GET /cgi-bin/token` issues access tokens for the right
    AppID/AppSecret; `POST /cgi-bin/message/template/send` checks the token, touser,
    template_id and data shape. `expire_tokens()` makes current tokens answer 42001."""

    name = "wechat"

    def __init__(self, app_id: str, app_secret: str, *, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.app_id = app_id
        self._app_secret = app_secret
        self._tokens: set[str] = set()
        self._expired: set[str] = set()
        self.tokens_issued = 0

    @property
    def url(self) -> str:
        return self.base_url

    def expire_tokens(self) -> WechatReceiver:
        with self._lock:
            self._expired |= self._tokens
            self._tokens.clear()
        return self

    def handle(self, req: Request) -> Reply:
        if req.path == "/cgi-bin/token":
            q = req.query
            if q.get("grant_type") != "client_credential" or q.get("appid") != self.app_id:
                self._reject("bad appid/grant_type")
                return Reply(200, {"errcode": 40013, "errmsg": "invalid appid"})
            if q.get("secret") != self._app_secret:
                self._reject("bad appsecret")
                return Reply(200, {"errcode": 40125, "errmsg": "invalid appsecret"})
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._tokens.add(token)
                self.tokens_issued += 1
            return Reply(200, {"access_token": token, "expires_in": 7200})
        if req.path != "/cgi-bin/message/template/send" or req.method != "POST":
            return Reply(404, {"errcode": 404, "errmsg": "not found"})
        token = req.query.get("access_token", "")
        with self._lock:
            valid, expired = token in self._tokens, token in self._expired
        if not valid:
            self._reject("expired access token" if expired else "invalid access token")
            return Reply(
                200,
                {
                    "errcode": 42001 if expired else 40001,
                    "errmsg": "access_token expired" if expired else "invalid credential",
                },
            )
        try:
            doc = req.json()
        except ValueError:
            return Reply(200, {"errcode": 47001, "errmsg": "data format error"})
        data = doc.get("data")
        if (
            not doc.get("touser")
            or not doc.get("template_id")
            or not isinstance(data, dict)
            or not all(
                isinstance(v, dict) and isinstance(v.get("value"), str) for v in data.values()
            )
        ):
            self._reject("bad template message shape")
            return Reply(200, {"errcode": 47003, "errmsg": "argument invalid! data.value"})
        key = doc.get("client_msg_id") or json.dumps(doc, sort_keys=True)
        self._accept(key, doc["touser"], doc)
        return Reply(200, {"errcode": 0, "errmsg": "ok", "msgid": len(self.accepted)})


class WebhookReceiver(Receiver):
    """A generic webhook endpoint: JSON with an Idempotency-Key; when given a secret it checks
    the platform-style HMAC signature, and when given a token the bearer header."""

    name = "webhook"
    path = "/hook"

    def __init__(
        self,
        secret: str | None = None,
        *,
        bearer_token: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock)
        self._secret = secret
        self._token = bearer_token

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def handle(self, req: Request) -> Reply:
        if req.method != "POST" or req.path != self.path:
            return Reply(404, {"error": "not found"})
        if self._token and req.headers.get("authorization") != f"Bearer {self._token}":
            self._reject("bad bearer token")
            return Reply(401, {"error": "unauthorised"})
        if self._secret:
            why = platform.verify(
                self._secret,
                req.headers.get(platform.TIMESTAMP_HEADER.lower(), ""),
                req.body,
                req.headers.get(platform.SIGNATURE_HEADER.lower(), ""),
                self.clock(),
            )
            if why:
                self._reject(why)
                return Reply(401, {"error": why})
        key = req.headers.get(platform.IDEMPOTENCY_HEADER.lower(), "")
        try:
            doc = req.json()
        except ValueError:
            self._reject("body is not JSON")
            return Reply(400, {"error": "body is not JSON"})
        if not key:
            self._reject("no Idempotency-Key")
            return Reply(400, {"error": "Idempotency-Key required"})
        new = self._accept(key, doc.get("recipient", ""), doc)
        return Reply(200, {"ok": True, "duplicate": not new})
