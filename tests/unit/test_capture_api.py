"""Capture API with a hand-written fake producer: validation, auth, limits, idempotency."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from connector_fakes import FakeProducer
from fastapi.testclient import TestClient

from iwd_stream.connectors.capture_api import (
    OPENAPI_PATH,
    create_app,
    derive_event_id,
    load_api_keys,
    openapi_document,
)
from iwd_stream.contracts.codec import decode
from iwd_stream.contracts.models import LifecycleEvent
from iwd_stream.errors import ConfigError
from iwd_stream.settings import Settings

KEYS = {"acme-key-123": "acme", "globex-key-456": "globex"}
ACME = {"X-API-Key": "acme-key-123"}
NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


class DeliveringProducer(FakeProducer):
    """Fake producer whose delivery reports carry a partition and an offset."""

    def poll(self, timeout: float = 0) -> int:
        if not self._pending and timeout > 0:
            time.sleep(timeout)
        pending, self._pending = self._pending, []
        for callback in pending:
            callback(self.fail_with, None if self.fail_with else _Msg(len(self.sent) - 1))
        return len(pending)


class _Msg:
    def __init__(self, offset: int) -> None:
        self._offset = offset

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset


@pytest.fixture
def producer() -> DeliveringProducer:
    return DeliveringProducer()


@pytest.fixture
def client(producer: DeliveringProducer) -> Iterator[TestClient]:
    app = create_app(
        Settings(topic_prefix="t"),
        producer,
        KEYS,
        max_body_bytes=2048,
        delivery_timeout_s=5,
        now=lambda: NOW,
    )
    with TestClient(app) as c:
        yield c


def events(producer: FakeProducer) -> list[LifecycleEvent]:
    return [decode(s.value, LifecycleEvent) for s in producer.on("t.workitem.events")]


def test_create_produces_one_event_keyed_by_item(
    client: TestClient, producer: FakeProducer
) -> None:
    answer = client.post(
        "/v1/tenants/acme/workitems",
        headers=ACME,
        json={
            "capture_id": "INC1",
            "fields": {
                "priority": 5,
                "due_at": "2024-05-02T10:00:00+02:00",
                "attributes": {"category": "network"},
            },
        },
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["type"] == "create" and body["topic"] == "t.workitem.events"
    [event] = events(producer)
    assert producer.sent[0].key == b"acme/INC1"
    assert event.event_id == body["event_id"] and event.tenant == "acme"
    assert event.fields.priority == 5 and event.fields.attributes == {"category": "network"}
    assert event.fields.due_at == datetime(2024, 5, 2, 8, 0, tzinfo=UTC)
    assert event.occurred_at == NOW and event.source == "capture-api"


@pytest.mark.parametrize("action", ["complete", "cancel", "hold", "resume", "restart"])
def test_each_action_is_one_event(client: TestClient, producer: FakeProducer, action: str) -> None:
    answer = client.post(
        f"/v1/tenants/acme/workitems/INC1/{action}",
        headers=ACME,
        json={"reason": "because", "version": 3},
    )
    assert answer.status_code == 202, answer.text
    [event] = events(producer)
    assert (event.type, event.reason, event.version) == (action, "because", 3)
    assert client.post(f"/v1/tenants/acme/workitems/INC2/{action}", headers=ACME).status_code == 202


def test_update_carries_only_the_given_fields(client: TestClient, producer: FakeProducer) -> None:
    answer = client.patch(
        "/v1/tenants/acme/workitems/INC1", headers=ACME, json={"fields": {"queue": "network"}}
    )
    assert answer.status_code == 202
    assert events(producer)[0].fields.set_fields() == {"queue": "network"}
    empty = client.patch("/v1/tenants/acme/workitems/INC1", headers=ACME, json={"fields": {}})
    assert empty.status_code == 422 and "body.fields" in empty.json()["message"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"capture_id": "INC1", "fields": {"priority": "high"}}, "body.fields.priority"),
        ({"capture_id": "INC1", "fields": {"due_at": "2024-05-02T10:00:00"}}, "body.fields.due_at"),
        ({"capture_id": "INC1", "fields": {"colour": "red"}}, "body.fields.colour"),
        ({"fields": {}}, "body.capture_id"),
        ({"capture_id": "a/b"}, "body.capture_id"),
        ({"capture_id": "INC1", "version": -1}, "body.version"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    client: TestClient, producer: FakeProducer, body: dict[str, object], field: str
) -> None:
    answer = client.post("/v1/tenants/acme/workitems", headers=ACME, json=body)
    assert answer.status_code == 422
    assert field in answer.json()["message"]
    assert producer.sent == []


def test_unknown_action_and_bad_json(client: TestClient) -> None:
    assert client.post("/v1/tenants/acme/workitems/INC1/explode", headers=ACME).status_code == 422
    bad = client.post(
        "/v1/tenants/acme/workitems",
        headers={**ACME, "content-type": "application/json"},
        content=b"{not json",
    )
    assert bad.status_code == 422


def test_api_keys_are_per_tenant(client: TestClient, producer: FakeProducer) -> None:
    body = {"capture_id": "INC1"}
    assert client.post("/v1/tenants/acme/workitems", json=body).status_code == 401
    unknown = client.post(
        "/v1/tenants/acme/workitems", headers={"X-API-Key": "nope-nope"}, json=body
    )
    assert unknown.status_code == 401
    other = client.post("/v1/tenants/globex/workitems", headers=ACME, json=body)
    assert other.status_code == 403 and "globex" in other.json()["message"]
    # Authentication comes before validation: a stranger learns nothing about the body.
    assert client.post("/v1/tenants/globex/workitems", headers=ACME, json={}).status_code == 403
    assert client.get("/v1/tenants/globex/workitems/INC1", headers=ACME).status_code == 403
    assert producer.sent == []


def test_body_limit_is_413(client: TestClient, producer: FakeProducer) -> None:
    big = {"capture_id": "INC1", "fields": {"attributes": {"note": "x" * 4000}}}
    answer = client.post("/v1/tenants/acme/workitems", headers=ACME, json=big)
    assert answer.status_code == 413 and answer.json()["error"] == "body_too_large"

    def chunks() -> Iterator[bytes]:
        yield b'{"capture_id": "INC1", "fields": {"attributes": {"note": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}}}'

    streamed = client.post(
        "/v1/tenants/acme/workitems",
        headers={**ACME, "content-type": "application/json"},
        content=chunks(),
    )
    assert streamed.status_code == 413
    assert producer.sent == []


def test_idempotency_key_applies_a_retry_once(client: TestClient, producer: FakeProducer) -> None:
    headers = {**ACME, "Idempotency-Key": "req-42"}
    body = {"capture_id": "INC1", "fields": {"priority": 1}}
    first = client.post("/v1/tenants/acme/workitems", headers=headers, json=body)
    again = client.post("/v1/tenants/acme/workitems", headers=headers, json=body)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert first.json()["event_id"] == derive_event_id("acme", "req-42")
    assert len(producer.sent) == 1
    reused = client.post("/v1/tenants/acme/workitems", headers=headers, json={"capture_id": "INC2"})
    assert reused.status_code == 422 and reused.json()["error"] == "idempotency_key_reused"


def test_event_id_in_body_is_kept_and_deduplicated(
    client: TestClient, producer: FakeProducer
) -> None:
    body = {"event_id": "src-77", "reason": "done"}
    first = client.post("/v1/tenants/acme/workitems/INC1/complete", headers=ACME, json=body)
    again = client.post("/v1/tenants/acme/workitems/INC1/complete", headers=ACME, json=body)
    assert first.json()["event_id"] == again.json()["event_id"] == "src-77"
    assert len(producer.sent) == 1


def test_derived_event_id_survives_a_restart(producer: FakeProducer) -> None:
    # A fresh process (empty cache) still derives the same event_id: the engine dedups it.
    ids = []
    for _ in range(2):
        app = create_app(Settings(topic_prefix="t"), producer, KEYS)
        with TestClient(app) as c:
            ids.append(
                c.post(
                    "/v1/tenants/acme/workitems",
                    headers={**ACME, "Idempotency-Key": "k"},
                    json={"capture_id": "INC1"},
                ).json()["event_id"]
            )
    assert ids[0] == ids[1]


def test_failed_delivery_is_503_and_not_cached(producer: DeliveringProducer) -> None:
    producer.fail_with = "broker down"
    app = create_app(Settings(topic_prefix="t"), producer, KEYS)
    with TestClient(app) as c:
        headers = {**ACME, "Idempotency-Key": "k1"}
        answer = c.post("/v1/tenants/acme/workitems", headers=headers, json={"capture_id": "INC1"})
        assert answer.status_code == 503 and "broker down" in answer.json()["message"]
        producer.fail_with = None
        retry = c.post("/v1/tenants/acme/workitems", headers=headers, json={"capture_id": "INC1"})
        assert retry.status_code == 202


def test_status_without_worker_is_503(client: TestClient) -> None:
    answer = client.get("/v1/tenants/acme/workitems/INC1", headers=ACME)
    assert answer.status_code == 503 and "worker URL" in answer.json()["message"]


def test_status_is_read_from_the_worker(producer: FakeProducer) -> None:
    def worker(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/items/acme/INC1"
        return httpx.Response(200, json={"status": "queued"})

    http = httpx.AsyncClient(transport=httpx.MockTransport(worker))
    app = create_app(Settings(), producer, KEYS, worker_url="http://worker:6066", http_client=http)
    with TestClient(app) as c:
        answer = c.get("/v1/tenants/acme/workitems/INC1", headers=ACME)
    assert answer.status_code == 200 and answer.json() == {"status": "queued"}


def test_api_keys_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("tenants:\n  acme: [acme-key-123, acme-key-789]\n  globex: globex-key-456\n")
    assert load_api_keys(path) == {**KEYS, "acme-key-789": "acme"}
    path.write_text(json.dumps({"acme": "short"}))
    with pytest.raises(ConfigError, match="8\\+ characters"):
        load_api_keys(path)


def test_committed_openapi_document_is_current() -> None:
    committed = json.loads(OPENAPI_PATH.read_text())
    assert committed == json.loads(json.dumps(openapi_document())), (
        "schemas/openapi.json is stale: regenerate it with "
        "python -c 'from iwd_stream.connectors.capture_api import export_openapi; export_openapi()'"
    )
