"""The balanced ledger of one fault case: what the gateways published against what the system
stored, dead-lettered, raised and delivered, with what was lost, what was duplicated and what
repeats the receivers absorbed by idempotency key.

What each column counts:
- readings: one unit per valid reading in a published batch, plus one per malformed message.
  `stored` = (enterprise, tag, ts) rows found in InfluxDB; `dead-lettered` = distinct dead
  letters (topic, index, payload) on the Kafka dead-letter topic, each with its reason, for
  the malformed units. lost = published - stored - dead-lettered. InfluxDB keeps one row per
  series and timestamp, so a reading written twice cannot show twice there: `duplicated`
  counts rows that match no published reading (a reading stored under another time or tag),
  and `absorbed` counts the extra copies of a reading on the Kafka readings topic (re-sent
  after a crash: processed again, stored once).
- alarms: each expected (enterprise, tag, level, state) alarm transition, and each expected
  warning event (enterprise, installation, colour, event type), must reach the platform
  under exactly one idempotency key. lost = expected transitions never seen; duplicated = a
  transition under a second key, or any transition the story does not produce (an offline
  flood after a restart is one).
- notifications: per alarm transition and warning event the platform push, one WeCom
  message to the enterprise's robot and one SMS to its operator. The platform deduplicates
  by Idempotency-Key, so a repeated key there is `absorbed`; a robot or a phone acts on every
  copy, so a repeated key there is `duplicated`, as is a second key for the same message.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from ingest.codec import decode_dead_letter, decode_readings
from tests.faults.scenario import EXPECTED_TRANSITIONS, EXPECTED_WARNINGS, Published

# Rows of the session's table, printed by tests/faults/conftest.py.
RESULTS: list[Row] = []


@dataclass
class Row:
    case: str
    published: int = 0
    stored: int = 0
    dead_lettered: int = 0
    alarms_expected: int = 0
    alarms_raised: int = 0
    notes_expected: int = 0
    notes_delivered: int = 0
    lost: Counter = field(default_factory=Counter)  # readings / alarms / notifications
    duplicated: Counter = field(default_factory=Counter)
    absorbed: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_alarm_latency_s: float = 0.0

    @property
    def balanced(self) -> bool:
        return (
            not self.problems and not sum(self.lost.values()) and not sum(self.duplicated.values())
        )

    def explain(self) -> str:
        return (
            f"case {self.case!r} does not balance: lost {dict(self.lost)}, duplicated "
            f"{dict(self.duplicated)}\n  " + "\n  ".join(self.problems + self.notes)
        )


def header(w: int) -> str:
    return (
        f"{'fault':<{w}} {'readings pub/stored/dl':>23} {'alarms+warn exp/raised':>23} "
        f"{'notifs exp/deliv':>17} {'lost r/a/n':>11} {'dup r/a/n':>10} {'absorbed r/a/n':>15} "
        f"{'alarm lat':>9}"
    )


def _ran(c: Counter) -> str:
    return f"{c['readings']}/{c['alarms']}/{c['notifications']}"


def format_row(r: Row, w: int = 34) -> str:
    mark = "" if r.balanced else " UNBALANCED"
    return (
        f"{r.case:<{w}} {f'{r.published}/{r.stored}/{r.dead_lettered}':>23} "
        f"{f'{r.alarms_expected}/{r.alarms_raised}':>23} "
        f"{f'{r.notes_expected}/{r.notes_delivered}':>17} {_ran(r.lost):>11} "
        f"{_ran(r.duplicated):>10} {_ran(r.absorbed):>15} {r.max_alarm_latency_s:>8.1f}s{mark}"
    )


def table(rows: list[Row]) -> str:
    w = max([5, *(len(r.case) for r in rows)])
    head = header(w)
    lines = [head, "-" * len(head), *(format_row(r, w) for r in rows)]
    for r in rows:
        for n in r.notes + r.problems:
            lines.append(f"  {r.case}: {n}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ sources


def read_topic(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of `topic` from the beginning to its current end (key, value)."""
    return [(k, v) for k, v, _p, _o in read_topic_at(bootstrap, topic)]


