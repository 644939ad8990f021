"""One error tree for iwd-stream; each error says whether retrying can help."""

from __future__ import annotations


class IwdError(Exception):
    """Base of every error iwd-stream raises on purpose."""

    retriable: bool = False


class ConfigError(IwdError):
    """A setting, rules file or mapping file is invalid."""


class DecodeError(IwdError):
    """Bytes from Kafka (or HTTP) are not a valid contract message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class BrokerError(IwdError):
    """The Kafka broker could not be reached or started."""

    retriable = True


class LocalKafkaError(BrokerError):
    """The bundled local Kafka could not be fetched, started or stopped."""

    retriable = False
