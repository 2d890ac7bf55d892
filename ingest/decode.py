"""Payload decoders (pure): bytes from a gateway -> raw readings with resolved epoch-ms times,
plus a precise problem for every part that could not be decoded.

Decoders are registered by name. `canonical` is the contract of DESIGN.md (one reading
`{"tag","ts","v","q"}` or a batch `{"ts","data":[...]}`, `ts` epoch ms or ISO 8601 with an
offset, optional per-reading unit `u`); `provincial` is the provincial platforms' style
`{"tnm","ts","val"}` (Beijing wall-clock time, value as a string), one object or a list.

The canonical decoder has a fast path (one msgspec pass straight into structs) and, only when
that fails, a lenient path that checks every reading on its own, so one bad reading in a
batch of 500 dead-letters that reading (with a path like `$.data[3].v`) and keeps the 499.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from ingest.model import RejectReason

# Provincial platforms send Beijing wall-clock time (UTC+8, no daylight saving).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


class RawReading(msgspec.Struct, gc=False):
    """One decoded reading before registry lookup. After decoding `ts` is epoch ms (int)."""

    tag: str
    v: float
    ts: int | str | None = None
    q: int = 0
    u: str | None = None  # unit as sent; None = the point's registered unit


class RawEvent(msgspec.Struct, gc=False):
    """One decoded event message (`.../event`): video AI, missed static discharge, ..."""

    tag: str
    type: str
    ts: int | str | None = None
    text: str = ""


class _Envelope(msgspec.Struct, gc=False):
    """Single reading and batch in one shape, so one decode pass handles both."""

    data: list[RawReading] | None = None
    tag: str | None = None
    v: float | None = None
    ts: int | str | None = None
    q: int = 0
    u: str | None = None


@dataclass(frozen=True, slots=True)
class DecodeProblem:
    """Why (part of) a payload could not be decoded."""

    reason: RejectReason
    detail: str  # what, where (`$.data[3].v`), what was expected
    index: int | None = None  # position in a batch, None for the whole message
    item: bytes = b""  # the offending reading re-encoded, when one reading of many


@dataclass(slots=True)
class Decoded:
    """What a decoder returns. A reading's `ts` is epoch ms, or None for "the batch time"
    (`ts`), or an ISO 8601 string not parsed yet: use `resolve_ts` unless it is an int."""

    readings: list[RawReading] = field(default_factory=list)
    events: list[RawEvent] = field(default_factory=list)
    problems: list[DecodeProblem] = field(default_factory=list)
    ts: int | None = None  # batch time, for readings without their own
    ts_error: str = ""  # why the batch time is unusable, if it is
    batch: bool = False  # the payload was a batch: problems point at one reading by index
    # Position in the payload of each entry of `readings`, when some were left out (None:
    # `readings[i]` is item i of the payload).
    indices: list[int] | None = None

    def add(self, r: RawReading, index: int) -> None:
        """Append a reading that was item `index` of the payload (lenient paths)."""
        if self.indices is None:
            self.indices = list(range(len(self.readings)))
        self.readings.append(r)
        self.indices.append(index)

    def index_of(self, i: int) -> int:
        """Position in the payload of `readings[i]`."""
        return i if self.indices is None else self.indices[i]

    def resolve_ts(self, index: int, r: RawReading) -> int:
        """Epoch ms of reading `index`; raises ValueError saying what is wrong and where."""
        ts = r.ts
        if type(ts) is int:
            return ts
        if ts is None:
            if self.ts is not None:
                return self.ts
            if self.ts_error:
                raise ValueError(self.ts_error)
            raise ValueError(f"missing 'ts' at $.data[{index}] (and no batch time at $.ts)")
        if type(ts) is not str:
            raise ValueError(
                f"expected epoch ms (integer) or ISO 8601 text at $.data[{index}].ts, "
                f"got {_type_name(ts)}"
            )
        try:
            return parse_iso_ms(ts)
        except ValueError as exc:
            raise ValueError(f"{exc} at $.data[{index}].ts") from None


Decoder = Callable[[bytes], Decoded]

_envelope_decoder = msgspec.json.Decoder(_Envelope)
_event_decoder = msgspec.json.Decoder(RawEvent)
_encoder = msgspec.json.Encoder()

# ---------------------------------------------------------------------------- time parsing

_ISO_CACHE: dict[str, int | str] = {}
_ISO_CACHE_MAX = 4096


def parse_iso_ms(s: str) -> int:
    """ISO 8601 with an offset (`2026-11-29T08:00:00.250+08:00`, `...Z`) -> epoch ms.

    Raises ValueError naming what was wrong; a time without an offset is ambiguous and refused.
    Results are cached: a batch usually carries one timestamp string many times.
    """
    hit = _ISO_CACHE.get(s)
    if hit is not None:
        if isinstance(hit, str):
            raise ValueError(hit)
        return hit
    try:
        dt = datetime.fromisoformat(s)
        if dt.tzinfo is None:
            raise ValueError(f"time {s!r} has no UTC offset; expected e.g. {s}+08:00 or {s}Z")
        ms = round(dt.timestamp() * 1000)
        result: int | str = ms
    except ValueError as exc:
        msg = str(exc)
        if "no UTC offset" not in msg:
            msg = f"time {s!r} is not epoch milliseconds or ISO 8601 with an offset"
        result = msg
    if len(_ISO_CACHE) >= _ISO_CACHE_MAX:
        _ISO_CACHE.clear()
    _ISO_CACHE[s] = result
    if isinstance(result, str):
        raise ValueError(result)
    return result


_BJ_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?")
_BJ_CACHE: dict[str, int | str] = {}


def parse_beijing_ms(s: str) -> int:
    """`yyyy-MM-dd HH:mm:ss` (optionally `.SSS`) Beijing time -> epoch ms."""
    hit = _BJ_CACHE.get(s)
    if hit is not None:
        if isinstance(hit, str):
            raise ValueError(hit)
        return hit
    m = _BJ_RE.fullmatch(s)
    result: int | str
    if m is None:
        result = f"time {s!r} is not 'yyyy-MM-dd HH:mm:ss' (Beijing time)"
    else:
        y, mo, d, hh, mi, ss, frac = m.groups()
        try:
            dt = datetime(int(y), int(mo), int(d), int(hh), int(mi), int(ss), tzinfo=BEIJING)
            ms = int(dt.timestamp()) * 1000 + (int(frac.ljust(3, "0")) if frac else 0)
            result = ms
        except ValueError as exc:
            result = f"time {s!r} is not a valid date/time: {exc}"
    if len(_BJ_CACHE) >= _ISO_CACHE_MAX:
        _BJ_CACHE.clear()
    _BJ_CACHE[s] = result
    if isinstance(result, str):
        raise ValueError(result)
    return result


def _resolve_ts(ts: int | str | None, default: int | str | None) -> int:
    """Item ts, else the batch ts; raises ValueError when neither is usable."""
    if ts is None:
        ts = default
    if type(ts) is int:
        return ts
    if ts is None:
        raise ValueError("missing 'ts' (on the reading or the batch)")
    return parse_iso_ms(ts)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- error mapping

_PATH_RE = re.compile(r" - at `(\$[^`]*)`$")


def _classify(msg: str, path: str) -> RejectReason:
    if "out of range" in msg and path.endswith(".v"):
        return RejectReason.NOT_FINITE
    if path.endswith(".ts"):
        return RejectReason.BAD_TIME
    if path.endswith(".q"):
        return RejectReason.BAD_QUALITY
    if msg.startswith("Expected `") and path not in ("", "$"):
        return RejectReason.WRONG_TYPE
    return RejectReason.SCHEMA


def _validation_problem(
    exc: msgspec.ValidationError, prefix: str, index: int | None, item: bytes
) -> DecodeProblem:
    msg = str(exc)
    m = _PATH_RE.search(msg)
    path = m.group(1) if m else "$"
    if m:
        msg = msg[: m.start()]
    full = prefix + path[1:]
    return DecodeProblem(_classify(msg, full), f"{msg} at {full}", index, item)


def _type_name(x: object) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        type(None): "null",
        int: "integer",
        float: "number",
    }.get(type(x), type(x).__name__)


# ---------------------------------------------------------------------------- canonical


def _too_deep() -> Decoded:
    # msgspec raises RecursionError (not DecodeError) when it skips a deeply nested value.
    out = Decoded()
    out.problems.append(DecodeProblem(RejectReason.MALFORMED_JSON, "JSON is nested too deeply"))
    return out


def decode_canonical(payload: bytes) -> Decoded:
    """Decode the canonical single or batch JSON of DESIGN.md."""
    try:
        env = _envelope_decoder.decode(payload)
    except RecursionError:
        return _too_deep()
    except msgspec.ValidationError:
        return _canonical_lenient(payload, None)
    except msgspec.DecodeError as exc:
        return _canonical_lenient(payload, exc)
    out = Decoded()
    if env.data is None:
        if env.tag is None or env.v is None:
            missing = "tag" if env.tag is None else "v"
            out.problems.append(
                DecodeProblem(
                    RejectReason.SCHEMA,
                    f"missing '{missing}' at $: expected one reading {{tag, ts, v, q}} "
                    "or a batch {ts, data: [...]}",
                )
            )
            return out
        r = RawReading(env.tag, env.v, env.ts, env.q, env.u)
        try:
            r.ts = _resolve_ts(r.ts, None)
        except ValueError as exc:
            out.problems.append(DecodeProblem(RejectReason.BAD_TIME, f"{exc} at $.ts"))
            return out
        out.readings.append(r)
        return out
    # No per-reading loop here: items without their own ts use `Decoded.ts`, and the rare ISO
    # string is parsed by `Decoded.resolve_ts` when the normaliser meets it.
    batch_ts = env.ts
    if type(batch_ts) is str:
        try:
            out.ts = parse_iso_ms(batch_ts)
        except ValueError as exc:
            out.ts_error = f"{exc} at $.ts (the batch time)"
    else:
        out.ts = batch_ts  # type: ignore[assignment]  # int or None here
    out.readings = env.data
    out.batch = True
    return out


def _canonical_lenient(payload: bytes, decode_exc: msgspec.DecodeError | None) -> Decoded:
    """Slow path: find out exactly which readings are bad, keep the good ones."""
    out = Decoded()
    try:
        # The stdlib parser accepts NaN/Infinity tokens (many gateways emit them), so a
        # non-finite value is reported as such instead of as malformed JSON.
        obj = json.loads(payload)
    except (ValueError, RecursionError):
        detail = str(decode_exc) if decode_exc is not None else "JSON is malformed"
        out.problems.append(DecodeProblem(RejectReason.MALFORMED_JSON, detail))
        return out
    if not isinstance(obj, dict):
        out.problems.append(
            DecodeProblem(
                RejectReason.SCHEMA,
                f"expected a JSON object at $ (one reading or a batch), got {_type_name(obj)}",
            )
        )
        return out
    if "data" not in obj:
        r = _lenient_item(obj, "$", None, None, out)
        if r is not None:
            out.readings.append(r)
        return out
    data = obj["data"]
    if not isinstance(data, list):
        out.problems.append(
            DecodeProblem(
                RejectReason.SCHEMA, f"expected an array at $.data, got {_type_name(data)}"
            )
        )
        return out
    out.batch = True
    batch_ts = obj.get("ts")
    if batch_ts is not None and (type(batch_ts) is not int and type(batch_ts) is not str):
        out.problems.append(
            DecodeProblem(
                RejectReason.BAD_TIME,
                f"expected epoch ms or ISO 8601 text at $.ts, got {_type_name(batch_ts)}",
            )
        )
        return out
    for i, item in enumerate(data):
        r = _lenient_item(item, f"$.data[{i}]", i, batch_ts, out)
        if r is not None:
            out.add(r, i)
    return out


def _item_bytes(item: Any) -> bytes:
    try:
        return json.dumps(item, ensure_ascii=False, allow_nan=True).encode()
    except (TypeError, ValueError):
        return repr(item).encode()


def _lenient_item(
    item: Any, path: str, index: int | None, batch_ts: Any, out: Decoded
) -> RawReading | None:
    if isinstance(item, dict):
        v = item.get("v")
        if type(v) is float and not math.isfinite(v):
            out.problems.append(
                DecodeProblem(
                    RejectReason.NOT_FINITE,
                    f"value {v!r} is not a finite number at {path}.v",
                    index,
                    _item_bytes(item),
                )
            )
            return None
        if type(v) is int and not -(2**63) <= v < 2**63:
            out.problems.append(
                DecodeProblem(
                    RejectReason.NOT_FINITE,
                    f"value out of range at {path}.v",
                    index,
                    _item_bytes(item),
                )
            )
            return None
    try:
        r = msgspec.convert(item, RawReading)
    except msgspec.ValidationError as exc:
        out.problems.append(_validation_problem(exc, path, index, _item_bytes(item)))
        return None
    try:
        r.ts = _resolve_ts(r.ts, batch_ts)
    except ValueError as exc:
        where = f"{path}.ts" if item.get("ts") is not None or index is None else "$.ts"
        out.problems.append(
            DecodeProblem(RejectReason.BAD_TIME, f"{exc} at {where}", index, _item_bytes(item))
        )
        return None
    return r


def decode_event(payload: bytes) -> Decoded:
    """Decode an event message `{"tag", "ts", "type", "text"}` (topic `.../event`)."""
    out = Decoded()
    try:
        ev = _event_decoder.decode(payload)
    except RecursionError:
        return _too_deep()
    except msgspec.ValidationError as exc:
        out.problems.append(_validation_problem(exc, "$", None, b""))
        return out
    except msgspec.DecodeError as exc:
        out.problems.append(DecodeProblem(RejectReason.MALFORMED_JSON, str(exc)))
        return out
    try:
        ev.ts = _resolve_ts(ev.ts, None)
    except ValueError as exc:
        out.problems.append(DecodeProblem(RejectReason.BAD_TIME, f"{exc} at $.ts"))
        return out
    out.events.append(ev)
    return out


# ---------------------------------------------------------------------------- provincial


class _Provincial(msgspec.Struct, gc=False):
    tnm: str
    ts: str
    val: str | float


_prov_one = msgspec.json.Decoder(_Provincial | list[_Provincial])  # type: ignore[arg-type]


def decode_provincial(payload: bytes) -> Decoded:
    """Decode `{"tnm": tag, "ts": "yyyy-MM-dd HH:mm:ss" (Beijing), "val": "27.20"}` or a list."""
    out = Decoded()
    try:
        obj = _prov_one.decode(payload)
    except RecursionError:
        return _too_deep()
    except msgspec.ValidationError:
        return _provincial_lenient(payload, out)
    except msgspec.DecodeError as exc:
        out.problems.append(DecodeProblem(RejectReason.MALFORMED_JSON, str(exc)))
        return out
    items = obj if isinstance(obj, list) else [obj]
    single = not isinstance(obj, list)
    out.batch = not single
    for i, it in enumerate(items):
        _provincial_item(it, "$" if single else f"$[{i}]", None if single else i, out)
    return out


def _provincial_item(it: _Provincial, path: str, index: int | None, out: Decoded) -> None:
    val = it.val
    if type(val) is str:
        try:
            v = float(val)
        except ValueError:
            out.problems.append(
                DecodeProblem(
                    RejectReason.WRONG_TYPE,
                    f"value {val!r} is not a number at {path}.val",
                    index,
                    _encoder.encode(it),
                )
            )
            return
    else:
        v = float(val)
    if not math.isfinite(v):
        out.problems.append(
            DecodeProblem(
                RejectReason.NOT_FINITE,
                f"value {val!r} is not a finite number at {path}.val",
                index,
                _encoder.encode(it),
            )
        )
        return
    try:
        ts = parse_beijing_ms(it.ts)
    except ValueError as exc:
        out.problems.append(
            DecodeProblem(RejectReason.BAD_TIME, f"{exc} at {path}.ts", index, _encoder.encode(it))
        )
        return
    out.add(RawReading(it.tnm, v, ts), index or 0)


def _provincial_lenient(payload: bytes, out: Decoded) -> Decoded:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        out.problems.append(DecodeProblem(RejectReason.MALFORMED_JSON, str(exc)))
        return out
    single = not isinstance(obj, list)
    out.batch = not single
    items = [obj] if single else obj
    for i, item in enumerate(items):
        path = "$" if single else f"$[{i}]"
        try:
            it = msgspec.convert(item, _Provincial)
        except msgspec.ValidationError as exc:
            out.problems.append(
                _validation_problem(exc, path, None if single else i, _item_bytes(item))
            )
            continue
        _provincial_item(it, path, None if single else i, out)
    return out


# ---------------------------------------------------------------------------- registry

_DECODERS: dict[str, Decoder] = {}
_SNIFFERS: list[tuple[str, Callable[[bytes], bool]]] = []


def register_decoder(
    name: str, decoder: Decoder, sniff: Callable[[bytes], bool] | None = None
) -> None:
    """Add a vendor format. `sniff(payload)` lets the `auto` format recognise it cheaply."""
    if not name or name == "auto":
        raise ValueError(f"decoder name {name!r} is reserved or empty")
    _DECODERS[name] = decoder
    if sniff is not None:
        _SNIFFERS[:] = [(n, s) for n, s in _SNIFFERS if n != name]
        _SNIFFERS.append((name, sniff))


def decoder_names() -> tuple[str, ...]:
    return ("auto", *_DECODERS)


def get_decoder(name: str) -> Decoder:
    """The decoder registered as `name` (`auto` sniffs each payload)."""
    if name == "auto":
        return decode_auto
    try:
        return _DECODERS[name]
    except KeyError:
        raise KeyError(
            f"unknown payload format {name!r}; expected one of {', '.join(decoder_names())}"
        ) from None


_JSON_START = frozenset(b'{["-0123456789tfn')


def decode_auto(payload: bytes) -> Decoded:
    """Pick the decoder by a cheap look at the bytes; canonical when nothing else matches.

    Bytes that cannot even start a JSON text (a binary or CSV gateway format nobody
    registered) are `unknown_format`, not `malformed_json`: the fix is a decoder plug-in.
    """
    for name, sniff in _SNIFFERS:
        if sniff(payload):
            return _DECODERS[name](payload)
    head = payload[:64].lstrip()
    if head and head[0] not in _JSON_START:
        out = Decoded()
        out.problems.append(
            DecodeProblem(
                RejectReason.UNKNOWN_FORMAT,
                f"payload is not JSON (starts with {head[:16]!r}) and no registered decoder "
                f"recognises it; known formats: {', '.join(_DECODERS)}",
            )
        )
        return out
    return decode_canonical(payload)


register_decoder("canonical", decode_canonical)
_TNM_KEY = re.compile(rb'"tnm"\s*:')


def _looks_provincial(payload: bytes) -> bool:
    # A key, not a value: a canonical reading whose tag happens to be "tnm" stays canonical.
    return b'"tnm"' in payload and _TNM_KEY.search(payload) is not None


register_decoder("provincial", decode_provincial, sniff=_looks_provincial)
