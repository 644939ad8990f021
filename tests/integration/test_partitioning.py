"""The co-partitioning contract: every producer puts a key where Faust (aiokafka) puts it."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from iwd_stream.contracts import item_key, queue_key
from iwd_stream.kafka.producer import make_producer, murmur2_partition

KEYS = [item_key("servicenow", f"INC{n:07d}") for n in range(0, 400, 3)] + [
    queue_key(t, q)
    for t in ("servicenow", "nyc311", "acme")
    for q in ("Group 56", "DOT", "q1", "é-ü")
]


def _confluent_partitions(producer: Producer, topic: str, keys: list[str]) -> dict[str, int]:
    placed: dict[str, int] = {}

    def on_delivery(err, msg):  # type: ignore[no-untyped-def]
        assert err is None, err
        placed[msg.key().decode()] = msg.partition()

    for key in keys:
        producer.produce(topic, key=key.encode(), value=b"x", on_delivery=on_delivery)
    assert producer.flush(30) == 0
    return placed


async def _aiokafka_partitions(bootstrap: str, topic: str, keys: list[str]) -> dict[str, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        placed = {}
        for key in keys:
            meta = await producer.send_and_wait(topic, b"x", key=key.encode())
            placed[key] = meta.partition
        return placed
    finally:
        await producer.stop()


@pytest.mark.parametrize("partitions", [1, 3, 4, 8, 12])
def test_confluent_murmur2_matches_aiokafka(kafka_bootstrap, topic_factory, partitions):
    ours = _confluent_partitions(
        make_producer(kafka_bootstrap), topic_factory("ck", partitions), KEYS
    )
    theirs = asyncio.run(
        _aiokafka_partitions(kafka_bootstrap, topic_factory("aio", partitions), KEYS)
    )

    assert ours == theirs
    assert ours == {k: murmur2_partition(k.encode(), partitions) for k in KEYS}
    if partitions > 1:
        assert len(set(ours.values())) > 1, "keys should spread over partitions"


def test_confluent_default_partitioner_would_break_copartitioning(kafka_bootstrap, topic_factory):
    """Why the shared config exists: librdkafka's default (CRC32) places keys elsewhere."""
    partitions = 8
    default = Producer({"bootstrap.servers": kafka_bootstrap})
    placed = _confluent_partitions(default, topic_factory("default", partitions), KEYS)
    expected = {k: murmur2_partition(k.encode(), partitions) for k in KEYS}
    moved = sum(placed[k] != expected[k] for k in KEYS)
    assert moved > len(KEYS) // 2
