"""kill -9 at each point of a batch run, then a rerun with the same run id: nothing lost, no job twice.

The CLI runs as a real subprocess in its own process group and dies by a real SIGKILL to that
group (the Flink job server the FlinkRunner starts is in it too), so no cleanup of any kind runs.
The local backend (moto S3 + the local Bedrock service) belongs to the test, so it outlives the
kill and is where the test counts the jobs: every job's name, ARN and clientRequestToken after the
rerun are exactly those the service knew right after the kill, plus only jobs the killed run never
created. The rerun reuses the killed run's --output folder, as a user would.

How each point is hit:
- jobs in flight (Flink; the DirectRunner case is tests/test_restart.py): no hook. The service is
  slow (SLOW), the test polls it until the jobs exist and are not finished, and kills from outside.
- shard upload, harvest, sink write, publish: a test-only hook. HOOK below is the subprocess entry
  point; it wraps one function of the real code so that, right after that function did its real
  work, the process notes the point in a file and SIGKILLs its own group. Only the moment of the
  kill comes from the hook; everything it wraps runs unchanged. The points:
  - upload: after the first shard object and its index are in S3, before the others are;
  - harvest: after the rows of a finished job's first shard were emitted downstream;
  - sink: after the first JSONL file under .staging-<run id>/ was written and flushed;
  - publish: after the first staged file was moved into summaries/ or failures/.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from tests.jvm_services import flink_runner_args
from tests.pipelines import read_rows, transcripts
from tests.test_restart import SLOW
from transforms.quotas import Quotas

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 30
QUOTAS = Quotas(max_records_per_job=15, min_records_per_job=5)
# Fast enough that a run takes seconds, slow enough that nothing is skipped.
QUICK = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=10.0)

HOOK = textwrap.dedent("""
    import os, signal, sys
    point, note = os.environ["KILL_AT"], os.environ["KILL_NOTE"]

    def die(where):
        with open(note, "w") as f:
            f.write(where)
        os.killpg(os.getpgrp(), signal.SIGKILL)

    if point == "upload":
        from transforms.storage import Storage
        upload = Storage.upload
        def hooked(self, local_path, uri):
            upload(self, local_path, uri)
            if "/index/" in uri:  # a shard and its index are both in S3
                die("upload " + uri)
        Storage.upload = hooked
    elif point == "harvest":
        from transforms.harvest import RecordMetrics
        emit = RecordMetrics.emit
        def hooked(self, harvest):
            yield from emit(self, harvest)
            die("harvest")
        RecordMetrics.emit = hooked
    elif point == "sink":
        from transforms.sinks.files import JsonlRowSink
        flush = JsonlRowSink.flush
        def hooked(self):
            flush(self)
            die("sink")
        JsonlRowSink.flush = hooked
    elif point == "publish":
        from apache_beam.io.filesystems import FileSystems
        rename = FileSystems.rename
        def hooked(sources, destinations):
            if ".staging-" in sources[0] and ".staging-" not in destinations[0]:
                rename(sources[:1], destinations[:1])
                die("publish " + destinations[0])
            return rename(sources, destinations)
        FileSystems.rename = staticmethod(hooked)
    else:
        raise SystemExit("unknown KILL_AT " + point)
    from pipeline.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


def _cli_args(backend, input_path: Path, output: Path, run_id: str) -> list[str]:
    return ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--run-id", run_id, "--input", str(input_path),
            "--output", str(output), "--sink", "jsonl", "--poll-interval-seconds", "1",
            "--max-records-per-job", "15", "--min-records-per-job", "5",
            # many small shards, so an upload can be cut between them
            "--max-records-per-file", "3"]


def _jobs(backend, run_id: str) -> dict[str, tuple[str, str, str]]:
    """name -> (ARN, clientRequestToken, status) of every job of the run the service knows."""
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate(
        nameContains=run_id)
    jobs = [j for page in pages for j in page["invocationJobSummaries"]]
    arns = [j["jobArn"] for j in jobs]
    assert len(arns) == len(set(arns))
    client = backend.boto3_client("bedrock")
    out = {}
    for j in jobs:  # the summary may omit the token: GetModelInvocationJob reports it
        full = client.get_model_invocation_job(jobIdentifier=j["jobArn"])
        out[j["jobName"]] = (j["jobArn"], full.get("clientRequestToken", ""), full["status"])
    return out


def _shards(backend, run_id: str) -> list[str]:
    s3 = backend.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=DEFAULT_BUCKET,
                                                         Prefix=f"runs/{run_id}/input/")
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _input(tmp_path: Path) -> tuple[Path, list[str]]:
    items = transcripts(RECORDS)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    return path, sorted(t.id for t in items)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _rerun(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=400)


