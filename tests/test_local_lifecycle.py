"""Local batch jobs end to end through boto3: lifecycle, live counts, output layout, input rules."""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pipeline.local.jobs_store import Timing
from tests.test_local_support import (  # noqa: F401  (fixtures)
    client, service, TEXT, bedrock_client, bucket, create_job, job_id, local_s3, put_lines, read_output, record_lines,
    s3_client, start_service, wait_for)
from transforms.core.quotas import Quotas




def test_walks_every_status_with_live_counts(local_s3: Any, s3_client: Any, bucket: str) -> None:
    timing = Timing(submitted=0.1, validating=0.1, scheduled=0.1, per_record=0.02)
    uri = put_lines(s3_client, bucket, "in/calls.jsonl", record_lines(20))
    with start_service(local_s3, timing=timing) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, uri, f"s3://{bucket}/out/")
        statuses, processed = [], []
        while not statuses or statuses[-1] not in ("Completed", "Failed"):
            job = client.get_model_invocation_job(jobIdentifier=arn)
            if not statuses or statuses[-1] != job["status"]:
                statuses.append(job["status"])
            if job["status"] == "InProgress":
                processed.append(job["processedRecordCount"])
                assert job["totalRecordCount"] == 20
                assert job["successRecordCount"] + job["errorRecordCount"] == job["processedRecordCount"]
            time.sleep(0.01)
    assert statuses == ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]
    assert processed == sorted(processed) and any(0 < p < 20 for p in processed)


def test_output_layout_manifest_and_shuffled_order(client: Any, s3_client: Any, bucket: str) -> None:
    lines = record_lines(30)
    uri = put_lines(s3_client, bucket, "batch/shard-00000.jsonl", lines)
    arn = create_job(client, uri, f"s3://{bucket}/results")  # no trailing slash: same layout
    job = wait_for(client, arn)
    assert job["status"] == "Completed"
    out = read_output(s3_client, bucket, f"results/{job_id(arn)}/")
    assert set(out) == {"shard-00000.jsonl.out", "manifest.json.out"}
    records = out["shard-00000.jsonl.out"]
    sent = [json.loads(line) for line in lines]
    assert sorted(r["recordId"] for r in records) == [r["recordId"] for r in sent]
    assert [r["recordId"] for r in records] != [r["recordId"] for r in sent]  # no order guarantee
    first = next(r for r in records if r["recordId"] == sent[0]["recordId"])
    assert first["modelInput"] == sent[0]["modelInput"]
    assert first["modelOutput"]["content"][0]["type"] == "text"
    manifest = out["manifest.json.out"]
    assert manifest["inputTokenCount"] == sum(r["modelOutput"]["usage"]["input_tokens"] for r in records)
    assert manifest["outputTokenCount"] == sum(r["modelOutput"]["usage"]["output_tokens"] for r in records)
    assert {k: manifest[k] for k in ("totalRecordCount", "processedRecordCount", "successRecordCount",
                                     "errorRecordCount")} == {
        "totalRecordCount": 30, "processedRecordCount": 30, "successRecordCount": 30, "errorRecordCount": 0}


def test_prefix_input_reads_only_jsonl_files(client: Any, s3_client: Any, bucket: str) -> None:
    put_lines(s3_client, bucket, "in/shard-00000.jsonl", record_lines(3))
    put_lines(s3_client, bucket, "in/shard-00001.jsonl", record_lines(2, start=3))
    put_lines(s3_client, bucket, "in/notes.txt", ["not a record"])
    put_lines(s3_client, bucket, "in/manifest.json", ["{}"])
    arn = create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
    job = wait_for(client, arn)
    assert (job["status"], job["totalRecordCount"], job["successRecordCount"]) == ("Completed", 5, 5)
    out = read_output(s3_client, bucket, f"out/{job_id(arn)}/")
    assert set(out) == {"shard-00000.jsonl.out", "shard-00001.jsonl.out", "manifest.json.out"}
    assert len(out["shard-00000.jsonl.out"]) == 3 and len(out["shard-00001.jsonl.out"]) == 2


