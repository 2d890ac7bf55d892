"""The evaluation core on the REAL normaliser, engine, warning model and alerts service: what
the runner relies on from them (state round trip through bytes, as SQLite and Faust tables
hold it; restart without duplicates; hot reload keeping open alarms)."""

from __future__ import annotations

import json

from alerts.store import AlertStore
from hazardwatch.engine_store import EngineStore
from hazardwatch.runner import Pipeline, RawMessage
from hazardwatch.settings import load_settings
from hazardwatch.wiring import RuleSources, build_alerts, build_stages, load_rules

REG = (
    "enterprise_code,enterprise_name,industry,district,hazard_code,hazard_level,zone,"
    "gateway_code,tag,parameter,unit,range_low,range_high,ll,l,h,hh,expected_interval_s,lat,lon\n"
    "EA,EA化工,hazchem,潜江,EA-MH1,2,Z1,G1,AT-1,gas.NH3,mg/m3,0,100,,,,,600,,\n"
    "EA,EA化工,hazchem,潜江,EA-MH1,2,T1,G1,LT-1,level,m,0,20,,,15,19,600,,\n"
)
T0 = 1_764_403_200_000


def msg(dt_s: float, nh3: float, level: float) -> RawMessage:
    body = {
        "ts": T0 + int(dt_s * 1000),
        "data": [{"tag": "AT-1", "v": nh3}, {"tag": "LT-1", "v": level}],
    }
    return RawMessage("hw/EA/G1/data", json.dumps(body).encode(), T0 + int(dt_s * 1000))


def _stages(tmp_path, alerts=None):
    reg = tmp_path / "registry.csv"
    if not reg.exists():
        reg.write_text(REG, encoding="utf-8")
    return build_stages(load_rules(RuleSources(reg)), alerts=alerts)


def test_engine_and_warning_state_round_trip_through_bytes(tmp_path):
    st = _stages(tmp_path)
    p = Pipeline(st, start_ms=T0)
    p.process([msg(0, 5, 10), msg(1, 30, 16)], T0 + 1000)  # NH3 L1 open, level on-delay pending
    e = st.engine.load_state(p.engine_state.to_bytes())
    assert e.to_bytes() == p.engine_state.to_bytes()
    w = type(p.warning_state).load(p.warning_state.to_bytes())
    assert w.to_bytes() == p.warning_state.to_bytes()


def test_restart_from_sqlite_fires_pending_on_delay_once_and_nothing_twice(tmp_path):
    settings = load_settings(environ={})
    store = AlertStore(tmp_path / "alerts.db")
    reg_stages = _stages(tmp_path)
    alerts = build_alerts(settings, reg_stages.registry, store)
    p = Pipeline(_stages(tmp_path, alerts), start_ms=T0, store=EngineStore(tmp_path / "e.db"))
    first = p.process([msg(0, 5, 10), msg(1, 30, 16), msg(2, 31, 16.2)], T0 + 2000)
    assert [(a.tag, a.level) for a in first.alarms if a.kind == "limit"] == [("AT-1", "L1")]
    p.commit(T0 + 2000)
    # the process dies here; a new one restores the snapshot and gets the same batch again
    # (MQTT redelivers what was not acked) plus what followed
    p2 = Pipeline(
        _stages(tmp_path, alerts), start_ms=T0 + 9000, store=EngineStore(tmp_path / "e.db")
    )
    assert p2.restored
    again = p2.process([msg(1, 30, 16), msg(2, 31, 16.2)], T0 + 2500)
    assert [a for a in again.alarms if a.kind == "limit"] == []
    later = p2.process([msg(7, 31, 16.5)], T0 + 7000)
    fired = [(a.tag, a.level, a.ts_ms - T0) for a in later.alarms if a.kind == "limit"]
    assert fired == [("LT-1", "H", 6000)]  # on-delay from t=1 s, 5 s, survived the restart
    # the alerts stage holds each alarm once, whatever was re-processed
    ids = {a.alarm_id for a in [*first.alarms, *again.alarms, *later.alarms]}
    assert store.count_alarms() == len(ids) >= 2


def test_swap_to_new_rules_keeps_open_alarms_and_names_the_new_ruleset(tmp_path):
    st = _stages(tmp_path)
    p = Pipeline(st, start_ms=T0)
    p.process([msg(0, 30, 10)], T0)
    (tmp_path / "registry.csv").write_text(REG.replace(",15,19,", ",17,19,"), encoding="utf-8")
    new = build_stages(load_rules(RuleSources(tmp_path / "registry.csv")), previous=st)
    assert new.ruleset_version != st.ruleset_version
    p.swap(new)
    out = p.process([msg(1, 5, 16)], T0 + 1000)  # 16 m is below the new H of 17
    assert [(a.tag, a.state, a.ruleset) for a in out.alarms if a.kind == "limit"] == [
        ("AT-1", "cleared", new.ruleset_version)
    ]


class _Lines:
    def __init__(self):
        self.lines: list[str] = []

    def write_lines(self, lines):
        self.lines.extend(lines)

    def flush(self):
        pass

    def close(self):
        pass


def test_live_run_writes_risk_and_online_rows_for_the_dashboards(tmp_path):
    """The city map and online-rate panels need `risk` and `online` rows from a live run,
    not only from a replay: the pipeline hands the feed its open warnings once a minute."""
    from hazardwatch.metrics import Metrics
    from hazardwatch.wiring import TimeseriesFeed

    st = _stages(tmp_path)
    out = _Lines()
    feed = TimeseriesFeed(out, st.registry, Metrics(), pipeline_every_s=3600)
    p = Pipeline(st, start_ms=T0, sink=feed, risk_every_ms=60_000)
    # NH3 at 30 mg/m3 is over AL (20) for minutes: an L1 alarm and an open warning for EA.
    for i in range(0, 400, 20):
        p.process([msg(i, 30, 10)], T0 + i * 1000)
        p.tick(T0 + i * 1000)
    feed.close()
    risk = [x for x in out.lines if x.startswith("risk,")]
    online = [x for x in out.lines if x.startswith("online,")]
    assert len(risk) == 7 and len(online) == 7  # one per minute of the 400 s run, from t=0
    last = risk[-1]
    assert "enterprise=EA" in last and 'warning="yellow"' in last  # 黄 after 5 min at L1
    assert "open_warnings=1i" in last and 'level="none"' not in last
    assert "rate=1" in online[-1] and "points=2i" in online[-1]


def test_a_batch_of_alarm_transitions_is_one_alert_store_transaction(tmp_path):
    """Group commit: the alerts stage's transitions, journal records and outbox rows of one
    batch commit together (one fsync), however many alarms the batch raises."""
    settings = load_settings(environ={})
    store = AlertStore(tmp_path / "alerts.db")
    reg_stages = _stages(tmp_path)
    alerts = build_alerts(settings, reg_stages.registry, store)
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    p = Pipeline(_stages(tmp_path, alerts), start_ms=T0)
    # NH3 over its first and second level and the tank over HH: several transitions at once
    out = p.process([msg(0, 5, 10), msg(1, 60, 19.5), msg(7, 60, 19.6)], T0 + 7000)
    assert len([a for a in out.alarms if a.kind == "limit"]) >= 2
    assert commits == ["COMMIT"]
    # and all of them are stored, each with its platform notification
    assert store.count_alarms() == len({a.alarm_id for a in out.alarms})
    assert store.outbox_depth() >= len({a.alarm_id for a in out.alarms})
