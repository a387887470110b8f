"""Session fixtures that run real JVM services for the tests.

* ``kafka_bootstrap``: an Apache Kafka 4.x broker in KRaft combined mode.
* ``flink_job_endpoint``: Beam's FlinkJobServerDriver on an embedded Flink
  1.19 ("[local]"); pipelines reach it through ``flink_pipeline_args``.
  ``flink_runner_args`` instead lets ``--runner FlinkRunner`` start its own
  job server from the same jar.
* ``sdk_worker_pool``: a Python SDK worker pool for EXTERNAL environments.
* ``flink_cluster``: a Flink 1.19 session cluster (a JobManager and two TaskManagers, each its
  own JVM, see tests/flink_cluster.py); ``flink_cluster_args`` submits to it with
  ``--runner FlinkRunner --flink_master``, its SDK workers LOOPBACK, EXTERNAL or PROCESS (each
  TaskManager starts its own with Beam's boot, which ``make beam-boot`` builds).

Jars come from ``make jvm-jars`` (jvm/jvm.mk) in ``$JVM_CACHE`` (default
``.cache/jvm`` under the repo root). Register the fixtures with
``pytest_plugins = ["tests.jvm_services"]``. Each service starts once per
session on free localhost ports, logs to a temp dir (the log tail is shown
when startup fails) and is killed at teardown.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Optional

import pytest

from tests.flink_cluster import ClusterError, FlinkCluster, process_environment_args

REPO_ROOT = Path(__file__).resolve().parents[1]
MAKE_TARGET = "make jvm-jars"
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 40

def jvm_cache_dir() -> Path:
    """Directory holding one jar folder per service, as ``make jvm-jars`` fills it."""
    configured = Path(os.environ.get("JVM_CACHE", ".cache/jvm"))
    return configured if configured.is_absolute() else REPO_ROOT / configured


def jar_classpath(service: str) -> str:
    """``<cache>/<service>/*`` for ``java -cp``; fails the test when the jars are missing."""
    cache = jvm_cache_dir()
    # The stamp is written only after Maven copied every jar, so a half-filled
    # folder from an interrupted run is never used.
    if not (cache / f"{service}.stamp").is_file() or not (cache / service).is_dir():
        pytest.fail(f"{service} jars missing in {cache}: run `{MAKE_TARGET}`", pytrace=False)
    return str(cache / service / "*")


def flink_job_server_jar() -> Path:
    """The runnable job-server jar ``make jvm-jars`` builds (a manifest whose
    Class-Path names the jars in ``flink/`` beside it); fails the test when missing."""
    cache = jvm_cache_dir()
    jar = cache / "flink-job-server.jar"
    if not jar.is_file() or not (cache / "flink.stamp").is_file():
        pytest.fail(f"Flink job-server jar missing at {jar}: run `{MAKE_TARGET}`", pytrace=False)
    return jar


def free_port() -> int:
    """A localhost TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on localhost:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class ServiceProcess:
    """A child process with its output in a log file, in its own process group."""

    def __init__(self, name: str, command: list[str], log_path: Path, cwd: Path,
                 env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self._stopped = False
        # A killed pytest (SIGTERM/SIGKILL skips teardown) must not leave JVMs
        # behind: setpriv makes the kernel kill the service with its parent.
        setpriv = shutil.which("setpriv")
        guard = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        # Own session so teardown also reaches the children it spawns
        # (the SDK worker pool forks one process per worker).
        self.process = subprocess.Popen(
            guard + command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return "\n".join(self.log_text().splitlines()[-LOG_TAIL_LINES:])

    def wait_until(self, ready: Callable[[], Optional[str]], timeout_s: float = STARTUP_TIMEOUT_S) -> str:
        """Poll ``ready`` until it returns a value; fail with the log tail if the
        process exits or the timeout passes first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = ready()
            if value is not None:
                return value
            if self.process.poll() is not None:
                self.stop()
                pytest.fail(f"{self.name} exited with code {self.process.returncode} during startup; "
                            f"log {self.log_path}:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"{self.name} not ready after {timeout_s:.0f}s; log {self.log_path}:\n{self.log_tail()}",
                    pytrace=False)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            # The leader is gone but forked workers may remain in its group.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()


def kafka_server_properties(data_dir: Path, broker_port: int, controller_port: int) -> str:
    """Single-node KRaft (broker + controller) settings; replication factors of
    1 because internal topics cannot be replicated on one node."""
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.bootstrap.servers=127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "share.coordinator.state.topic.replication.factor=1",
        "share.coordinator.state.topic.min.isr=1",
        # Consumers in tests join alone; the default 3 s rebalance delay only slows them.
        "group.initial.rebalance.delay.ms=0",
        "",
    ])


KAFKA_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
"""


def broker_answers(bootstrap: str) -> bool:
    """Whether the broker serves metadata (listening alone is not ready)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka import KafkaException

    try:
        AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
    except KafkaException:
        return False
    return True


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers (``127.0.0.1:<port>``) of a real single-node Kafka broker."""
    classpath = jar_classpath("kafka")
    work = tmp_path_factory.mktemp("kafka")
    broker_port, controller_port = free_port(), free_port()
    properties = work / "server.properties"
    properties.write_text(kafka_server_properties(work / "data", broker_port, controller_port))
    log4j = work / "log4j2.properties"
    log4j.write_text(KAFKA_LOG4J2)
    java = ["java", "-Xms128m", "-Xmx512m", f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]

    format_log = work / "format.log"
    with open(format_log, "wb") as out:
        formatted = subprocess.run(
            java + ["kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()),
                    "-c", str(properties), "--standalone"],
            stdout=out, stderr=subprocess.STDOUT, cwd=work, timeout=STARTUP_TIMEOUT_S)
    if formatted.returncode != 0:
        pytest.fail(f"kafka StorageTool format failed ({formatted.returncode}); log {format_log}:\n"
                    f"{format_log.read_text(errors='replace')}", pytrace=False)

    broker = ServiceProcess("kafka broker", java + ["kafka.Kafka", str(properties)],
                            work / "broker.log", work)
    bootstrap = f"127.0.0.1:{broker_port}"
    try:
        broker.wait_until(lambda: bootstrap if port_open(broker_port) and broker_answers(bootstrap) else None)
        yield bootstrap
    finally:
        broker.stop()


FLINK_JVM_HEAP = ["-Xms256m", "-Xmx1g"]
JOB_SERVICE_STARTED = re.compile(r"JobService started on (\S+)")


@pytest.fixture(scope="session")
def flink_job_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of Beam's Flink job server running jobs on an embedded Flink."""
    jar = flink_job_server_jar()
    work = tmp_path_factory.mktemp("flink")
    command = [
        "java", *FLINK_JVM_HEAP, "-jar", str(jar),
        # Port 0: the driver picks free ports and logs the job endpoint.
        "--job-port", "0", "--artifact-port", "0",
        # The Java expansion service is not used (Python-only pipelines).
        "--expansion-port", "-1",
        "--flink-master", "[local]",
        "--artifacts-dir", str(work / "artifacts"),
    ]
    server = ServiceProcess("flink job server", command, work / "job-server.log", work)

    def endpoint() -> Optional[str]:
        match = JOB_SERVICE_STARTED.search(server.log_text())
        return match.group(1) if match else None

    try:
        yield server.wait_until(endpoint)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sdk_worker_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``localhost:<port>`` of a Python SDK worker pool, for ``--environment_type EXTERNAL``."""
    work = tmp_path_factory.mktemp("worker-pool")
    port = free_port()
    # The pool starts each worker as plain `python`; put this interpreter's
    # directory first so workers get the same environment as the tests.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    pool = ServiceProcess(
        "sdk worker pool",
        [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"],
        work / "worker-pool.log", REPO_ROOT, env=env)
    try:
        yield pool.wait_until(lambda: f"localhost:{port}" if port_open(port) else None)
    finally:
        pool.stop()


def worker_environment_args(worker_pool: Optional[str]) -> list[str]:
    """LOOPBACK workers inside this process, or EXTERNAL ones from ``worker_pool``."""
    if worker_pool is None:
        return ["--environment_type=LOOPBACK"]
    return ["--environment_type=EXTERNAL", f"--environment_config={worker_pool}"]


def flink_pipeline_args(job_endpoint: str, *, streaming: bool = False,
                        worker_pool: Optional[str] = None, parallelism: int = 2) -> list[str]:
    """Pipeline options for a job on the session's Flink job server."""
    args = ["--runner=PortableRunner", f"--job_endpoint={job_endpoint}", f"--parallelism={parallelism}"]
    return args + worker_environment_args(worker_pool) + (["--streaming"] if streaming else [])


def flink_runner_args(*, streaming: bool = False, worker_pool: Optional[str] = None,
                      parallelism: int = 2) -> list[str]:
    """Pipeline options for ``--runner FlinkRunner``, which starts (and stops) its
    own job server from the jar for each pipeline: about 3 s more per run."""
    args = ["--runner=FlinkRunner", "--flink_master=[local]",
            f"--flink_job_server_jar={flink_job_server_jar()}", f"--parallelism={parallelism}"]
    args += [f"--job_server_jvm_properties={flag}" for flag in FLINK_JVM_HEAP]
    return args + worker_environment_args(worker_pool) + (["--streaming"] if streaming else [])


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlinkCluster]:
    """A running session cluster with two TaskManagers; ``address`` is its ``--flink_master``.
    A test that kills a TaskManager (``kill_taskmanager``) starts its replacement
    (``start_taskmanager``) so the next test again finds two."""
    flink_job_server_jar()  # the same jars; fails with the make hint when missing
    cluster = FlinkCluster(tmp_path_factory.mktemp("flink-cluster"))
    try:
        cluster.start(taskmanagers=2)
    except ClusterError as error:
        cluster.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def flink_cluster_args(cluster: FlinkCluster, *, streaming: bool = False,
                       worker_pool: Optional[str] = None, process_workers: bool = False,
                       parallelism: int = 2) -> list[str]:
    """Pipeline options for ``--runner FlinkRunner`` submitting to ``cluster``; the job server
    this starts from the jar only translates and submits the job over Flink's REST API. SDK
    workers: PROCESS with ``process_workers``, else as ``worker_environment_args``."""
    assert not (process_workers and worker_pool), "PROCESS workers use no worker pool"
    args = ["--runner=FlinkRunner", f"--flink_master={cluster.address}",
            f"--flink_job_server_jar={flink_job_server_jar()}", f"--parallelism={parallelism}"]
    args += [f"--job_server_jvm_properties={flag}" for flag in FLINK_JVM_HEAP]
    if process_workers:
        try:
            args += process_environment_args()
        except ClusterError as error:
            pytest.fail(str(error), pytrace=False)
    else:
        args += worker_environment_args(worker_pool)
    return args + (["--streaming"] if streaming else [])
