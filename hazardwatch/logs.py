"""Structured logging: JSON lines (for services) or a compact console format, with every
configured secret value scrubbed from messages and exception text before it is written."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel, SecretStr

REDACTED = "********"


def secret_values(obj: object) -> set[str]:
    """Every SecretStr value reachable from a settings object (and its nested sections)."""
    found: set[str] = set()

    def walk(v: object) -> None:
        if isinstance(v, SecretStr):
            s = v.get_secret_value()
            if s:
                found.add(s)
                # "user:password" tokens: the password alone is a secret too.
                if ":" in s:
                    found.update(p for p in s.split(":", 1) if len(p) >= 6)
        elif isinstance(v, BaseModel):
            for name in type(v).model_fields:
                walk(getattr(v, name))
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    walk(obj)
    return found


class RedactingFilter(logging.Filter):
    """Replaces secret values in the rendered message and in exception text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self.scrub(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            out.update(extra)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, ensure_ascii=False, default=str)


def configure(level: str = "INFO", fmt: str = "console", secrets: Iterable[str] = ()) -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at WARNING unless asked for.
    for noisy in ("aiokafka", "kafka", "faust", "mode", "httpx", "urllib3", "paho"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
