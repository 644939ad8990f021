"""What a stage processor returns to its agent: table writes and messages to send."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from iwd_stream.contracts import Assignment, DeadLetter, SlaState, encode, queue_key
from iwd_stream.errors import DecodeError
from iwd_stream.topics import TopicNames

# A dead letter must itself fit in a Kafka message (1 MiB by default) after base64.
MAX_KEPT_BYTES = 256 * 1024


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
    kept = raw if len(raw) <= MAX_KEPT_BYTES else raw[:MAX_KEPT_BYTES]
    record = DeadLetter(
        reason=error.reason,
        error=error.message,
        topic=topic,
        partition=partition,
        offset=offset,
        key_b64=base64.b64encode(key).decode() if key is not None else None,
        original_b64=base64.b64encode(kept).decode(),
        original_size=len(raw),
        original_truncated=len(kept) < len(raw),
        original_sha256=hashlib.sha256(raw).hexdigest() if len(kept) < len(raw) else None,
        stage=stage,
        at=now,
    )
    return Output(names.deadletter, key, encode(record))


def revoked_notice(
    names: TopicNames,
    tenant: str,
    queue: str,
    capture_id: str,
    assignment_id: str,
    resource_id: str | None,
    now: datetime,
) -> Output:
    """Tell routing consumers an offer is void (``status: revoked``): drop it, do not answer."""
    notice = Assignment(
        assignment_id=assignment_id,
        capacity_id="",
        tenant=tenant,
        queue=queue,
        capture_id=capture_id,
        resource_id=resource_id,
        offered_at=now,
        offer_deadline=now,
        score=0.0,
        breakdown=[],
        priority=0,
        business_value=0,
        sla_state=SlaState.ON_TRACK,
        status="revoked",
    )
    return Output(names.assignments, queue_key(tenant, queue).encode(), encode(notice))
