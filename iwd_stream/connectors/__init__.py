"""Source connectors: file replay, Kafka source, capture API, and the routing-consumer simulator."""
