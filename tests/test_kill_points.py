"""kill -9 at each point of a batch run, then a rerun with the same run id: nothing lost, no job
created twice.

The CLI runs as a real subprocess in its own process group and dies by a real SIGKILL to that
group (the Flink job server the FlinkRunner starts is in it too), so no cleanup of any kind runs.
The local backend (moto S3 + the local Bedrock service) belongs to the test, so it outlives the
kill and is where the test counts the jobs: after the rerun, the jobs the killed run created have
the same names, ARNs and clientRequestTokens, and the rerun added only the jobs that were never
created. The test also reads the index of every job the service created: no record is in two
jobs of the same attempt, so none is billed twice. The rerun reuses the killed run's --output
folder, as a user would. Only the killed runs need a process of their own; the run that finishes
calls the CLI's main() in the test process, as the other CLI tests do (it saves a Python and Beam
start per test).

How each point is hit:
- jobs in flight (Flink; the DirectRunner case is tests/test_restart.py): no hook. The service is
  slow (IN_FLIGHT), the test polls it until the jobs exist and are not finished, and kills from
  outside. On Flink the rerun is then killed again, mid-harvest, by the hook, and a third run
  finishes.
- shard upload, job creation, harvest, sink write, publish: a test-only hook. HOOK below is the
  subprocess entry point; it wraps one function of the real code so that, right after that
  function did its real work, the process notes the point in a file and SIGKILLs its own group.
  Only the moment of the kill comes from the hook; everything it wraps runs unchanged:
  - upload: after the first shard object and its index are in S3, before the others are;
  - submit: after the first job of attempt KILL_ATTEMPT was created, before the next one is;
  - harvest: after the rows of a finished job's first shard were emitted downstream;
  - sink: after the first JSONL file under .staging-<run id>/ was written and flushed;
  - publish: after the first staged file was moved into summaries/ or failures/ (local and S3).
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

from pipeline.__main__ import main
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import Timing
from tests.jvm_services import flink_pipeline_args, flink_runner_args
from tests.pipelines import read_rows, transcripts
from transforms.core.quotas import Quotas
from transforms.jobs.results import iter_index

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 30
QUOTAS = Quotas(max_records_per_job=15, min_records_per_job=5)
# Fast enough that a run takes seconds, slow enough that nothing is skipped.
QUICK = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=10.0)
# Jobs stay in flight for 10 s or more, so a poll on a loaded machine still sees them running.
IN_FLIGHT = Timing(submitted=2.0, validating=2.0, scheduled=6.0, per_record=0.05, speed=1.0)

# How the hooked process dies at its point: a SIGKILL to its whole group.
DIE_BY_SIGKILL = textwrap.dedent("""
    import os, signal, sys, threading
    point, note = os.environ["KILL_AT"], os.environ["KILL_NOTE"]
    # Worker threads may reach the point together: one writes the note, the others wait for the
    # kill (a second open(note, "w") would empty the note the first one wrote).
    dying = threading.Lock()

    def die(where):
        dying.acquire()
        with open(note, "w") as f:
            f.write(where)
        os.killpg(os.getpgrp(), signal.SIGKILL)
""")
# Wraps the function of each point so that it calls die(where) right after its real work, then
# runs the CLI as its entry point does. Follows a definition of point, note and die(where)
# (tests/test_interrupts.py has one that sends SIGINT or SIGTERM instead).
AT_POINT = textwrap.dedent("""
    if point == "upload":
        from transforms.core.storage import Storage
        upload = Storage.upload
        def hooked(self, local_path, uri):
            upload(self, local_path, uri)
            if "/index/" in uri:  # a shard and its index are both in S3
                die("upload " + uri)
        Storage.upload = hooked
    elif point == "submit":
        from transforms.core.bedrock import JobsClient
        create, attempt = JobsClient.create, "-a" + os.environ.get("KILL_ATTEMPT", "1") + "-"
        def hooked(self, spec):
            arn = create(self, spec)
            if attempt in spec.job_name:
                die("submit " + spec.job_name)
            return arn
        JobsClient.create = hooked
    elif point == "harvest":
        from transforms.jobs.harvest import RecordMetrics
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
    from pipeline.__main__ import cli
    sys.exit(cli())
