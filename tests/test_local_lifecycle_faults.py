"""Fault injection of the local Bedrock batch service, observed through boto3 and the S3 output."""
from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from pipeline.local.faults import RECORD_ERRORS, FaultPlan, Faults
from pipeline.local.jobs_store import Timing
from pipeline.local.s3 import LocalS3
from tests.test_local_support import (  # noqa: F401  (fixtures)
    bedrock_client, bucket, create_job, job_id, local_s3, put_lines, read_output, record_lines,
    s3_client, start_service, wait_for)

NO_RETRIES = {"retries": {"mode": "standard", "total_max_attempts": 1}}


def throttle_pattern(local_s3: Any, faults: Faults, calls: int) -> list[bool]:
    with start_service(local_s3, faults=faults) as svc:
        client = bedrock_client(svc, **NO_RETRIES)
        pattern = []
        for _ in range(calls):
            try:
                client.list_model_invocation_jobs()
                pattern.append(False)
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ThrottlingException"
                assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
                pattern.append(True)
    return pattern


def test_throttling_is_seeded_and_retried_by_botocore(local_s3: Any) -> None:
    faults = Faults(seed=7, throttle_rate=0.4)
    first = throttle_pattern(local_s3, faults, 30)
    assert 3 <= sum(first) <= 25
    assert throttle_pattern(local_s3, faults, 30) == first
    assert throttle_pattern(local_s3, Faults(seed=8, throttle_rate=0.4), 30) != first
    # Replay the seeded sequence up to a throttled call followed by a free one: a retrying client
    # then gets through with exactly one retry.
    skip = next(i for i in range(len(first) - 1) if first[i] and not first[i + 1])
    with start_service(local_s3, faults=faults) as svc:
        impatient = bedrock_client(svc, **NO_RETRIES)
        for _ in range(skip):
            try:
                impatient.list_model_invocation_jobs()
            except ClientError:
                pass
        patient = bedrock_client(svc, retries={"mode": "standard", "max_attempts": 3})
        assert patient.list_model_invocation_jobs()["ResponseMetadata"]["RetryAttempts"] == 1

def run_job(local_s3: Any, s3_client: Any, bucket_name: str, faults: Faults, records: int = 40,
            timing: Timing | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    uri = put_lines(s3_client, bucket_name, "in/a.jsonl", record_lines(records))
    prefix = f"out-{faults.seed}-{time.monotonic_ns()}"
    with start_service(local_s3, faults=faults, **({"timing": timing} if timing else {})) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, uri, f"s3://{bucket_name}/{prefix}/")
        job = wait_for(client, arn)
    return job, read_output(s3_client, bucket_name, f"{prefix}/{job_id(arn)}/")


def test_record_errors_are_realistic_counted_and_seeded(local_s3: Any, s3_client: Any, bucket: str) -> None:
    faults = Faults(seed=3, record_error_rate=0.3)
    job, out = run_job(local_s3, s3_client, bucket, faults)
    assert job["status"] == "Completed" and 0 < job["errorRecordCount"] < 40
    records = out["a.jsonl.out"]
    failed = {r["recordId"] for r in records if "error" in r}
    assert len(failed) == job["errorRecordCount"] == out["manifest.json.out"]["errorRecordCount"]
    known = {(code, message) for code, message in RECORD_ERRORS}
    assert all((r["error"]["errorCode"], r["error"]["errorMessage"]) in known
               for r in records if "error" in r)
    assert all("modelOutput" not in r for r in records if "error" in r)
    _, again = run_job(local_s3, s3_client, bucket, faults)
    assert {r["recordId"] for r in again["a.jsonl.out"] if "error" in r} == failed


def test_partial_job_leaves_records_out_of_the_output(local_s3: Any, s3_client: Any, bucket: str) -> None:
    job, out = run_job(local_s3, s3_client, bucket, Faults(partial_job_rate=1.0, partial_unprocessed=0.25))
    assert job["status"] == "PartiallyCompleted" and "Processed 30 of 40 records" in job["message"]
    assert (job["totalRecordCount"], job["processedRecordCount"]) == (40, 30)
    assert len(out["a.jsonl.out"]) == 30
    assert out["manifest.json.out"]["processedRecordCount"] == 30
    assert out["manifest.json.out"]["totalRecordCount"] == 40


def test_expired_job_has_no_output(local_s3: Any, s3_client: Any, bucket: str) -> None:
    job, out = run_job(local_s3, s3_client, bucket, Faults(expire_job_rate=1.0))
    assert job["status"] == "Expired" and "did not begin before its timeout" in job["message"]
    assert out == {}


def test_failed_validation_fault(local_s3: Any, s3_client: Any, bucket: str) -> None:
    job, out = run_job(local_s3, s3_client, bucket, Faults(fail_job_rate=1.0))
    assert job["status"] == "Failed" and "Access Denied" in job["message"]
    assert "totalRecordCount" not in job and out == {}