def read_topic_at(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes, int, int]]:
    """The same with each record's partition and offset."""

    async def go() -> list[tuple[bytes | None, bytes, int, int]]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        c = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
        )
        await c.start()
        try:
            parts = c.partitions_for_topic(topic)
            if parts is None:
                await c._client.force_metadata_update()
                parts = c.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            if not tps:
                return []
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            end = await c.end_offsets(tps)
            out: list[tuple[bytes | None, bytes, int, int]] = []
            while True:
                pos = [await c.position(tp) for tp in tps]
                if all(p >= end[tp] for p, tp in zip(pos, tps, strict=True)):
                    break
                batch = await c.getmany(*tps, timeout_ms=1000)
                for recs in batch.values():
                    out.extend((r.key, r.value, r.partition, r.offset) for r in recs)
            return out
        finally:
            await c.stop()

    return asyncio.run(go())


def stored_rows(stack, enterprises: list[str]) -> set[tuple[str, str, int]]:
    """(enterprise, tag, ts) of the `reading` rows of these enterprises in InfluxDB."""
    rx = "|".join(enterprises)
    doc = stack.influx_query(
        f'SELECT "quality" FROM "reading" WHERE "enterprise" =~ /^({rx})$/ '
        'GROUP BY "enterprise", "tag"'
    )
    out: set[tuple[str, str, int]] = set()
    for res in doc.get("results", []):
        for s in res.get("series", []) or []:
            ent, tag = s["tags"]["enterprise"], s["tags"]["tag"]
            out.update((ent, tag, int(v[0])) for v in s["values"])
    return out


def dead_letters(bootstrap: str, topic: str, enterprises: list[str]) -> Counter:
    """(enterprise, topic, index, payload, reason) -> copies on the dead-letter topic."""
    ents = set(enterprises)
    out: Counter = Counter()
    for _k, v in read_topic(bootstrap, topic):
        dl = decode_dead_letter(v)
        parts = dl.topic.split("/")
        if len(parts) > 1 and parts[1] in ents:
            out[(parts[1], dl.topic, dl.index, dl.payload, str(dl.reason))] += 1
    return out


def readings_copies(
    bootstrap: str, topic: str, enterprises: list[str], where: dict | None = None
) -> Counter:
    """(enterprise, tag, ts) -> copies on the Kafka readings topic; `where`, when given, is
    filled with each reading's first (partition, offset) there."""
    ents = {e.encode() for e in enterprises}
    out: Counter = Counter()
    for k, v, part, off in read_topic_at(bootstrap, topic):
        if k in ents:
            for r in decode_readings(v):
                key = (r.enterprise_code, r.tag, r.ts_ms)
                out[key] += 1
                if where is not None:
                    where.setdefault(key, (part, off))
    return out


# ------------------------------------------------------------------------------ alarms


def _event_ms(doc: dict) -> int | None:
    at = (doc.get("alarm") or doc.get("warning") or {}).get("event_at")
    if isinstance(at, int | float):
        return int(at)
    if isinstance(at, str):
        return int(datetime.fromisoformat(at).timestamp() * 1000)
    return None


def platform_transitions(deployment, enterprises: list[str]) -> dict[str, dict]:
    """First copy of every alarm message the platform accepted for these enterprises, by key,
    with how many copies came and when the first was accepted."""
    ents = set(enterprises)
    out: dict[str, dict] = {}
    for a in list(deployment.platform.accepted):
        if a.doc.get("enterprise_code") not in ents:
            continue
        if a.key in out:
            out[a.key]["copies"] += 1
            continue
        if a.doc.get("subject_kind") == "warning":
            w = a.doc["warning"]
            transition = (
                w["enterprise_code"],
                w["hazard_code"],
                "warning",
                w["colour"],
                a.doc["event_type"],
            )
        else:
            al = a.doc["alarm"]
            transition = (
                al["enterprise_code"],
                al["tag"],
                al["kind"],
                al["level"] if al["state"] == "firing" else None,
                al["state"],
            )
        out[a.key] = {
            "transition": transition,
            "event_type": a.doc.get("event_type"),
            "copies": 1,
            "at": a.at,
            "event_ms": _event_ms(a.doc),
        }
    return out


