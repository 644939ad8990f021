"""Topic provisioning with confluent-kafka's AdminClient."""

from __future__ import annotations

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
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
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
    return created


def partition_counts(
    bootstrap_servers: str, names: Iterable[str], timeout_s: float = 10.0
) -> dict[str, int]:
    """Return the partition count of each named topic that exists."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from None
    return {n: len(md.topics[n].partitions) for n in names if n in md.topics}
