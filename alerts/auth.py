"""Who may call the HTTP API and on what: bearer tokens from a file (kept as SHA-256 hashes,
never in clear), each with a role — `enterprise` (its own enterprises only), `duty` (the
enterprises of its districts), `admin` (everything) — and the signed short-lived tokens of
the acknowledge/dispose links sent by SMS and WeCom, which are good for one subject only.

Tokens file (YAML or JSON)::

    tokens:
      - name: 潜江某化工 安全科           # shown in the journal as the actor
        role: enterprise
        enterprises: [QJ001]
        sha256: 9f86d081884c7d65...       # hazardwatch's `hash_token(token)`
      - name: 潜江市应急管理局 值班室
        role: duty
        districts: [潜江经济开发区, 江汉盐化工园]
      - name: ops
        role: admin
        sha256: ...

A new token and the hash to store: `python -c "from alerts.auth import new_token;
print(*new_token())"` (hand the first to its user; only the second goes in the file).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class AuthError(Exception):
    """A tokens file that cannot be used (names the file and every problem)."""


class Role(StrEnum):
    ENTERPRISE = "enterprise"
    DUTY = "duty"
    ADMIN = "admin"


def hash_token(token: str) -> str:
    """The form a token is stored in: hex SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hash (give the first to the user, store the second)."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and what it may see and act on."""

    name: str
    role: Role
    enterprises: frozenset[str] = field(default_factory=frozenset)
    districts: frozenset[str] = field(default_factory=frozenset)
    subject_id: str | None = None  # set for link tokens: this one alarm or warning only

    def can_access(self, enterprise_code: str, district: str) -> bool:
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.ENTERPRISE:
            return enterprise_code in self.enterprises
        return district in self.districts

    def scope_filter(self) -> dict[str, Any]:
        """Store filters that restrict a listing to this principal's scope."""
        if self.role is Role.ADMIN:
            return {}
        if self.role is Role.ENTERPRISE:
            return {"enterprise": sorted(self.enterprises)}
        return {"district": sorted(self.districts)}


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    role: Role
    sha256: str
    enterprises: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)

    @field_validator("sha256", mode="before")
    @classmethod
    def _hex(cls, v: object) -> str:
        if not isinstance(v, str):
            raise ValueError("must be a quoted string (YAML read the hash as a number)")
        v = v.strip().lower()
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise ValueError("must be the 64-hex-digit SHA-256 of the token (not the token)")
        return v

    @model_validator(mode="after")
    def _scope(self) -> _Entry:
        if self.role is Role.ENTERPRISE and not self.enterprises:
            raise ValueError("an enterprise token needs `enterprises`")
        if self.role is Role.DUTY and not self.districts:
            raise ValueError("a duty token needs `districts`")
        return self


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: list[_Entry]


class TokenAuth:
    """Looks bearer tokens up by hash. Comparison is by dictionary lookup of the hash, so the
    time taken does not depend on how much of a guessed token is right."""

    def __init__(self, entries: Iterable[Principal | tuple[str, Principal]] = ()) -> None:
        self._by_hash: dict[str, Principal] = {}
        for e in entries:
            if isinstance(e, tuple):
                digest, p = e
                self._by_hash[digest] = p

    @classmethod
    def from_tokens(cls, tokens: Mapping[str, Principal]) -> TokenAuth:
        """From clear tokens (tests and the demo); only their hashes are kept."""
        return cls((hash_token(t), p) for t, p in tokens.items())

    @classmethod
    def from_file(cls, path: Path | str) -> TokenAuth:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise AuthError(f"{path}: cannot read tokens file ({exc.strerror})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise AuthError(f"{path}: not valid YAML/JSON ({exc})") from None
        try:
            parsed = _File.model_validate(data)
        except ValidationError as exc:
            lines = [f"{path}: invalid tokens file, {exc.error_count()} problem(s)"]
            for err in exc.errors():
                loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
                lines.append(f"  {loc}: {err['msg']}")
            raise AuthError("\n".join(lines)) from None
        seen: dict[str, str] = {}
        out = []
        for e in parsed.tokens:
            if e.sha256 in seen:
                raise AuthError(f"{path}: tokens {seen[e.sha256]!r} and {e.name!r} are the same")
            seen[e.sha256] = e.name
            out.append(
                (
                    e.sha256,
                    Principal(e.name, e.role, frozenset(e.enterprises), frozenset(e.districts)),
                )
            )
        return cls(out)

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return self._by_hash.get(hash_token(token))


# -- link tokens ---------------------------------------------------------------------------


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class LinkError(Exception):
    """A link token that is malformed, forged, for another subject, or expired."""


@dataclass(frozen=True, slots=True)
class LinkClaims:
    subject_id: str
    expires_ms: int


class LinkSigner:
    """Signs `/a/<subject_id>?t=<token>` links: the token binds the subject and an expiry with
    HMAC-SHA256 (truncated to 128 bits, enough against forgery and short enough for an SMS)."""

    def __init__(self, secret: str | bytes) -> None:
        if not secret:
            raise ValueError("a link secret is required")
        self._key = secret.encode() if isinstance(secret, str) else secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"hw-link\0" + payload, hashlib.sha256).digest()[:16]

    def sign(self, subject_id: str, expires_ms: int) -> str:
        payload = json.dumps([subject_id, expires_ms // 1000], separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str, subject_id: str, now_ms: int) -> LinkClaims:
        try:
            p64, m64 = token.split(".", 1)
            payload, mac = _unb64(p64), _unb64(m64)
        except (ValueError, UnicodeError) as exc:
            raise LinkError("the link is malformed") from exc
        # Only the canonical encoding is accepted: base64's unused low bits would otherwise let
        # several strings stand for one token.
        if _b64(payload) != p64 or _b64(mac) != m64:
            raise LinkError("the link is malformed")
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError("the link is not valid")
        try:
            sid, exp_s = json.loads(payload)
            exp_ms = int(exp_s) * 1000
        except (ValueError, TypeError) as exc:
            raise LinkError("the link is malformed") from exc
        if sid != subject_id:
            raise LinkError("the link is for another alarm")
        if now_ms >= exp_ms:
            raise LinkError("the link has expired")
        return LinkClaims(sid, exp_ms)

    def link_factory(
        self, public_url: str, ttl_s: float, clock_ms: Callable[[], int]
    ) -> Callable[[str], str]:
        """A `link_for(subject_id)` for `AlertService`: the page URL with a fresh token."""
        base = public_url.rstrip("/")

        def link_for(subject_id: str) -> str:
            token = self.sign(subject_id, clock_ms() + int(ttl_s * 1000))
            return f"{base}/a/{quote(subject_id, safe='')}?t={token}"

        return link_for