""")
HOOK = DIE_BY_SIGKILL + AT_POINT


def _cli_args(backend, input_path: Path, output: Path | str, run_id: str,
              min_records_per_job: int = 5) -> list[str]:
    return ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--run-id", run_id, "--input", str(input_path),
            "--output", str(output), "--sink", "jsonl", "--poll-interval-seconds", "1",
            "--max-records-per-job", "15", "--min-records-per-job", str(min_records_per_job),
            # many small shards, so an upload can be cut between them
            "--max-records-per-file", "3"]


def _jobs(backend, run_id: str) -> dict[str, tuple[str, str, str]]:
    """name -> (ARN, clientRequestToken, status) of every job of the run the service knows."""
    client = backend.boto3_client("bedrock")
    pages = client.get_paginator("list_model_invocation_jobs").paginate(nameContains=run_id)
    jobs = [j for page in pages for j in page["invocationJobSummaries"]]
    assert len({j["jobArn"] for j in jobs}) == len(jobs)
    out = {}
    for j in jobs:  # GetModelInvocationJob reports the token
        full = client.get_model_invocation_job(jobIdentifier=j["jobArn"])
        out[j["jobName"]] = (j["jobArn"], full.get("clientRequestToken", ""), full["status"])
    return out


def _objects(backend, prefix: str) -> list[str]:
    pages = backend.boto3_client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=DEFAULT_BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def _records_per_attempt(backend, run_id: str, jobs: dict) -> dict[int, list[str]]:
    """The transcript ids the service's jobs were given, by attempt, from each created job's
    index."""
    s3 = backend.boto3_client("s3")
    held: dict[int, list[str]] = {}
    for name in jobs:
        for key in _objects(backend, f"runs/{run_id}/index/{name}/"):
            body = s3.get_object(Bucket=DEFAULT_BUCKET, Key=key)["Body"].read().decode()
            for entry in iter_index(body.splitlines()):
                held.setdefault(entry.attempt, []).append(entry.transcript_id)
    return held


def _input(tmp_path: Path) -> tuple[Path, list[str]]:
    items = transcripts(RECORDS)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    return path, sorted(t.id for t in items)


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _run_killed_at(point: str, argv: list[str], tmp_path: Path, **extra_env: str) -> str:
    """Run the CLI with the hook; return where it killed itself."""
    note = tmp_path / f"killed-at-{point}"
    run = subprocess.run([sys.executable, "-c", HOOK, *argv], cwd=ROOT,
                         env=_env(KILL_AT=point, KILL_NOTE=str(note), **extra_env),
                         capture_output=True, text=True, timeout=600, start_new_session=True)
    assert run.returncode == -signal.SIGKILL, \
        f"the run was to be killed at {point} but ended with {run.returncode}: {run.stderr[-2000:]}"
    return note.read_text()


def _rerun(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI to the end in this process; return the report it printed."""
    capsys.readouterr()
    assert main(argv) == 0
    return capsys.readouterr().out


def _assert_exactly_once(backend, run_id: str, output: Path, ids: list[str],
                         jobs_after_kill: dict) -> dict:
    """Every input once in the output; the killed run's jobs kept; no record in two jobs of an
    attempt. Returns the run's jobs."""
    rows = read_rows(output / "summaries") + read_rows(output / "failures")
    assert sorted(r["transcript_id"] for r in rows) == ids, \
        "every input id exactly once in the rerun's output"
    assert not list(output.glob(".staging-*")), "the rerun's publish leaves no staging behind"
    assert (output / "_SUCCESS").exists()
    jobs = _jobs(backend, run_id)
    assert {n: v[:2] for n, v in jobs.items() if n in jobs_after_kill} == \
        {n: v[:2] for n, v in jobs_after_kill.items()}, \
        "the killed run's jobs are adopted, unchanged"
    assert len({v[1] for v in jobs.values()}) == len(jobs), "one clientRequestToken per job"
    held = _records_per_attempt(backend, run_id, jobs)
    assert sorted(held.get(1, [])) == ids, "each record is in exactly one first-attempt job"
    for attempt, records in held.items():
        assert len(records) == len(set(records)), f"a record is in two jobs of attempt {attempt}"
    assert {r["job_arn"] for r in rows if r.get("job_arn")} <= {v[0] for v in jobs.values()}
    return jobs


