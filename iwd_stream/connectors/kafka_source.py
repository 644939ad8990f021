"""Kafka source connector: JSON messages of another system's topic in, lifecycle events out.

Each message value is one JSON object, mapped with the same mapping format as file replay
(its keys are the "columns"). Offsets are committed only after every event produced from the
consumed batch is confirmed by Kafka, so a crash re-reads rather than loses (at-least-once;
the deterministic event_ids let the engine drop the re-sent events as duplicates).

The mapper's memory of which items it has seen lives in this process: after a restart the first
message of an already-known item is taken for a create. Sources whose messages say what happened
(a mapping with ``lifecycle.event``) do not depend on that memory.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError

from iwd_stream.connectors.mapper import RowError, RowMapper
from iwd_stream.connectors.mapping import Mapping, load_mapping
from iwd_stream.connectors.output import ProducerLike, Sender, dead_letter
from iwd_stream.connectors.sources import parse_json_row
from iwd_stream.contracts.models import item_key
from iwd_stream.errors import BrokerError
from iwd_stream.topics import TopicNames


@dataclass
class KafkaSourceSummary:
    """What the connector did: messages read, events produced by type, messages dead-lettered."""

    source_topic: str
    messages: int = 0
    events_by_type: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    commits: int = 0

    @property
    def events_produced(self) -> int:
        return sum(self.events_by_type.values())


def consumer_config(bootstrap_servers: str, group_id: str, **overrides: Any) -> dict[str, Any]:
    """Return the consumer settings: manual commits, start from the beginning for a new group."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    }
    config.update({k.replace("_", "."): v for k, v in overrides.items()})
    return config


def run_kafka_source(
    bootstrap_servers: str,
    source_topic: str,
    mapping: Mapping | str | Path,
    producer: ProducerLike,
    topics: TopicNames,
    *,
    group_id: str = "iwd-kafka-source",
    tenant: str | None = None,
    stop: threading.Event | None = None,
    idle_timeout_s: float | None = None,
    max_messages: int | None = None,
    batch_size: int = 500,
    on_batch: Callable[[KafkaSourceSummary], None] | None = None,
) -> KafkaSourceSummary:
    """Map ``source_topic`` to ``topics.events`` until ``stop``, idle timeout or ``max_messages``."""
    if not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    mapper = RowMapper(mapping, tenant)
    sender = Sender(producer)
    summary = KafkaSourceSummary(source_topic)
    consumer = Consumer(consumer_config(bootstrap_servers, group_id))
    consumer.subscribe([source_topic])
    stage = f"connector.kafka.{mapping.source}"
    last_message = time.monotonic()
    try:
        while not (stop is not None and stop.is_set()):
            if max_messages is not None and summary.messages >= max_messages:
                break
            want = (
                batch_size
                if max_messages is None
                else min(batch_size, max_messages - summary.messages)
            )
            batch = consumer.consume(num_messages=want, timeout=0.5)
            real = [m for m in batch if m.error() is None]
            for msg in batch:
                err = msg.error()
                # Transient errors are retried by librdkafka; only a fatal one ends the run.
                if err is not None and err.code() != KafkaError._PARTITION_EOF and err.fatal():
                    raise BrokerError(f"consuming {source_topic} failed: {err}")
            if not real:
                if idle_timeout_s is not None and time.monotonic() - last_message > idle_timeout_s:
                    break
                continue
            last_message = time.monotonic()
            for msg in real:
                summary.messages += 1
                raw = msg.value() or b""
                row = parse_json_row(msg.offset() or 0, raw)
                problem: tuple[str, str] | None = None
                events = []
                if row.values is None:
                    problem = ("malformed_message", row.problem or "malformed")
                else:
                    try:
                        events = mapper.map_row(row.values)
                    except RowError as exc:
                        problem = (exc.reason, exc.message)
                if problem is not None:
                    record = dead_letter(
                        reason=problem[0],
                        error=problem[1],
                        original=raw,
                        topic=msg.topic() or source_topic,
                        partition=msg.partition(),
                        offset=msg.offset(),
                        key=msg.key(),
                        stage=stage,
                    )
                    sender.send(topics.deadletter, msg.key(), record)
                    summary.dead_lettered += 1
                    continue
                for event in events:
                    sender.send(topics.events, item_key(event.tenant, event.capture_id), event)
                    summary.events_by_type[event.type.value] += 1
            # Commit only what is safely on Kafka: flush raises before the commit if not.
            sender.flush()
            consumer.commit(asynchronous=False)
            summary.commits += 1
            if on_batch:
                on_batch(summary)
    finally:
        consumer.close()
    return summary
