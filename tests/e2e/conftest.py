"""End-to-end fixtures: worker subprocesses on a real broker, each test under its own prefix."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from iwd_stream.contracts import (
    Capacity,
    Contract,
    EventType,
    LifecycleEvent,
    WorkItemFields,
    encode,
    item_key,
    queue_key,
)
from iwd_stream.kafka.producer import make_producer
from iwd_stream.procs import WorkerProcess
from iwd_stream.settings import Settings
from iwd_stream.streaming.app import provision_topics
from iwd_stream.topics import TopicNames

RULES = Path(__file__).parent / "rules"


@dataclass
class Engine:
    """One isolated engine deployment: a topic prefix, its workers, a producer and readers."""

    bootstrap: str
    prefix: str
    root: Path
    partitions: int = 4
    workers: list[WorkerProcess] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = TopicNames(self.prefix)
        self.producer = make_producer(self.bootstrap)
        provision_topics(
            Settings(
                bootstrap_servers=self.bootstrap,
                topic_prefix=self.prefix,
                partitions=self.partitions,
            ),
            self.bootstrap,
        )

    def worker(self, name: str = "w1", **kwargs: Any) -> WorkerProcess:
        defaults: dict[str, Any] = {"tick_interval_s": 0.2, "rules": RULES}
        defaults.update(kwargs)
        w = WorkerProcess(
            bootstrap=self.bootstrap,
            data_dir=self.root / name,
            topic_prefix=self.prefix,
            partitions=self.partitions,
            name=name,
            **defaults,
        )
        self.workers.append(w)
        return w

    def send(self, topic: str, key: str | bytes | None, value: Contract | bytes) -> None:
        raw = value if isinstance(value, bytes) else encode(value)
        k = key.encode() if isinstance(key, str) else key
        self.producer.produce(topic, key=k, value=raw)

    def flush(self) -> None:
        assert self.producer.flush(30) == 0

    def event(
        self, kind: str | EventType, capture_id: str, *, tenant: str = "acme", **kw: Any
    ) -> LifecycleEvent:
        fields = kw.pop("fields", None)
        ev = LifecycleEvent(
            type=EventType(kind),
            event_id=kw.pop("event_id", f"{kind}-{capture_id}-{uuid.uuid4().hex[:8]}"),
            tenant=tenant,
            capture_id=capture_id,
            source="test",
            occurred_at=kw.pop("occurred_at", datetime.now(UTC)),
            fields=WorkItemFields(**(fields or {})),
            **kw,
        )
        self.send(self.names.events, item_key(tenant, capture_id), ev)
        return ev

    def capacity(
        self, queue: str, *, tenant: str = "acme", credits: int = 1, resource: Any = None
    ) -> Capacity:
        cap = Capacity(
            capacity_id=f"cap-{uuid.uuid4().hex[:10]}",
            tenant=tenant,
            queue=queue,
            credits=credits,
            resource=resource,
            occurred_at=datetime.now(UTC),
        )
        self.send(self.names.capacity, queue_key(tenant, queue), cap)
        self.flush()
        return cap

    def reader(self, topic: str) -> TopicReader:
        return TopicReader(self.bootstrap, topic)

    def item(
        self, capture_id: str, tenant: str = "acme", worker: WorkerProcess | None = None
    ) -> Any:
        w = worker or self.workers[-1]
        return w.get(f"/api/items/{tenant}/{capture_id}")

    def wait_for(
        self, predicate: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except OSError as exc:  # a worker restarting
                last = exc
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(
            f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})"
        )

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        # Drop the producer now: left for the garbage collector, it keeps reconnecting (and
        # logging) after the session's broker has stopped.
        self.producer.flush(5)
        del self.producer


class TopicReader:
    """Read every message of a topic from the beginning, incrementally."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        md = self.consumer.list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, 0) for p in parts])
        self.messages: list[tuple[bytes | None, bytes]] = []

    def poll(self, seconds: float = 1.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            self.messages.append((msg.key(), msg.value()))
        return self.values()

    def values(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, v in self.messages]

    def wait(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout_s: float = 30.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            values = self.poll(0.3)
            if predicate(values):
                return values
        raise AssertionError(f"timed out reading {self.topic}: {len(self.values())} message(s)")

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def engine(
    kafka_bootstrap: str, tmp_path: Path, unique_name: Callable[[str], str]
) -> Iterator[Engine]:
    eng = Engine(kafka_bootstrap, unique_name("e2e").replace("_", "-"), tmp_path)
    try:
        yield eng
    finally:
        eng.close()
        for w in eng.workers:
            if w.proc is not None and w.proc.returncode not in (0, None, -15):
                print(f"--- {w.name} log ({w.log_file}) ---")
                print(w.log_file.read_text()[-4000:])
