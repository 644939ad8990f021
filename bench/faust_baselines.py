"""Bare Faust apps that bench_pipeline.py measures the engine against (run as subprocesses).

    .venv/bin/python bench/faust_baselines.py MODE --bootstrap HOST:PORT --source TOPIC \
        --sink TOPIC --app-id ID --port PORT --data-dir DIR [--partitions 4]

MODE is one of:

* ``consume``     - consume and count; nothing sent (what reading alone costs);
* ``passthrough`` - consume + one ``topic.send`` of the raw bytes (key and value as they came);
* ``tablehop``    - decode the JSON value, write it to a RocksDB table (one changelog send),
  then one ``topic.send``: the least a stateful stage can do.

The apps are configured like the engine's (raw bytes, acks=all, 1 s commit interval,
earliest offsets, same partitions, RocksDB store, one agent at concurrency 1), so that the
difference to the engine is what the engine does per event, not how Faust is set up.
``GET /progress`` answers ``{"ready": bool, "count": int}``; ready means started, not
rebalancing and table recovery completed, as the engine's ``/ready`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.web import Request, Response, View

from iwd_stream.settings import Settings
from iwd_stream.streaming.app import faust_config

MODES = ("consume", "passthrough", "tablehop")


def build_app(args: argparse.Namespace) -> faust.App:
    # The engine's own Faust settings, so the comparison measures the stages, not config.
    settings = Settings(
        data_dir=Path(args.data_dir), web_port=args.port, partitions=args.partitions
    )
    app = faust.App(args.app_id, **faust_config(settings, args.bootstrap))
    raw: dict[str, Any] = {"key_type": bytes, "value_type": bytes, "partitions": args.partitions}
    source = app.topic(args.source, **raw)
    sink = app.topic(args.sink, **raw)
    table = app.Table("hop", default=None, **raw)
    state = {"count": 0}

    if args.mode == "consume":

        @app.agent(source, concurrency=1)
        async def consume(stream: Any) -> None:
            async for _event in stream.events():
                state["count"] += 1

    elif args.mode == "passthrough":

        @app.agent(source, concurrency=1)
        async def passthrough(stream: Any) -> None:
            async for event in stream.events():
                msg = event.message
                await sink.send(key=msg.key, value=msg.value)
                state["count"] += 1

    else:

        @app.agent(source, concurrency=1)
        async def tablehop(stream: Any) -> None:
            async for event in stream.events():
                msg = event.message
                doc = orjson.loads(msg.value)
                table[msg.key] = orjson.dumps(doc)
                await sink.send(key=msg.key, value=msg.value)
                state["count"] += 1

    def ready() -> bool:
        a: Any = app
        if not a.started or a.rebalancing:
            return False
        recovery = a.tables.recovery
        return not recovery.in_recovery and recovery.completed.is_set()

    @app.page("/progress")
    class Progress(View):
        async def get(self, request: Request) -> Response:
            body = orjson.dumps({"ready": ready(), "count": state["count"]})
            return self.bytes(body, content_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("mode", choices=MODES)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    app = build_app(args)
    worker = faust.Worker(
        app, loglevel="WARNING", quiet=True, redirect_stdouts=False, override_logging=True
    )
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
