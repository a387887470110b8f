"""A streaming run with checkpointing on the Flink session cluster (a JobManager and two
TaskManagers, each its own JVM, each starting its own PROCESS SDK workers as on a real cluster)
loses its busiest TaskManager to SIGKILL, with the workers it started, and a replacement is
started. Three kill points: before the first Bedrock job exists, while jobs are in flight, and
while rows are being written; and a run with no TaskManager lost whose watch ends before its
windows close. In every case every input comes back exactly once, every record
is in exactly one Bedrock job (counted at the local service, from the jobs' indexes), no job
name is created twice, the run ends (the CLI cancels the Flink job once its durable facts agree:
every file or partition ledgered, every record a row, every job harvested) and the report's
counts equal the rows, exit 0.

Slow (minutes per case, on shared cores): marked ``failover``, run by ``make failover``, not
by ``make test``. Every wait is on a condition (files, job states, Flink's REST API).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from tests.flink_cluster import FlinkCluster
from tests.jvm_services import flink_cluster_args
from tests.pipelines import read_rows, transcripts
from tests.test_kill_points import _jobs, _objects, _records_per_attempt
from transforms.core.quotas import Quotas

pytestmark = pytest.mark.failover

ROOT = Path(__file__).resolve().parents[1]
FILES, PER_FILE = 3, 4
WINDOW_SECONDS = 10
# Each file's modification time, so its window, lies this far ahead of when it is dropped, one
# window apart: the windows close one after another while the watch goes on. Before the first
# job, the kill must come after the files were read (which took 70 s once on busy cores) and
# before their first window closes.
LEAD_SECONDS = {"none": 150, "before_first_job": 150, "jobs_in_flight": 30,
                "rows_being_written": 30}
WATCH_SECONDS = 120
# Jobs that stay in flight for about ten seconds, so a kill lands while they run.
SLOW = Timing(submitted=3.0, validating=3.0, scheduled=3.0, per_record=0.5)
RUN_TIMEOUT_S = 600  # the whole run, kill and restart included, on 2 shared cores
CHECKPOINT_MS = 2000


def _wait(what: str, condition: Callable[[], Any], timeout_s: float,
          cli: subprocess.Popen) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if cli.poll() is not None:
            pytest.fail(f"the run ended (exit {cli.returncode}) before {what}")
        time.sleep(0.5)
    pytest.fail(f"no {what} after {timeout_s:.0f} s")


def _drop_files(inbox: Path, items: list, first_window_at: float) -> None:
    """Each file whole (renamed into place), its modification time in a window of its own."""
    for n in range(FILES):
        path = inbox / f"f{n}.jsonl"
        tmp = inbox / f".f{n}.tmp"
        tmp.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                               for t in items[n * PER_FILE:(n + 1) * PER_FILE]))
        stamp = first_window_at + n * WINDOW_SECONDS + 1
        os.utime(tmp, (stamp, stamp))
        os.rename(tmp, path)


def _produce(bootstrap: str, topic: str, items: list, first_window_at: float) -> None:
    """Each batch of messages with a message time in a window of its own: the first window's
    on partition 0, the later ones on partition 1. A partition's watermark follows the times of
    the messages read from it, and the read's watermark is the least of its partitions': so the
    first window stays open until its time passes, as a watched folder's does. (Left to the
    producer, both partitions once got later windows' messages and the first two windows closed
    as soon as they were read, before the "before the first job" kill.)"""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for n in range(FILES):
        stamp_ms = round((first_window_at + n * WINDOW_SECONDS + 1) * 1000)
        for t in items[n * PER_FILE:(n + 1) * PER_FILE]:
            producer.produce(topic, value=json.dumps({"id": t.id, "text": t.text}).encode(),
                             timestamp=stamp_ms, partition=min(n, 1))
    assert producer.flush(30) == 0


def _kafka_read(bootstrap: str, topic: str) -> bool:
    """Whether the run's consumer group has committed every message of the topic (the reader
    commits after each read)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bedrock-batch-beam",
                         "enable.auto.commit": False})
    try:
        parts = [TopicPartition(topic, p) for p in
                 consumer.list_topics(topic, timeout=10).topics[topic].partitions]
        committed = consumer.committed(parts, timeout=10)
        return all(c.offset >= consumer.get_watermark_offsets(c, timeout=10)[1]
                   for c in committed)
    finally:
        consumer.close()


