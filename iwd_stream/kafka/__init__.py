"""Thin Kafka plumbing shared by every producer and admin call (no business logic here)."""
