"""Connectors against a real Kafka broker: capture API, file replay, Kafka source."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Message, TopicPartition
from fastapi.testclient import TestClient

from iwd_stream.connectors.capture_api import create_app
from iwd_stream.connectors.kafka_source import run_kafka_source
from iwd_stream.connectors.mapping import builtin_data_file
from iwd_stream.connectors.replay import replay
from iwd_stream.contracts.codec import decode
from iwd_stream.contracts.models import DeadLetter, LifecycleEvent
from iwd_stream.kafka.admin import create_topics
from iwd_stream.kafka.producer import make_producer, murmur2_partition
from iwd_stream.settings import Settings
from iwd_stream.topics import TopicNames

pytestmark = pytest.mark.kafka
PARTITIONS = 4
FIXTURES = Path(__file__).parents[1] / "unit" / "connector_fixtures"


def fresh_topics(bootstrap: str, unique_name: Callable[[str], str]) -> TopicNames:
    topics = TopicNames(unique_name("iwd"))
    create_topics(bootstrap, topics.all(), PARTITIONS)
    return topics


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[Message]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                if msg.error() is None:
                    out.append(msg)
            if len(out) >= expected:
                # Linger briefly so that an unexpected extra message would be seen too.
                out.extend(m for m in consumer.consume(500, timeout=1.0) if m.error() is None)
                break
    finally:
        consumer.close()
    return out


def test_capture_api_event_lands_on_kafka(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topics = fresh_topics(kafka_bootstrap, unique_name)
    producer = make_producer(kafka_bootstrap)
    app = create_app(Settings(topic_prefix=topics.prefix), producer, {"acme-key-123": "acme"})
    headers = {"X-API-Key": "acme-key-123", "Idempotency-Key": "create-INC9"}
    with TestClient(app) as client:
        first = client.post(
            "/v1/tenants/acme/workitems",
            headers=headers,
            json={"capture_id": "INC9", "fields": {"priority": 4}},
        )
        retry = client.post(
            "/v1/tenants/acme/workitems",
            headers=headers,
            json={"capture_id": "INC9", "fields": {"priority": 4}},
        )
        done = client.post(
            "/v1/tenants/acme/workitems/INC9/complete",
            headers={"X-API-Key": "acme-key-123"},
            json={"reason": "fixed"},
        )
    assert first.status_code == retry.status_code == done.status_code == 202
    assert first.json() == retry.json()
    messages = read_all(kafka_bootstrap, topics.events, 2)
    assert len(messages) == 2
    key = b"acme/INC9"
    for msg in messages:
        assert msg.key() == key
        assert msg.partition() == murmur2_partition(key, PARTITIONS)
    events = [decode(m.value(), LifecycleEvent) for m in messages]
    assert [e.type for e in events] == ["create", "complete"]
    assert events[0].event_id == first.json()["event_id"] and events[0].fields.priority == 4
    assert (messages[0].partition(), messages[0].offset()) == (
        first.json()["partition"],
        first.json()["offset"],
    )


def test_replay_whole_servicenow_file(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topics = fresh_topics(kafka_bootstrap, unique_name)
    summary = replay(
        builtin_data_file("servicenow_incident_events.csv"),
        "servicenow",
        make_producer(kafka_bootstrap),
        topics,
    )
    assert summary.rows_read == 4537 and summary.items == 667 and summary.dead_lettered == 0
    assert summary.events_by_type["create"] == 667
    messages = read_all(kafka_bootstrap, topics.events, summary.events_produced)
    assert len(messages) == summary.events_produced
    events = [decode(m.value(), LifecycleEvent) for m in messages]
    assert Counter(e.type.value for e in events) == summary.events_by_type
    assert len({e.capture_id for e in events}) == 667
    for msg, event in zip(messages, events, strict=True):
        assert msg.key() == f"servicenow/{event.capture_id}".encode()
        assert msg.partition() == murmur2_partition(msg.key(), PARTITIONS)
    # Per item, Kafka holds the events in file order: the first one creates.
    first: dict[str, LifecycleEvent] = {}
    for _msg, event in sorted(
        zip(messages, events, strict=True), key=lambda p: (p[0].partition(), p[0].offset())
    ):
        first.setdefault(event.capture_id, event)
    assert all(e.type == "create" for e in first.values())


def test_kafka_source_round_trip(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> None:
    topics = fresh_topics(kafka_bootstrap, unique_name)
    source = unique_name("helpdesk")
    create_topics(kafka_bootstrap, [source], 2)
    producer = make_producer(kafka_bootstrap)
    lines = [ln for ln in (FIXTURES / "helpdesk.jsonl").read_bytes().splitlines() if ln.strip()]
    for line in lines:
        ticket = orjson.loads(line)["ticket"].encode() if line.startswith(b"{") else b"junk"
        producer.produce(source, value=line, key=ticket)
    assert producer.flush(30) == 0
    group = unique_name("group")
    summary = run_kafka_source(
        kafka_bootstrap,
        source,
        FIXTURES / "helpdesk.yaml",
        producer,
        topics,
        group_id=group,
        idle_timeout_s=3,
    )
    assert summary.messages == len(lines) == 9
    assert summary.dead_lettered == 2 and summary.events_produced == 7
    events = [
        decode(m.value(), LifecycleEvent) for m in read_all(kafka_bootstrap, topics.events, 7)
    ]
    assert Counter(e.capture_id for e in events) == {"billing:T-1": 5, "billing:T-2": 2}
    letters = [
        decode(m.value(), DeadLetter) for m in read_all(kafka_bootstrap, topics.deadletter, 2)
    ]
    assert {d.topic for d in letters} == {source}
    assert all(d.partition is not None and d.offset is not None for d in letters)
    # Everything consumed is committed: a second run reads nothing.
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    committed = consumer.committed([TopicPartition(source, p) for p in range(2)], timeout=10)
    ends = [
        consumer.get_watermark_offsets(TopicPartition(source, p), timeout=10)[1] for p in range(2)
    ]
    consumer.close()
    assert [tp.offset for tp in committed] == ends
    again = run_kafka_source(
        kafka_bootstrap,
        source,
        FIXTURES / "helpdesk.yaml",
        producer,
        topics,
        group_id=group,
        idle_timeout_s=2,
    )
    assert again.messages == 0


def test_simulator_answers_offers_on_kafka(
    kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    import threading
    from datetime import UTC, datetime, timedelta

    from iwd_stream.connectors.simulator import Employee, run_simulator
    from iwd_stream.contracts.codec import encode
    from iwd_stream.contracts.models import Assignment, AssignmentResponse, Capacity, SlaState

    topics = fresh_topics(kafka_bootstrap, unique_name)
    producer = make_producer(kafka_bootstrap)
    staff = [Employee("e1", "acme", "q1", handle_time_s=1.0, decline_rate=0.0)]
    stop = threading.Event()
    result: dict[str, Counter[str]] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            stats=run_simulator(
                kafka_bootstrap,
                producer,
                topics,
                staff,
                speed=10,
                group_id=unique_name("sim"),
                run="r1",
                stop=stop,
            )
        )
    )
    worker.start()
    try:
        [cap_msg] = read_all(kafka_bootstrap, topics.capacity, 1)
        cap = decode(cap_msg.value(), Capacity)
        assert cap_msg.key() == b"acme/q1" and cap.resource and cap.resource.resource_id == "e1"
        now = datetime.now(UTC)
        offer = Assignment(
            assignment_id="a-1",
            capacity_id=cap.capacity_id,
            tenant="acme",
            queue="q1",
            capture_id="INC1",
            resource_id="e1",
            offered_at=now,
            offer_deadline=now + timedelta(seconds=30),
            score=1.0,
            breakdown=[],
            priority=1,
            business_value=0,
            sla_state=SlaState.ON_TRACK,
        )
        producer.produce(topics.assignments, key=b"acme/q1", value=encode(offer))
        producer.flush(10)
        [resp_msg] = read_all(kafka_bootstrap, topics.responses, 1)
        response = decode(resp_msg.value(), AssignmentResponse)
        assert resp_msg.key() == b"acme/INC1" and response.outcome == "accepted"
        [done_msg] = read_all(kafka_bootstrap, topics.events, 1)
        assert decode(done_msg.value(), LifecycleEvent).type == "complete"
        assert len(read_all(kafka_bootstrap, topics.capacity, 2)) == 2  # the slot is offered again
    finally:
        stop.set()
        worker.join(30)
    assert result["stats"]["accepted"] == 1 and result["stats"]["completed"] == 1
