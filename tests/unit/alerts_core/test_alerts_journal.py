"""The audit journal: every transition, action and notification result is recorded, and
`audit verify` fails on one edited, removed or reordered record, naming it."""

from __future__ import annotations

import json
import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.channels.testing import RecordingChannel
from alerts.journal import Journal, verify_export
from alerts.model import Verdict
from hazardwatch.cli import main
from tests.unit.alerts_core.conftest import MIN, T0, alarm, warning


@pytest.fixture
def busy(service, store, tmp_path):
    """A store whose journal holds a bit of everything."""
    service.record_ruleset_change("rules-v2", T0 - 1, {"files": 3}, actor="engineer")
    service.on_alarm(alarm(), T0)
    service.on_warning(warning(), T0)
    service.acknowledge("A1", "王操作", T0 + MIN)
    service.on_alarm(alarm(state="cleared", ts=T0 + 2 * MIN), T0 + 2 * MIN)
    service.dispose("A1", "王操作", "real_alarm_handled", "closed the valve", T0 + 3 * MIN)
    service.shelve("A1", "值班员", "noisy", T0 + 60 * MIN, T0 + 3 * MIN)
    service.file("maintenance", "E002", "u", T0, planned_end_ms=T0 + 60 * MIN)
    chans = {c: RecordingChannel(c) for c in ("platform", "aliyun_sms", "wecom")}
    chans["wecom"].then(Verdict.retry("errcode 45009", retry_after_s=60))
    service.outbox.deliver_due(T0 + 4 * MIN, chans)
    return store.path


def _db(path):
    db = sqlite3.connect(path)
    db.isolation_level = None
    return db


def test_everything_is_journaled(busy, store):
    kinds = [r[2] for r in store.journal_rows()]
    for expected in (
        "ruleset.changed",
        "alarm.event",
        "warning.event",
        "action.acknowledge",
        "action.dispose",
        "action.shelve",
        "action.file",
        "notify.enqueued",
        "notify.attempt",
    ):
        assert expected in kinds, expected
    attempts = [json.loads(r[5]) for r in store.journal_rows() if r[2] == "notify.attempt"]
    assert any(not a["ok"] and a["reason"] == "errcode 45009" for a in attempts)
    ack = next(r for r in store.journal_rows() if r[2] == "action.acknowledge")
    assert ack[4] == "王操作"  # the actor
    assert Journal(store).verify().ok


def test_verify_passes_on_an_intact_journal_via_the_cli(busy, capsys):
    assert main(["audit", "verify", "--db", str(busy)]) == 0
    assert "chain intact" in capsys.readouterr().out


def test_one_edited_record_fails_verify_and_is_named(busy, capsys):
    with _db(busy) as db:
        db.execute("UPDATE journal SET actor = '李四' WHERE kind='action.acknowledge'")
        seq = db.execute("SELECT seq FROM journal WHERE kind='action.acknowledge'").fetchone()[0]
    assert main(["audit", "verify", "--db", str(busy)]) == 1
    err = capsys.readouterr().err
    assert f"record {seq} was edited" in err and f"first bad record: {seq}" in err


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE journal SET ts_ms = ts_ms + 1 WHERE seq = 5",
        "UPDATE journal SET data = replace(data, 'closed the valve', 'nothing') WHERE seq = 5",
        "UPDATE journal SET data = '{\"x\":1}' WHERE seq = 5",
    ],
)
def test_any_field_edit_is_found(busy, store, edit):
    with _db(busy) as db:
        if "closed the valve" in edit:
            seq = db.execute("SELECT seq FROM journal WHERE kind='action.dispose'").fetchone()[0]
            edit = edit.replace("seq = 5", f"seq = {seq}")
        else:
            seq = 5
        db.execute(edit)
    r = Journal(store).verify()
    assert (r.ok, r.first_bad_seq) == (False, seq)


def test_one_removed_record_fails_verify(busy, store):
    with _db(busy) as db:
        db.execute("DELETE FROM journal WHERE seq = 7")
    r = Journal(store).verify()
    assert (r.ok, r.first_bad_seq) == (False, 7) and "missing" in r.reason


