import pytest

from iwd_stream.kafka.producer import PARTITIONER, murmur2_partition, producer_config


def test_producer_config_pins_murmur2_and_durability():
    config = producer_config("127.0.0.1:9092", linger_ms=20)
    assert config["partitioner"] == PARTITIONER == "murmur2_random"
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 20


def test_producer_config_refuses_another_partitioner():
    with pytest.raises(ValueError, match="murmur2_random"):
        producer_config("127.0.0.1:9092", partitioner="consistent_random")


# Kafka's own UtilsTest vectors for Utils.murmur2 (signed 32-bit results).
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


@pytest.mark.parametrize("key,signed", JAVA_MURMUR2.items())
def test_murmur2_partition_follows_the_java_client(key, signed):
    # Java: Utils.toPositive(murmur2(key)) % numPartitions
    for partitions in (1, 7, 12):
        assert murmur2_partition(key, partitions) == (signed & 0x7FFFFFFF) % partitions
