"""The one codec for every contract: orjson bytes on the wire, pydantic validation on read."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import ValidationError

from iwd_stream.contracts.models import SCHEMA_VERSION, Contract
from iwd_stream.errors import DecodeError

C = TypeVar("C", bound=Contract)

MAX_MESSAGE_BYTES = 256 * 1024


def encode(message: Contract) -> bytes:
    """Serialise a contract to compact JSON bytes (unset optional fields are left out)."""
    return orjson.dumps(message.model_dump(mode="json", exclude_none=True))


def decode(raw: bytes | None, model: type[C], *, max_bytes: int = MAX_MESSAGE_BYTES) -> C:
    """Parse and validate bytes as ``model``; raise DecodeError with a reason code and message."""
    if raw is None:
        raise DecodeError("empty", "message has no value")
    if len(raw) > max_bytes:
        raise DecodeError("oversize", f"message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError("not_json", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError("not_object", f"expected a JSON object, got {type(data).__name__}")
    version = data.get("schema_version", SCHEMA_VERSION)
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise DecodeError(
            "future_schema",
            f"schema_version {version} is newer than this build understands ({SCHEMA_VERSION})",
        )
    try:
        # JSON mode: strict types, but ISO-8601 strings are read as datetimes.
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise DecodeError("invalid", describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """Return one line naming each invalid field and what is wrong with it."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - 5
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)
