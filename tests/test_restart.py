"""Restarting `run` with the same run id after a crash mid-wait adopts the jobs; none is re-created.

The first run is a subprocess against a local backend owned by the test (as `--backend aws` with
endpoint overrides, the way a user points it at any Bedrock-compatible endpoint), so killing the
pipeline does not kill the service. The restarted run calls the CLI's main() in the test process,
as the other CLI tests do: only the run that is killed needs a process of its own.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pipeline.__main__ import main
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from tests.pipelines import read_rows, transcripts
from transforms.core.quotas import Quotas

ROOT = Path(__file__).resolve().parent.parent
SLOW = Timing(submitted=2.0, validating=2.0, scheduled=2.0, per_record=0.05, speed=1.0)


def _cli(backend, input_path: Path, output: Path, run_id: str) -> list[str]:
    return ["run", "--backend", "aws",
            "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--run-id", run_id, "--input", str(input_path),
            "--output", str(output), "--sink", "jsonl", "--poll-interval-seconds", "1",
            "--max-records-per-job", "15", "--min-records-per-job", "5"]


def _jobs(backend, run_id: str) -> list[dict]:
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate(
        nameContains=run_id)
    return [j for page in pages for j in page["invocationJobSummaries"]]


def test_restart_after_crash_mid_wait_creates_no_new_job(local_backend_factory, tmp_path):
    backend = local_backend_factory(timing=SLOW, quotas=Quotas(max_records_per_job=15,
                                                               min_records_per_job=5))
    items = transcripts(30)
    input_path = tmp_path / "in.jsonl"
    input_path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run_id = "restart-1"

    first = subprocess.Popen([sys.executable, "-m", "pipeline",
                              *_cli(backend, input_path, tmp_path / "out1", run_id)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while len(_jobs(backend, run_id)) < 2:
            assert time.monotonic() < deadline, "the first run never submitted its jobs"
            assert first.poll() is None, "the first run ended before it could be killed"
            time.sleep(0.2)
        before = {j["jobName"]: j["jobArn"] for j in _jobs(backend, run_id)}
        assert all(j["status"] not in ("Completed", "Failed") for j in _jobs(backend, run_id))
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the crash: no cleanup runs
        first.wait()

    assert main(_cli(backend, input_path, tmp_path / "out2", run_id)) == 0
    after = {j["jobName"]: j["jobArn"] for j in _jobs(backend, run_id)}
    assert after == before, "the restarted run must adopt the existing jobs, not create new ones"
    summaries = read_rows(tmp_path / "out2" / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in items)
    assert {r["job_arn"] for r in summaries} == set(before.values())
