"""Start and stop iwd-stream worker processes (used by the demo and the end-to-end tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from iwd_stream.devkafka.local import free_port
from iwd_stream.errors import IwdError


class WorkerStartError(IwdError):
    """A worker process exited or did not become ready in time."""


@dataclass
class WorkerProcess:
    """One ``iwd-stream worker`` subprocess with its own data dir, web port and log file."""

    bootstrap: str
    data_dir: Path
    topic_prefix: str = "iwd"
    partitions: int = 4
    web_port: int = field(default_factory=free_port)
    tick_interval_s: float = 1.0
    offer_timeout_s: float = 30.0
    rules: Path | None = None
    name: str = "worker"
    log_level: str = "info"
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / f"{self.name}.log"

    def start(self, wait_ready_s: float = 120.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "iwd_stream.cli",
            "worker",
            "--bootstrap-servers",
            self.bootstrap,
            "--topic-prefix",
            self.topic_prefix,
            "--partitions",
            str(self.partitions),
            "--data-dir",
            str(self.data_dir),
            "--web-port",
            str(self.web_port),
            "--tick-interval",
            str(self.tick_interval_s),
            "--offer-timeout",
            str(self.offer_timeout_s),
            "--log-level",
            self.log_level,
            "--name",
            self.name,
        ]
        if self.rules is not None:
            cmd += ["--rules", str(self.rules)]
        self._log = self.log_file.open("ab")
        env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        if wait_ready_s:
            self.wait_ready(wait_ready_s)
        return self

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise WorkerStartError(
                    f"worker {self.name} exited with {self.proc.returncode}; see {self.log_file}"
                )
            try:
                if self.get("/ready").get("ready"):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.25)
        raise WorkerStartError(
            f"worker {self.name} not ready after {timeout_s:.0f}s; see {self.log_file}"
        )

    def get(self, path: str, timeout_s: float = 10.0) -> Any:
        """GET a JSON document from the worker (4xx/5xx bodies are returned too)."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout_s) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                data = {"error": body.decode(errors="replace")}
            if isinstance(data, dict):
                data.setdefault("_status", exc.code)
            return data

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.url + "/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def kill(self) -> None:
        """SIGKILL: the crash the invariants must survive."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._close_log()

    def stop(self, timeout_s: float = 60.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Return the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> WorkerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
