"""A Flink 1.19 session cluster from the project's jars: one JobManager and TaskManagers, each its
own ``java`` process, configured by jvm/flink/conf/config.yaml.

``python -m tests.flink_cluster`` (what ``make flink-cluster`` runs) starts one in the
foreground and stops it on Ctrl-C; the ``flink_cluster`` fixture in tests/jvm_services.py starts
one per test session. Readiness is read from Flink's REST API (registered TaskManagers), never
waited for by sleeping a fixed time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "jvm" / "flink" / "conf"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
# Beam's Python SDK container entrypoint ("boot"), which `make beam-boot` builds at the installed
# SDK's version: the command of a PROCESS environment, run by each TaskManager for its workers.
BEAM_BOOT = REPO_ROOT / ".cache" / "beam-boot" / f"v{version('apache-beam')}" / "container"

# Flink's launch scripts open these JDK packages on Java 17 for its reflection-based
# serializers (the same list as jvm/jvm.mk's FLINK_ADD_OPENS).
ADD_OPENS = ["java.lang", "java.lang.reflect", "java.io", "java.net", "java.nio", "java.text",
             "java.time", "java.util", "java.util.concurrent", "java.util.concurrent.atomic",
             "java.util.concurrent.locks", "sun.nio.ch"]
# JVM sizes matching config.yaml: heap = framework + task heap; direct = framework + task
# off-heap + network. The JobManager only schedules; Beam's job server submits to it over REST.
JOBMANAGER_JVM = ["-Xms256m", "-Xmx512m"]
TASKMANAGER_JVM = ["-Xms384m", "-Xmx384m", "-XX:MaxDirectMemorySize=640m",
                   "-XX:MaxMetaspaceSize=256m"]


class ClusterError(RuntimeError):
    """The cluster did not come up (or a TaskManager did not register) in time."""


def jvm_cache_dir() -> Path:
    """Where ``make jvm-jars`` puts the jars: env JVM_CACHE, default .cache/jvm in the repo."""
    configured = Path(os.environ.get("JVM_CACHE", ".cache/jvm"))
    return configured if configured.is_absolute() else REPO_ROOT / configured


def flink_classpath() -> str:
    """``<cache>/flink/*`` and Flink's Prometheus reporter in ``<cache>/flink-prometheus/*``;
    ClusterError when ``make jvm-jars`` has not completed."""
    cache = jvm_cache_dir()
    folders = ["flink", "flink-prometheus"]
    missing = [name for name in folders if not (cache / f"{name}.stamp").is_file()]
    if missing:
        raise ClusterError(f"{', '.join(missing)} jars missing in {cache}: run `make jvm-jars`")
    return os.pathsep.join(str(cache / name / "*") for name in folders)


def taskmanager_environment(base: dict[str, str]) -> dict[str, str]:
    """``base`` as the TaskManagers get it; the SDK workers they start (PROCESS) inherit it. Beam's
    boot starts each worker as ``python`` from PATH, so this interpreter's folder goes first; and
    RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT runs the workers in that interpreter as it is, where
    boot would otherwise first make a venv per worker under /opt/apache/beam-venv."""
    path = os.pathsep.join([str(Path(sys.executable).parent), base.get("PATH", "")])
    return {**base, "PATH": path, "RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT": "1"}


def process_environment_args() -> list[str]:
    """Pipeline flags for PROCESS SDK workers: each TaskManager runs Beam's boot, which starts
    ``python`` from the TaskManager's PATH (``taskmanager_environment``). ClusterError when
    ``make beam-boot`` has not built it."""
    if not BEAM_BOOT.is_file():
        raise ClusterError(f"Beam's boot is missing at {BEAM_BOOT}: run `make beam-boot`")
    # A TaskManager releases a job's workers once no task holds them, and a batch job's stages
    # run one after another: without a cache each stage started a boot and worker of its own (29
    # in a 60-transcript run, 149 s); keeping idle ones 30 s, one served them all (87 s).
    return ["--environment_type=PROCESS", f"--environment_options=process_command={BEAM_BOOT}",
            "--environment_cache_millis=30000"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FlinkProcess:
    """One JobManager or TaskManager JVM, output in its own log file, in its own session."""

    def __init__(self, name: str, command: list[str], log_path: Path,
                 metrics_port: Optional[int] = None,
                 env: Optional[dict[str, str]] = None) -> None:
        self.name = name
        self.log_path = log_path
        self.metrics_port = metrics_port
        # The kernel kills the JVM with the process that started it (a killed pytest or a
        # closed terminal must not leave a cluster behind).
        setpriv = shutil.which("setpriv")
        guard = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(guard + command, cwd=log_path.parent, stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def metrics_url(self) -> str:
        """Its Prometheus reporter's endpoint (config.yaml's ``metrics.reporter.prom``)."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL to its whole session, as when a machine dies: the JVM gets no chance to
        deregister, and the SDK workers a TaskManager started (PROCESS) die with it."""
        if self.alive():
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM (Flink's shutdown hooks run), SIGKILL if it lingers."""
        if not self.alive():
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()


class FlinkCluster:
    """A session cluster on localhost. ``rest_port`` 0 picks free ports (tests); the work folder
    holds each process's log, the checkpoints and the TaskManagers' temp files. ``env`` (default
    this process's) is the TaskManagers' environment, so also their PROCESS workers'."""

    def __init__(self, work_dir: Path, rest_port: int = 0, rpc_port: int = 0,
                 env: Optional[dict[str, str]] = None) -> None:
        self.work_dir = work_dir
        self.taskmanager_env = taskmanager_environment(dict(os.environ) if env is None else env)
        self.rest_port = rest_port or free_port()
        self.rpc_port = rpc_port or free_port()
        self.checkpoint_dir = work_dir / "checkpoints"
        self.jobmanager: Optional[FlinkProcess] = None
        self.taskmanagers: list[FlinkProcess] = []
        self._classpath = flink_classpath()

    @property
    def address(self) -> str:
        """``host:port`` of the REST endpoint, for ``--flink_master``."""
        return f"127.0.0.1:{self.rest_port}"

    def _java(self, jvm: list[str], main_class: str, metrics_port: int, *dynamic: str) -> list[str]:
        opens = [f"--add-opens=java.base/{package}=ALL-UNNAMED" for package in ADD_OPENS]
        # Each process its own free metrics port, so a scrape knows whose metrics it reads.
        properties = {"rest.port": self.rest_port, "jobmanager.rpc.port": self.rpc_port,
                      "state.checkpoints.dir": self.checkpoint_dir.as_uri(),
                      "metrics.reporter.prom.port": metrics_port}
        overrides = [arg for key, value in properties.items() for arg in ("-D", f"{key}={value}")]
        return (["java", *jvm, *opens, "-cp", self._classpath, main_class,
                 "--configDir", str(CONF_DIR), *overrides, *dynamic])

    def rest(self, path: str) -> Any:
        """GET ``path`` of Flink's REST API, decoded; None while the endpoint does not answer."""
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def cancel_job(self, jid: str) -> None:
        """Cancel a job (one a killed client left running would hold slots for later runs)."""
        request = urllib.request.Request(f"http://{self.address}/jobs/{jid}?mode=cancel",
                                         method="PATCH")
        try:
            urllib.request.urlopen(request, timeout=30).close()
        except urllib.error.URLError:
            pass  # already ended, or the JobManager is gone: nothing left to hold slots

    def wait_until(self, what: str, ready: Callable[[], Any],
                   timeout_s: float = START_TIMEOUT_S) -> Any:
        """Poll ``ready`` until it returns something truthy; ClusterError with the JobManager's
        log tail if it does not in time or the JobManager exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = ready()
            if value:
                return value
            if self.jobmanager is not None and not self.jobmanager.alive():
                raise ClusterError(f"JobManager exited while waiting for {what}; "
                                   f"log {self.jobmanager.log_path}:\n{self.jobmanager.log_tail()}")
            time.sleep(0.5)
        log = self.jobmanager.log_tail() if self.jobmanager else ""
        raise ClusterError(f"Flink cluster: no {what} after {timeout_s:.0f} s:\n{log}")

    def registered_taskmanagers(self) -> list[dict]:
        """The TaskManagers the JobManager knows (a killed one stays until its heartbeat times
        out)."""
        answer = self.rest("/taskmanagers")
        return answer["taskmanagers"] if answer else []

    def start(self, taskmanagers: int = 2) -> "FlinkCluster":
        self.work_dir.mkdir(parents=True, exist_ok=True)
        metrics_port = free_port()
        self.jobmanager = FlinkProcess(
            "jobmanager",
            self._java(JOBMANAGER_JVM,
                       "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint",
                       metrics_port),
            self.work_dir / "jobmanager.log", metrics_port)
        self.wait_until("REST endpoint", lambda: self.rest("/overview"))
        for _ in range(taskmanagers):
            self.start_taskmanager()
        return self

    def start_taskmanager(self) -> FlinkProcess:
        """One more TaskManager; returns once the JobManager lists it."""
        name = f"taskmanager-{len(self.taskmanagers) + 1}"
        tmp = self.work_dir / name
        tmp.mkdir(exist_ok=True)
        metrics_port = free_port()
        tm = FlinkProcess(
            name,
            # The resource id is the TaskManager's id in the REST API: it names the process.
            self._java(TASKMANAGER_JVM, "org.apache.flink.runtime.taskexecutor.TaskManagerRunner",
                       metrics_port,
                       "-D", f"io.tmp.dirs={tmp}", "-D", f"taskmanager.resource-id={name}"),
            self.work_dir / f"{name}.log", metrics_port, env=self.taskmanager_env)
        self.taskmanagers.append(tm)

        def registered() -> bool:
            if not tm.alive():
                raise ClusterError(f"{tm.name} exited with code {tm.process.returncode}; "
                                   f"log {tm.log_path}:\n{tm.log_tail()}")
            return any(t["id"] == name for t in self.registered_taskmanagers())

        self.wait_until(f"registration of {tm.name}", registered)
        return tm

    def renew_taskmanagers(self, count: int, env: dict[str, str]) -> None:
        """Stop every TaskManager and start ``count`` new ones with ``env`` as their (and their
        PROCESS workers') environment: a test whose workers must reach its own backend gives
        them its endpoints and credentials, as a real cluster's machines have theirs."""
        for tm in self.taskmanagers:
            tm.stop()
        self.taskmanager_env = taskmanager_environment(env)
        fresh = {self.start_taskmanager().name for _ in range(count)}
        self.wait_until(f"{count} new TaskManagers alone", lambda: {
            t["id"] for t in self.registered_taskmanagers()} == fresh)

    def busiest_taskmanager(self, jid: str) -> FlinkProcess:
        """The live TaskManager that runs the most subtasks of job ``jid``."""
        tasks: dict[str, int] = {}
        for vertex in (self.rest(f"/jobs/{jid}") or {}).get("vertices", []):
            placed = self.rest(f"/jobs/{jid}/vertices/{vertex['id']}/taskmanagers") or {}
            for tm in placed.get("taskmanagers", []):
                name = tm.get("taskmanager-id")
                tasks[name] = tasks.get(name, 0) + sum(tm.get("status-counts", {}).values())
        live = [tm for tm in self.taskmanagers if tm.alive() and tasks.get(tm.name)]
        if not live:
            raise ClusterError(f"no live TaskManager runs job {jid}: {tasks}")
        return max(live, key=lambda tm: tasks[tm.name])

    def kill_taskmanager(self, tm: FlinkProcess) -> None:
        """SIGKILL ``tm``; the JobManager notices by its heartbeat or the closed connections."""
        tm.kill()

    def stop(self) -> None:
        for process in [*self.taskmanagers, self.jobmanager]:
            if process is not None:
                process.stop()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.flink_cluster",
        description="Run a Flink 1.19 session cluster (JobManager + TaskManagers) in the "
                    "foreground until Ctrl-C.")
    parser.add_argument("--rest-port", type=int, default=8081,
                        help="the JobManager's REST port, for --flink_master (default 8081)")
    parser.add_argument("--rpc-port", type=int, default=6123,
                        help="the JobManager's RPC port (default 6123)")
    parser.add_argument("--taskmanagers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="logs and checkpoints (default: a new temporary folder)")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="flink-cluster-"))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    started = time.monotonic()
    try:
        cluster = FlinkCluster(work, args.rest_port, args.rpc_port)
    except ClusterError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        cluster.start(args.taskmanagers)
        print(f"Flink session cluster up in {time.monotonic() - started:.1f} s: "
              f"--flink_master {cluster.address} (web UI http://{cluster.address}), "
              f"{args.taskmanagers} TaskManagers; logs and checkpoints in {work}. "
              f"Ctrl-C stops it.", flush=True)
        print("Prometheus metrics: " + ", ".join(
            f"{process.name} {process.metrics_url}"
            for process in [cluster.jobmanager, *cluster.taskmanagers]), flush=True)
        if BEAM_BOOT.is_file():
            print("SDK workers each TaskManager starts itself: "
                  + " ".join(process_environment_args()), flush=True)
        stop.wait()
    except ClusterError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