class Run:
    """What the kill conditions look at while the run goes on."""

    def __init__(self, backend, run_id: str, cluster: FlinkCluster, jid: str,
                 all_read: Callable[[], bool]) -> None:
        self.backend, self.run_id, self.cluster, self.jid = backend, run_id, cluster, jid
        self.all_read = all_read

    def jobs(self) -> dict:
        return _jobs(self.backend, self.run_id)

    def harvested(self) -> int:
        return len(_objects(self.backend, f"runs/{self.run_id}/harvested/"))

    def checkpoints_completed(self) -> int:
        answer = self.cluster.rest(f"/jobs/{self.jid}/checkpoints")
        return answer["counts"]["completed"] if answer else 0


def _before_first_job(run: Run) -> bool:
    # Files read and checkpointed, and no window closed yet (their times lie ahead).
    if not run.all_read() or run.checkpoints_completed() < 2:
        return False
    assert not run.jobs(), "kill point missed: a job exists already"
    return True


def _jobs_in_flight(run: Run) -> bool:
    return any(status not in ("Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired")
               for _, _, status in run.jobs().values())


def _rows_being_written(run: Run) -> bool:
    # The first window's job harvested (its rows on their way to the sink), later windows not.
    harvested = run.harvested()
    if harvested and harvested >= FILES:
        pytest.fail("kill point missed: every job was harvested already")
    return harvested > 0


KILL_POINTS = {"before_first_job": _before_first_job, "jobs_in_flight": _jobs_in_flight,
               "rows_being_written": _rows_being_written}
# No TaskManager lost, the watch ending before its windows close: their jobs run after it ended.
# (Measured before the sources held on after their end: 8 of 12 rows, exit 4, no restart.)
NO_LOSS = "none"


def _job_names(backend, run_id: str) -> list[str]:
    """The name of every job of the run the service holds, once per job."""
    pages = backend.boto3_client("bedrock").get_paginator(
        "list_model_invocation_jobs").paginate(nameContains=run_id)
    return [j["jobName"] for page in pages for j in page["invocationJobSummaries"]]


def _new_flink_job(cluster: FlinkCluster, before: set[str]) -> str | None:
    jobs = (cluster.rest("/jobs/overview") or {}).get("jobs", [])
    fresh = [job["jid"] for job in jobs if job["jid"] not in before]
    return fresh[0] if fresh else None


def _figures(cluster: FlinkCluster, jid: str) -> dict:
    checkpoints = cluster.rest(f"/jobs/{jid}/checkpoints") or {}
    sizes = [c.get("checkpointed_size", c.get("state_size", 0))
             for c in checkpoints.get("history", []) if c.get("status") == "COMPLETED"]
    exceptions = cluster.rest(f"/jobs/{jid}/exceptions") or {}
    return {"checkpoints": checkpoints.get("counts"),
            "largest_checkpoint_bytes": max(sizes, default=0),
            "restarts": len(exceptions.get("exceptionHistory", {}).get("entries", []))}