def expected_transitions(enterprises: list[str]) -> list[tuple]:
    """Alarm transitions and warning events every enterprise's story must produce."""
    out = []
    for e in enterprises:
        out += [(e, tag, "limit", lvl, st) for tag, lvl, st in EXPECTED_TRANSITIONS]
        out += [(e, f"{e}-MH1", "warning", c, et) for c, et in EXPECTED_WARNINGS]
    return out


PER_ENTERPRISE = len(EXPECTED_TRANSITIONS) + len(EXPECTED_WARNINGS)


def people_messages(deployment, enterprises: list[str]) -> dict[tuple[str, str], Counter]:
    """(channel, enterprise) -> copies per key at the WeCom robot and the operator's phone."""
    by_robot = {f"robot-key-{e}": e for e in enterprises}
    by_phone = {deployment.phones[e][-11:]: e for e in enterprises}
    out: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for a in list(deployment.wecom.accepted):
        if a.target in by_robot:
            out[("wecom", by_robot[a.target])][a.key] += 1
    for a in list(deployment.sms.accepted):
        e = by_phone.get(str(a.target)[-11:])
        if e is not None:
            out[("aliyun_sms", e)][a.key] += 1
    return out


# ------------------------------------------------------------------------------ the ledger


def progress(deployment, stack, enterprises: list[str], published: Published) -> dict[str, bool]:
    """Which parts of the ledger are complete yet (the case waits for all, then a quiet
    period, before balancing)."""
    got = {v["transition"] for v in platform_transitions(deployment, enterprises).values()}
    people = people_messages(deployment, enterprises)
    per_ent = PER_ENTERPRISE
    try:
        n_stored = len(stored_rows(stack, enterprises) & published.valid)
    except OSError:
        n_stored = -1  # InfluxDB is down
    return {
        "alarms": set(expected_transitions(enterprises)) <= got,
        "people": all(
            len(people.get((ch, e), ())) >= per_ent
            for e in enterprises
            for ch in ("wecom", "aliyun_sms")
        ),
        "stored": n_stored == len(published.valid),
    }


def dump(path, deployment, enterprises: list[str]) -> None:
    """What the receivers accepted for these enterprises, for reading a failed case."""
    ents = set(enterprises)
    robots = {f"robot-key-{e}" for e in enterprises}
    phones = {deployment.phones[e][-11:] for e in enterprises}
    out = {
        "platform": [
            {"key": a.key, "at": a.at, "doc": a.doc}
            for a in list(deployment.platform.accepted)
            if a.doc.get("enterprise_code") in ents
        ],
        "wecom": [
            {"key": a.key, "at": a.at, "target": a.target, "doc": a.doc}
            for a in list(deployment.wecom.accepted)
            if a.target in robots
        ],
        "sms": [
            {"key": a.key, "at": a.at, "target": a.target, "doc": a.doc}
            for a in list(deployment.sms.accepted)
            if str(a.target)[-11:] in phones
        ],
    }
    path.write_text(json.dumps(out, ensure_ascii=False, indent=1, default=str), "utf-8")