def test_slow_jobs_take_multiplier_times_longer(local_s3: Any, s3_client: Any, bucket: str) -> None:
    timing = Timing(submitted=0.02, validating=0.02, scheduled=0.02, per_record=0.005)
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(10))
    with start_service(local_s3, faults=Faults(slow_job_rate=1.0, slow_multiplier=20),
                       timing=timing) as slow_svc, start_service(local_s3, timing=timing) as fast_svc:
        slow, fast = bedrock_client(slow_svc), bedrock_client(fast_svc)
        slow_arn = create_job(slow, uri, f"s3://{bucket}/slow/")
        fast_arn = create_job(fast, uri, f"s3://{bucket}/fast/")
        assert wait_for(fast, fast_arn, timeout=1.5)["status"] == "Completed"
        assert slow.get_model_invocation_job(jobIdentifier=slow_arn)["status"] != "Completed"
        assert wait_for(slow, slow_arn, timeout=5)["status"] == "Completed"


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_fault_free_and_all_fail_extremes(local_s3: Any, s3_client: Any, bucket: str, rate: float) -> None:
    job, _ = run_job(local_s3, s3_client, bucket, Faults(record_error_rate=rate), records=5)
    assert job["errorRecordCount"] == (5 if rate else 0) and job["status"] == "Completed"


def test_stopped_job_delivers_the_first_half(local_s3: Any, s3_client: Any, bucket: str) -> None:
    job, out = run_job(local_s3, s3_client, bucket, Faults(stop_job_rate=1.0), records=10)
    assert job["status"] == "Stopped" and job["processedRecordCount"] == 5
    assert len(out["a.jsonl.out"]) == 5 and out["manifest.json.out"]["processedRecordCount"] == 5


def test_torn_line_cuts_the_last_output_line(local_s3: Any, s3_client: Any, bucket: str) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(6))
    with start_service(local_s3, faults=Faults(torn_line_rate=1.0)) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, uri, f"s3://{bucket}/torn/")
        assert wait_for(client, arn)["status"] == "Completed"
        assert svc.faults.injected["torn_line"] == 1
    key = f"torn/{job_id(arn)}/a.jsonl.out"
    text = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    lines = text.split("\n")
    assert len(lines) == 6 and all(json.loads(line) for line in lines[:5])
    with pytest.raises(ValueError):
        json.loads(lines[5])


def test_missing_output_file_and_disagreeing_manifest(local_s3: Any, s3_client: Any,
                                                      bucket: str) -> None:
    job, out = run_job(local_s3, s3_client, bucket, Faults(missing_output_rate=1.0), records=4)
    assert job["status"] == "Completed" and set(out) == {"manifest.json.out"}
    job, out = run_job(local_s3, s3_client, bucket, Faults(manifest_mismatch_rate=1.0), records=4)
    assert len(out["a.jsonl.out"]) == 4 and out["manifest.json.out"]["successRecordCount"] == 5


def test_output_damages_are_disjoint_and_bounded() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        Faults(torn_line_rate=0.6, missing_output_rate=0.6)
    plan = FaultPlan(Faults(seed=5, torn_line_rate=0.3, missing_output_rate=0.3,
                            manifest_mismatch_rate=0.3))
    damages = Counter(plan.for_job(seq).damage for seq in range(300))
    assert set(damages) == {None, "torn_line", "missing_file", "manifest"}
    assert all(60 <= damages[kind] <= 120 for kind in ("torn_line", "missing_file", "manifest"))


def test_s3_errors_are_seeded_and_ridden_out_by_botocore() -> None:
    faults = Faults(seed=4, s3_error_rate=0.3)

    def statuses(client: Any) -> list[int]:
        out = []
        for _ in range(20):
            try:
                client.list_buckets()
                out.append(200)
            except ClientError as e:
                out.append(e.response["ResponseMetadata"]["HTTPStatusCode"])
        return out

    runs = []
    for _ in range(2):
        with LocalS3(faults=faults) as s3:
            client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                                  config=Config(**NO_RETRIES), **s3.credentials.boto3_kwargs())
            runs.append(statuses(client))
            assert s3.faults.injected["s3_error"] == sum(code != 200 for code in runs[-1])
            patient = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                                   config=Config(retries={"mode": "standard", "max_attempts": 10}),
                                   **s3.credentials.boto3_kwargs())
            assert all(patient.list_buckets()["ResponseMetadata"]["HTTPStatusCode"] == 200
                       for _ in range(10))
    assert runs[0] == runs[1] and {500, 503} <= set(runs[0]) and 200 in runs[0]


def test_lost_create_answer_made_the_job_and_the_same_token_finds_it(
        local_s3: Any, s3_client: Any, bucket: str) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(4))
    with start_service(local_s3, faults=Faults(lost_create_rate=1.0)) as svc:
        client = bedrock_client(svc, **NO_RETRIES)
        request = dict(name="lost-1", clientRequestToken="tok-lost-1")
        with pytest.raises(ClientError) as lost:
            create_job(client, uri, f"s3://{bucket}/lost/", **request)
        assert lost.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        [job] = svc.store.jobs()
        assert create_job(client, uri, f"s3://{bucket}/lost/", **request) == job.arn
        assert len(svc.store.jobs()) == 1 and svc.faults.injected["lost_create"] == 1