def test_malformed_lines_become_error_records(client: Any, s3_client: Any, bucket: str) -> None:
    lines = record_lines(2) + ["{not json", json.dumps({"recordId": "NOINPUT0001"}),
                               json.dumps({"modelInput": {"prompt": "wrong body for claude"}}),
                               json.dumps({"modelInput": {"anthropic_version": "bedrock-2023-05-31",
                                                          "max_tokens": 100,
                                                          "messages": [{"role": "user", "content": TEXT}]}})]
    uri = put_lines(s3_client, bucket, "in/mixed.jsonl", lines)
    arn = create_job(client, uri, f"s3://{bucket}/out/")
    job = wait_for(client, arn)
    assert (job["status"], job["totalRecordCount"], job["successRecordCount"], job["errorRecordCount"]) \
        == ("Completed", 6, 3, 3)
    records = read_output(s3_client, bucket, f"out/{job_id(arn)}/")["mixed.jsonl.out"]
    errors = {r["recordId"]: r for r in records if "error" in r}
    assert len(errors) == 3 and all(r["error"]["errorCode"] == 400 for r in errors.values())
    assert "NOINPUT0001" in errors and "modelInput" in errors["NOINPUT0001"]["error"]["errorMessage"]
    bad_json = next(r for r in errors.values() if r["modelInput"] == "{not json")
    assert "not valid JSON" in bad_json["error"]["errorMessage"]
    wrong_body = next(r for r in errors.values() if r["modelInput"] == {"prompt": "wrong body for claude"})
    assert wrong_body["error"]["errorMessage"].startswith("Malformed input request")
    assigned = [r["recordId"] for r in records if not r["recordId"].startswith(("REC", "NOINPUT"))]
    assert len(assigned) == 3 and all(len(rid) == 11 and rid.isalnum() for rid in assigned)


def test_converse_job_answers_in_converse_shape(client: Any, s3_client: Any, bucket: str) -> None:
    body = {"messages": [{"role": "user", "content": [{"text": TEXT}]}],
            "inferenceConfig": {"maxTokens": 200}}
    uri = put_lines(s3_client, bucket, "in/converse.jsonl",
                    [json.dumps({"recordId": "CONV0000001", "modelInput": body})])
    arn = create_job(client, uri, f"s3://{bucket}/out/", modelInvocationType="Converse",
                     modelId="amazon.nova-lite-v1:0")
    assert wait_for(client, arn)["status"] == "Completed"
    [record] = read_output(s3_client, bucket, f"out/{job_id(arn)}/")["converse.jsonl.out"]
    assert record["modelOutput"]["output"]["message"]["role"] == "assistant"
    assert record["modelOutput"]["usage"]["inputTokens"] > 0


@pytest.mark.parametrize("uri_suffix, fragment", [
    ("missing/none.jsonl", "does not exist"),
    ("empty-prefix/", "No .jsonl input files found"),
])
def test_missing_input_fails_the_job_not_the_create(client: Any, bucket: str, uri_suffix: str,
                                                    fragment: str) -> None:
    arn = create_job(client, f"s3://{bucket}/{uri_suffix}", f"s3://{bucket}/out/")
    job = wait_for(client, arn)
    assert job["status"] == "Failed" and fragment in job["message"] and uri_suffix in job["message"]
    assert "totalRecordCount" not in job


def test_missing_bucket_fails_the_job(client: Any) -> None:
    arn = create_job(client, "s3://no-such-bucket-anywhere/in/", "s3://no-such-bucket-anywhere/out/")
    job = wait_for(client, arn)
    assert job["status"] == "Failed" and "NoSuchBucket" in job["message"]


QUOTAS = Quotas(max_records_per_file=5, max_records_per_job=8, min_records_per_job=2,
                max_file_bytes=4000, max_job_bytes=6000)
LONG = TEXT * 6  # about 1.2 kB per record: 3 fit a 4 kB file, 4 do not


