"""The CLI on a real Flink 1.19 session cluster (a JobManager and two TaskManagers, each its own
JVM, configured by jvm/flink/conf/config.yaml), as a user submits to one: ``--runner FlinkRunner
--flink_master host:port`` with the job-server jar, parallelism 2."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from pipeline.__main__ import main
from tests.flink_cluster import BEAM_BOOT, FlinkCluster
from tests.jvm_services import flink_cluster_args
from tests.pipelines import read_rows, transcripts

# Job server start, job submission and the TaskManagers' first Python workers, on shared cores.
cluster_timeout = pytest.mark.timeout(420)


def _input(path: Path, items: list) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    return path


def _finished_jobs(cluster: FlinkCluster) -> set[str]:
    return {job["jid"] for job in cluster.rest("/jobs/overview")["jobs"]
            if job["state"] == "FINISHED"}


def test_cluster_has_two_taskmanagers_with_the_configured_slots(flink_cluster: FlinkCluster):
    """The settings of config.yaml reach the TaskManagers (slots and network memory)."""
    taskmanagers = flink_cluster.registered_taskmanagers()
    assert len(taskmanagers) == 2
    for tm in taskmanagers:
        assert tm["slotsNumber"] == 2
        assert tm["totalResource"]["networkMemory"] == 256  # MB


@pytest.mark.timeout(180)
def test_killed_taskmanager_is_replaced(flink_cluster: FlinkCluster):
    """What the failover tests build on: a SIGKILLed TaskManager leaves the JobManager's list
    (its heartbeat times out, config.yaml: 30 s) and a replacement registers."""
    victim = next(tm for tm in flink_cluster.taskmanagers if tm.alive())
    flink_cluster.kill_taskmanager(victim)
    replacement = flink_cluster.start_taskmanager()

    def registered_without_victim() -> set[str] | None:
        names = {tm["id"] for tm in flink_cluster.registered_taskmanagers()}
        return names if victim.name not in names else None

    names = flink_cluster.wait_until(f"{victim.name} leaving", registered_without_victim)
    assert replacement.name in names and len(names) == 2


class ProcessWatch:
    """Polls /proc while a run goes and keeps every process started below ``roots`` (children,
    grandchildren): pid -> (parent pid, argv)."""

    def __init__(self, roots: set[int]) -> None:
        self.roots = roots
        self.seen: dict[int, tuple[int, list[str]]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "ProcessWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def children(self, parents: set[int]) -> dict[int, list[str]]:
        return {pid: argv for pid, (parent, argv) in self.seen.items() if parent in parents}

    def _poll(self) -> None:
        while not self._stop.is_set():
            processes = {}
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue  # /proc/self, /proc/meminfo, ...
                try:
                    argv = (entry / "cmdline").read_bytes().decode().split("\0")[:-1]
                    # The parent pid is the 2nd field after the parenthesised command name.
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue  # it ended while read
                if argv:  # a zombie (ended, not yet reaped) has none
                    processes[int(entry.name)] = (parent, argv)
            below = set(self.roots)
            for _ in range(2):  # children, then grandchildren
                below |= {pid for pid, (parent, _) in processes.items() if parent in below}
            self.seen.update((pid, processes[pid]) for pid in below - self.roots)
            time.sleep(0.2)


@cluster_timeout
@pytest.mark.parametrize("workers", ["external", "process"])
def test_batch_run_on_session_cluster(tmp_path, capsys, request, flink_cluster: FlinkCluster,
                                      workers: str):
    """The TaskManagers run the Python stages in separate worker processes, as on a real
    cluster: from an EXTERNAL worker pool, or PROCESS workers each TaskManager starts itself
    (Beam's boot, a child of the TaskManager's JVM, starting the SDK worker in this venv's
    Python). The job is a finished job of the cluster, not of an embedded one."""
    before = _finished_jobs(flink_cluster)
    out = tmp_path / "out"
    if workers == "process":
        environment = flink_cluster_args(flink_cluster, process_workers=True)
    else:
        environment = flink_cluster_args(flink_cluster,
                                         worker_pool=request.getfixturevalue("sdk_worker_pool"))
    input_path = _input(tmp_path / "in.jsonl", transcripts(60))
    taskmanagers = {tm.pid for tm in flink_cluster.taskmanagers if tm.alive()}
    with ProcessWatch(taskmanagers) as below:
        assert main(["run", "--input", str(input_path), "--output", str(out), "--sink", "jsonl",
                     "--max-records-per-job", "25", "--min-records-per-job", "10",
                     "--max-concurrent-jobs", "2"] + environment) == 0
    report = capsys.readouterr().out
    assert "summaries       60" in report and "3 submitted, 3 finished" in report
    summaries = read_rows(out / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in transcripts(60))
    assert len({r["job_arn"] for r in summaries}) == 3
    assert len(_finished_jobs(flink_cluster) - before) == 1
    # What the TaskManagers started: for PROCESS only Beam's boot, which started the SDK worker
    # (and `python -m pip` to list what is installed).
    started = below.children(taskmanagers)
    if workers == "process":
        assert started and {argv[0] for argv in started.values()} == {str(BEAM_BOOT)}
        assert (["python", "-m", "apache_beam.runners.worker.sdk_worker_main"]
                in below.children(set(started)).values())
    else:
        assert started == {}


@cluster_timeout
def test_a_checkpointed_watch_reads_its_files_when_a_checkpoint_falls_in_its_first_bundle(
        tmp_path, capsys, flink_cluster: FlinkCluster):
    """A bounded watch on Flink with checkpointing, checkpoints every 200 ms and bundles ended by
    time only after 10 s, so checkpoints fall within the watch's first bundle. Beam's Flink
    runner kept such a bundle's output in state until the stage's next element or watermark,
    which a stage fed by the Impulse alone never gets: the run never read its input. The CLI
    adds --finish_bundle_before_checkpointing, and the run reads every file, summarizes every
    record, and ends by itself (the CLI cancels the job once the durable facts agree)."""
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    items = transcripts(6)
    for n in range(2):
        _input(inbox / f"calls-{n}.jsonl", items[n * 3:n * 3 + 3])
    expected = sorted(t.id for t in items)
    before = {job["jid"] for job in flink_cluster.rest("/jobs/overview")["jobs"]}
    assert main(["run", "--input", str(inbox / "*.jsonl"), "--output", str(out), "--sink",
                 "jsonl", "--window-seconds", "10", "--watch-seconds", "15",
                 "--watch-interval-seconds", "1", "--checkpointing_interval=200",
                 "--max_bundle_time_mills=10000", "--min-records-per-job", "1"]
                + flink_cluster_args(flink_cluster, streaming=True)) == 0
    report = capsys.readouterr().out
    assert "summaries       6" in report
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == expected
    [job] = [job for job in flink_cluster.rest("/jobs/overview")["jobs"]
             if job["jid"] not in before]
    assert job["state"] == "CANCELED", "ended by the CLI, not left running on the cluster"
