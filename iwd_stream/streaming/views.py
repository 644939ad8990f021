"""HTTP views every worker serves: readiness, metrics, and the query API.

A question about data held by another worker is forwarded to it (Faust's router picks the
owner of the key's partition), so any worker answers any question.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from faust.exceptions import SameNode
from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iwd_stream.contracts import item_key, queue_key

if TYPE_CHECKING:
    from iwd_stream.streaming.app import Engine

MAX_TOP = 1000


def _json(view: View, body: Any, status: int = 200) -> Response:
    return view.bytes(orjson.dumps(body), content_type="application/json", status=status)


def _problem(view: View, status: int, message: str) -> Response:
    return _json(view, {"error": message}, status=status)


def register_views(engine: Engine, items_table: Any, queue_table: Any) -> None:
    app = engine.app

    async def route(view: View, table_name: str, key: str, request: Request) -> Response | None:
        """Forward to the owner of ``key``'s partition; return None when this worker owns it."""
        if request.query.get("local") == "1":
            return None
        try:
            return await app.router.route_req(table_name, key.encode(), view.web, request)
        except SameNode:
            return None
        except (aiohttp.ClientError, OSError) as exc:
            # The owner went away and the group has not rebalanced yet: a retry will land.
            response = _problem(
                view, 503, f"the worker that holds this data is unreachable ({exc}); retry shortly"
            )
            response.headers["Retry-After"] = "2"
            return response

    page = (resources.files("iwd_stream") / "web" / "index.html").read_bytes()

    @app.page("/ui")
    class Ui(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(page, content_type="text/html")

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ok, why = engine.ready()
            return _json(self, {"ready": ok, "state": why}, status=200 if ok else 503)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(
                generate_latest(engine.metrics.registry),
                content_type=CONTENT_TYPE_LATEST.split(";")[0],
            )

    @app.page("/api/items/{tenant}/{capture_id}")
    class Item(View):
        async def get(self, request: Request, tenant: str, capture_id: str) -> Response:
            key = item_key(tenant, capture_id)
            routed = await route(self, items_table.name, key, request)
            if routed is not None:
                return routed
            raw = items_table.get(key.encode())
            if raw is None:
                return _problem(self, 404, f"no work item {capture_id!r} for tenant {tenant!r}")
            body = engine.workitems.describe(raw)
            entry = engine.queues.describe_item(tenant, body.get("in_queue"), capture_id, _now())
            if entry is not None:
                body["queue_entry"] = entry
            return _json(self, body)

    @app.page("/api/queues/{tenant}/{queue}")
    class QueueTop(View):
        async def get(self, request: Request, tenant: str, queue: str) -> Response:
            try:
                top = int(request.query.get("top", "10"))
            except ValueError:
                return _problem(self, 400, "top must be an integer")
            if not 1 <= top <= MAX_TOP:
                return _problem(self, 400, f"top must be between 1 and {MAX_TOP}")
            # The queue table's changelog partition is the partition of tenant/queue.
            routed = await route(self, queue_table.name, queue_key(tenant, queue), request)
            if routed is not None:
                return routed
            return _json(self, engine.queues.top(tenant, queue, top, _now()))

    @app.page("/api/queues")
    class Queues(View):
        async def get(self, request: Request) -> Response:
            summaries = engine.queues.summaries(_now())
            if request.query.get("local") != "1":
                summaries += await _gather_remote(engine, "/api/queues?local=1")
            tenant = request.query.get("tenant")
            if tenant:
                summaries = [s for s in summaries if s["tenant"] == tenant]
            summaries.sort(key=lambda s: (s["tenant"], s["queue"]))
            return _json(self, {"queues": summaries})


async def _gather_remote(engine: Engine, path: str) -> list[dict[str, Any]]:
    """Ask every other worker of the group for its local part of an answer."""
    app = engine.app
    me = str(app.conf.canonical_url).rstrip("/")
    hosts = {str(h).rstrip("/") for h in app.router.tables_metadata()} - {me}
    if not hosts:
        return []
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(host: str) -> list[dict[str, Any]]:
            try:
                async with session.get(f"{host}{path}") as resp:
                    data = await resp.json()
                    return list(data.get("queues", []))
            except Exception:  # noqa: BLE001 - a worker going away mid-question
                return []

        parts = await asyncio.gather(*(one(h) for h in hosts))
    return [s for part in parts for s in part]


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