@pytest.mark.timeout(900)
# harvest is killed on Flink below, in the same DoFn the local runners run. On Prism, the kill
# takes its Go process (in the CLI's process group) down too; two points keep the suite short.
@pytest.mark.parametrize("point, runner", [
    ("upload", "FnApiRunner"), ("submit", "FnApiRunner"), ("sink", "FnApiRunner"),
    ("publish", "FnApiRunner"), ("submit", "PrismRunner"), ("sink", "PrismRunner")])
def test_kill_and_rerun_on_a_local_runner(point, runner, local_backend_factory, tmp_path, capsys):
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output, run_id = tmp_path / "out", f"kill-{point}"
    argv = _cli_args(backend, input_path, output, run_id) + ["--runner", runner]

    assert _run_killed_at(point, argv, tmp_path).startswith(point)
    after_kill = _jobs(backend, run_id)
    if point == "upload":
        assert after_kill == {}, "no job is created before its shards are all in S3"
        assert 0 < len(_objects(backend, f"runs/{run_id}/input/")) < RECORDS // 3
    elif point == "submit":
        assert len(after_kill) == 1
    else:
        assert len(after_kill) == 2
        assert all(v[2] == "Completed" for v in after_kill.values())
    if point == "publish":  # the folder is half-published: one file moved, no _SUCCESS
        assert len(list(output.glob("*/part-*.jsonl"))) == 1
        assert not (output / "_SUCCESS").exists()
    else:
        assert not (output / "summaries").exists()

    report = _rerun(argv, capsys)
    assert f"summaries       {RECORDS}" in report
    jobs = _assert_exactly_once(backend, run_id, output, ids, after_kill)
    assert len(jobs) == 2
    assert {r["job_arn"] for r in read_rows(output / "summaries")} == {v[0] for v in jobs.values()}


def test_a_test_s_backend_holds_no_object_an_earlier_test_left(request):
    """Why the Prism cases above once failed after the FnApiRunner ones, which use the same run
    id: moto's S3 outlived the earlier test's backend, so the rerun's source ledger also held the
    entry for the earlier test's input file (records in 60 for 30, exit 4). The earlier test is
    played here by a backend this test starts and stops before it asks for the fixture."""
    with LocalBackend(bucket=DEFAULT_BUCKET) as earlier:
        earlier.boto3_client("s3").put_object(
            Bucket=DEFAULT_BUCKET, Key="runs/kill-submit/sources/earlier.json", Body=b"{}")
    backend = request.getfixturevalue("local_backend_factory")()
    assert _objects(backend, "runs/") == []


@pytest.mark.timeout(900)
def test_kill_while_retries_are_submitted(local_backend_factory, tmp_path, capsys):
    """Records the model errored on go to retry jobs (attempt 2); the run dies right after the
    first of those is created. The rerun harvests the same first-attempt outputs, so it finds the
    same records to retry, and adopts the retry job instead of creating another."""
    backend = local_backend_factory(timing=QUICK, quotas=Quotas(max_records_per_job=15,
                                                                min_records_per_job=1),
                                    faults=Faults(seed=3, record_error_rate=0.3))
    input_path, ids = _input(tmp_path)
    output, run_id = tmp_path / "out", "kill-retry"
    argv = _cli_args(backend, input_path, output, run_id, min_records_per_job=1)

    assert _run_killed_at("submit", argv, tmp_path, KILL_ATTEMPT="2").startswith("submit")
    after_kill = _jobs(backend, run_id)
    retry_jobs = [n for n in after_kill if "-a2-" in n]
    assert len(after_kill) == 3 and len(retry_jobs) == 1

    _rerun(argv, capsys)
    jobs = _assert_exactly_once(backend, run_id, output, ids, after_kill)
    assert [n for n in jobs if "-a2-" in n] == retry_jobs, "the retry job is adopted"



