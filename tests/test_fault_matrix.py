"""The fault matrix: the CLI as a user runs it, against a local backend that injects one kind of
fault per case, and nothing lost, nothing billed twice.

Each case runs `python -m pipeline run --backend aws` in-process, pointed at a LocalBackend the
test owns (as a user points the CLI at any Bedrock-compatible endpoint), so the test can read the
service's job store afterwards. Every case asserts:

- each input id is exactly once in the summaries or the failures;
- the jobs the service created are the jobs the run planned (all rounds) less those it refused,
  the first round is the planner's, and no round goes past the retries allowed;
- no clientRequestToken, shard or record (within a round) went into two jobs;
- the report's counters equal the rows written: records in, summaries, failures;
- a failure row is a record that used its attempts, or whose error is not retriable;
- the exit code is the documented one.

Every case runs on both local runners the CLI chooses between (--runner FnApiRunner and
PrismRunner). `make faults` (FAULTS=all) runs every case on both; `make test` runs every case on
the FnApiRunner and a seeded subset of them on Prism, as each Prism run takes longer. The fault
table (tests/fault_table.py) is printed at the end of the test report, with a runner column and
how many cases ran.
"""
from __future__ import annotations

import json
import math
import os
import random
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline import exit_codes
from pipeline.flags import DEFAULT_MAX_FAILURE_RATE
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import Timing
from tests.fault_table import SELECTION, add_row
from tests.pipelines import LOCAL_RUNNERS, cli_with_counters, read_rows, transcripts
from transforms.core.quotas import Quotas
from transforms.jobs.results import retriable_record_error

RECORDS = 40
# Jobs of two files each, so one file of a job can go missing.
PER_FILE, PER_JOB, MIN_PER_JOB, CONCURRENT = 5, 10, 3, 4
# One retry round (--max-record-retries 1) keeps each run short; a second one would only repeat it.
MAX_ATTEMPTS = 2
# Every phase of a job in tens of milliseconds: a run takes a few polls of 1 s per round.
TIMING = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=20.0)


@dataclass(frozen=True)
class Case:
    name: str
    faults: Faults
    # What shows that the fault happened: a kind the backend counts as injected, a Beam counter
    # of the run, job statuses at the service.
    injected: tuple[str, ...] = ()
    counters: tuple[str, ...] = ()
    statuses: frozenset[str] = frozenset()
    # The service's concurrent-jobs quota, when below what the run believes (--max-concurrent-jobs).
    service_concurrent: int = CONCURRENT
    # Whether a job manifest must disagree with its output (exit code 4).
    mismatch: bool = False
    # --output on S3 (Beam's S3 filesystem writes, stages and publishes it) instead of a folder.
    s3_output: bool = False


# One pipeline run per case (about 10 s each), so related faults share a case.
CASES = [
    Case("throttled 30%, creates' answers lost",
         Faults(seed=11, throttle_rate=0.3, lost_create_rate=0.3),
         injected=("throttle", "lost_create")),
    # The run creates its four jobs back to back; jobs five times slower stay active long enough
    # that the service, allowing one, refuses the others (ServiceQuotaExceeded) every time.
    Case("record errors 5%, quota full",
         Faults(seed=12, record_error_rate=0.05, slow_job_rate=1.0, slow_multiplier=5),
         injected=("record_error",), counters=("records_retried", "submit_backoffs"),
         service_concurrent=1),
    # Seeded so that the four first-round jobs end in the four ways.
    Case("partial/expired/stopped/failed", Faults(seed=922, partial_job_rate=0.3,
                                                  expire_job_rate=0.25, stop_job_rate=0.4,
                                                  fail_job_rate=0.2), counters=("records_retried",),
         statuses=frozenset({"PartiallyCompleted", "Expired", "Stopped", "Failed"})),
    Case("torn last output line", Faults(seed=17, torn_line_rate=0.5), injected=("torn_line",),
         counters=("output_lines_unreadable",)),
    Case("missing output file", Faults(seed=18, missing_output_rate=0.5),
         injected=("missing_file",), counters=("records_retried",), mismatch=True),
    Case("manifest disagrees", Faults(seed=19, manifest_mismatch_rate=0.5), injected=("manifest",),
         mismatch=True),
    # Clients make 5 to 10 attempts, so a call fails for good at most 0.05 ** 5 of the time.
    Case("S3 answers 500/503 (5%)", Faults(seed=20, s3_error_rate=0.05), injected=("s3_error",),
         s3_output=True),
]


