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
    p.add_argument("--port", type=int, default=None, help="client port (default: a free one)")
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

    settings = settings.model_copy(update={"partitions": args.partitions or settings.partitions})
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
    from iwd_stream.streaming.worker import run_worker

    settings = settings.model_copy(
        update={
            k: v
            for k, v in {
                "data_dir": args.data_dir,
                "web_port": args.web_port,
                "log_level": args.log_level,
                "rules_path": args.rules,
                "partitions": args.partitions,
                "tick_interval_s": args.tick_interval,
                "offer_timeout_s": args.offer_timeout,
            }.items()
            if v is not None
        }
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
    p.add_argument("--web-port", type=int, default=None, help="HTTP port (default 6066)")
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


if __name__ == "__main__":
    sys.exit(main())
