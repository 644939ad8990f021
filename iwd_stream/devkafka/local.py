"""Run a real single-node Apache Kafka (KRaft) from its Maven Central jars, without Docker.

The jars of ``org.apache.kafka:kafka_2.13`` and their runtime dependencies are fetched once with
Maven into ``<cache>/kafka-<version>/lib`` (outside the repository) and reused by every later
start. Each broker gets its own data directory, free loopback ports and a log file.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from iwd_stream.errors import LocalKafkaError

SLF4J_BINDING = ("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3")
MIN_JAVA = 17
START_TIMEOUT_S = 90.0

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.iwdstream.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <!-- Kafka ships slf4j-api 1.7 without a binding: without this it logs nothing. -->
      <groupId>{b_group}</groupId><artifactId>{b_artifact}</artifactId><version>{b_version}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


@dataclass
class BrokerInfo:
    """What a running local broker is: enough to reach it, stop it and read its log."""

    bootstrap_servers: str
    pid: int
    port: int
    controller_port: int
    data_dir: str
    log_file: str
    version: str
    started_in_s: float = 0.0
    jars_fetched_in_s: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> BrokerInfo:
        return cls(**json.loads(text))


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kafka_cluster_id() -> str:
    """Return a random cluster id in Kafka's own format (url-safe base64 of 16 bytes).

    One id in 64 starts with "-", which the storage tool's argument parser takes for an
    option (its format step then fails): draw again, as Kafka's own Uuid.randomUuid() does.
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def find_java(java_home: Path | None) -> tuple[str, int]:
    """Return the java executable and its major version; raise if missing or older than 17."""
    candidates: list[str] = []
    if java_home:
        candidates.append(str(java_home / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    if not candidates:
        raise LocalKafkaError(
            "Java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )
    seen: list[str] = []
    for java in candidates:
        try:
            out = subprocess.run(
                [java, "-version"], capture_output=True, text=True, timeout=30
            ).stderr
        except (OSError, subprocess.TimeoutExpired) as exc:
            seen.append(f"{java}: {exc}")
            continue
        major = _java_major(out)
        if major >= MIN_JAVA:
            return java, major
        seen.append(f"{java} is Java {major}")
    raise LocalKafkaError(
        f"Kafka needs Java {MIN_JAVA}+, found only: {'; '.join(seen)} (set JAVA_HOME to a newer JDK)"
    )


def _java_major(version_output: str) -> int:
    """Parse ``java -version`` output.

    >>> _java_major('openjdk version "17.0.15" 2025-04-15')
    17
    >>> _java_major('java version "1.8.0_392"')
    8
    """
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if not match:
        return 0
    major = int(match.group(1))
    if major == 1 and match.group(2):
        return int(match.group(2))
    return major


def ensure_jars(
    cache_dir: Path, version: str, progress: Callable[[str], None] = print
) -> tuple[Path, float]:
    """Fetch the Kafka runtime jars once; return the lib folder and seconds spent fetching."""
    root = cache_dir / f"kafka-{version}"
    lib = root / "lib"
    marker = root / ".complete"
    if marker.exists() and any(lib.glob("kafka_2.13-*.jar")):
        return lib, 0.0
    mvn = shutil.which("mvn")
    if not mvn:
        raise LocalKafkaError(
            "Maven (mvn) not found: it fetches Apache Kafka from Maven Central "
            "(apt-get install maven), or set KAFKA_BOOTSTRAP_SERVERS to an existing broker"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / "pom.xml").write_text(
        _POM.format(
            version=version,
            b_group=SLF4J_BINDING[0],
            b_artifact=SLF4J_BINDING[1],
            b_version=SLF4J_BINDING[2],
        )
    )
    log = root / "maven.log"
    progress(f"fetching Apache Kafka {version} jars from Maven Central into {lib} ...")
    started = time.monotonic()
    tmp_lib = root / "lib.partial"
    shutil.rmtree(tmp_lib, ignore_errors=True)
    with log.open("w") as out:
        rc = subprocess.run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(root / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp_lib}",
                "-DincludeScope=runtime",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        ).returncode
    if rc != 0:
        raise LocalKafkaError(
            f"Maven could not fetch org.apache.kafka:kafka_2.13:{version} (exit {rc}); "
            f"is Maven Central reachable? see {log}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp_lib.rename(lib)
    marker.write_text(version)
    elapsed = time.monotonic() - started
    progress(f"fetched {len(list(lib.glob('*.jar')))} jars in {elapsed:.1f}s")
    return lib, elapsed


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the broker when the process that started it dies (test runs)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_broker(
    *,
    cache_dir: Path,
    version: str,
    java_home: Path | None = None,
    port: int | None = None,
    data_dir: Path | None = None,
    tie_to_parent: bool = True,
    heap: str = "768m",
    progress: Callable[[str], None] = print,
) -> BrokerInfo:
    """Start a single-node KRaft broker on loopback and wait until it answers metadata requests."""
    java, _ = find_java(java_home)
    lib, fetched_s = ensure_jars(cache_dir, version, progress)
    if port is None:
        port = free_port()
    elif not port_is_free(port):
        raise LocalKafkaError(
            f"port {port} on 127.0.0.1 is already in use; pick another with --port"
        )
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    data = data_dir or Path(tempfile.mkdtemp(prefix="iwd-kafka-"))
    data.mkdir(parents=True, exist_ok=True)
    log_file = data / "server.log"
    props = data / "server.properties"
    props.write_text(
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data / 'logs'}",
                "num.partitions=1",
                "auto.create.topics.enable=false",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=-1",
                "",
            ]
        )
    )
    (data / "log4j2.properties").write_text(_LOG4J2.format(log=log_file))
    classpath = f"{lib}/*"
    started = time.monotonic()
    fmt = subprocess.run(
        [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            kafka_cluster_id(),
            "-c",
            str(props),
            "--standalone",
        ],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        log_file.write_text(fmt.stdout + fmt.stderr)
        raise LocalKafkaError(
            f"Kafka storage format failed (exit {fmt.returncode}); see {log_file}"
        )
    console = (data / "console.log").open("w")
    proc = subprocess.Popen(
        [
            java,
            f"-Xmx{heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={data / 'log4j2.properties'}",
            "-cp",
            classpath,
            "kafka.Kafka",
            str(props),
        ],
        stdout=console,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=_die_with_parent if tie_to_parent else None,  # noqa: PLW1509
        start_new_session=not tie_to_parent,
    )
    bootstrap = f"127.0.0.1:{port}"
    info = BrokerInfo(
        bootstrap_servers=bootstrap,
        pid=proc.pid,
        port=port,
        controller_port=controller_port,
        data_dir=str(data),
        log_file=str(log_file),
        version=version,
        jars_fetched_in_s=fetched_s,
    )
    try:
        wait_until_ready(bootstrap, proc=proc, log_file=log_file, timeout_s=START_TIMEOUT_S)
    except BaseException:
        _terminate(proc.pid)
        raise
    info.started_in_s = time.monotonic() - started
    return info


def wait_until_ready(
    bootstrap: str,
    *,
    proc: subprocess.Popen[bytes] | None = None,
    log_file: Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Block until a metadata request to ``bootstrap`` succeeds; raise if the broker died."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout_s
    where = f"; see {log_file}" if log_file else ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LocalKafkaError(f"Kafka exited during start (exit {proc.returncode}){where}")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception:  # noqa: BLE001 - not up yet; retried until the deadline
            pass
        time.sleep(0.2)
    raise LocalKafkaError(f"Kafka did not answer on {bootstrap} within {timeout_s:.0f}s{where}")


def _terminate(pid: int, timeout_s: float = 30.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    """Return True if ``pid`` runs (reaping it first if it is our own finished child)."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_broker(info: BrokerInfo, *, remove_data: bool = True) -> None:
    """Stop a broker cleanly (SIGTERM, then SIGKILL after 30 s) and remove its data."""
    _terminate(info.pid)
    if remove_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)