def _assert_exactly_once(output: Path, ids: list[str], jobs_after_kill: dict, jobs_now: dict,
                         *, jobs_expected: int) -> None:
    summaries = read_rows(output / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == ids, \
        "every input id exactly once in the rerun's output"
    assert read_rows(output / "failures") == []
    assert not list(output.glob(".staging-*")), "the rerun's publish leaves no staging behind"
    assert (output / "_SUCCESS").exists()
    # No job created twice: the jobs the killed run created are still the only ones with their
    # names, and the rerun added only what was missing.
    assert {n: v[:2] for n, v in jobs_now.items() if n in jobs_after_kill} == \
        {n: v[:2] for n, v in jobs_after_kill.items()}
    assert len(jobs_now) == jobs_expected
    assert len({v[1] for v in jobs_now.values()}) == jobs_expected, "one token per job"
    assert {r["job_arn"] for r in summaries} == {v[0] for v in jobs_now.values()}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", ["upload", "harvest", "sink", "publish"])
def test_kill_and_rerun_on_the_direct_runner(point, local_backend_factory, tmp_path):
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output, run_id, note = tmp_path / "out", f"kill-{point}", tmp_path / "killed-at"
    argv = _cli_args(backend, input_path, output, run_id)

    first = subprocess.run([sys.executable, "-c", HOOK, *argv], cwd=ROOT,
                           env={**_env(), "KILL_AT": point, "KILL_NOTE": str(note)},
                           capture_output=True, text=True, timeout=400, start_new_session=True)
    assert first.returncode == -signal.SIGKILL, \
        f"the run was to be killed at {point} but ended with {first.returncode}: " \
        f"{first.stderr[-2000:]}"
    assert note.read_text().startswith(point)
    after_kill = _jobs(backend, run_id)
    if point == "upload":
        assert after_kill == {}, "no job is created before its shards are all in S3"
        assert 0 < len(_shards(backend, run_id)) < RECORDS // 3
    else:
        assert len(after_kill) == 2
        assert all(v[2] == "Completed" for v in after_kill.values())
    if point == "publish":  # the folder is half-published: one file moved, no _SUCCESS
        assert len(list((output).glob("*/part-*.jsonl"))) == 1
        assert not (output / "_SUCCESS").exists()
    else:
        assert not (output / "summaries").exists()

    second = _rerun(argv)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"summaries       {RECORDS}" in second.stdout
    _assert_exactly_once(output, ids, after_kill, _jobs(backend, run_id), jobs_expected=2)


def _wait_until_in_flight(backend, run_id: str, first: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 240
    while True:
        jobs = _jobs(backend, run_id)
        if len(jobs) == 2:
            return jobs
        assert time.monotonic() < deadline, "the first run never submitted its jobs"
        assert first.poll() is None, "the first run ended before it could be killed"
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_flink_killed_while_jobs_are_in_flight_adopts_them(local_backend_factory, tmp_path):
    """The CLI with --runner FlinkRunner (its own job server, LOOPBACK workers in the CLI process)
    is killed from outside while the service still runs its jobs; no hook."""
    backend = local_backend_factory(timing=SLOW, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output, run_id = tmp_path / "out", "kill-flink-wait"
    argv = _cli_args(backend, input_path, output, run_id) + flink_runner_args()

    first = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        after_kill = _wait_until_in_flight(backend, run_id, first)
        assert all(v[2] not in ("Completed", "Failed") for v in after_kill.values())
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()

    second = _rerun(argv)
    assert second.returncode == 0, second.stderr[-3000:]
    _assert_exactly_once(output, ids, after_kill, _jobs(backend, run_id), jobs_expected=2)


@pytest.mark.timeout(900)
def test_flink_killed_mid_harvest_reruns_exactly_once(local_backend_factory, tmp_path):
    """The harvest hook (see the module docstring) on the FlinkRunner with LOOPBACK workers, which
    run in the CLI process, so the hook is there; the kill takes the job server down with it."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output, run_id, note = tmp_path / "out", "kill-flink-harvest", tmp_path / "killed-at"
    argv = _cli_args(backend, input_path, output, run_id) + flink_runner_args()

    first = subprocess.run([sys.executable, "-c", HOOK, *argv], cwd=ROOT,
                           env={**_env(), "KILL_AT": "harvest", "KILL_NOTE": str(note)},
                           capture_output=True, text=True, timeout=400, start_new_session=True)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    assert note.read_text() == "harvest"
    after_kill = _jobs(backend, run_id)
    assert len(after_kill) == 2 and not (output / "summaries").exists()

    second = _rerun(argv)
    assert second.returncode == 0, second.stderr[-3000:]
    _assert_exactly_once(output, ids, after_kill, _jobs(backend, run_id), jobs_expected=2)
