"""Frozen settings read from ``IWD_*`` environment variables: the only module that reads os.environ."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


def _default_cache_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "iwd-stream"


class Settings(BaseModel):
    """Process-wide configuration. Build with :meth:`from_env`; pass it down, never re-read env."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap_servers: str | None = None
    topic_prefix: str = "iwd"
    partitions: int = Field(default=4, ge=1)
    cache_dir: Path = Path.home() / ".cache" / "iwd-stream"
    kafka_version: str = "4.1.1"
    require_kafka: bool = False
    ci: bool = False
    data_dir: Path = Path("var/worker")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    rules_path: Path | None = None
    tick_interval_s: float = Field(default=1.0, gt=0)
    offer_timeout_s: float | None = Field(default=None, gt=0)
    # How soon the group notices a worker that died without leaving (kill -9, lost host):
    # its partitions move after this long. Faust's default (60 s) stalls them for a minute.
    session_timeout_s: float = Field(default=10.0, ge=6, le=300)
    # Faust table store: "rocksdb://" (local state survives a restart) or "memory://".
    store: str = "rocksdb://"
    log_level: str = "info"
    java_home: Path | None = None

    def with_updates(self, **updates: object) -> Settings:
        """Return a copy with ``updates`` (None means "keep"), validated like the original."""
        changed = {k: v for k, v in updates.items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **changed})

    @staticmethod
    def debug_enabled(env: Mapping[str, str] | None = None) -> bool:
        """Return True when IWD_DEBUG asks for tracebacks instead of one-line errors."""
        env = os.environ if env is None else env
        return env.get("IWD_DEBUG", "").lower() in {"1", "true", "yes", "on"}

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read ``IWD_*`` (and ``KAFKA_BOOTSTRAP_SERVERS``, ``CI``, ``JAVA_HOME``) variables."""
        env = os.environ if env is None else env
        truthy = {"1", "true", "yes", "on"}
        values: dict[str, object] = {
            "bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            "cache_dir": Path(env["IWD_CACHE_DIR"])
            if env.get("IWD_CACHE_DIR")
            else _default_cache_dir(env),
            "ci": env.get("CI", "").lower() in truthy,
            "require_kafka": env.get("IWD_REQUIRE_KAFKA", "").lower() in truthy
            or env.get("CI", "").lower() in truthy,
            "java_home": Path(env["JAVA_HOME"]) if env.get("JAVA_HOME") else None,
        }
        simple = {
            "IWD_TOPIC_PREFIX": "topic_prefix",
            "IWD_PARTITIONS": "partitions",
            "IWD_KAFKA_VERSION": "kafka_version",
            "IWD_DATA_DIR": "data_dir",
            "IWD_WEB_PORT": "web_port",
            "IWD_WEB_HOST": "web_host",
            "IWD_RULES_PATH": "rules_path",
            "IWD_TICK_INTERVAL_S": "tick_interval_s",
            "IWD_OFFER_TIMEOUT_S": "offer_timeout_s",
            "IWD_LOG_LEVEL": "log_level",
            "IWD_STORE": "store",
            "IWD_SESSION_TIMEOUT_S": "session_timeout_s",
        }
        for var, field in simple.items():
            if env.get(var):
                values[field] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
