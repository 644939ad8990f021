"""The ``iwd-stream`` command: one entry point for every process iwd-stream runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from iwd_stream import __version__
from iwd_stream.contracts.codec import describe_validation_error
from iwd_stream.errors import IwdError
from iwd_stream.settings import Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def settings_debug() -> bool:
    return Settings.debug_enabled()


def _port(text: str) -> int:
    """argparse type: a TCP port number."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def _err(message: str) -> None:
    print(f"iwd-stream: error: {message}", file=sys.stderr)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- kafka -------------------------------------------------------------------------------------


def cmd_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream import devkafka

    if args.action == "start":
        info = devkafka.start_background_broker(settings, port=args.port, progress=_progress)
        print(
            f"Apache Kafka {info.version} runs on {info.bootstrap_servers} (pid {info.pid}), "
            f"started in {info.started_in_s:.1f}s; log: {info.log_file}"
        )
        print(f"export KAFKA_BOOTSTRAP_SERVERS={info.bootstrap_servers}")
        return 0
    if args.action == "stop":
        stopped = devkafka.stop_background_broker(settings, keep_data=args.keep_data)
        print(
            f"stopped the broker on {stopped.bootstrap_servers}"
            if stopped
            else "no local broker runs"
        )
        return 0
    running = devkafka.background_broker(settings)
    if running is None:
        print("no local broker runs")
        return 3
    print(json.dumps(devkafka.describe(running), indent=2))
    return 0


def _add_kafka(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "kafka",
        help="run a local single-node Apache Kafka (KRaft) from its jars, without Docker",
        description="Start, stop or inspect a local Apache Kafka broker run from Maven Central jars "
        "(cached outside the repository) on this machine's Java 17+.",
    )
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--port", type=_port, default=None, help="client port (default: a free one)")
    p.add_argument(
        "--keep-data", action="store_true", help="on stop, keep the broker's data directory"
    )
    p.set_defaults(handler=cmd_kafka)


# --- topics / worker --------------------------------------------------------------------------