@pytest.mark.timeout(900)
def test_kill_mid_publish_to_an_s3_output(local_backend_factory, tmp_path, capsys):
    """As the publish point above, with --output on S3, where each move is a copy and a delete."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    run_id = "kill-publish-s3"
    argv = _cli_args(backend, input_path, f"s3://{DEFAULT_BUCKET}/out", run_id) + [
        "--s3_endpoint_url", backend.s3_endpoint_url]

    assert _run_killed_at("publish", argv, tmp_path).startswith("publish")
    after_kill = _jobs(backend, run_id)
    published = [k for k in _objects(backend, "out/") if k.startswith(("out/summaries/",
                                                                       "out/failures/"))]
    assert len(published) == 1 and "out/_SUCCESS" not in _objects(backend, "out/")

    _rerun(argv, capsys)
    keys = _objects(backend, "out/")
    assert "out/_SUCCESS" in keys and not [k for k in keys if k.startswith("out/.staging-")]
    s3 = backend.boto3_client("s3")
    rows = [json.loads(line) for k in keys if k.startswith("out/summaries/")
            for line in s3.get_object(Bucket=DEFAULT_BUCKET, Key=k)["Body"].read().splitlines()]
    assert sorted(r["transcript_id"] for r in rows) == ids
    assert _jobs(backend, run_id) == after_kill

def _wait_until_in_flight(backend, run_id: str, first: subprocess.Popen) -> dict:
    deadline = time.monotonic() + 300
    while True:
        jobs = _jobs(backend, run_id)
        if len(jobs) == 2:
            return jobs
        assert time.monotonic() < deadline, "the first run never submitted its jobs"
        assert first.poll() is None, "the first run ended before it could be killed"
        time.sleep(0.5)


@pytest.mark.timeout(1200)
def test_flink_killed_in_flight_then_mid_harvest(local_backend_factory, tmp_path, capsys,
                                                  flink_job_endpoint):
    """--runner FlinkRunner (its own job server, LOOPBACK workers in the CLI process), killed
    twice with the same run id, then run to the end:

    1. from outside, no hook, while the service still runs the jobs (IN_FLIGHT);
    2. by the harvest hook, after the rerun adopted the jobs and harvested a first shard.

    The killed runs start their own job server, so it dies with them; the run that finishes uses
    the session's Flink job server (already up for the other Flink tests) instead of a third one.
    """
    backend = local_backend_factory(timing=IN_FLIGHT, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output, run_id = tmp_path / "out", "kill-flink"
    args = _cli_args(backend, input_path, output, run_id)
    argv = args + flink_runner_args()

    first = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], cwd=ROOT, env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        after_kill = _wait_until_in_flight(backend, run_id, first)
        assert all(v[2] not in ("Completed", "Failed") for v in after_kill.values())
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the job server the CLI started dies with it
        first.wait()

    assert _run_killed_at("harvest", argv, tmp_path) == "harvest"
    assert {n: v[:2] for n, v in _jobs(backend, run_id).items()} == \
        {n: v[:2] for n, v in after_kill.items()}
    assert not (output / "summaries").exists()

    report = _rerun(args + flink_pipeline_args(flink_job_endpoint), capsys)
    assert f"summaries       {RECORDS}" in report
    jobs = _assert_exactly_once(backend, run_id, output, ids, after_kill)
    assert len(jobs) == 2
