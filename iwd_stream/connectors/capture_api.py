"""Capture API: HTTP in, exactly one lifecycle event on Kafka per accepted request.

Every accepted request is answered 202 only after Kafka confirmed the event (the producer is
built with acks=all and idempotence, see :mod:`iwd_stream.kafka.producer`). A retried request
with the same ``Idempotency-Key`` (or ``event_id``) gets the same ``event_id``; while it is in
the bounded in-process cache it also gets the first answer without a second send, and after
that the engine still drops the re-sent event as a duplicate.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import yaml
from fastapi import Body, Depends, FastAPI, Header, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from iwd_stream.connectors.output import ProducerLike
from iwd_stream.contracts.codec import describe_validation_error, encode
from iwd_stream.contracts.models import (
    EventType,
    LifecycleEvent,
    WorkItemFields,
)
from iwd_stream.errors import ConfigError
from iwd_stream.settings import Settings
from iwd_stream.topics import TopicNames

API_KEY_HEADER = "X-API-Key"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
TENANT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
CAPTURE_ID_PATTERN = r"^[^/\s][^/]*$"
OPENAPI_PATH = Path(__file__).resolve().parents[2] / "schemas" / "openapi.json"


class ApiError(Exception):
    """An HTTP error with a machine-readable code and a message for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# --- request and response bodies ----------------------------------------------------------------


class WorkItemInput(WorkItemFields):
    """Work-item fields as JSON: timestamps as ISO-8601 with a zone, unknown fields rejected."""

    # The wire contract is strict (Python objects); HTTP bodies are JSON, so read them leniently.
    model_config = ConfigDict(strict=False, extra="forbid", frozen=True)


class _EventInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it happened at the source (default: now)."
    )
    version: int | None = Field(default=None, ge=0, description="Source record version.")
    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Your id for this event; a retry with the same id is applied once.",
    )
    source: str = Field(default="capture-api", min_length=1, max_length=100)


class CreateRequest(_EventInput):
    """Create a work item."""

    capture_id: str = Field(min_length=1, max_length=200, pattern=CAPTURE_ID_PATTERN)
    fields: WorkItemInput = WorkItemInput()


class UpdateRequest(_EventInput):
    """Change some fields of a work item (only what changed)."""

    fields: WorkItemInput


class ActionRequest(_EventInput):
    """Complete, cancel, hold, resume or restart a work item."""

    reason: str | None = Field(default=None, max_length=1000)


class Action(StrEnum):
    COMPLETE = "complete"
    CANCEL = "cancel"
    HOLD = "hold"
    RESUME = "resume"
    RESTART = "restart"


class Accepted(BaseModel):
    """The event was written to Kafka (acks=all) and will be applied by the engine."""

    event_id: str
    type: EventType
    tenant: str
    capture_id: str
    topic: str
    partition: int
    offset: int


class Problem(BaseModel):
    """An error answer: a code, a message naming what is wrong, and details when useful."""

    error: str
    message: str
    details: list[dict[str, Any]] | None = None


# --- api keys -----------------------------------------------------------------------------------


def load_api_keys(source: str | Path | Mapping[str, Any]) -> dict[str, str]:
    """Return api key -> tenant from a YAML/JSON file or a mapping ``{tenant: key | [keys]}``.

    The document may also nest that mapping under ``tenants:``.
    """
    where = "api keys"
    if isinstance(source, str | Path):
        where = str(source)
        try:
            doc: Any = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"api keys {source}: cannot read: {exc.strerror or exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"api keys {source}: not valid YAML/JSON: {exc}") from None
    else:
        doc = dict(source)
    if isinstance(doc, dict) and isinstance(doc.get("tenants"), dict):
        doc = doc["tenants"]
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"api keys {where}: expected a mapping of tenant -> key or list of keys")
    keys: dict[str, str] = {}
    for tenant, value in doc.items():
        values = value if isinstance(value, list) else [value]
        for i, key in enumerate(values):
            if not isinstance(key, str) or len(key) < 8:
                raise ConfigError(
                    f"api keys {where}: {tenant}[{i}]: a key must be a string of 8+ characters"
                )
            if key in keys and keys[key] != tenant:
                raise ConfigError(f"api keys {where}: one key is given to {keys[key]} and {tenant}")
            keys[key] = str(tenant)
    return keys


