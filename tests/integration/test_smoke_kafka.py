"""Smoke test: produce/consume through the real Kafka broker (KRaft) with aiokafka, and a
minimal Faust agent round trip on the same broker."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

pytestmark = pytest.mark.integration


def test_aiokafka_produce_consume_keyed(kafka_bootstrap, unique):
    topic = f"smoke.{unique}"

    async def go() -> list[tuple[bytes, bytes]]:
        producer = AIOKafkaProducer(
            bootstrap_servers=kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        await producer.start()
        try:
            for i in range(20):
                await producer.send_and_wait(topic, f"r{i}".encode(), key=b"ENT1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka_bootstrap,
            group_id=f"g-{unique}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        got = []
        try:
            while len(got) < 20:
                batch = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 20)
                for msgs in batch.values():
                    got.extend((m.key, m.value) for m in msgs)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(go())
    # One key -> one partition -> order kept.
    assert got == [(b"ENT1", f"r{i}".encode()) for i in range(20)]


FAUST_APP = textwrap.dedent(
    """
    import faust

    app = faust.App(
        "smoke-{unique}",
        broker="kafka://{bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=1,
        topic_replication_factor=1,
    )
    inbox = app.topic("smoke-in-{unique}", value_serializer="json")
    outbox = app.topic("smoke-out-{unique}", value_serializer="json")

    @app.agent(inbox)
    async def double(stream):
        async for v in stream:
            await outbox.send(value={{"n": v["n"] * 2}})
    """
)


def test_faust_agent_round_trip(kafka_bootstrap, unique, tmp_path: Path):
    mod = tmp_path / f"smokeapp_{unique}.py"
    mod.write_text(FAUST_APP.format(unique=unique, bootstrap=kafka_bootstrap))
    worker = subprocess.Popen(
        [sys.executable, "-m", "faust", "-A", mod.stem, "worker", "-l", "warn", "--without-web"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    async def go() -> list[dict]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        consumer = AIOKafkaConsumer(
            f"smoke-out-{unique}",
            bootstrap_servers=kafka_bootstrap,
            group_id=f"c-{unique}",
            auto_offset_reset="earliest",
        )
        await producer.start()
        await consumer.start()
        got: list[dict] = []
        try:
            for i in range(5):
                await producer.send_and_wait(f"smoke-in-{unique}", json.dumps({"n": i}).encode())
            deadline = asyncio.get_running_loop().time() + 90
            while len(got) < 5 and asyncio.get_running_loop().time() < deadline:
                if worker.poll() is not None:
                    break  # the worker died: its output explains why
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    got.extend(json.loads(m.value) for m in msgs)
        finally:
            await producer.stop()
            await consumer.stop()
        return got

    try:
        got = asyncio.run(go())
    finally:
        worker.terminate()
        try:
            out = worker.communicate(timeout=30)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            out = worker.communicate()[0].decode(errors="replace")
    assert sorted(g["n"] for g in got) == [0, 2, 4, 6, 8], f"faust worker output:\n{out[-3000:]}"
