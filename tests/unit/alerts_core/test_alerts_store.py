"""The alert store's queries (what the API lists and filters) and its durability settings."""

from __future__ import annotations

import sqlite3

import pytest

from alerts.lifecycle import Phase
from alerts.store import AlertStore, StoreError
from tests.unit.alerts_core.conftest import MIN, T0, alarm, warning


@pytest.fixture
def filled(service, store):
    service.on_alarm(alarm("A1", level="L1", ts=T0), T0)
    service.on_alarm(alarm("A2", level="L2", ts=T0 + MIN, tag="AT-2"), T0 + MIN)
    service.on_alarm(
        alarm("A3", ent="E002", tag="AT-9", hazard="H09", ts=T0 + 2 * MIN), T0 + 2 * MIN
    )
    service.acknowledge("A2", "u", T0 + 3 * MIN)
    service.on_alarm(alarm("A1", state="cleared", ts=T0 + 4 * MIN), T0 + 4 * MIN)
    service.dispose("A1", "u", "process_fluctuation", "", T0 + 5 * MIN)
    service.on_warning(warning("W1", colour="orange"), T0)
    service.on_warning(
        warning("W2", colour="blue", ent="E002", hazard="H09", ts=T0 + MIN), T0 + MIN
    )
    return store


def ids(recs):
    return [r.subject_id for r in recs]


def test_list_alarms_filters(filled):
    s = filled
    assert ids(s.list_alarms()) == ["A3", "A2", "A1"]  # newest raise first
    assert ids(s.list_alarms(enterprise="E001")) == ["A2", "A1"]
    assert ids(s.list_alarms(enterprise=["E001", "E002"], limit=1, offset=1)) == ["A2"]
    assert ids(s.list_alarms(enterprise=[])) == []  # a role with no enterprise sees nothing
    assert ids(s.list_alarms(district="QJ-KFQ")) == ["A3", "A2", "A1"]
    assert ids(s.list_alarms(state=Phase.ACKNOWLEDGED)) == ["A2"]
    assert ids(s.list_alarms(state=["closed", "acknowledged"])) == ["A2", "A1"]
    assert ids(s.list_alarms(colour="orange")) == ["A2"]
    assert ids(s.list_alarms(open_only=True)) == ["A3", "A2"]
    assert ids(s.list_alarms(since_ms=T0 + MIN, until_ms=T0 + 2 * MIN)) == ["A2"]
    assert s.count_alarms(enterprise="E001") == 2
    assert s.count_alarms(open_only=True, limit=1) == 2


def test_list_warnings_filters(filled):
    s = filled
    assert ids(s.list_warnings()) == ["W2", "W1"]
    assert ids(s.list_warnings(colour="orange")) == ["W1"]
    assert ids(s.list_warnings(enterprise="E002")) == ["W2"]
    assert ids(s.list_warnings(state="firing", district="QJ-KFQ")) == ["W2", "W1"]
    assert s.count_warnings() == 2 and s.count_warnings(colour="orange") == 1
    assert ids(s.list_warnings(limit=1, offset=1)) == ["W1"]
    assert s.get_subject("W1").colour == "orange" and s.get_subject("A3").kind == "limit"
    assert s.get_subject("nope") is None


def test_records_are_frozen(filled):
    rec = filled.get_alarm("A1")
    with pytest.raises(AttributeError):
        rec.phase = Phase.FIRING  # type: ignore[misc]


def test_the_file_is_wal_with_full_sync(store):
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    sync = store._db.execute("PRAGMA synchronous").fetchone()[0]
    assert (mode, sync) == ("wal", 2)  # 2 = FULL


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"x\.db: cannot open the alert store"):
        AlertStore(bad)


def test_a_newer_schema_is_refused(tmp_path):
    p = tmp_path / "a.db"
    AlertStore(p).close()
    with sqlite3.connect(p) as db:
        db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    with pytest.raises(StoreError, match="schema 99"):
        AlertStore(p)
