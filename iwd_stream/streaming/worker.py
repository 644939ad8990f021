"""Run one worker process: provision topics, then hand the app to Faust's Worker."""

from __future__ import annotations

import logging
import socket

import faust

from iwd_stream.settings import Settings
from iwd_stream.streaming.app import build_engine, provision_topics
from iwd_stream.streaming.rulebook import load_rulebook


def run_worker(settings: Settings, bootstrap: str, *, name: str | None = None) -> int:
    """Run until SIGTERM/SIGINT; return the process exit code."""
    rules = load_rulebook(settings.rules_path)  # fail fast, before joining the group
    provision_topics(settings, bootstrap)  # an agent does not see a topic created later
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    worker_name = name or f"{socket.gethostname()}:{settings.web_port}"
    engine = build_engine(settings, bootstrap, rules=rules, worker_name=worker_name)
    worker = faust.Worker(
        engine.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
        override_logging=True,
    )
    logging.getLogger("iwd_stream").info(
        "worker %s: broker %s, web http://%s:%d, data %s",
        worker_name,
        bootstrap,
        settings.web_host,
        settings.web_port,
        settings.data_dir,
    )
    worker.execute_from_commandline()  # returns only via SystemExit
    return 0
