"""The CLI on a real Flink 1.19 session cluster (a JobManager and two TaskManagers, each its own
JVM, configured by jvm/flink/conf/config.yaml), as a user submits to one: ``--runner FlinkRunner
--flink_master host:port`` with the job-server jar, parallelism 2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.__main__ import main
from tests.flink_cluster import FlinkCluster
from tests.jvm_services import flink_cluster_args
from tests.pipelines import read_rows, transcripts

# Job server start, job submission and the TaskManagers' first Python workers, on shared cores.
cluster_timeout = pytest.mark.timeout(420)


def _input(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(count)))
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


@cluster_timeout
def test_batch_run_on_session_cluster_with_external_workers(tmp_path, capsys,
                                                            flink_cluster: FlinkCluster,
                                                            sdk_worker_pool: str):
    """The TaskManagers run the Python stages in an EXTERNAL worker pool (separate processes,
    as on a real cluster); the job is a finished job of the cluster, not of an embedded one."""
    before = _finished_jobs(flink_cluster)
    out = tmp_path / "out"
    assert main(["run", "--input", str(_input(tmp_path / "in.jsonl", 60)), "--output", str(out),
                 "--sink", "jsonl", "--max-records-per-job", "25", "--min-records-per-job", "10",
                 "--max-concurrent-jobs", "2"]
                + flink_cluster_args(flink_cluster, worker_pool=sdk_worker_pool)) == 0
    report = capsys.readouterr().out
    assert "summaries       60" in report and "3 submitted, 3 finished" in report
    summaries = read_rows(out / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in transcripts(60))
    assert len({r["job_arn"] for r in summaries}) == 3
    assert len(_finished_jobs(flink_cluster) - before) == 1

