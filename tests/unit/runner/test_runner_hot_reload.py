"""Hot reload in the assembled embedded process: a changed registry is validated and swapped
between batches (alarms then carry the new ruleset version), a broken one is refused while
the old rules keep running, and both are journaled and counted."""

from __future__ import annotations

import json
import time

from hazardwatch.runner import RawMessage, RunnerConfig
from hazardwatch.settings import load_settings
from hazardwatch.wiring import build_embedded

from .test_runner_real_cores import REG


class QueueSource:
    def start(self, deliver):
        self.deliver = deliver

    def stop(self):
        pass


def _wait(cond, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_registry_change_reloads_and_a_bad_file_keeps_the_old_rules(tmp_path):
    reg = tmp_path / "registry.csv"
    reg.write_text(REG, encoding="utf-8")
    s = load_settings(
        environ={"HW_RULES__REGISTRY": str(reg), "HW_STORAGE__DATA_DIR": str(tmp_path / "var")}
    )
    src = QueueSource()
    emb = build_embedded(
        s,
        source=src,
        metrics_port=0,
        watch_interval_s=0.05,
        runner_config=RunnerConfig(tick_interval_ms=200),
    )
    emb.runner.start()
    seen = []
    emb.pipeline.listeners.append(
        type("L", (), {"on_batch": lambda self, o, n: seen.extend(o.alarms)})()
    )
    try:
        v1 = emb.pipeline.stages.ruleset_version
        reg.write_text(REG.replace(",15,19,", ",17,19,"), encoding="utf-8")
        assert _wait(lambda: emb.reloader.last is not None)
        assert emb.reloader.last.ok and emb.reloader.last.trigger == "file"
        v2 = emb.pipeline.stages.ruleset_version
        assert v2 != v1

        now = int(time.time() * 1000)
        body = {"ts": now, "data": [{"tag": "AT-1", "v": 30.0}]}
        src.deliver(RawMessage("hw/EA/G1/data", json.dumps(body).encode(), now))
        assert _wait(lambda: any(a.tag == "AT-1" for a in seen))
        assert {a.ruleset for a in seen if a.tag == "AT-1"} == {v2}

        reg.write_text("enterprise_code,tag\nEA,\n", encoding="utf-8")  # broken
        assert _wait(lambda: emb.reloader.last is not None and not emb.reloader.last.ok)
        refused = emb.reloader.last
        assert refused.version == v2
        assert "registry.csv" in refused.error  # names the file and what is wrong in it
        assert emb.pipeline.stages.ruleset_version == v2  # old rules keep running
        reg_metric = emb.metrics.registry.get_sample_value
        assert reg_metric("hw_rule_reloads_total", {"result": "ok"}) == 1
        assert reg_metric("hw_rule_reloads_total", {"result": "refused"}) == 1
        kinds = [e.kind for e in emb.pipeline.stages.alerts.journal.entries()]
        assert "ruleset.changed" in kinds and "ruleset.refused" in kinds
    finally:
        emb.runner.stop()
