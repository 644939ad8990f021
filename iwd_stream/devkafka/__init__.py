"""Obtain a real Kafka broker for tests, the demo and local runs.

Resolution order (DESIGN.md, "Running it"):
1. ``KAFKA_BOOTSTRAP_SERVERS`` is set → use that cluster as it is;
2. a Docker engine answers → an ``apache/kafka`` KRaft container through testcontainers;
3. otherwise → Apache Kafka from its Maven Central jars on this machine's Java 17+.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iwd_stream.devkafka.local import (
    BrokerInfo,
    free_port,
    pid_alive,
    start_broker,
    stop_broker,
    wait_until_ready,
)
from iwd_stream.errors import LocalKafkaError
from iwd_stream.settings import Settings

__all__ = [
    "BrokerInfo",
    "KafkaEndpoint",
    "broker_state_file",
    "docker_engine_available",
    "obtain_kafka",
    "start_background_broker",
    "stop_background_broker",
]


@dataclass(frozen=True)
class KafkaEndpoint:
    """A broker to talk to, and how it was obtained (for logs and reports)."""

    bootstrap_servers: str
    origin: str  # "env" | "docker" | "local"
    detail: str = ""


def docker_engine_available() -> bool:
    """Return True if a Docker engine (not only the client) answers a ping."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@contextlib.contextmanager
def _docker_kafka(version: str) -> Iterator[KafkaEndpoint]:
    # apache/kafka runs a single-node KRaft broker by default; we only move its client
    # listener to a fixed free host port so the advertised address is reachable.
    from testcontainers.core.container import DockerContainer

    port = free_port()
    container = (
        DockerContainer(f"apache/kafka:{version}")
        .with_bind_ports(9092, port)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", f"PLAINTEXT://127.0.0.1:{port}")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env(
            "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        )
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
        .with_env("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false")
    )
    with container:
        bootstrap = f"127.0.0.1:{port}"
        wait_until_ready(bootstrap, timeout_s=120)
        yield KafkaEndpoint(bootstrap, "docker", f"apache/kafka:{version}")


@contextlib.contextmanager
def obtain_kafka(
    settings: Settings, progress: Callable[[str], None] = print
) -> Iterator[KafkaEndpoint]:
    """Yield a reachable broker for the duration of the block; stop it afterwards if we started it."""
    if settings.bootstrap_servers:
        wait_until_ready(settings.bootstrap_servers, timeout_s=30)
        yield KafkaEndpoint(settings.bootstrap_servers, "env", "KAFKA_BOOTSTRAP_SERVERS")
        return
    if docker_engine_available():
        with _docker_kafka(settings.kafka_version) as endpoint:
            yield endpoint
        return
    info = start_broker(
        cache_dir=settings.cache_dir,
        version=settings.kafka_version,
        java_home=settings.java_home,
        progress=progress,
    )
    progress(
        f"started Apache Kafka {info.version} (KRaft) on {info.bootstrap_servers} in "
        f"{info.started_in_s:.1f}s (jar fetch {info.jars_fetched_in_s:.1f}s); log: {info.log_file}"
    )
    try:
        yield KafkaEndpoint(info.bootstrap_servers, "local", info.log_file)
    finally:
        stop_broker(info)


def broker_state_file(settings: Settings) -> Path:
    return settings.cache_dir / "run" / "broker.json"


def start_background_broker(
    settings: Settings, *, port: int | None = None, progress: Callable[[str], None] = print
) -> BrokerInfo:
    """Start a broker that outlives this process (``iwd-stream kafka start``)."""
    state = broker_state_file(settings)
    if state.exists():
        info = BrokerInfo.from_json(state.read_text())
        if pid_alive(info.pid):
            raise LocalKafkaError(
                f"a local broker already runs on {info.bootstrap_servers} (pid {info.pid}); "
                "stop it with `iwd-stream kafka stop`"
            )
        state.unlink()
    data_dir = settings.cache_dir / "run" / f"broker-{int(time.time())}"
    info = start_broker(
        cache_dir=settings.cache_dir,
        version=settings.kafka_version,
        java_home=settings.java_home,
        port=port,
        data_dir=data_dir,
        tie_to_parent=False,
        progress=progress,
    )
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(info.to_json())
    return info


def background_broker(settings: Settings) -> BrokerInfo | None:
    """Return the broker started by ``iwd-stream kafka start`` if it still runs."""
    state = broker_state_file(settings)
    if not state.exists():
        return None
    info = BrokerInfo.from_json(state.read_text())
    return info if pid_alive(info.pid) else None


def stop_background_broker(settings: Settings, *, keep_data: bool = False) -> BrokerInfo | None:
    """Stop the broker started by ``iwd-stream kafka start``; return it, or None if none ran."""
    state = broker_state_file(settings)
    if not state.exists():
        return None
    info = BrokerInfo.from_json(state.read_text())
    stop_broker(info, remove_data=not keep_data)
    state.unlink()
    return info


def describe(info: BrokerInfo) -> dict[str, Any]:
    return {
        "bootstrap_servers": info.bootstrap_servers,
        "pid": info.pid,
        "version": info.version,
        "log_file": info.log_file,
        "data_dir": info.data_dir,
    }
