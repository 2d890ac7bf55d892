"""Wire formats shared by every stage: readings as msgspec JSON (the Kafka readings topic,
the in-process queue's persistence) and dead letters as JSON with their original bytes in
base64 (the MQTT and Kafka dead-letter topics).

Event readings carry a NaN value; JSON has no NaN, so it travels as `null` and comes back NaN.
"""

from __future__ import annotations

import base64
import math

import msgspec

from ingest.model import DeadLetter, Reading, RejectReason, iso_ms


class CodecError(ValueError):
    """Bytes that are not what the codec expects (says where)."""


class _WireReading(msgspec.Struct, frozen=True, gc=False):
    enterprise_code: str
    tag: str
    ts_ms: int
    value: float | None
    quality: int = 0
    unit: str = ""
    received_ms: int = 0
    backfill: bool = False
    event_type: str | None = None
    text: str | None = None


_enc = msgspec.json.Encoder()
_dec_fast = msgspec.json.Decoder(list[Reading])
_dec_wire = msgspec.json.Decoder(list[_WireReading])


def encode_readings(readings: list[Reading]) -> bytes:
    """A JSON array of readings (NaN values become null)."""
    return _enc.encode(readings)


def decode_readings(data: bytes) -> list[Reading]:
    """Inverse of `encode_readings`; raises `CodecError` naming the bad element."""
    try:
        return _dec_fast.decode(data)
    except msgspec.ValidationError:
        pass  # most likely an event reading with value null: take the slower, exact path
    except msgspec.DecodeError as exc:
        raise CodecError(f"readings: {exc}") from None
    try:
        wire = _dec_wire.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise CodecError(f"readings: {exc}") from None
    nan = math.nan
    return [
        Reading(
            w.enterprise_code,
            w.tag,
            w.ts_ms,
            nan if w.value is None else w.value,
            w.quality,
            w.unit,
            w.received_ms,
            w.backfill,
            w.event_type,
            w.text,
        )
        for w in wire
    ]


class _WireDeadLetter(msgspec.Struct, frozen=True):
    reason: str
    detail: str
    topic: str
    received_ms: int
    received: str  # the same instant as ISO 8601 UTC, for people reading the topic
    index: int | None
    payload_b64: str


def encode_dead_letter(dl: DeadLetter) -> bytes:
    """`{"reason","detail","topic","received_ms","received","index","payload_b64"}`."""
    return _enc.encode(
        _WireDeadLetter(
            reason=str(dl.reason),
            detail=dl.detail,
            topic=dl.topic,
            received_ms=dl.received_ms,
            received=iso_ms(dl.received_ms),
            index=dl.index,
            payload_b64=base64.b64encode(dl.payload).decode("ascii"),
        )
    )


_dec_dl = msgspec.json.Decoder(_WireDeadLetter)


def decode_dead_letter(data: bytes) -> DeadLetter:
    try:
        w = _dec_dl.decode(data)
        reason = RejectReason(w.reason)
        payload = base64.b64decode(w.payload_b64, validate=True)
    except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
        raise CodecError(f"dead letter: {exc}") from None
    return DeadLetter(reason, w.detail, w.topic, w.received_ms, payload, w.index)
