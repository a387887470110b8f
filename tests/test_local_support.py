"""Shared helpers for the local Bedrock batch backend tests (no tests of its own).

Every test talks to the service through unmodified boto3 over HTTP; S3 is a real moto server.
"""
from __future__ import annotations

import itertools
import json
import time
from typing import Any, Iterator

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from pipeline.local.backend import SERVICE_ROLE_ARN
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import TERMINAL, Timing
from pipeline.local.s3 import LocalS3
from pipeline.local.service import BedrockBatchService
from pipeline.local.sigv4 import LocalCredentials
from transforms.core.quotas import Quotas

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
REGION = "us-east-1"
FAST = Timing(speed=1000)  # every phase in about a millisecond
LOOSE = Quotas(min_records_per_job=1)
_names = itertools.count()

TEXT = ("Customer called because the order arrived late. The agent apologized for the delay. "
        "The agent offered a refund of the shipping fee. The customer accepted the refund.")


def unique(prefix: str) -> str:
    """A name no other test in this process uses (moto's S3 state is process-wide)."""
    return f"{prefix}-{next(_names)}-{time.monotonic_ns() % 100_000}"


def claude_input(text: str = TEXT) -> dict[str, Any]:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 200,
            "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}


def record_lines(n: int, start: int = 0, text: str = TEXT) -> list[str]:
    return [json.dumps({"recordId": f"REC{i:07d}", "modelInput": claude_input(text)})
            for i in range(start, start + n)]


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    with LocalS3() as s3:
        yield s3


@pytest.fixture(scope="session")
def s3_client(local_s3: LocalS3) -> Any:
    return boto3.client("s3", endpoint_url=local_s3.endpoint_url, region_name=REGION,
                        **local_s3.credentials.boto3_kwargs())


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = unique("bkt")
    s3_client.create_bucket(Bucket=name)
    return name


def start_service(local_s3: LocalS3, quotas: Quotas = LOOSE, faults: Faults | None = None,
                  timing: Timing = FAST) -> BedrockBatchService:
    return BedrockBatchService(local_s3.endpoint_url, quotas, faults=faults, timing=timing,
                               credentials=local_s3.credentials).start()


def bedrock_client(service: BedrockBatchService, **config: Any) -> Any:
    return boto3.client("bedrock", endpoint_url=service.endpoint_url, region_name=REGION,
                        config=Config(**config) if config else None,
                        **service.credentials.boto3_kwargs())

@pytest.fixture(scope="module")
def service(local_s3: Any) -> Iterator[BedrockBatchService]:
    svc = start_service(local_s3)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(service: BedrockBatchService) -> Any:
    return bedrock_client(service)


def signed_headers(credentials: LocalCredentials, method: str, url: str, body: bytes = b"",
                   headers: dict[str, str] | None = None, service: str = "bedrock",
                   region: str = REGION) -> dict[str, str]:
    """The headers botocore's own SigV4 signer adds, for raw HTTP requests in tests."""
    request = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(
        Credentials(credentials.access_key_id, credentials.secret_access_key), service, region)
    signer.add_auth(request)
    return dict(request.headers.items())


def put_lines(s3: Any, bucket: str, key: str, lines: list[str]) -> str:
    s3.put_object(Bucket=bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
    return f"s3://{bucket}/{key}"


def create_job(client: Any, input_uri: str, output_uri: str, name: str | None = None,
               **extra: Any) -> str:
    return client.create_model_invocation_job(
        jobName=name or unique("job"), roleArn=SERVICE_ROLE_ARN, modelId=extra.pop("modelId", MODEL),
        inputDataConfig={"s3InputDataConfig": {"s3Uri": input_uri, "s3InputFormat": "JSONL"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": output_uri}}, **extra)["jobArn"]


def wait_for(client: Any, arn: str, statuses: frozenset[str] | set[str] = TERMINAL,
             timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_model_invocation_job(jobIdentifier=arn)
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {arn} still {job['status']} after {timeout}s")
        time.sleep(0.01)


def read_output(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """{file name: parsed lines or manifest dict} under <prefix>/."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    out: dict[str, Any] = {}
    for obj in listing:
        text = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read().decode()
        name = obj["Key"][len(prefix):]
        out[name] = json.loads(text) if name == "manifest.json.out" else [
            json.loads(line) for line in text.splitlines()]
    return out


def job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]