def test_removed_and_renumbered_records_fail_verify(busy, store):
    with _db(busy) as db:
        db.execute("DELETE FROM journal WHERE seq = 7")
        db.execute("UPDATE journal SET seq = seq - 1 WHERE seq > 7")
    r = Journal(store).verify()
    assert (r.ok, r.first_bad_seq) == (False, 7)


def test_removing_the_last_record_fails_verify(busy, store):
    with _db(busy) as db:
        db.execute("DELETE FROM journal WHERE seq = (SELECT max(seq) FROM journal)")
    r = Journal(store).verify()
    assert not r.ok and "removed from the end" in r.reason


def test_two_swapped_records_fail_verify(busy, store):
    with _db(busy) as db:
        a = db.execute(
            "SELECT ts_ms, kind, subject_id, actor, data, prev_hash, hash "
            "FROM journal WHERE seq = 4"
        ).fetchone()
        b = db.execute(
            "SELECT ts_ms, kind, subject_id, actor, data, prev_hash, hash "
            "FROM journal WHERE seq = 5"
        ).fetchone()
        set_ = (
            "UPDATE journal SET ts_ms=?, kind=?, subject_id=?, actor=?, data=?, "
            "prev_hash=?, hash=? WHERE seq=?"
        )
        db.execute(set_, (*b, 4))
        db.execute(set_, (*a, 5))
    r = Journal(store).verify()
    assert (r.ok, r.first_bad_seq) == (False, 4)


def test_export_writes_verifiable_json_lines_and_a_filtered_range(busy, store, tmp_path):
    out = tmp_path / "journal.jsonl"
    assert main(["audit", "export", "--db", str(busy), "--out", str(out)]) == 0
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(store.journal_rows())
    assert verify_export(out).ok
    rec = json.loads(lines[3])
    assert set(rec) == {"seq", "ts_ms", "kind", "subject_id", "actor", "data", "prev_hash", "hash"}
    lines[3] = lines[3].replace(rec["kind"], rec["kind"] + "x")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert verify_export(out).first_bad_seq == 4
    part = tmp_path / "part.jsonl"
    assert (
        main(
            [
                "audit",
                "export",
                "--db",
                str(busy),
                "--out",
                str(part),
                "--since",
                "2026-11-18T00:00:00+00:00",
            ]
        )
        == 0
    )


def test_audit_verify_on_a_missing_file_is_one_clear_error(tmp_path, capsys):
    assert main(["audit", "verify", "--db", str(tmp_path / "nope.db")]) == 2
    assert "alert store not found" in capsys.readouterr().err


def test_export_rejects_a_time_without_offset(busy, tmp_path, capsys):
    assert (
        main(
            [
                "audit",
                "export",
                "--db",
                str(busy),
                "--out",
                str(tmp_path / "x"),
                "--since",
                "yesterday",
            ]
        )
        == 2
    )
    assert "--since" in capsys.readouterr().err


def test_alerts_outbox_command_counts_by_channel_and_state(busy, capsys):
    assert main(["alerts", "outbox", "--db", str(busy)]) == 0
    out = capsys.readouterr().out
    assert "platform" in out and "wecom" in out and "delivered" in out and "pending" in out


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(), kids, max_size=3),
    max_leaves=8,
)


@settings(max_examples=150)
@given(
    seq=st.integers(1, 10**9),
    ts=st.integers(0, 2**48),
    kind=st.text(),
    subject=st.text(),
    actor=st.text(),
    data=st.dictionaries(st.text(), _json, max_size=4),
)
def test_the_hand_built_record_text_is_the_canonical_json_of_the_record(
    seq, ts, kind, subject, actor, data
):
    import hashlib

    from alerts.journal import _hash_text, canonical, record_hash

    body = canonical(
        {"seq": seq, "ts_ms": ts, "kind": kind, "subject_id": subject, "actor": actor, "data": data}
    )
    expected = hashlib.sha256(("p\n" + body).encode("utf-8")).hexdigest()
    assert record_hash("p", seq, ts, kind, subject, actor, data) == expected
    assert _hash_text("p", seq, ts, kind, subject, actor, canonical(data)) == expected
