"""What connectors share for sending: the producer interface, delivery tracking, dead letters."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol, TextIO

from iwd_stream.contracts.codec import encode
from iwd_stream.contracts.models import Contract, DeadLetter
from iwd_stream.errors import BrokerError


class ProducerLike(Protocol):
    """The part of confluent_kafka.Producer connectors use (tests pass a small fake)."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...

    def poll(self, timeout: float = ...) -> int: ...

    def flush(self, timeout: float = ...) -> int: ...


class Sender:
    """Produce contracts with delivery tracking; ``flush`` raises if any delivery failed."""

    def __init__(self, producer: ProducerLike) -> None:
        self.producer = producer
        self.delivered = 0
        self.failed: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))
        else:
            self.delivered += 1

    def send(self, topic: str, key: str | bytes | None, message: Contract | bytes) -> None:
        """Queue one message, waiting for room when the producer's local queue is full."""
        value = message if isinstance(message, bytes) else encode(message)
        raw_key = key.encode() if isinstance(key, str) else key
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=raw_key, on_delivery=self._on_delivery
                )
                break
            except BufferError:
                # librdkafka's queue is full: serve delivery reports to make room.
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait for every queued message; raise BrokerError naming undelivered/failed ones."""
        left = self.producer.flush(timeout_s)
        if left:
            raise BrokerError(f"{left} message(s) not delivered to Kafka within {timeout_s:.0f}s")
        if self.failed:
            failed, self.failed = self.failed, []
            raise BrokerError(f"{len(failed)} message(s) failed delivery; first error: {failed[0]}")


def dead_letter(
    *,
    reason: str,
    error: str,
    original: bytes,
    topic: str,
    stage: str,
    partition: int | None = None,
    offset: int | None = None,
    key: bytes | None = None,
    at: datetime | None = None,
) -> DeadLetter:
    """Build the DeadLetter record for an input that could not be used."""
    return DeadLetter(
        reason=reason,
        error=error,
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_b64=base64.b64encode(original).decode(),
        original_size=len(original),
        stage=stage,
        at=at or datetime.now(UTC),
    )


class ProgressBar:
    """A one-line progress bar on stderr (plain text; a line per 10% when not a terminal)."""

    def __init__(
        self, label: str = "replay", stream: TextIO | None = None, width: int = 30
    ) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.started: float | None = None
        self._last_draw = 0.0
        self._last_decile = -1
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.started is None:
            self.started = now
        final = done >= total
        rate = done / max(now - self.started, 1e-3)
        if self._tty:
            if not final and now - self._last_draw < 0.1:
                return
            self._last_draw = now
            filled = int(self.width * done / total) if total else self.width
            bar = "#" * filled + "." * (self.width - filled)
            pct = 100 * done / total if total else 100.0
            self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {pct:3.0f}% {rate:,.0f}/s")
            if final:
                self.stream.write("\n")
        else:
            decile = 10 * done // total if total else 10
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(f"{self.label}: {done}/{total} ({decile * 10}%) {rate:,.0f}/s\n")
        self.stream.flush()


ProgressCallback = Callable[[int, int], None]