# --- delivery -----------------------------------------------------------------------------------


class DeliveryPump:
    """Serve the producer's delivery reports on a background thread while the API runs."""

    def __init__(self, producer: ProducerLike) -> None:
        self.producer = producer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="capture-delivery", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.producer.poll(0.05)

    def stop(self, flush_timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.producer.flush(flush_timeout_s)


async def _produce_confirmed(
    producer: ProducerLike, pump: DeliveryPump, topic: str, event: LifecycleEvent, timeout_s: float
) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, int]] = loop.create_future()

    def on_delivery(err: Any, msg: Any) -> None:
        def settle() -> None:
            if done.done():
                return
            if err is not None:
                done.set_exception(
                    ApiError(503, "kafka_unavailable", f"Kafka refused the event: {err}")
                )
            else:
                partition = msg.partition() if msg is not None else -1
                offset = msg.offset() if msg is not None else -1
                done.set_result((partition, offset))

        loop.call_soon_threadsafe(settle)

    pump.ensure_started()
    try:
        producer.produce(
            topic, value=encode(event), key=event.key.encode(), on_delivery=on_delivery
        )
    except BufferError:
        raise ApiError(
            503, "kafka_backlog", "too many events waiting for Kafka; retry later"
        ) from None
    try:
        return await asyncio.wait_for(done, timeout_s)
    except TimeoutError:
        raise ApiError(
            503,
            "kafka_timeout",
            f"Kafka did not confirm the event within {timeout_s:.0f}s; retry "
            "with the same Idempotency-Key",
        ) from None


# --- idempotency --------------------------------------------------------------------------------


class IdempotencyCache:
    """Remember the answers to the last ``size`` idempotent requests (in-process, bounded)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._done: OrderedDict[tuple[str, str], tuple[str, dict[str, Any]]] = OrderedDict()
        self._running: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def run(
        self, key: tuple[str, str], fingerprint: str, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Answer from the cache, wait for an identical request in flight, or do ``work`` once."""
        while key in self._running:
            await asyncio.shield(self._running[key])
        if key in self._done:
            seen_fingerprint, answer = self._done[key]
            self._done.move_to_end(key)
            if seen_fingerprint != fingerprint:
                raise ApiError(
                    422,
                    "idempotency_key_reused",
                    "this Idempotency-Key / event_id was used for a different request",
                )
            return answer
        flight: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = flight
        try:
            answer = await work()
            self._done[key] = (fingerprint, answer)
            while len(self._done) > self.size:
                self._done.popitem(last=False)
            return answer
        finally:
            del self._running[key]
            flight.set_result(None)


def derive_event_id(tenant: str, idempotency_key: str) -> str:
    """Return the event_id for a request carrying ``idempotency_key`` (same key, same id)."""
    digest = hashlib.sha256(f"{tenant}\0{idempotency_key}".encode()).hexdigest()[:32]
    return f"api:{digest}"


# --- the app ------------------------------------------------------------------------------------


def _problem(
    status: int, code: str, message: str, details: list[dict[str, Any]] | None = None
) -> JSONResponse:
    return JSONResponse(
        Problem(error=code, message=message, details=details).model_dump(exclude_none=True), status
    )


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = _problem(413, "body_too_large", f"request body exceeds {self.limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await too_big(scope, receive, send)
                return
        seen = 0
        answered = False

        async def limited_receive() -> Any:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # Answer now and tell the app the client left, so it stops reading.
                    if not answered:
                        answered = True
                        await too_big(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Any) -> None:
            if not answered:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


TenantPath = Annotated[str, PathParam(min_length=1, max_length=64, pattern=TENANT_PATTERN)]
CaptureIdPath = Annotated[str, PathParam(min_length=1, max_length=200, pattern=CAPTURE_ID_PATTERN)]
IdempotencyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Same key, same event: a retried request is applied once.",
    ),
]


def authorise(
    request: Request,
    tenant: TenantPath,
    api_key: Annotated[str | None, Header(alias=API_KEY_HEADER)] = None,
) -> str:
    """Return the path's tenant if the API key belongs to it; 401 / 403 otherwise."""
    if not api_key:
        raise ApiError(401, "missing_api_key", f"send your tenant's API key in {API_KEY_HEADER}")
    keys: dict[str, str] = request.app.state.api_keys
    owner = next((t for k, t in keys.items() if hmac.compare_digest(k, api_key)), None)
    if owner is None:
        raise ApiError(401, "unknown_api_key", "the API key is not known")
    if owner != tenant:
        raise ApiError(
            403, "wrong_tenant", f"the API key does not grant access to tenant {tenant!r}"
        )
    return tenant