def balance(case: str, deployment, stack, enterprises: list[str], published: Published) -> Row:
    row = Row(case)
    slug = "".join(c if c.isalnum() else "-" for c in case)[:40]
    dump(deployment.tmp / f"received-{slug}.json", deployment, enterprises)
    # readings
    row.published = published.units
    rows = stored_rows(stack, enterprises)
    stored = rows & published.valid
    row.stored = len(stored)
    dls = dead_letters(stack.kafka_bootstrap, deployment.deadletter_topic, enterprises)
    reasons_by_ent: dict[str, Counter] = defaultdict(Counter)
    for (ent, _t, _i, _p, reason), n in dls.items():
        reasons_by_ent[ent][reason] += 1
        row.absorbed["readings"] += n - 1
    expected_reasons: dict[str, Counter] = defaultdict(Counter)
    for (ent, _tick), reason in published.malformed.items():
        expected_reasons[ent][reason] += 1
    dl_accounted = 0
    for ent in enterprises:
        got, want = reasons_by_ent[ent], expected_reasons[ent]
        dl_accounted += sum((got & want).values())
        if got != want:
            row.problems.append(f"{ent} dead letters by reason {dict(got)}, expected {dict(want)}")
    row.dead_lettered = sum(sum(c.values()) for c in reasons_by_ent.values())
    row.lost["readings"] = row.published - row.stored - dl_accounted
    row.duplicated["readings"] = len(rows - published.valid)
    where: dict = {}
    copies = readings_copies(stack.kafka_bootstrap, deployment.readings_topic, enterprises, where)
    row.absorbed["readings"] += sum(n - 1 for n in copies.values() if n > 1)
    if row.lost["readings"]:
        # Where the loss happened: before Kafka (bridge, broker) or after (worker, writer).
        on_topic = len(set(copies) & published.valid)
        row.notes.append(
            f"{on_topic} of {len(published.valid)} valid readings reached the readings topic"
        )
        # and which records of the topic hold the missing ones (the workers' logs say who
        # read them when)
        records = Counter(where.get(k, ("-", "-")) for k in published.valid - rows)
        row.notes.append(
            "missing readings by readings-topic record (partition, offset): "
            + ", ".join(f"{p}@{o} x{n}" for (p, o), n in sorted(records.items(), key=str)[:12])
        )
    if published.unacked:
        row.notes.append(f"{published.unacked} messages never acknowledged by the broker")

    # alarms
    msgs = platform_transitions(deployment, enterprises)
    keys_of: dict[tuple, list[str]] = defaultdict(list)
    for key, m in msgs.items():
        keys_of[m["transition"]].append(key)
    expected = expected_transitions(enterprises)
    row.alarms_expected = len(expected)
    row.alarms_raised = sum(1 for t in expected if keys_of.get(t))
    row.lost["alarms"] = row.alarms_expected - row.alarms_raised
    row.duplicated["alarms"] = sum(len(keys_of[t]) - 1 for t in expected if len(keys_of[t]) > 1)
    unexpected = [t for t in keys_of if t not in set(expected)]
    row.duplicated["alarms"] += sum(len(keys_of[t]) for t in unexpected)
    for t in unexpected[:5]:
        row.problems.append(f"unexpected alarm transition {t}")
    if len(unexpected) > 5:
        row.problems.append(f"... {len(unexpected) - 5} more unexpected transitions")
    lat = [
        m["at"] - m["event_ms"] / 1000
        for m in msgs.values()
        if m["transition"] in set(expected) and m["event_ms"] is not None
    ]
    row.max_alarm_latency_s = max(lat, default=0.0)

    # notifications: platform (absorbed repeats), WeCom robot and SMS (repeats are duplicates)
    per_ent = PER_ENTERPRISE
    row.notes_expected = 3 * len(expected)
    platform_ok = sum(1 for t in expected if keys_of.get(t))
    row.absorbed["notifications"] += sum(m["copies"] - 1 for m in msgs.values())
    people = people_messages(deployment, enterprises)
    people_ok = 0
    for e in enterprises:
        for ch in ("wecom", "aliyun_sms"):
            c = people.get((ch, e), Counter())
            distinct = len(c)
            people_ok += min(distinct, per_ent)
            row.lost["notifications"] += max(0, per_ent - distinct)
            row.duplicated["notifications"] += max(0, distinct - per_ent)
            row.duplicated["notifications"] += sum(n - 1 for n in c.values())
    row.notes_delivered = platform_ok + people_ok
    row.lost["notifications"] += len(expected) - platform_ok
    row.duplicated["notifications"] += row.duplicated["alarms"]
    row.notes.extend(deployment.events)
    row.notes.extend(stack.events)
    deployment.events.clear()
    stack.events.clear()
    return row