# How many cases run on Prism in `make test` (FAULTS=all: every one), chosen with SEED.
PRISM_SUBSET, SEED = 3, 18


def _selected() -> list[tuple[Case, str]]:
    """(case, runner) pairs to run: every case on each runner with FAULTS=all, else every case
    on the FnApiRunner and a seeded subset on Prism."""
    pairs = [(case, runner) for runner in LOCAL_RUNNERS for case in CASES]
    if os.environ.get("FAULTS") == "all":
        SELECTION.update(total=len(pairs), ran=len(pairs), how="FAULTS=all")
        return pairs
    prism = LOCAL_RUNNERS[1]
    on_prism = set(random.Random(SEED).sample(range(len(CASES)), PRISM_SUBSET))
    chosen = [(case, runner) for case, runner in pairs
              if runner != prism or CASES.index(case) in on_prism]
    SELECTION.update(total=len(pairs), ran=len(chosen),
                     how=f"{PRISM_SUBSET} seeded cases on {prism}; `make faults` runs all")
    return chosen


def _run_cli(backend: LocalBackend, input_path: Path, out: str, run_id: str, runner: str,
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, dict[str, int]]:
    """The CLI in-process on ``runner``; returns its exit code and the counters of the Report it
    printed."""
    return cli_with_counters(
        ["run", "--runner", runner, "--backend", "aws",
         "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
         "--bedrock-runtime-endpoint-url", backend.bedrock_endpoint_url,
         "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
         "--aws-region", backend.region, "--run-id", run_id, "--input", str(input_path),
         "--output", out, "--s3_endpoint_url", backend.s3_endpoint_url, "--sink", "jsonl",
         "--poll-interval-seconds", "1", "--max-records-per-file", str(PER_FILE),
         "--max-records-per-job", str(PER_JOB), "--min-records-per-job", str(MIN_PER_JOB),
         "--max-concurrent-jobs", str(CONCURRENT), "--max-record-retries", str(MAX_ATTEMPTS - 1)],
        monkeypatch)


def _rows(backend: LocalBackend, out: str, kind: str) -> list[dict[str, Any]]:
    """The rows of ``out``/``kind`` (summaries or failures), a folder or an s3:// URI."""
    if not out.startswith("s3://"):
        return read_rows(Path(out) / kind)
    s3 = backend.boto3_client("s3", retries={"mode": "standard", "max_attempts": 10})
    bucket, _, prefix = out[len("s3://"):].partition("/")
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}/{kind}/") for o in page.get("Contents", [])]
    return [json.loads(line) for key in sorted(keys) if key.endswith(".jsonl")
            for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
            if line.strip()]


def _job_records(backend: LocalBackend, jobs: list[Any]) -> dict[str, set[str]]:
    """The recordIds each job was billed for: its input shard as the service read it."""
    s3 = backend.boto3_client("s3", retries={"mode": "standard", "max_attempts": 10})
    out = {}
    for job in jobs:
        uri = job.params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        bucket, _, key = uri[len("s3://"):].partition("/")
        keys = ([key] if key.endswith(".jsonl") else
                [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=key) for o in page.get("Contents", [])
                 if o["Key"].endswith(".jsonl")])
        out[job.name] = {json.loads(line)["recordId"] for k in keys
                         for line in s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()
                         if line.strip()}
    return out