AuthorisedTenant = Annotated[str, Depends(authorise)]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem, "description": text}
    for code, text in [
        (401, "missing or unknown API key"),
        (403, "the API key belongs to another tenant"),
        (413, "body too large"),
        (422, "invalid request (the message names the field)"),
        (503, "Kafka did not confirm the event; retry with the same Idempotency-Key"),
    ]
}


def create_app(
    settings: Settings,
    producer: ProducerLike,
    api_keys: Mapping[str, str] | str | Path,
    *,
    topics: TopicNames | None = None,
    worker_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    idempotency_cache_size: int = 10_000,
    delivery_timeout_s: float = 15.0,
    http_client: httpx.AsyncClient | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """Build the capture API around a shared producer.

    ``api_keys`` maps key -> tenant (see :func:`load_api_keys` for files). ``worker_url`` is
    where ``GET .../workitems/{id}`` reads status from (``{worker_url}/api/items/{t}/{id}``).
    """
    keys = dict(api_keys) if isinstance(api_keys, Mapping) else load_api_keys(api_keys)
    topic = (topics or TopicNames(settings.topic_prefix)).events
    pump = DeliveryPump(producer)
    cache = IdempotencyCache(idempotency_cache_size)
    client_holder: dict[str, httpx.AsyncClient] = {}

    async def lifespan(_: FastAPI) -> Any:
        pump.ensure_started()
        try:
            yield
        finally:
            await asyncio.to_thread(pump.stop)
            if "own" in client_holder:
                await client_holder["own"].aclose()

    app = FastAPI(
        title="iwd-stream capture API",
        version="1",
        description="Capture work items into iwd-stream: every accepted request is one lifecycle "
        "event on Kafka (acks=all). Authenticate with the X-API-Key header of your tenant.",
        lifespan=lifespan,
        responses=ERRORS,
    )
    app.state.pump = pump
    app.state.api_keys = keys
    app.state.idempotency = cache

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _problem(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            details.append({"field": where, "problem": err["msg"]})
        message = "; ".join(f"{d['field']}: {d['problem']}" for d in details[:5])
        return _problem(422, "invalid_request", message, details)

    async def submit(
        etype: EventType,
        tenant: str,
        capture_id: str,
        body: _EventInput,
        idempotency_key: str | None,
        fields: WorkItemFields | None = None,
        reason: str | None = None,
    ) -> dict[str, Any]:
        token = idempotency_key or body.event_id
        if body.event_id is not None:
            event_id = body.event_id
        elif idempotency_key is not None:
            event_id = derive_event_id(tenant, idempotency_key)
        else:
            event_id = f"api:{uuid.uuid4().hex}"
        try:
            event = LifecycleEvent(
                type=etype,
                event_id=event_id,
                tenant=tenant,
                capture_id=capture_id,
                source=body.source,
                occurred_at=body.occurred_at or now(),
                version=body.version,
                fields=fields or WorkItemFields(),
                reason=reason,
            )
        except ValidationError as exc:
            raise ApiError(422, "invalid_request", describe_validation_error(exc)) from None

        async def send() -> dict[str, Any]:
            partition, offset = await _produce_confirmed(
                producer, pump, topic, event, delivery_timeout_s
            )
            return Accepted(
                event_id=event.event_id,
                type=etype,
                tenant=tenant,
                capture_id=capture_id,
                topic=topic,
                partition=partition,
                offset=offset,
            ).model_dump(mode="json")

        if token is None:
            return await send()
        # The fingerprint ignores occurred_at defaults: a retry of the same request matches.
        fingerprint = hashlib.sha256(
            json.dumps(
                [
                    etype.value,
                    capture_id,
                    body.model_dump(mode="json", exclude={"occurred_at"}),
                    fields.model_dump(mode="json") if fields else None,
                    reason,
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()
        return await cache.run((tenant, token), fingerprint, send)

    def to_fields(value: WorkItemInput) -> WorkItemFields:
        return WorkItemFields.model_validate({k: getattr(value, k) for k in value.model_fields_set})

    @app.post(
        "/v1/tenants/{tenant}/workitems",
        status_code=202,
        response_model=Accepted,
        summary="Create a work item",
        tags=["workitems"],
    )
    async def create_workitem(
        tenant: AuthorisedTenant,
        body: Annotated[CreateRequest, Body()],
        idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        answer = await submit(
            EventType.CREATE,
            tenant,
            body.capture_id,
            body,
            idempotency_key,
            fields=to_fields(body.fields),
        )
        return JSONResponse(answer, 202)

    @app.patch(
        "/v1/tenants/{tenant}/workitems/{capture_id}",
        status_code=202,
        response_model=Accepted,
        summary="Update fields of a work item",
        tags=["workitems"],
    )
    async def update_workitem(
        tenant: AuthorisedTenant,
        capture_id: CaptureIdPath,
        body: Annotated[UpdateRequest, Body()],
        idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        if not body.fields.model_fields_set:
            raise ApiError(
                422, "invalid_request", "body.fields: an update must change at least one field"
            )
        answer = await submit(
            EventType.UPDATE,
            tenant,
            capture_id,
            body,
            idempotency_key,
            fields=to_fields(body.fields),
        )
        return JSONResponse(answer, 202)

    @app.post(
        "/v1/tenants/{tenant}/workitems/{capture_id}/{action}",
        status_code=202,
        response_model=Accepted,
        summary="Complete, cancel, hold, resume or restart a work item",
        tags=["workitems"],
    )
    async def act_on_workitem(
        tenant: AuthorisedTenant,
        capture_id: CaptureIdPath,
        action: Action,
        body: Annotated[ActionRequest | None, Body()] = None,
        idempotency_key: IdempotencyHeader = None,
    ) -> JSONResponse:
        body = body or ActionRequest()
        answer = await submit(
            EventType(action.value), tenant, capture_id, body, idempotency_key, reason=body.reason
        )
        return JSONResponse(answer, 202)

    @app.get(
        "/v1/tenants/{tenant}/workitems/{capture_id}",
        summary="Read a work item's status",
        tags=["workitems"],
        responses={502: {"model": Problem, "description": "worker unreachable"}},
    )
    async def read_workitem(tenant: AuthorisedTenant, capture_id: CaptureIdPath) -> JSONResponse:
        if not worker_url:
            raise ApiError(
                503,
                "no_worker_url",
                "this capture API has no worker URL configured to "
                "read status from (start it with a worker URL)",
            )
        client = http_client or client_holder.get("own")
        if client is None:
            client = client_holder["own"] = httpx.AsyncClient(timeout=5.0)
        url = f"{worker_url.rstrip('/')}/api/items/{tenant}/{capture_id}"
        try:
            answer = await client.get(url)
        except httpx.HTTPError as exc:
            raise ApiError(502, "worker_unreachable", f"could not read {url}: {exc}") from None
        try:
            payload = answer.json()
        except ValueError:
            payload = {"error": "worker_error", "message": answer.text[:500]}
        return JSONResponse(payload, answer.status_code)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(_BodyLimit, limit=max_body_bytes)
    return app


def openapi_document() -> dict[str, Any]:
    """Return the capture API's OpenAPI document (what schemas/openapi.json must hold)."""
    app = create_app(Settings(), _NoProducer(), {"x" * 8: "t"})
    return app.openapi()


def export_openapi(path: Path = OPENAPI_PATH) -> Path:
    """Write the OpenAPI document to ``path`` (schemas/openapi.json by default)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return path


class _NoProducer:
    """A producer for building the document only; it never sends."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no producer")

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = 0) -> int:
        return 0


def serve(
    settings: Settings,
    api_keys: Mapping[str, str] | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    worker_url: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Run the capture API with uvicorn until interrupted (producer from settings)."""
    import uvicorn

    from iwd_stream.kafka.producer import make_producer

    if not settings.bootstrap_servers:
        raise ConfigError(
            "the capture API needs a Kafka bootstrap address (KAFKA_BOOTSTRAP_SERVERS)"
        )
    producer = make_producer(settings.bootstrap_servers)
    app = create_app(
        settings, producer, api_keys, worker_url=worker_url, max_body_bytes=max_body_bytes
    )
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level)
