"""The shared HTTP status -> verdict table, Retry-After parsing, secret scrubbing and the
Beijing-day arithmetic the SMS caps depend on."""

from __future__ import annotations

import pytest

from alerts.channels.base import (
    REDACTED,
    beijing_day,
    classify_http,
    parse_retry_after,
    scrub,
    seconds_to_beijing_midnight,
)

NOW = 1_795_076_800.0  # Thu, 19 Nov 2026 08:26:40 GMT

# Every status a provider might send, and what the outbox must do with it.
TABLE = [
    (200, "delivered"),
    (201, "delivered"),
    (202, "delivered"),
    (204, "delivered"),
    (100, "give_up"),
    (301, "give_up"),
    (302, "give_up"),
    (304, "give_up"),
    (400, "give_up"),
    (401, "give_up"),
    (403, "give_up"),
    (404, "give_up"),
    (405, "give_up"),
    (409, "give_up"),
    (410, "give_up"),
    (413, "give_up"),
    (415, "give_up"),
    (422, "give_up"),
    (408, "retry"),
    (425, "retry"),
    (429, "retry"),
    (500, "retry"),
    (501, "retry"),
    (502, "retry"),
    (503, "retry"),
    (504, "retry"),
    (599, "retry"),
]


@pytest.mark.parametrize(("status", "expected"), TABLE)
def test_every_status_maps_to_its_verdict(status, expected):
    v = classify_http(status, body='{"error":"x"}', now=NOW)
    outcome = "delivered" if v.ok else ("retry" if v.retryable else "give_up")
    assert outcome == expected
    assert v.status == status
    if not v.ok:
        assert v.reason.startswith(f"HTTP {status}")
        assert '{"error":"x"}' in v.reason  # the provider's own words reach the operator


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-5", 0.0),  # never negative
        ("Thu, 19 Nov 2026 08:27:40 GMT", 60.0),  # HTTP-date, one minute after NOW
        ("Thu, 19 Nov 2026 08:00:00 GMT", 0.0),  # in the past
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_is_honoured_in_both_forms(header, seconds):
    assert parse_retry_after(header, NOW) == seconds


def test_retryable_statuses_carry_retry_after():
    assert classify_http(429, retry_after="30", now=NOW).retry_after_s == 30.0
    assert (
        classify_http(503, retry_after="Thu, 19 Nov 2026 08:28:40 GMT", now=NOW).retry_after_s
        == 120.0
    )
    # A give-up verdict has nothing to wait for.
    assert classify_http(400, retry_after="30", now=NOW).retry_after_s is None


def test_reason_quotes_a_bounded_single_line_snippet():
    v = classify_http(500, body="line one\n  line two\n" + "x" * 5000, now=NOW)
    assert "\n" not in v.reason
    assert v.reason.startswith("HTTP 500: line one line two")
    assert len(v.reason) < 260


def test_scrub_replaces_longest_first_and_ignores_tiny_values():
    text = "key=abcdef123456 and abcdef in a word; ab"
    out = scrub(text, ["abcdef", "abcdef123456", "ab"])
    assert out == f"key={REDACTED} and {REDACTED} in a word; ab"


@pytest.mark.parametrize(
    ("now", "day", "to_midnight"),
    [
        (NOW, "2026-11-19", 86400 - (16 * 3600 + 26 * 60 + 40)),  # 16:26:40 in Beijing
        (1_795_104_000.0, "2026-11-20", 86400.0),  # 00:00:00 Beijing exactly
        (1_795_103_999.0, "2026-11-19", 1.0),  # 23:59:59 Beijing
    ],
)
def test_beijing_day_boundaries(now, day, to_midnight):
    assert beijing_day(now) == day
    assert seconds_to_beijing_midnight(now) == pytest.approx(to_midnight)
