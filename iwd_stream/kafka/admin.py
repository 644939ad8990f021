"""Topic provisioning with confluent-kafka's AdminClient."""

from __future__ import annotations

import time
from collections.abc import Iterable

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from iwd_stream.errors import BrokerError


def create_topics(
    bootstrap_servers: str,
    names: Iterable[str],
    partitions: int,
    *,
    config: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create topics that do not exist yet; return the names created. Existing ones are kept."""
    admin = _admin(bootstrap_servers)
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    wanted = [n for n in names if n not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(n, num_partitions=partitions, replication_factor=1, config=config or {})
            for n in wanted
        ],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, fut in futures.items():
        try:
            fut.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args and exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                continue
            raise BrokerError(f"could not create topic {name}: {exc}") from exc
    _wait_visible(admin, wanted, timeout_s)
    return created


def _admin(bootstrap_servers: str) -> AdminClient:
    # log_level 2: librdkafka would otherwise print a line per failed connection attempt; the
    # caller turns the failure into one clear error.
    return AdminClient({"bootstrap.servers": bootstrap_servers, "log_level": 2})


def _wait_visible(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """Wait until new topics show in metadata with their partitions (creation is async)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=timeout_s).topics
        if all(n in topics and topics[n].partitions and not topics[n].error for n in names):
            return
        time.sleep(0.2)
    raise BrokerError(f"topics not visible {timeout_s:.0f}s after creation: {', '.join(names)}")


def partition_counts(
    bootstrap_servers: str, names: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Return the partition count of each named topic that exists."""
    admin = _admin(bootstrap_servers)
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    return {n: len(md.topics[n].partitions) for n in names if n in md.topics}
