"""Edges found by trying to break the engine: absurd dates, huge inputs, missing keys."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import orjson
import pytest

from iwd_stream.contracts import DeadLetter, LifecycleEvent, decode
from iwd_stream.errors import DecodeError
from iwd_stream.streaming.results import MAX_KEPT_BYTES, dead_letter
from iwd_stream.topics import TopicNames


def event(**fields: object) -> bytes:
    return orjson.dumps(
        {
            "type": "create",
            "event_id": "e1",
            "tenant": "acme",
            "capture_id": "C1",
            "source": "test",
            "occurred_at": "2026-01-05T09:00:00Z",
            "fields": {"queue": "q", **fields},
        }
    )


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_dates_outside_plausible_years_are_refused(when):
    with pytest.raises(DecodeError) as exc:
        decode(event(due_at=when), LifecycleEvent)
    assert exc.value.reason == "invalid" and "fields.due_at" in exc.value.message


def test_plausible_dates_pass():
    assert decode(event(due_at="2999-01-01T00:00:00Z"), LifecycleEvent).fields.due_at is not None


def test_a_huge_input_keeps_its_head_and_digest_in_the_dead_letter():
    raw = b"x" * (MAX_KEPT_BYTES * 3)
    out = dead_letter(
        TopicNames(),
        "workitems",
        DecodeError("oversize", "too big"),
        "t",
        0,
        7,
        b"k",
        raw,
        datetime.now(UTC),
    )
    record = DeadLetter.model_validate_json(out.value)
    assert len(out.value) < 1024 * 1024  # fits in a default Kafka message
    assert record.original_truncated and record.original_size == len(raw)
    assert base64.b64decode(record.original_b64) == raw[:MAX_KEPT_BYTES]
    assert record.original_sha256 == hashlib.sha256(raw).hexdigest()
    assert (record.topic, record.partition, record.offset) == ("t", 0, 7)
