"""Wire contracts (pydantic v2) and the codec shared by every producer and consumer."""

from iwd_stream.contracts.codec import decode, describe_validation_error, encode
from iwd_stream.contracts.models import *  # noqa: F403
from iwd_stream.contracts.models import ALL_CONTRACTS, SCHEMA_VERSION, item_key, queue_key

__all__ = [
    "ALL_CONTRACTS",
    "SCHEMA_VERSION",
    "decode",
    "describe_validation_error",
    "encode",
    "item_key",
    "queue_key",
]
