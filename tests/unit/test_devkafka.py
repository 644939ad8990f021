import pytest

from iwd_stream.devkafka.local import _java_major, find_java, kafka_cluster_id, port_is_free
from iwd_stream.errors import LocalKafkaError


@pytest.mark.parametrize(
    "output,major",
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "25" 2025-09-16', 25),
        ('java version "1.8.0_392"', 8),
        ("garbage", 0),
    ],
)
def test_java_major(output, major):
    assert _java_major(output) == major


def test_cluster_id_is_kafka_uuid_format_and_never_looks_like_an_option():
    for _ in range(2000):  # a leading "-" comes up once in 64 draws
        cid = kafka_cluster_id()
        assert len(cid) == 22 and "=" not in cid and not cid.startswith("-")


def test_missing_java_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalKafkaError, match="Java not found"):
        find_java(None)


def test_old_java_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "java"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'java version \"1.8.0_392\"' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    with pytest.raises(LocalKafkaError, match="needs Java 17"):
        find_java(None)


def test_taken_port_is_detected():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not port_is_free(s.getsockname()[1])