@pytest.mark.timeout(RUN_TIMEOUT_S + 240)
@pytest.mark.parametrize("point", [NO_LOSS, *KILL_POINTS])
@pytest.mark.parametrize("source", ["folder", "kafka"])
def test_streaming_run_survives_a_lost_taskmanager(source: str, point: str, tmp_path,
                                                   local_backend_factory, request,
                                                   flink_cluster: FlinkCluster):
    backend = local_backend_factory(timing=SLOW, quotas=Quotas(
        max_records_per_job=PER_FILE + 1, min_records_per_job=1))
    # Two fresh TaskManagers (an earlier case's victim gone) whose PROCESS workers reach this
    # case's backend: its endpoints and credentials are in this process's environment now.
    flink_cluster.renew_taskmanagers(2, dict(os.environ))
    run_id = f"fo-{source}-{point.replace('_', '-')}"[:24].rstrip("-")
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    items = transcripts(FILES * PER_FILE, prefix="live")
    argv = ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--run-id", run_id,
            "--output", str(out), "--sink", "jsonl",
            "--poll-interval-seconds", "1", "--max-records-per-job", str(PER_FILE + 1),
            "--min-records-per-job", "1", "--window-seconds", str(WINDOW_SECONDS),
            "--watch-seconds", str(WATCH_SECONDS),
            f"--checkpointing_interval={CHECKPOINT_MS}"]
    if source == "kafka":
        from tests.test_kafka_source import create_topic

        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = create_topic(bootstrap)
        argv += ["--kafka-bootstrap-servers", bootstrap, "--kafka-topic", topic]
        arrive = lambda first: _produce(bootstrap, topic, items, first)  # noqa: E731
        all_read = lambda: _kafka_read(bootstrap, topic)  # noqa: E731
    else:
        argv += ["--input", str(inbox / "*.jsonl"), "--watch-interval-seconds", "1"]
        arrive = lambda first: _drop_files(inbox, items, first)  # noqa: E731
        all_read = lambda: len(_objects(backend, f"runs/{run_id}/sources/")) >= FILES  # noqa: E731
    argv += flink_cluster_args(flink_cluster, streaming=True, process_workers=True)
    before = {job["jid"] for job in flink_cluster.rest("/jobs/overview")["jobs"]}
    log = tmp_path / "cli.log"
    started = time.monotonic()
    jid = victim = None
    with open(log, "wb") as sink:
        cli = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               stdout=sink, stderr=subprocess.STDOUT)
    try:
        jid = _wait("Flink job", lambda: _new_flink_job(flink_cluster, before), 300, cli)
        _wait("running Flink job", lambda: (flink_cluster.rest(f"/jobs/{jid}") or {}).get(
            "state") == "RUNNING", 300, cli)
        # Windows aligned to their length, the first one wholly ahead of now.
        first = (int(time.time() + LEAD_SECONDS[point]) // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        arrive(first)
        run = Run(backend, run_id, flink_cluster, jid, all_read)
        if point != NO_LOSS:
            _wait(f"kill point {point}", lambda: KILL_POINTS[point](run), 300, cli)
            victim = flink_cluster.busiest_taskmanager(jid)
            flink_cluster.kill_taskmanager(victim)
            flink_cluster.start_taskmanager()
        cli.wait(RUN_TIMEOUT_S - (time.monotonic() - started))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run did not end within {RUN_TIMEOUT_S} s")
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
            if jid is not None:  # the killed CLI's job would hold the next case's slots
                flink_cluster.cancel_job(jid)
    output = log.read_text(errors="replace")
    jobs = _jobs(backend, run_id)
    held = [tid for ids in _records_per_attempt(backend, run_id, jobs).values() for tid in ids]
    summaries = read_rows(out / "summaries") if (out / "summaries").exists() else []
    figures = {"source": source, "point": point, "exit": cli.returncode,
               "killed": victim.name if victim else None,
               "bedrock_jobs": len(jobs), "records_in_jobs": len(held), "rows": len(summaries),
               "duration_s": round(time.monotonic() - started), **_figures(flink_cluster, jid)}
    print(json.dumps(figures))
    report = "\n".join(line for line in output.splitlines()
                       if line.split(" ", 1)[0] in ("records", "summaries", "failures", "jobs",
                                                     "exit", "NOT"))
    assert cli.returncode == 0, f"{figures}\n{report}\n{output[-4000:]}"
    expected = sorted(t.id for t in items)
    assert sorted(r["transcript_id"] for r in summaries) == expected, "every input exactly once"
    assert sorted(held) == expected, "every record in exactly one Bedrock job"
    names = _job_names(backend, run_id)
    assert len(names) == len(set(names)), f"a job name created twice: {sorted(names)}"
    if victim is not None:
        assert figures["restarts"] >= 1, "the lost TaskManager failed the job's tasks"
    # The CLI cancels its job on the cluster itself (Beam's cancel ends only its own client).
    flink_cluster.wait_until("the run's Flink job ended", lambda: (flink_cluster.rest(
        f"/jobs/{jid}") or {}).get("state") in ("CANCELED", "FINISHED", "FAILED"), timeout_s=120)
    assert f"records in      {len(items)}" in report and f"summaries       {len(items)}" in report
