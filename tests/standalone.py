"""A local backend started as `serve-local` runs it, reached with --backend aws and flags only.

Nothing in this process's environment points at it: the CLI gets its endpoints from
--s3_endpoint_url and --bedrock-endpoint-url, and its credentials and region from a named
profile in a config file (AWS_CONFIG_FILE is how a user's ~/.aws/config is found).
"""
from __future__ import annotations

from typing import Iterator

import pytest

from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from tests.conftest import FAST
from transforms.core.quotas import Quotas

PROFILE = "serve-local"


@pytest.fixture
def standalone_backend() -> Iterator[LocalBackend]:
    backend = LocalBackend(bucket=DEFAULT_BUCKET, timing=FAST,
                           quotas=Quotas(min_records_per_job=1)).start()
    yield backend
    backend.stop()


@pytest.fixture
def profile_file(tmp_path, monkeypatch, standalone_backend) -> str:
    """The profile a user would write from the key `serve-local` prints (new at every start)."""
    key = standalone_backend.credentials
    config = tmp_path / "aws-config"
    config.write_text(f"[profile {PROFILE}]\nregion = us-east-1\n"
                      f"aws_access_key_id = {key.access_key_id}\n"
                      f"aws_secret_access_key = {key.secret_access_key}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    return PROFILE


def aws_flags(backend: LocalBackend) -> list[str]:
    """`run --backend aws` flags that point every client at ``backend``."""
    bedrock = backend.bedrock_endpoint_url
    return ["--backend", "aws", "--aws-profile", PROFILE,
            "--s3_endpoint_url", backend.s3_endpoint_url,
            "--bedrock-endpoint-url", bedrock, "--bedrock-runtime-endpoint-url", bedrock,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--poll-interval-seconds", "1"]
