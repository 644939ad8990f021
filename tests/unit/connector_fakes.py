"""A small hand-written stand-in for confluent_kafka.Producer (unit tests only; no broker)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass
class Sent:
    topic: str
    key: bytes | None
    value: bytes

    def json(self) -> Any:
        return orjson.loads(self.value)


@dataclass
class FakeProducer:
    """Record produced messages; report each as delivered (or failed) on the next poll/flush."""

    fail_with: str | None = None
    sent: list[Sent] = field(default_factory=list)
    _pending: list[Any] = field(default_factory=list)

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        on_delivery: Any = None,
        **_: Any,
    ) -> None:
        assert value is not None
        if self.fail_with is None:
            self.sent.append(Sent(topic, key, value))
        if on_delivery is not None:
            self._pending.append(on_delivery)

    def poll(self, timeout: float = 0) -> int:
        if not self._pending and timeout > 0:
            time.sleep(timeout)  # like librdkafka: wait for reports instead of spinning
        pending, self._pending = self._pending, []
        for callback in pending:
            callback(self.fail_with, None)
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def on(self, topic: str) -> list[Sent]:
        return [s for s in self.sent if s.topic == topic]