@pytest.mark.parametrize("files, quota", [
    ({"a.jsonl": record_lines(6)}, "max_records_per_file"),
    ({"a.jsonl": record_lines(5), "b.jsonl": record_lines(4, 5)}, "max_records_per_job"),
    ({"a.jsonl": record_lines(1)}, "min_records_per_job"),
    ({"a.jsonl": record_lines(4, text=LONG)}, "max_file_bytes"),
    ({"a.jsonl": record_lines(3, text=LONG), "b.jsonl": record_lines(3, 3, text=LONG)}, "max_job_bytes"),
])
def test_quotas_fail_the_job_at_validation(local_s3: Any, s3_client: Any, bucket: str,
                                           files: dict[str, list[str]], quota: str) -> None:
    for name, lines in files.items():
        put_lines(s3_client, bucket, f"in/{name}", lines)
    with start_service(local_s3, quotas=QUOTAS) as svc:
        client = bedrock_client(svc)
        job = wait_for(client, create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/"))
    assert job["status"] == "Failed" and f"({quota})" in job["message"]
    assert not s3_client.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents")


def test_within_quotas_completes(local_s3: Any, s3_client: Any, bucket: str) -> None:
    put_lines(s3_client, bucket, "in/a.jsonl", record_lines(5))
    put_lines(s3_client, bucket, "in/b.jsonl", record_lines(3, 5))
    with start_service(local_s3, quotas=QUOTAS) as svc:
        client = bedrock_client(svc)
        job = wait_for(client, create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/"))
    assert (job["status"], job["successRecordCount"]) == ("Completed", 8)


def test_stop_in_progress_keeps_processed_output(local_s3: Any, s3_client: Any, bucket: str) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(200))
    with start_service(local_s3, timing=Timing(submitted=0, validating=0, scheduled=0,
                                               per_record=0.01)) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, uri, f"s3://{bucket}/out/")
        wait_for(client, arn, {"InProgress"})
        while client.get_model_invocation_job(jobIdentifier=arn)["processedRecordCount"] < 5:
            time.sleep(0.01)
        client.stop_model_invocation_job(jobIdentifier=arn)
        assert client.get_model_invocation_job(jobIdentifier=arn)["status"] in ("Stopping", "Stopped")
        job = wait_for(client, arn)
    assert job["status"] == "Stopped" and 5 <= job["processedRecordCount"] < 200
    out = read_output(s3_client, bucket, f"out/{job_id(arn)}/")
    assert len(out["a.jsonl.out"]) == job["processedRecordCount"]
    assert out["manifest.json.out"]["processedRecordCount"] == job["processedRecordCount"]
    assert out["manifest.json.out"]["totalRecordCount"] == 200


# 24 simulated hours pass in 0.5 s at this speed, so the default timeout is reached quickly yet
# leaves a loaded machine time to start the job.
DAY = 86_400.0
SPEED = DAY * 2


def test_timeout_while_scheduled_expires(local_s3: Any, s3_client: Any, bucket: str) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(3))
    with start_service(local_s3, timing=Timing(submitted=0, validating=0, scheduled=1.5 * DAY,
                                               speed=SPEED)) as svc:
        client = bedrock_client(svc)
        job = wait_for(client, create_job(client, uri, f"s3://{bucket}/out/"))
    assert job["status"] == "Expired" and "timeout of 24 hours" in job["message"]
    assert job["endTime"] >= job["jobExpirationTime"]


def test_timeout_while_in_progress_is_partially_completed(local_s3: Any, s3_client: Any,
                                                           bucket: str) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(60))
    with start_service(local_s3, timing=Timing(submitted=0, validating=0, scheduled=0,
                                               per_record=0.05 * DAY, speed=SPEED)) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, uri, f"s3://{bucket}/out/")
        job = wait_for(client, arn)
    assert job["status"] == "PartiallyCompleted" and "timeout of 24 hours" in job["message"]
    assert 0 < job["processedRecordCount"] < 60
    out = read_output(s3_client, bucket, f"out/{job_id(arn)}/")
    assert len(out["a.jsonl.out"]) == job["processedRecordCount"]
