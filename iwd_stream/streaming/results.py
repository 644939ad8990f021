"""What a stage processor returns to its agent: table writes and messages to send."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime

from iwd_stream.contracts import DeadLetter, encode
from iwd_stream.errors import DecodeError
from iwd_stream.topics import TopicNames


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None


@dataclass
class Result:
    writes: list[tuple[bytes, bytes | None]] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)


def dead_letter(
    names: TopicNames,
    stage: str,
    error: DecodeError,
    topic: str,
    partition: int | None,
    offset: int | None,
    key: bytes | None,
    value: bytes | None,
    now: datetime,
) -> Output:
    """Return the dead-letter message for a rejected input: original bytes, reason, origin."""
    raw = value or b""
    record = DeadLetter(
        reason=error.reason,
        error=error.message,
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_b64=base64.b64encode(raw).decode(),
        original_size=len(raw),
        stage=stage,
        at=now,
    )
    return Output(names.deadletter, key, encode(record))
