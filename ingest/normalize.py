"""Normalisation (pure): an MQTT message -> validated `Reading`s in their points' registered
units, and a `DeadLetter` for everything that could not be accepted.

Steps, in order: topic `<prefix>/<enterprise>/<gateway>/(data|event)`, size bound, decode
(format chosen per enterprise/gateway or sniffed), registry lookup, quality code, finite value,
time sanity (epoch seconds sent as ms, future beyond the skew bound rejected, older than the
backfill bound accepted with `backfill=True`), unit conversion, duplicate `(point, ts)` drop.
The per-reading loop is written for speed (≥ 500k readings/s per core on batch payloads).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import msgspec

from ingest.decode import Decoded, DecodeProblem, Decoder, RawReading, decode_event, get_decoder
from ingest.model import DeadLetter, Point, Reading, Registry, RejectReason
from ingest.units import UnitError, canonical_unit, linear

# Times before this are not plausible measurement times; they are usually epoch *seconds*.
_Y2000_MS = 946_684_800_000
# Dedupe keys pack a point id and the ms timestamp into one int: ts must stay below 2**42
# (the year 2109).
_TS_BITS = 42
_TS_MAX = (1 << _TS_BITS) - 1
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class NormalizeConfig:
    topic_prefix: str = "hw"
    # Payload format: a decoder name, or "auto" (sniff, canonical by default).
    decoder: str = "auto"
    # Per-source overrides: "<enterprise>" or "<enterprise>/<gateway>" -> decoder name.
    decoders: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    max_payload_bytes: int = 256 * 1024
    # A reading timestamped further in the future than this is a clock fault: rejected.
    max_future_ms: int = 60_000
    # A reading older than this on arrival is back-filled data: kept, flagged `backfill`.
    backfill_after_ms: int = 300_000
    # How many recent (point, ts) pairs are remembered to drop duplicates (QoS 1 redelivery,
    # gateways re-sending their buffer after an outage). Bounded memory, ~100 B per entry.
    dedupe_capacity: int = 1 << 18
    # A redelivered batch of 500 readings would make 500 dead letters: by default duplicates
    # are only counted (NormalizeResult.duplicates); True dead-letters each one.
    dead_letter_duplicates: bool = False
    # Reject a reading whose point is registered behind another gateway than the topic names.
    check_gateway: bool = True
    # How much of a rejected payload to keep in its dead letter.
    dead_letter_payload_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for name in (self.decoder, *self.decoders.values()):
            get_decoder(name)  # raises KeyError naming the known formats
        if self.max_future_ms < 0 or self.backfill_after_ms < 0:
            raise ValueError("max_future_ms and backfill_after_ms must be >= 0")
        if self.dedupe_capacity < 0:
            raise ValueError("dedupe_capacity must be >= 0")


@dataclass(slots=True)
class NormalizeResult:
    readings: list[Reading]
    rejects: list[DeadLetter]
    # Duplicates dropped without a dead letter (see NormalizeConfig.dead_letter_duplicates).
    duplicates: int = 0


class _Dedupe:
    """Recently accepted (point id, ts) keys, for dropping duplicates with bounded memory.

    In-order readings (the common case) only append their key to a list; the set used for
    membership is built lazily, when an older-than-newest reading actually has to be checked
    (QoS 1 redelivery, a gateway re-sending its buffer). Keys live in two generations: when the
    current one reaches half the capacity it becomes the old one and the oldest is forgotten.
    Point ids are allocated by point key and kept, so the memory survives registry reloads.
    """

    __slots__ = ("capacity", "cur_indexed", "cur_keys", "cur_set", "ids", "old_keys", "old_set")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cur_keys: list[int] = []
        self.cur_set: set[int] = set()
        self.cur_indexed = 0
        self.old_keys: list[int] = []
        self.old_set: set[int] | None = set()
        self.ids: dict[str, int] = {}

    def point_id(self, key: str) -> int:
        pid = self.ids.get(key)
        if pid is None:
            pid = self.ids[key] = len(self.ids) + 1
        return pid

    def rotate_if_full(self) -> None:
        if len(self.cur_keys) >= self.capacity // 2:
            self.old_keys = self.cur_keys
            self.old_set = self.cur_set if self.cur_indexed == len(self.cur_keys) else None
            self.cur_keys = []
            self.cur_set = set()
            self.cur_indexed = 0

    def seen(self, key: int) -> bool:
        keys = self.cur_keys
        if self.cur_indexed < len(keys):
            self.cur_set.update(keys[self.cur_indexed :])
            self.cur_indexed = len(keys)
        if key in self.cur_set:
            return True
        if self.old_set is None:
            self.old_set = set(self.old_keys)
        return key in self.old_set

    def __len__(self) -> int:
        return len(self.cur_keys) + len(self.old_keys)


@dataclass(frozen=True, slots=True)
class _UnitRejected:
    reason: RejectReason
    detail: str


class _PointInfo:
    __slots__ = ("base", "conv", "gateway", "hwm", "point", "unit")

    def __init__(self, point: Point, pid: int, hwm: int = 0) -> None:
        self.point = point
        self.unit = point.unit
        self.gateway = point.gateway_code
        self.base = pid << _TS_BITS
        # Highest ts accepted: a newer reading cannot be a duplicate (the common, fast case).
        self.hwm = hwm
        # unit as sent -> (scale, offset), or why it cannot be used
        self.conv: dict[str, tuple[float, float] | _UnitRejected] = {}

    def converter(self, unit: str) -> tuple[float, float] | _UnitRejected:
        c = self.conv.get(unit)
        if c is None:
            p = self.point
            try:
                canonical_unit(unit)
            except UnitError as exc:
                c = _UnitRejected(
                    RejectReason.UNKNOWN_UNIT, f"{exc} (point {p.key} is registered in {p.unit!r})"
                )
            else:
                try:
                    c = linear(unit, p.unit, p.parameter)
                except UnitError as exc:
                    c = _UnitRejected(RejectReason.UNCONVERTIBLE_UNIT, f"{exc} (point {p.key})")
            if len(self.conv) < 64:  # a gateway cannot grow this without bound
                self.conv[unit] = c
        return c


class Normalizer:
    """Turns `(topic, payload, received_ms)` into readings and dead letters. Not thread-safe:
    use one per consumer thread/task. Hot reload: `n = n.with_registry(new_registry)`."""

    def __init__(
        self,
        registry: Registry,
        config: NormalizeConfig | None = None,
        *,
        _dedupe: _Dedupe | None = None,
        _previous: Mapping[str, _PointInfo] | None = None,
        witness: Callable[[str, str, int, int], None] | None = None,
    ) -> None:
        # Called with (enterprise, gateway, ts_ms, received_ms) once per payload that carries
        # readings: the composition root feeds its clock the gateways' timestamps with it.
        self.witness = witness
        self.config = config or NormalizeConfig()
        self.registry = registry
        self._dedupe = _dedupe or _Dedupe(self.config.dedupe_capacity)
        prev = _previous or {}
        tables: dict[str, dict[str, _PointInfo]] = {}
        gw_tables: dict[tuple[str, str], dict[str, _PointInfo]] = {}
        self._infos: dict[str, _PointInfo] = {}
        for p in registry:
            old = prev.get(p.key)
            info = _PointInfo(p, self._dedupe.point_id(p.key), old.hwm if old else 0)
            self._infos[p.key] = info
            tables.setdefault(p.enterprise_code, {})[p.tag] = info
            gw_tables.setdefault((p.enterprise_code, p.gateway_code), {})[p.tag] = info
        # Points registered without a gateway may arrive through any gateway.
        for (ent, _gw), tbl in gw_tables.items():
            tbl.update(gw_tables.get((ent, ""), {}))
        self._tables = tables
        self._gw_tables = gw_tables
        self._prefix = self.config.topic_prefix + "/"
        self._default_decoder = get_decoder(self.config.decoder)
        self._decoders: dict[str, Decoder] = {
            k: get_decoder(v) for k, v in self.config.decoders.items()
        }

    def with_registry(self, registry: Registry) -> Normalizer:
        """A normaliser for a new registry version that keeps the duplicate memory."""
        return Normalizer(
            registry,
            self.config,
            _dedupe=self._dedupe,
            _previous=self._infos,
            witness=self.witness,
        )

    # ------------------------------------------------------------------ helpers

    def _dead(
        self,
        reason: RejectReason,
        detail: str,
        topic: str,
        received_ms: int,
        payload: bytes,
        index: int | None = None,
    ) -> DeadLetter:
        limit = self.config.dead_letter_payload_bytes
        return DeadLetter(reason, detail, topic, received_ms, payload[:limit], index)

    def _decoder_for(self, enterprise: str, gateway: str) -> Decoder:
        if self._decoders:
            d = self._decoders.get(f"{enterprise}/{gateway}") or self._decoders.get(enterprise)
            if d is not None:
                return d
        return self._default_decoder

    # ------------------------------------------------------------------ main entry

    def normalize(self, topic: str, payload: bytes, received_ms: int) -> NormalizeResult:
        """Validate and normalise one MQTT message. Never raises for bad input: everything
        that is not accepted comes back as a dead letter with its reason."""
        readings: list[Reading] = []
        rejects: list[DeadLetter] = []
        out = NormalizeResult(readings, rejects)
        prefix = self._prefix
        parts = topic[len(prefix) :].split("/") if topic.startswith(prefix) else ()
        if len(parts) != 3 or parts[2] not in ("data", "event") or not parts[0] or not parts[1]:
            rejects.append(
                self._dead(
                    RejectReason.BAD_TOPIC,
                    f"topic {topic!r} is not {prefix}<enterprise>/<gateway>/data or .../event",
                    topic,
                    received_ms,
                    payload,
                )
            )
            return out
        enterprise, gateway, kind = parts
        if len(payload) > self.config.max_payload_bytes:
            rejects.append(
                self._dead(
                    RejectReason.OVERSIZE,
                    f"payload of {len(payload)} bytes exceeds the limit of "
                    f"{self.config.max_payload_bytes} bytes",
                    topic,
                    received_ms,
                    payload,
                )
            )
            return out
        table = self._tables.get(enterprise)
        if table is None:
            rejects.append(
                self._dead(
                    RejectReason.UNKNOWN_ENTERPRISE,
                    f"enterprise {enterprise!r} (from the topic) is not in the registry "
                    f"(version {self.registry.version or '-'})",
                    topic,
                    received_ms,
                    payload,
                )
            )
            return out
        if kind == "event":
            decoded = decode_event(payload)
        else:
            decoder = self._decoder_for(enterprise, gateway)
            try:
                decoded = decoder(payload)
            except Exception as exc:  # noqa: BLE001 - a plug-in's bug must not stop the stream
                rejects.append(
                    self._dead(
                        RejectReason.SCHEMA,
                        f"the payload decoder failed on this message: {type(exc).__name__}: "
                        f"{str(exc)[:200]}",
                        topic,
                        received_ms,
                        payload,
                    )
                )
                return out
        if decoded.problems:
            self._problems(decoded, topic, received_ms, payload, rejects)
        if decoded.events:
            self._events(decoded, table, enterprise, gateway, topic, received_ms, payload, out)
        items = decoded.readings
        if not items:
            return out
        if self.witness is not None:
            wts = decoded.ts if decoded.ts is not None else items[0].ts
            if type(wts) is int:  # ISO strings are parsed per reading later; skip those
                self.witness(enterprise, gateway, wts, received_ms)

        # ---- hot loop: locals only; anything unusual goes to _slow() which names the problem
        cfg = self.config
        future_bound = received_ms + cfg.max_future_ms
        backfill_bound = received_ms - cfg.backfill_after_ms
        dd = self._dedupe
        dedupe = dd.capacity > 0
        if dedupe:
            dd.rotate_if_full()
        keys_append = dd.cur_keys.append
        seen = dd.seen
        y2000 = _Y2000_MS
        dl_dups = cfg.dead_letter_duplicates
        append = readings.append
        get = (
            (self._gw_tables.get((enterprise, gateway)) or {}).get
            if cfg.check_gateway
            else (table.get)
        )
        batch_ts = decoded.ts
        for i, r in enumerate(items):
            tag = r.tag
            info = get(tag)
            ts = r.ts
            if ts is None:
                ts = batch_ts  # most batches carry one time for all their readings
            if info is None or type(ts) is not int:
                info, ts = self._slow_lookup(
                    info,
                    r,
                    i,
                    decoded,
                    table,
                    enterprise,
                    gateway,
                    topic,
                    received_ms,
                    payload,
                    rejects,
                )
                if info is None:
                    continue
            v = r.v
            q = r.q
            if not 0 <= q <= 3 or v - v != 0.0 or ts < y2000 or ts > future_bound:
                reason, detail = _why_bad(q, v, ts, received_ms, cfg.max_future_ms)
                rejects.append(
                    self._reject_item(
                        reason,
                        f"{detail} (point {enterprise}/{r.tag})",
                        r,
                        i,
                        decoded,
                        topic,
                        received_ms,
                        payload,
                    )
                )
                continue
            u = r.u
            if u is not None and u != info.unit:
                c = info.converter(u)
                if type(c) is _UnitRejected:
                    rejects.append(
                        self._reject_item(
                            c.reason, c.detail, r, i, decoded, topic, received_ms, payload
                        )
                    )
                    continue
                scale, offset = c  # type: ignore[misc]
                v = v * scale + offset
            if dedupe:
                if ts > info.hwm:
                    info.hwm = ts
                    keys_append(info.base + ts)
                else:
                    key = info.base + ts
                    if seen(key):
                        if not dl_dups:
                            out.duplicates += 1
                            continue
                        rejects.append(
                            self._reject_item(
                                RejectReason.DUPLICATE,
                                f"duplicate reading for {enterprise}/{r.tag} at ts {ts} "
                                "(already accepted)",
                                r,
                                i,
                                decoded,
                                topic,
                                received_ms,
                                payload,
                            )
                        )
                        continue
                    keys_append(key)
            append(
                Reading(enterprise, r.tag, ts, v, q, info.unit, received_ms, ts < backfill_bound)
            )
        return out

    def _slow_lookup(
        self,
        info: _PointInfo | None,
        r: RawReading,
        i: int,
        decoded: Decoded,
        table: dict[str, _PointInfo],
        enterprise: str,
        gateway: str,
        topic: str,
        received_ms: int,
        payload: bytes,
        rejects: list[DeadLetter],
    ) -> tuple[_PointInfo | None, int]:
        """The unusual cases of the hot loop: unknown tag, other gateway, ts to resolve."""
        if info is None:
            known = table.get(r.tag)
            if known is None:
                reason = RejectReason.UNKNOWN_TAG
                detail = f"tag {r.tag!r} is not registered for enterprise {enterprise!r}"
            else:
                reason = RejectReason.GATEWAY_MISMATCH
                detail = (
                    f"point {enterprise}/{r.tag} is registered behind gateway "
                    f"{known.gateway!r}, but came from gateway {gateway!r}"
                )
            rejects.append(
                self._reject_item(reason, detail, r, i, decoded, topic, received_ms, payload)
            )
            return None, 0
        try:
            return info, decoded.resolve_ts(decoded.index_of(i), r)
        except ValueError as exc:
            rejects.append(
                self._reject_item(
                    RejectReason.BAD_TIME, str(exc), r, i, decoded, topic, received_ms, payload
                )
            )
            return None, 0

    # ------------------------------------------------------------------ slow paths

    def _reject_item(
        self,
        reason: RejectReason,
        detail: str,
        r: object,
        i: int,
        decoded: Decoded,
        topic: str,
        received_ms: int,
        payload: bytes,
    ) -> DeadLetter:
        """Dead letter for `decoded.readings[i]`: the whole message when it was one reading,
        else that reading alone with its position in the payload."""
        if not decoded.batch:
            return self._dead(reason, detail, topic, received_ms, payload, None)
        index = decoded.index_of(i)
        return self._dead(reason, detail, topic, received_ms, _json.encode(r), index)

    def _problems(
        self,
        decoded: Decoded,
        topic: str,
        received_ms: int,
        payload: bytes,
        rejects: list[DeadLetter],
    ) -> None:
        p: DecodeProblem
        for p in decoded.problems:
            body = p.item if p.index is not None and p.item else payload
            rejects.append(self._dead(p.reason, p.detail, topic, received_ms, body, p.index))

    def _events(
        self,
        decoded: Decoded,
        table: dict[str, _PointInfo],
        enterprise: str,
        gateway: str,
        topic: str,
        received_ms: int,
        payload: bytes,
        out: NormalizeResult,
    ) -> None:
        cfg = self.config
        for ev in decoded.events:
            info = table.get(ev.tag)
            ts = ev.ts
            assert type(ts) is int  # decode_event resolves the time or reports a problem
            if info is None:
                out.rejects.append(
                    self._dead(
                        RejectReason.UNKNOWN_TAG,
                        f"tag {ev.tag!r} is not registered for enterprise {enterprise!r}",
                        topic,
                        received_ms,
                        payload,
                    )
                )
                continue
            if cfg.check_gateway and info.gateway and info.gateway != gateway:
                out.rejects.append(
                    self._dead(
                        RejectReason.GATEWAY_MISMATCH,
                        f"point {enterprise}/{ev.tag} is registered behind gateway "
                        f"{info.gateway!r}, but came from gateway {gateway!r}",
                        topic,
                        received_ms,
                        payload,
                    )
                )
                continue
            if ts < _Y2000_MS or ts > received_ms + cfg.max_future_ms:
                reason, detail = _why_bad(0, 0.0, ts, received_ms, cfg.max_future_ms)
                out.rejects.append(self._dead(reason, detail, topic, received_ms, payload))
                continue
            out.readings.append(
                Reading(
                    enterprise,
                    ev.tag,
                    ts,
                    float("nan"),
                    0,
                    info.unit,
                    received_ms,
                    ts < received_ms - cfg.backfill_after_ms,
                    ev.type,
                    ev.text,
                )
            )


def _why_bad(
    q: int, v: float, ts: int, received_ms: int, max_future_ms: int
) -> tuple[RejectReason, str]:
    if q < 0 or q > 3:
        return RejectReason.BAD_QUALITY, (
            f"quality code {q} is not 0 (good), 1 (uncertain), 2 (fault) or 3 (maintenance)"
        )
    if v - v != 0.0:
        return RejectReason.NOT_FINITE, f"value {v!r} is not a finite number"
    if ts < _Y2000_MS:
        if 946_684_800 <= ts < 10_000_000_000:
            return RejectReason.BAD_TIME, (
                f"ts {ts} looks like epoch seconds; expected epoch milliseconds"
            )
        return RejectReason.BAD_TIME, f"ts {ts} is before 2000-01-01; expected epoch milliseconds"
    if ts > _TS_MAX:
        return RejectReason.BAD_TIME, f"ts {ts} is not a plausible epoch-milliseconds time"
    return RejectReason.CLOCK_SKEW, (
        f"ts {ts} is {(ts - received_ms) / 1000:.1f} s ahead of the receive time "
        f"(bound {max_future_ms / 1000:g} s): the sender's clock is wrong"
    )
