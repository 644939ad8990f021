"""The one place producer settings are decided, so every producer partitions like Faust does.

Faust (aiokafka) places a keyed message on ``murmur2(key) % partitions`` (Java client
compatible). confluent-kafka's default partitioner is ``consistent_random`` (CRC32), which puts
the same key elsewhere and would break co-partitioning of the queues stage. Every
confluent-kafka producer in iwd-stream is therefore built here, with ``murmur2_random``
(murmur2 for keyed messages; random only for null keys, which we never send).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Producer

from iwd_stream.errors import BrokerError

# Partitioner compatible with the Java client and aiokafka's DefaultPartitioner.
PARTITIONER = "murmur2_random"

RELIABLE_PRODUCER_CONFIG: dict[str, Any] = {
    "partitioner": PARTITIONER,
    "acks": "all",
    "enable.idempotence": True,
    "compression.type": "lz4",
    "linger.ms": 5,
    "message.timeout.ms": 30_000,
}


def producer_config(bootstrap_servers: str, **overrides: Any) -> dict[str, Any]:
    """Return a confluent-kafka producer config with iwd-stream's partitioning guarantees.

    ``partitioner`` cannot be overridden: a different one silently breaks co-partitioning.
    """
    if "partitioner" in overrides and overrides["partitioner"] != PARTITIONER:
        raise ValueError(f"iwd-stream producers must use partitioner={PARTITIONER}")
    config = {"bootstrap.servers": bootstrap_servers, **RELIABLE_PRODUCER_CONFIG}
    config.update({k.replace("_", "."): v for k, v in overrides.items()})
    return config


def make_producer(bootstrap_servers: str, **overrides: Any) -> Producer:
    """Build a confluent-kafka Producer with :func:`producer_config`."""
    return Producer(producer_config(bootstrap_servers, **overrides))


def flush_or_raise(producer: Producer, timeout_s: float = 30.0) -> None:
    """Flush ``producer``; raise BrokerError if messages are still undelivered after timeout."""
    left = producer.flush(timeout_s)
    if left:
        raise BrokerError(f"{left} message(s) not delivered to Kafka within {timeout_s:.0f}s")


def murmur2_partition(key: bytes, partitions: int) -> int:
    """Return the partition the Java client / aiokafka / murmur2_random picks for ``key``.

    >>> murmur2_partition(b"acme/INC0000045", 4) in range(4)
    True
    """
    from aiokafka.partitioner import murmur2  # local: only tests and tools need it

    return (murmur2(key) & 0x7FFFFFFF) % partitions
