"""The local Bedrock batch service's API through unmodified boto3: operations, fields, errors."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any

import botocore
import pytest
from botocore.exceptions import ClientError

from pipeline.local.backend import SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from pipeline.local.service import BedrockBatchService
from tests.test_local_support import (  # noqa: F401  (fixtures)
    client, service, MODEL, bedrock_client, bucket, create_job, job_id, local_s3, put_lines, record_lines, s3_client,
    signed_headers, start_service, unique, wait_for)

ARN = re.compile(r"^arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/[a-z0-9]{12}$")
# Jobs that stay Submitted for a minute unless stopped: room to observe and stop them.
PARKED = Timing(submitted=60, speed=1)




@pytest.fixture(scope="module")
def raw_client(service: BedrockBatchService) -> Any:
    """A client without botocore's own parameter checks, so the server's checks are what answer."""
    return bedrock_client(service, parameter_validation=False)


@pytest.fixture
def done_job(client: Any, s3_client: Any, bucket: str) -> str:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(3))
    arn = create_job(client, uri, f"s3://{bucket}/out/")
    wait_for(client, arn)
    return arn


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    err = info.value.response
    return err["Error"]["Code"], err["Error"]["Message"], err["ResponseMetadata"]["HTTPStatusCode"]


def create_params(bucket_name: str = "bkt-x", **overrides: Any) -> dict[str, Any]:
    params = dict(jobName=unique("job"), roleArn=SERVICE_ROLE_ARN, modelId=MODEL,
                  inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{bucket_name}/in/"}},
                  outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{bucket_name}/out/"}})
    params.update(overrides)
    return params


def test_get_reports_every_field_by_arn_and_by_id(client: Any, done_job: str, bucket: str) -> None:
    assert ARN.match(done_job)
    by_arn = client.get_model_invocation_job(jobIdentifier=done_job)
    by_id = client.get_model_invocation_job(jobIdentifier=job_id(done_job))
    by_arn.pop("ResponseMetadata"), by_id.pop("ResponseMetadata")
    assert by_arn == by_id
    assert by_arn["status"] == "Completed" and by_arn["modelId"] == MODEL
    assert by_arn["roleArn"] == SERVICE_ROLE_ARN and by_arn["modelInvocationType"] == "InvokeModel"
    assert by_arn["timeoutDurationInHours"] == 24
    assert by_arn["inputDataConfig"]["s3InputDataConfig"]["s3Uri"] == f"s3://{bucket}/in/a.jsonl"
    assert (by_arn["totalRecordCount"], by_arn["processedRecordCount"], by_arn["successRecordCount"],
            by_arn["errorRecordCount"]) == (3, 3, 3, 0)
    now = dt.datetime.now(dt.timezone.utc)
    for field in ("submitTime", "lastModifiedTime", "endTime", "jobExpirationTime"):
        assert isinstance(by_arn[field], dt.datetime) and by_arn[field].tzinfo is not None, field
    assert now - dt.timedelta(seconds=30) < by_arn["submitTime"] <= by_arn["endTime"] <= now
    assert by_arn["clientRequestToken"]  # botocore generated one; the service keeps it


def test_create_echoes_optional_members(client: Any, bucket: str, s3_client: Any) -> None:
    uri = put_lines(s3_client, bucket, "in/a.jsonl", record_lines(1))
    vpc = {"subnetIds": ["subnet-0abc"], "securityGroupIds": ["sg-0abc"]}
    arn = create_job(client, uri, f"s3://{bucket}/out/", timeoutDurationInHours=72, vpcConfig=vpc,
                     modelInvocationType="Converse", tags=[{"key": "team", "value": "cx"}],
                     modelId="amazon.nova-lite-v1:0")
    job = client.get_model_invocation_job(jobIdentifier=arn)
    assert job["vpcConfig"] == vpc and job["timeoutDurationInHours"] == 72
    assert job["modelInvocationType"] == "Converse" and job["modelId"] == "amazon.nova-lite-v1:0"
    expected = job["submitTime"] + dt.timedelta(hours=72) / 1000  # FAST timing runs 1000x
    assert abs(job["jobExpirationTime"] - expected) < dt.timedelta(milliseconds=5)


@pytest.mark.parametrize("overrides, fragment", [
    ({"jobName": "bad name!"}, "at 'jobName' failed to satisfy constraint: Member must satisfy regular "
                               "expression pattern"),
    ({"jobName": "j" * 64}, "at 'jobName' failed to satisfy constraint: Member must have length less "
                            "than or equal to 63"),
    ({"roleArn": "my-role"}, "at 'roleArn' failed to satisfy constraint"),
    ({"modelId": "not a model"}, "at 'modelId' failed to satisfy constraint"),
    ({"clientRequestToken": "tok en"}, "at 'clientRequestToken' failed to satisfy constraint"),
    ({"timeoutDurationInHours": 169}, "Value '169' at 'timeoutDurationInHours' failed to satisfy "
                                      "constraint: Member must have value less than or equal to 168"),
    ({"timeoutDurationInHours": 23}, "Member must have value greater than or equal to 24"),
    ({"modelInvocationType": "Batch"}, "Member must satisfy enum value set: [InvokeModel, Converse]"),
    ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "https://bucket/in/"}}},
     "at 'inputDataConfig.s3InputDataConfig.s3Uri' failed to satisfy constraint"),
    ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bkt-x/in/", "s3InputFormat": "CSV"}}},
     "at 'inputDataConfig.s3InputDataConfig.s3InputFormat' failed to satisfy constraint: Member must "
     "satisfy enum value set: [JSONL]"),
    ({"inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bkt-x/in/", "s3BucketOwner": "123"}}},
     "at 'inputDataConfig.s3InputDataConfig.s3BucketOwner'"),
    ({"inputDataConfig": {}}, "at 'inputDataConfig' failed to satisfy constraint: Member must have "
                              "exactly one of"),
    ({"outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bkt-x/out/", "s3EncryptionKeyId": "k!"}}},
     "at 'outputDataConfig.s3OutputDataConfig.s3EncryptionKeyId'"),
    ({"vpcConfig": {"subnetIds": [], "securityGroupIds": ["sg-1"]}},
     "at 'vpcConfig.subnetIds' failed to satisfy constraint: Member must have length greater than or "
     "equal to 1"),
    ({"vpcConfig": {"subnetIds": ["subnet-1"], "securityGroupIds": [f"sg-{i}" for i in range(6)]}},
     "at 'vpcConfig.securityGroupIds' failed to satisfy constraint: Member must have length less "
     "than or equal to 5"),
    ({"vpcConfig": {"subnetIds": ["subnet_1"], "securityGroupIds": ["sg-1"]}},
     "at 'vpcConfig.subnetIds.1.member' failed to satisfy constraint"),
    ({"vpcConfig": {"subnetIds": ["subnet-1"]}}, "Value null at 'vpcConfig.securityGroupIds'"),
    ({"tags": [{"key": "bad#key", "value": "v"}]}, "at 'tags.1.member.key' failed to satisfy"),
    ({"tags": [{"key": f"k{i}", "value": "v"} for i in range(201)]},
     "at 'tags' failed to satisfy constraint: Member must have length less than or equal to 200"),
    ({"roleArn": None}, "Value null at 'roleArn' failed to satisfy constraint: Member must not be null"),
    ({"modelId": "acme.unknown-model-v1"}, "The provided model identifier is invalid"),
])
def test_create_validation_errors(raw_client: Any, overrides: dict[str, Any], fragment: str) -> None:
    params = {k: v for k, v in create_params(**overrides).items() if v is not None}
    code, message, status = error_of(raw_client.create_model_invocation_job, **params)
    assert (code, status) == ("ValidationException", 400)
    assert fragment in message


def test_validation_counts_every_violation(raw_client: Any) -> None:
    params = create_params(jobName="bad name!", timeoutDurationInHours=500)
    code, message, _ = error_of(raw_client.create_model_invocation_job, **params)
    assert code == "ValidationException" and message.startswith("2 validation errors detected: ")


def test_wrong_json_type_is_a_serialization_error(raw_client: Any) -> None:
    code, message, status = error_of(raw_client.create_model_invocation_job,
                                     **create_params(timeoutDurationInHours="long"))
    assert (code, status) == ("SerializationException", 400) and "timeoutDurationInHours" in message


@pytest.mark.parametrize("kwargs, fragment", [
    ({"maxResults": 0}, "at 'maxResults' failed to satisfy constraint: Member must have value greater"),
    ({"maxResults": 1001}, "Member must have value less than or equal to 1000"),
    ({"statusEquals": "Done"}, "at 'statusEquals' failed to satisfy constraint: Member must satisfy enum"),
    ({"sortOrder": "Up"}, "at 'sortOrder'"),
    ({"sortBy": "Name"}, "at 'sortBy'"),
    ({"nameContains": "bad name!"}, "at 'nameContains'"),
    ({"nextToken": "garbage"}, "Invalid nextToken"),
])
def test_list_validation_errors(raw_client: Any, kwargs: dict[str, Any], fragment: str) -> None:
    code, message, _ = error_of(raw_client.list_model_invocation_jobs, **kwargs)
    assert code == "ValidationException" and fragment in message


def test_unknown_and_malformed_job_identifiers(client: Any, done_job: str) -> None:
    missing = done_job[:-12] + "zzzzzzzzzzzz"
    for call in (client.get_model_invocation_job, client.stop_model_invocation_job):
        assert error_of(call, jobIdentifier=missing)[::2] == ("ResourceNotFoundException", 404)
        assert error_of(call, jobIdentifier="zzzzzzzzzzzz")[0] == "ResourceNotFoundException"
        assert error_of(call, jobIdentifier="Not-A-Job-Id")[0] == "ValidationException"
    other_region = done_job.replace("us-east-1", "eu-west-1")
    assert error_of(client.get_model_invocation_job, jobIdentifier=other_region)[0] == \
        "ResourceNotFoundException"


def test_stop_finished_job_is_a_validation_error(client: Any, done_job: str) -> None:
    code, message, status = error_of(client.stop_model_invocation_job, jobIdentifier=done_job)
    assert (code, status) == ("ValidationException", 400) and "Completed" in message


def test_stop_parked_job_then_stop_again(local_s3: Any, bucket: str) -> None:
    with start_service(local_s3, timing=PARKED) as svc:
        client = bedrock_client(svc)
        arn = create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/")
        assert client.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
        client.stop_model_invocation_job(jobIdentifier=job_id(arn))
        job = wait_for(client, arn, {"Stopped"}, timeout=5)
        assert job["message"] == "The job was stopped by a user" and "endTime" in job
        code, _, _ = error_of(client.stop_model_invocation_job, jobIdentifier=arn)
        assert code == "ValidationException"


def test_idempotent_create_returns_same_job(client: Any, bucket: str) -> None:
    params = create_params(bucket, clientRequestToken=unique("token"))
    first = client.create_model_invocation_job(**params)["jobArn"]
    second = client.create_model_invocation_job(**params)["jobArn"]
    assert first == second
    listed = client.list_model_invocation_jobs(nameContains=params["jobName"])["invocationJobSummaries"]
    assert [j["jobArn"] for j in listed] == [first]
    changed = dict(params, timeoutDurationInHours=48)
    code, message, status = error_of(client.create_model_invocation_job, **changed)
    assert (code, status) == ("ConflictException", 400) and first in message


def test_job_name_must_be_unique(client: Any, bucket: str) -> None:
    params = create_params(bucket)
    client.create_model_invocation_job(**params)
    code, message, _ = error_of(client.create_model_invocation_job, **dict(params, clientRequestToken="other1"))
    assert code == "ValidationException" and "is currently in use" in message


def test_concurrent_jobs_quota_per_model(local_s3: Any, bucket: str) -> None:
    from transforms.core.quotas import Quotas
    with start_service(local_s3, quotas=Quotas(max_concurrent_jobs=2, min_records_per_job=1),
                       timing=PARKED) as svc:
        client = bedrock_client(svc)
        arns = [create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/") for _ in range(2)]
        code, message, status = error_of(client.create_model_invocation_job, **create_params(bucket))
        assert (code, status) == ("ServiceQuotaExceededException", 400)
        assert "2 batch inference jobs per model" in message and MODEL in message
        create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/", modelId="amazon.nova-lite-v1:0")
        retry = create_params(bucket, clientRequestToken="retry1")
        client.stop_model_invocation_job(jobIdentifier=arns[0])
        wait_for(client, arns[0], {"Stopped"})
        assert ARN.match(client.create_model_invocation_job(**retry)["jobArn"])


def test_list_filters_sorting_and_pagination(local_s3: Any, bucket: str) -> None:
    with start_service(local_s3, timing=PARKED) as svc:
        client = bedrock_client(svc)
        arns = [create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/", name=f"nightly-{i}")
                for i in range(5)]
        create_job(client, f"s3://{bucket}/in/", f"s3://{bucket}/out/", name="adhoc-1")
        client.stop_model_invocation_job(jobIdentifier=arns[1])
        wait_for(client, arns[1], {"Stopped"})

        def names(**kw: Any) -> list[str]:
            return [j["jobName"] for j in client.list_model_invocation_jobs(**kw)["invocationJobSummaries"]]

        assert names(nameContains="nightly", sortBy="CreationTime", sortOrder="Ascending") == \
            [f"nightly-{i}" for i in range(5)]
        assert names()[0] == "adhoc-1"  # default order: newest first
        assert names(statusEquals="Stopped") == ["nightly-1"]
        assert set(names(statusEquals="Submitted")) == {"nightly-0", "nightly-2", "nightly-3",
                                                        "nightly-4", "adhoc-1"}
        third = client.get_model_invocation_job(jobIdentifier=arns[2])["submitTime"]
        assert set(names(submitTimeAfter=third)) == {"nightly-3", "nightly-4", "adhoc-1"}
        assert set(names(submitTimeBefore=third)) == {"nightly-0", "nightly-1"}
        pages = list(client.get_paginator("list_model_invocation_jobs").paginate(
            sortOrder="Ascending", PaginationConfig={"PageSize": 2}))
        assert [len(p["invocationJobSummaries"]) for p in pages] == [2, 2, 2]
        assert [j["jobName"] for p in pages for j in p["invocationJobSummaries"]] == \
            [f"nightly-{i}" for i in range(5)] + ["adhoc-1"]
        summary = pages[0]["invocationJobSummaries"][0]
        assert summary["jobArn"] == arns[0] and summary["roleArn"] == SERVICE_ROLE_ARN
        assert "inputDataConfig" in summary and "outputDataConfig" in summary


def test_unsigned_requests_are_denied(service: BedrockBatchService) -> None:
    client = bedrock_client(service, signature_version=botocore.UNSIGNED)
    code, message, status = error_of(client.list_model_invocation_jobs)
    assert (code, status, message) == ("MissingAuthenticationTokenException", 403,
                                       "Missing Authentication Token")


def test_unknown_route_is_an_error(service: BedrockBatchService) -> None:
    import urllib.error
    import urllib.request
    url = service.endpoint_url + "/custom-models"
    request = urllib.request.Request(url, headers=signed_headers(service.credentials, "GET", url))
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request)
    assert info.value.code == 404
    assert info.value.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert "CreateModelInvocationJob" in info.value.read().decode()

