"""Secrets are scrubbed from log records, including exception text."""

from __future__ import annotations

import io
import logging

from hazardwatch.logs import JsonFormatter, RedactingFilter, secret_values
from hazardwatch.settings import load_settings


def test_secret_values_found_in_nested_settings(clean_env):
    s = load_settings(
        environ={
            "HW_INFLUX__TOKEN": "hw:pa55word-xyz",
            "HW_CHANNELS__WECOM__ROBOT_KEYS": '{"a": "robotkey-123"}',
        }
    )
    found = secret_values(s)
    assert {"hw:pa55word-xyz", "pa55word-xyz", "robotkey-123"} <= found


def test_filter_scrubs_message_and_exception():
    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(JsonFormatter())
    h.addFilter(RedactingFilter({"s3cr3t-token"}))
    log = logging.getLogger("test.redact")
    log.addHandler(h)
    log.propagate = False
    try:
        log.warning("calling https://x/send?key=%s", "s3cr3t-token")
        try:
            raise RuntimeError("failed with s3cr3t-token in url")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(h)
    out = buf.getvalue()
    assert "s3cr3t-token" not in out
    assert out.count("********") >= 2
