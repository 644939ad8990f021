"""Bad input reaches the dead-letter topic with its reason; duplicates and stale events are inert."""

from __future__ import annotations

import base64
import hashlib
import re

import orjson

from iwd_stream.contracts import item_key
from iwd_stream.observability.scrape import metric_sum


def _raw(**overrides):
    body = {
        "type": "create",
        "event_id": "bad",
        "tenant": "acme",
        "capture_id": "B",
        "source": "test",
        "occurred_at": "2026-01-05T09:00:00Z",
        "fields": {"queue": "q1"},
    }
    body.update(overrides)
    return orjson.dumps({k: v for k, v in body.items() if v is not None})


def test_ten_kinds_of_bad_input_are_dead_lettered_and_valid_events_go_on(engine):
    worker = engine.worker().start()
    events = engine.names.events
    engine.event("create", "V1", fields={"queue": "q1"}, version=1)
    engine.event("create", "F1", fields={"queue": "q1"}, version=1)
    engine.event("complete", "F1", version=2)
    bad = {
        "not_json": (item_key("acme", "B1"), b"{this is not json"),
        "wrong_types": (
            item_key("acme", "B2"),
            _raw(capture_id="B2", fields={"queue": "q1", "priority": "high"}),
        ),
        "unknown_type": (item_key("acme", "B3"), _raw(capture_id="B3", type="explode")),
        "missing_ids": (item_key("acme", "B4"), _raw(capture_id="B4", event_id=None)),
        "unknown_tenant": (item_key("globex", "B5"), _raw(capture_id="B5", tenant="globex")),
        "oversize": (
            item_key("acme", "B6"),
            _raw(capture_id="B6", fields={"queue": "q1", "attributes": {"blob": "x" * 300_000}}),
        ),
        "bad_timestamp": (item_key("acme", "B7"), _raw(capture_id="B7", occurred_at="yesterday")),
        "update_before_create": (item_key("acme", "B8"), _raw(capture_id="B8", type="update")),
        "after_final": (
            item_key("acme", "F1"),
            _raw(capture_id="F1", type="hold", version=3, event_id="late"),
        ),
        "future_schema": (item_key("acme", "B10"), _raw(capture_id="B10", schema_version=99)),
    }
    for key, value in bad.values():
        engine.send(events, key, value)
    engine.event("create", "V2", fields={"queue": "q1"}, version=1)
    engine.flush()

    dead = engine.reader(engine.names.deadletter).wait(lambda vs: len(vs) >= len(bad), timeout_s=60)
    assert len(dead) == len(bad)
    by_key = {base64.b64decode(d["key_b64"]).decode(): d for d in dead}
    expected_reason = {
        "not_json": "not_json",
        "wrong_types": "invalid",
        "unknown_type": "invalid",
        "missing_ids": "invalid",
        "unknown_tenant": "unknown_tenant",
        "oversize": "oversize",
        "bad_timestamp": "invalid",
        "update_before_create": "unknown_item",
        "after_final": "item_final",
        "future_schema": "future_schema",
    }
    for kind, (key, value) in bad.items():
        record = by_key[key]
        assert record["reason"] == expected_reason[kind], (kind, record)
        kept = base64.b64decode(record["original_b64"])
        if kind == "oversize":  # too big to re-publish whole: its head and digest are kept
            assert (
                record["original_truncated"] and value.startswith(kept) and len(kept) < len(value)
            )
            assert record["original_sha256"] == hashlib.sha256(value).hexdigest()
            assert record["original_size"] == len(value)
        else:
            assert kept == value, kind
        assert record["topic"] == events and record["offset"] >= 0 and record["partition"] >= 0
        assert record["error"], kind
    assert "priority" in by_key[item_key("acme", "B2")]["error"]
    assert "event_id" in by_key[item_key("acme", "B4")]["error"]
    assert re.search("occurred_at", by_key[item_key("acme", "B7")]["error"])

    for cid in ("V1", "V2"):
        engine.wait_for(lambda cid=cid: engine.item(cid).get("status") == "queued", what=cid)
    assert engine.item("F1")["status"] == "completed"
    assert metric_sum(worker.metrics_text(), "iwd_deadlettered_total") == len(bad)


def test_duplicates_and_stale_events_change_nothing_and_are_counted(engine):
    worker = engine.worker().start()
    engine.event(
        "create", "D1", fields={"queue": "q1", "priority": 10}, version=1, event_id="d1-create"
    )
    engine.event("update", "D1", fields={"priority": 40}, version=3, event_id="d1-v3")
    engine.flush()
    engine.wait_for(
        lambda: engine.item("D1").get("fields", {}).get("priority") == 40, what="v3 applied"
    )
    before = engine.item("D1")

    engine.event(
        "create", "D1", fields={"queue": "q1", "priority": 10}, version=1, event_id="d1-create"
    )
    engine.event("update", "D1", fields={"priority": 40}, version=3, event_id="d1-v3")
    engine.event("update", "D1", fields={"priority": 5}, version=2, event_id="d1-v2-late")
    engine.flush()
    text = engine.wait_for(
        lambda: (
            (t := worker.metrics_text())
            and metric_sum(t, "iwd_events_total", stage="workitems", outcome="duplicate") >= 2
            and metric_sum(t, "iwd_events_total", stage="workitems", outcome="stale") >= 1
            and t
        ),
        what="duplicates and stale counted",
    )
    assert metric_sum(text, "iwd_events_total", stage="workitems", outcome="duplicate") == 2
    assert metric_sum(text, "iwd_events_total", stage="workitems", outcome="stale") == 1
    after = engine.item("D1")
    assert after["seq"] == before["seq"]
    assert after["fields"]["priority"] == 40
    assert after["history"] == before["history"]