def resolve_bootstrap(settings: Settings) -> str:
    """Return the broker to use: the configured one, else the one `iwd-stream kafka start` runs."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    from iwd_stream import devkafka

    running = devkafka.background_broker(settings)
    if running is not None:
        return running.bootstrap_servers
    raise IwdError(
        "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS or --bootstrap-servers, "
        "or start a local one with `iwd-stream kafka start`"
    )


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.kafka.admin import partition_counts
    from iwd_stream.streaming.app import changelog_topics, provision_topics
    from iwd_stream.topics import TopicNames

    settings = settings.with_updates(partitions=args.partitions)
    bootstrap = resolve_bootstrap(settings)
    if args.action == "create":
        created = provision_topics(settings, bootstrap)
        print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    names = TopicNames(settings.topic_prefix).all() + changelog_topics(settings)
    counts = partition_counts(bootstrap, names)
    for name in names:
        print(f"{name:50s} {counts.get(name, 'missing')}")
    return 0 if all(n in counts for n in names) else 1


def _add_topics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "topics",
        help="create or list the engine's topics",
        description="Create (idempotently) or list every topic the engine reads and writes, "
        "including its table changelogs (compact-only). Co-partitioned topics share one count.",
    )
    p.add_argument("action", choices=["create", "list"])
    p.add_argument("--partitions", type=int, default=None, help="partitions per topic (default 4)")
    p.set_defaults(handler=cmd_topics)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.devkafka.local import port_is_free
    from iwd_stream.streaming.worker import run_worker

    settings = settings.with_updates(
        data_dir=args.data_dir,
        web_port=args.web_port,
        log_level=args.log_level,
        rules_path=args.rules,
        partitions=args.partitions,
        tick_interval_s=args.tick_interval,
        offer_timeout_s=args.offer_timeout,
    )
    if not port_is_free(settings.web_port):
        raise IwdError(
            f"web port {settings.web_port} on {settings.web_host} is in use; "
            "give each worker its own --web-port"
        )
    return run_worker(settings, resolve_bootstrap(settings), name=args.name)


def _add_worker(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "worker",
        help="run a stream worker (both stages, SLA timer, query API, /metrics)",
        description="Run one iwd-stream worker. Give each worker on a host its own --data-dir "
        "and --web-port. SIGTERM stops it cleanly.",
    )
    p.add_argument("--data-dir", type=Path, default=None, help="table storage (default var/worker)")
    p.add_argument("--web-port", type=_port, default=None, help="HTTP port (default 6066)")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--rules", type=Path, default=None, help="rules file or folder (default: bundled)"
    )
    p.add_argument("--partitions", type=int, default=None, help="partitions per topic (default 4)")
    p.add_argument("--tick-interval", type=float, default=None, help="SLA tick seconds (default 1)")
    p.add_argument(
        "--offer-timeout", type=float, default=None, help="offer deadline seconds (default 30)"
    )
    p.add_argument("--name", default=None, help="worker name in logs and ticks")
    p.set_defaults(handler=cmd_worker)


# --- connectors -------------------------------------------------------------------------------

BUILTIN_SOURCES = {
    "servicenow": "servicenow_incident_events.csv",
    "nyc311": "nyc311_service_requests.csv",
}


def cmd_replay(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.connectors.mapping import builtin_data_file
    from iwd_stream.connectors.output import ProgressBar
    from iwd_stream.connectors.replay import replay
    from iwd_stream.kafka.producer import make_producer
    from iwd_stream.topics import TopicNames

    if args.source in BUILTIN_SOURCES:
        path = builtin_data_file(BUILTIN_SOURCES[args.source])
        mapping = args.mapping or args.source
    else:
        path = Path(args.source)
        if not path.is_file():
            raise IwdError(
                f"no such data file: {path} (or use one of: {', '.join(BUILTIN_SOURCES)})"
            )
        if not args.mapping:
            raise IwdError("--mapping is required for a data file of your own")
        mapping = args.mapping
    from iwd_stream.connectors.replay import parse_speed

    try:
        parse_speed(args.speed)
    except ValueError:
        raise IwdError(f"--speed must be a number > 0 or 'max', got {args.speed!r}") from None
    bootstrap = resolve_bootstrap(settings)
    summary = replay(
        path,
        mapping,
        make_producer(bootstrap),
        TopicNames(settings.topic_prefix),
        speed=args.speed,
        progress=ProgressBar(f"replay {path.name}"),
        tenant=args.tenant,
        max_gap_s=args.max_gap,
    )
    print(json.dumps(summary.as_dict(), indent=2))
    return 0


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a CSV/JSONL export of a source system as lifecycle events",
        description="Map each row of a source export to lifecycle events (with a YAML mapping) "
        "and produce them to the events topic, as fast as possible or time-compressed. Rows that "
        "cannot be mapped go to the dead-letter topic with their line number.",
    )
    p.add_argument("source", help="servicenow | nyc311 (bundled data) or a CSV/JSONL file")
    p.add_argument("--mapping", default=None, help="mapping name or YAML file (default: source)")
    p.add_argument(
        "--speed", default="max", help="time compression, e.g. 3600 (x real time), or max"
    )
    p.add_argument(
        "--max-gap",
        type=float,
        default=None,
        help="cut quiet stretches to this many source seconds",
    )
    p.add_argument("--tenant", default=None, help="tenant (default: the mapping's)")
    p.set_defaults(handler=cmd_replay)


def cmd_capture_api(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.connectors.capture_api import serve

    settings = settings.with_updates(bootstrap_servers=resolve_bootstrap(settings))
    serve(settings, args.api_keys, host=args.host, port=args.port, worker_url=args.worker_url)
    return 0


def _add_capture_api(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "capture-api",
        help="run the HTTP capture API (create/update/complete/... work items)",
        description="Serve the capture API: every accepted request becomes one lifecycle event "
        "on Kafka (acks=all, idempotent). OpenAPI at /docs and in schemas/openapi.json.",
    )
    p.add_argument("--api-keys", required=True, type=Path, help="YAML/JSON file: tenant -> key(s)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8080)
    p.add_argument("--worker-url", default=None, help="a worker's URL, to answer status reads")
    p.set_defaults(handler=cmd_capture_api)


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.connectors.simulator import draw_employees, run_simulator
    from iwd_stream.kafka.producer import make_producer
    from iwd_stream.topics import TopicNames

    bootstrap = resolve_bootstrap(settings)
    staff = draw_employees(
        args.tenant,
        args.queues.split(","),
        args.employees,
        seed=args.seed,
        skills=[s for s in args.skills.split(",") if s],
        media_types=[m for m in args.media.split(",") if m],
    )
    stats = run_simulator(
        bootstrap,
        make_producer(bootstrap),
        TopicNames(settings.topic_prefix),
        staff,
        speed=args.speed,
        seed=args.seed,
        duration_s=args.duration,
    )
    print(json.dumps(dict(stats), indent=2))
    return 0


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "simulate",
        help="run simulated employees: the reference routing consumer",
        description="Simulated employees publish capacity, answer offers (accept, sometimes "
        "decline or ignore) and complete the work after a handle time divided by --speed.",
    )
    p.add_argument("--tenant", required=True)
    p.add_argument("--queues", required=True, help="comma-separated queue names")
    p.add_argument("--employees", type=int, default=10)
    p.add_argument("--skills", default="", help="comma-separated skills to draw from")
    p.add_argument("--media", default="", help="comma-separated media types they handle")
    p.add_argument("--speed", type=float, default=60.0, help="handle-time compression")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(handler=cmd_simulate)


def cmd_connect_kafka(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.connectors.kafka_source import run_kafka_source
    from iwd_stream.kafka.admin import partition_counts
    from iwd_stream.kafka.producer import make_producer
    from iwd_stream.topics import TopicNames

    bootstrap = resolve_bootstrap(settings)
    if args.source_topic not in partition_counts(bootstrap, [args.source_topic]):
        raise IwdError(f"source topic {args.source_topic!r} does not exist on {bootstrap}")
    summary = run_kafka_source(
        bootstrap,
        args.source_topic,
        args.mapping,
        make_producer(bootstrap),
        TopicNames(settings.topic_prefix),
        group_id=args.group,
        tenant=args.tenant,
        idle_timeout_s=args.idle_timeout,
    )
    print(json.dumps(vars(summary), indent=2, default=str))
    return 0


def _add_connect_kafka(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "connect-kafka",
        help="map JSON messages of another system's topic to lifecycle events",
        description="Consume JSON from an existing topic, map each message with a mapping file "
        "and produce lifecycle events; offsets are committed only after the events are on Kafka.",
    )
    p.add_argument("--source-topic", required=True)
    p.add_argument("--mapping", required=True, help="mapping name or YAML file")
    p.add_argument("--group", default="iwd-kafka-source", help="consumer group")
    p.add_argument("--tenant", default=None)
    p.add_argument("--idle-timeout", type=float, default=None, help="stop after idle seconds")
    p.set_defaults(handler=cmd_connect_kafka)


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.connectors.capture_api import export_openapi
    from iwd_stream.contracts.export import stale_files, write_schemas

    if args.action == "check":
        stale = stale_files()
        if stale:
            raise IwdError(
                f"schemas/ is stale ({', '.join(stale)}); run `iwd-stream schemas export`"
            )
        print("schemas/ is up to date")
        return 0
    changed = write_schemas()
    export_openapi()
    print(f"wrote JSON Schemas ({len(changed)} changed) and schemas/openapi.json")
    return 0


def _add_schemas(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "schemas",
        help="export or check the JSON Schemas of the topic contracts and the OpenAPI document",
        description="Write schemas/*.schema.json (one per wire contract) and schemas/openapi.json "
        "from the code, or check that the committed ones are current.",
    )
    p.add_argument("action", choices=["export", "check"])
    p.set_defaults(handler=cmd_schemas)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from iwd_stream.demo import run_demo

    return run_demo(settings, speed=args.speed, employees=args.employees, keep_running=args.keep)


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="the demo: real ServiceNow incidents through the whole engine, with a live view",
        description="Obtain Kafka, start a worker and simulated employees, replay the bundled "
        "ServiceNow incident log, show the Universal Queue live (terminal and web page) and end "
        "with a summary. Leaves nothing running.",
    )
    p.add_argument("--speed", type=float, default=20000.0, help="replay time compression")
    p.add_argument("--employees", type=int, default=24, help="simulated employees")
    p.add_argument(
        "--keep", type=float, default=0.0, help="keep the web view up this many seconds at the end"
    )
    p.set_defaults(handler=cmd_demo)


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="iwd-stream",
        description="iwd-stream: an open, Kafka-native Intelligent Workload Distribution engine.",
    )
    parser.add_argument("--version", action="version", version=f"iwd-stream {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    for child in sub.choices.values():
        _add_common(child, suppress=True)
    return parser


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """Add the options every command takes (before or after the command name)."""
    default = argparse.SUPPRESS if suppress else None
    group = parser.add_argument_group("common options")
    group.add_argument(
        "--bootstrap-servers",
        default=default,
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    group.add_argument("--topic-prefix", default=default, help="topic name prefix (default: iwd)")
    group.add_argument(
        "--cache-dir", type=Path, default=default, help="where Kafka jars are cached"
    )


_COMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_kafka,
    _add_topics,
    _add_worker,
    _add_replay,
    _add_capture_api,
    _add_simulate,
    _add_connect_kafka,
    _add_schemas,
    _add_demo,
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env(
            bootstrap_servers=args.bootstrap_servers,
            topic_prefix=args.topic_prefix,
            cache_dir=args.cache_dir,
        )
        handler: Handler = args.handler
        return handler(args, settings)
    except IwdError as exc:
        _err(str(exc))
        return 2
    except ValidationError as exc:
        _err(f"invalid setting: {describe_validation_error(exc)}")
        return 2
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line; the traceback on request
        if settings_debug():
            raise
        _err(f"unexpected {type(exc).__name__}: {exc} (set IWD_DEBUG=1 for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