def _duplicate_jobs(jobs: list[Any], records: dict[str, set[str]]) -> int:
    """Jobs beyond the first with the same clientRequestToken or input shard, plus jobs sharing a
    record with another job of the same round: each would be billed twice."""
    tokens = Counter(j.params.get("clientRequestToken") for j in jobs)
    shards = Counter(j.params["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] for j in jobs)
    twice = sum(n - 1 for n in tokens.values()) + sum(n - 1 for n in shards.values())
    by_round: dict[str, Counter] = {}
    for job in jobs:
        by_round.setdefault(_round(job.name), Counter()).update(records[job.name])
    return twice + sum(1 for job in jobs
                       if any(by_round[_round(job.name)][r] > 1 for r in records[job.name]))


def _round(job_name: str) -> str:
    return re.search(r"-a(\d+)-", job_name)[1]


@pytest.mark.parametrize(("case", "runner"), _selected(), ids=lambda v: getattr(v, "name", v))
def test_fault_matrix(case: Case, runner: str, local_backend_factory, tmp_path,
                      monkeypatch) -> None:
    backend = local_backend_factory(
        faults=case.faults, timing=TIMING,
        quotas=Quotas(max_concurrent_jobs=case.service_concurrent, max_records_per_file=PER_FILE,
                      max_records_per_job=PER_JOB, min_records_per_job=MIN_PER_JOB))
    items = transcripts(RECORDS)
    input_path = tmp_path / "calls.jsonl"
    input_path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    run_id = f"fm-{uuid.uuid4().hex[:10]}"  # moto's S3 is shared by every test of the process

    out = f"s3://{DEFAULT_BUCKET}/out-{run_id}" if case.s3_output else str(tmp_path / "out")
    code, counters = _run_cli(backend, input_path, out, run_id, runner, monkeypatch)

    summaries, failures = _rows(backend, out, "summaries"), _rows(backend, out, "failures")
    out_ids = Counter([r["transcript_id"] for r in summaries + failures])
    jobs = backend.service.store.jobs()
    records = _job_records(backend, jobs)
    duplicates = _duplicate_jobs(jobs, records)
    lost = sum(1 for t in items if t.id not in out_ids)
    add_row({"case": case.name, "runner": runner, "inputs": len(items), "summaries": len(summaries),
             "failures": len(failures), "jobs created": len(jobs), "duplicate jobs": duplicates,
             "lost": lost, "exit code": code})

    assert lost == 0 and out_ids == Counter(t.id for t in items), "each input exactly once"
    assert duplicates == 0, "no job, shard or record billed twice"
    assert counters["records_in"] == len(items)
    assert counters.get("summaries_written", 0) == len(summaries)
    assert counters.get("failures_written", 0) == len(failures)
    # The fault really happened.
    assert all(backend.faults_injected()[kind] > 0 for kind in case.injected)
    assert all(counters.get(name, 0) > 0 for name in case.counters)
    assert case.statuses <= {j.status for j in jobs}
    assert len(jobs) == counters["jobs_submitted"] == (counters["jobs_planned"]
                                                      - counters.get("jobs_not_created", 0))
    rounds = Counter(_round(j.name) for j in jobs)
    assert rounds["1"] == math.ceil(RECORDS / PER_JOB), "the first round is the planner's"
    assert set(rounds) <= {str(a) for a in range(1, MAX_ATTEMPTS + 1)}
    for failure in failures:
        assert (failure["attempt"] == MAX_ATTEMPTS
                or not retriable_record_error(failure["error_code"])), failure
    assert (counters.get("manifest_mismatches", 0) > 0) == case.mismatch
    rate = len(failures) / len(items)
    expected = (exit_codes.UNACCOUNTED if case.mismatch
                else exit_codes.FAILURES_ABOVE_THRESHOLD
                if failures and (not summaries or rate > DEFAULT_MAX_FAILURE_RATE)
                else exit_codes.OK)
    assert code == expected
