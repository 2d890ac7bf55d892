"""The Prometheus endpoint shows what operators need, and /-/reload answers the outcome."""

from __future__ import annotations

import httpx

from hazardwatch.metrics import Metrics


def test_metrics_endpoint_exposes_pipeline_figures():
    m = Metrics("embedded")
    m.observe_batch(3, 120, 4.0)
    m.observe_reject("unknown_tag", 2)
    m.observe_reject("malformed_json")
    m.observe_alarm("limit", "HH", "firing")
    m.observe_alarm("offline", None, "firing")
    m.observe_warning("orange", "raised")
    m.watch_outbox(lambda: 7)
    m.kafka_lag.labels(topic="hw.readings", partition="0").set(12)
    m.set_ruleset("abc")
    m.set_ruleset("def")
    port = m.serve(0)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        m.stop()
    assert "hw_readings_in_total 120.0" in text
    assert 'hw_rejects_total{reason="unknown_tag"} 2.0' in text
    assert 'hw_alarms_total{kind="limit",level="HH",state="firing"} 1.0' in text
    assert 'hw_alarms_total{kind="offline",level="none",state="firing"} 1.0' in text
    assert "hw_outbox_depth 7.0" in text
    assert 'hw_kafka_consumer_lag{partition="0",topic="hw.readings"} 12.0' in text
    assert 'hw_ruleset_info{version="def"} 1.0' in text
    assert 'version="abc"' not in text
    assert 'hw_eval_lag_ms_bucket{le="5.0"} 1.0' in text
    f = m.figures()
    assert (f.readings_in, f.rejects, f.alarms, f.outbox_depth) == (120, 3, 2, 7)
    assert f.rejects_by_reason == {"unknown_tag": 2, "malformed_json": 1}


def test_reload_endpoint_reports_outcome_and_needs_post():
    m = Metrics()
    results = iter([{"ok": True, "version": "v2"}, {"ok": False, "error": "bad file"}])
    port = m.serve(0, reload=lambda: next(results))
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/-/reload").status_code == 405
        r = httpx.post(f"{base}/-/reload")
        assert r.status_code == 200 and r.json()["version"] == "v2"
        r = httpx.post(f"{base}/-/reload")
        assert r.status_code == 422 and r.json()["error"] == "bad file"
    finally:
        m.stop()


def test_reload_endpoint_absent_without_callback():
    m = Metrics()
    port = m.serve(0)
    try:
        assert httpx.post(f"http://127.0.0.1:{port}/-/reload").status_code == 404
    finally:
        m.stop()
