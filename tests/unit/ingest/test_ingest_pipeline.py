"""The Ingestor (normalise -> count -> dead letters -> readings) and the dead-letter
publisher, with recording fakes instead of a broker."""

from __future__ import annotations

import json
from pathlib import Path

from ingest.codec import decode_dead_letter
from ingest.metrics import IngestMetrics
from ingest.model import RejectReason
from ingest.mqtt import DeadLetterPublisher, MqttConfig
from ingest.normalize import Normalizer
from ingest.pipeline import Ingestor
from ingest.registry import load_registry

DATA = Path(__file__).resolve().parents[2] / "data" / "ingest"
NOW = 1_795_910_400_000


def test_ingestor_routes_and_counts():
    reg = load_registry(DATA / "registry.csv")
    batches, published = [], []
    metrics = IngestMetrics()
    ing = Ingestor(
        Normalizer(reg),
        batches.append,
        DeadLetterPublisher(lambda t, p: published.append((t, p)), "hw/_dl", metrics),
        metrics,
    )
    payload = json.dumps(
        {
            "ts": NOW,
            "data": [
                {"tag": "AT-1101", "v": 1},
                {"tag": "AT-1102", "v": 2},
                {"tag": "NOPE", "v": 3},
            ],
        }
    ).encode()
    ing.handle("hw/QJ001/GW01/data", payload, NOW)
    ing.handle("hw/QJ001/GW01/data", payload, NOW)  # redelivered
    ing.handle("hw/QJ001/GW01/data", b"\x00", NOW)
    assert [len(b) for b in batches] == [2]
    snap = metrics.snapshot()
    assert snap["messages"] == 3 and snap["readings"] == 2 and snap["duplicates"] == 2
    assert snap["rejects"]["unknown_tag"] == 2 and snap["rejects"]["unknown_format"] == 1
    assert snap["rejects"]["schema"] == 0  # every reason is present, zero until seen
    assert snap["dead_letters_published"] == 3
    topics = {t for t, _ in published}
    assert topics == {"hw/_dl"}
    dl = decode_dead_letter(published[-1][1])
    assert dl.reason is RejectReason.UNKNOWN_FORMAT and dl.payload == b"\x00"


def test_dead_letter_publish_failure_is_counted_not_raised():
    metrics = IngestMetrics()

    def broken(topic, payload):
        raise OSError("broker gone")

    pub = DeadLetterPublisher(broken, "hw/_dl", metrics)
    from ingest.model import DeadLetter

    pub(DeadLetter(RejectReason.SCHEMA, "x", "t", NOW))
    assert metrics.snapshot()["dead_letters_failed"] == 1


def test_ingestor_reload_keeps_duplicate_memory():
    reg = load_registry(DATA / "registry.csv")
    out = []
    ing = Ingestor(Normalizer(reg), out.append)
    payload = json.dumps({"tag": "AT-1101", "v": 1, "ts": NOW}).encode()
    ing.handle("hw/QJ001/GW01/data", payload, NOW)
    ing.reload(reg)
    res = ing.handle("hw/QJ001/GW01/data", payload, NOW)
    assert res.duplicates == 1 and len(out) == 1


def test_mqtt_config_validates_topics_and_hides_the_password():
    import pytest

    cfg = MqttConfig(password="s3cret-pw", shared_group="ingest")
    assert "s3cret-pw" not in repr(cfg)
    assert cfg.topic_filters() == ["$share/ingest/hw/+/+/data", "$share/ingest/hw/+/+/event"]
    assert MqttConfig().topic_filters() == ["hw/+/+/data", "hw/+/+/event"]
    for bad in (
        dict(topic_prefix="hw/#"),
        dict(shared_group="a/b"),
        dict(protocol="4"),
        dict(qos=2),
        dict(topic_prefix="/hw"),
        dict(dead_letter_topic="hw/+/x"),
        dict(dead_letter_topic="hw/dead/letters/data"),
    ):
        with pytest.raises(ValueError, match="mqtt"):
            MqttConfig(**bad)
