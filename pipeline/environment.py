"""Where the pipeline's AWS clients point: the embedded local backend or real AWS."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

from pipeline.options import BedrockBatchOptions
from transforms.aws import AwsConfig
from transforms.quotas import Quotas

LOCAL_BUCKET_URI = "s3://bedrock-batch-local/runs"


@dataclass(frozen=True)
class Environment:
    aws: AwsConfig
    quotas: Quotas
    default_bucket_uri: str | None = None
    default_role_arn: str | None = None
    default_poll_interval: int = 60


def check_runner(options: PipelineOptions) -> None:
    """Refuse runner settings that would silently lose work (DESIGN.md section 7)."""
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    mode = options.view_as(DirectOptions).direct_running_mode
    if runner.endswith("DirectRunner") and mode == "multi_processing":
        raise ValueError("--direct_running_mode multi_processing silently drops the deferred work "
                         "that waits for Bedrock jobs; use in_memory (default) or multi_threading")


@contextlib.contextmanager
def environment(opts: BedrockBatchOptions, quotas: Quotas) -> Iterator[Environment]:
    """Start the local backend when asked (and point this process's AWS clients at it).

    The local service enforces the same quotas the pipeline plans with: it stands in for an
    account whose quotas are the ones configured.
    """
    if opts.backend == "aws":
        yield Environment(AwsConfig(region=opts.aws_region, profile=opts.aws_profile,
                                    bedrock_endpoint_url=opts.bedrock_endpoint_url,
                                    bedrock_runtime_endpoint_url=opts.bedrock_runtime_endpoint_url),
                          quotas)
        return
    from pipeline.local.backend import (DEFAULT_BUCKET, FOREIGN_CREDENTIAL_VARS, SERVICE_ROLE_ARN,
                                        LocalBackend)
    from pipeline.local.jobs_store import Timing

    with LocalBackend(quotas=quotas, bucket=DEFAULT_BUCKET,
                      timing=Timing(speed=opts.local_speed)) as backend:
        saved = dict(os.environ)
        # Beam's own S3 filesystem (reading s3:// inputs) picks these up through boto3.
        os.environ.update(backend.env())
        for name in FOREIGN_CREDENTIAL_VARS:  # the local endpoints reject a foreign session token
            os.environ.pop(name, None)
        try:
            yield Environment(AwsConfig(region=backend.region,
                                        s3_endpoint_url=backend.s3_endpoint_url,
                                        bedrock_endpoint_url=backend.bedrock_endpoint_url,
                                        bedrock_runtime_endpoint_url=backend.bedrock_endpoint_url,
                                        access_key_id=backend.credentials.access_key_id,
                                        secret_access_key=backend.credentials.secret_access_key),
                              quotas, LOCAL_BUCKET_URI, SERVICE_ROLE_ARN,
                              default_poll_interval=1)  # local jobs take seconds, not hours
        finally:
            os.environ.clear()
            os.environ.update(saved)
