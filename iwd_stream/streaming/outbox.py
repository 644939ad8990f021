"""Every message a stage emits goes through one confluent-kafka producer, flushed before commit.

Why not Faust's own producer: each Faust-level send costs ~0.2 ms of the worker's core while a
confluent-kafka ``produce`` costs ~0.013 ms (DESIGN.md budget), and a stage emits several
messages per event (history, queue commands, assignments). Faust flushes only its own producer
before it commits offsets, so :class:`FlushBeforeCommit` (a Faust sensor) flushes this one in
``on_commit_initiated``, which runs synchronously before the offsets to commit are chosen. A
delivery failure ends the process before any commit: the events are then processed again
from the last commit, which is what at-least-once means.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from faust.sensors import Sensor

from iwd_stream.kafka.producer import make_producer

log = logging.getLogger(__name__)

EXIT_DELIVERY_FAILED = 70


class Outbox:
    """Produce bytes to Kafka now; guarantee delivery before the next offset commit."""

    def __init__(self, bootstrap_servers: str, producer: Producer | None = None) -> None:
        self.producer = producer or make_producer(bootstrap_servers, linger_ms=2)
        self.failed: list[str] = []
        self.sent = 0

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}: {err}")

    def send(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> None:
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self.producer.produce(topic, **kwargs)
                break
            except BufferError:
                # Local queue full: let librdkafka deliver some, then retry.
                self.producer.poll(0.05)
        self.sent += 1
        if self.sent % 1000 == 0:
            self.producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Deliver everything produced so far, or end the process before a commit can happen."""
        left = self.producer.flush(timeout_s)
        if left or self.failed:
            log.critical(
                "outbox delivery failed (%d undelivered, errors: %s); exiting before commit",
                left,
                self.failed[:3],
            )
            logging.shutdown()
            os._exit(EXIT_DELIVERY_FAILED)


class FlushBeforeCommit(Sensor):
    """Faust sensor: flush the outbox before Faust picks the offsets it commits."""

    def __init__(self, outbox: Outbox, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outbox = outbox

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.outbox.flush()
        return None
