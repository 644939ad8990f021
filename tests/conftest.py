"""Shared fixtures: one real Kafka broker per test session, unique names per test.

The broker comes from KAFKA_BOOTSTRAP_SERVERS, else a Docker engine (testcontainers), else
Apache Kafka started from its jars (see iwd_stream/devkafka). With CI=true or
IWD_REQUIRE_KAFKA=1 a broker that cannot be obtained fails the run; otherwise the broker
tests are skipped with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iwd_stream.devkafka import obtain_kafka
from iwd_stream.errors import IwdError
from iwd_stream.kafka.admin import create_topics
from iwd_stream.settings import Settings

ROOT = Path(__file__).resolve().parent
BROKER_NOTES: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say, at the end of the run, which real broker the broker tests used."""
    if BROKER_NOTES:
        terminalreporter.section("kafka broker")
        for note in BROKER_NOTES:
            terminalreporter.write_line(note)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if ROOT / "integration" in path.parents:
            item.add_marker(pytest.mark.kafka)
        if ROOT / "e2e" in path.parents:
            item.add_marker(pytest.mark.kafka)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def kafka_bootstrap(settings: Settings, pytestconfig: pytest.Config) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker shared by the whole session."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def say(message: str) -> None:
        BROKER_NOTES.append(message)
        if reporter is not None:
            reporter.write_line(f"[kafka] {message}")

    try:
        ctx = obtain_kafka(settings, progress=say)
        endpoint = ctx.__enter__()
    except IwdError as exc:
        if settings.require_kafka:
            pytest.fail(f"no Kafka broker (CI/IWD_REQUIRE_KAFKA set, so this fails): {exc}")
        pytest.skip(f"no Kafka broker: {exc}")
    say(f"using {endpoint.origin} broker at {endpoint.bootstrap_servers} ({endpoint.detail})")
    try:
        yield endpoint.bootstrap_servers
    finally:
        ctx.__exit__(None, None, None)


@pytest.fixture
def unique_name(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Return a factory of names unique to this test (topics, groups, prefixes)."""
    test = request.node.name.replace("[", "-").replace("]", "").replace("/", "-")[:40]

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{test}-{uuid.uuid4().hex[:8]}"

    return make


@pytest.fixture
def topic_factory(kafka_bootstrap: str, unique_name: Callable[[str], str]) -> Callable[..., str]:
    """Create a fresh topic with ``partitions`` partitions and return its name."""

    def make(prefix: str = "topic", partitions: int = 1) -> str:
        name = unique_name(prefix)
        create_topics(kafka_bootstrap, [name], partitions)
        return name

    return make
