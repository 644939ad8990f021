"""iwd-stream: an open, Kafka-native Intelligent Workload Distribution engine."""

__version__ = "0.1.0"
