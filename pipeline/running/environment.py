"""Where the pipeline's AWS clients point: the embedded local backend or real AWS."""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Iterator

from apache_beam.options.pipeline_options import (DebugOptions, DirectOptions,
                                                  FlinkRunnerOptions, GoogleCloudOptions,
                                                  PipelineOptions, PortableOptions,
                                                  PrismRunnerOptions, S3Options, StandardOptions)

from pipeline import runners
from pipeline.exit_codes import UsageError
from pipeline.options import BedrockBatchOptions
from pipeline.running.flink_rest import rest_base
from transforms.core.aws import AwsConfig, beam_s3_options
from transforms.core.quotas import Quotas

LOCAL_BUCKET_URI = "s3://bedrock-batch-local/runs"


@dataclass(frozen=True)
class Environment:
    aws: AwsConfig
    quotas: Quotas
    default_bucket_uri: str | None = None
    default_role_arn: str | None = None
    default_poll_interval: int = 60


def aws_from_flags(opts: BedrockBatchOptions, options: PipelineOptions) -> AwsConfig:
    """Real AWS (or a running serve-local): region, profile, endpoints from the flags; the S3
    endpoint is Beam's own --s3_endpoint_url, so one flag points both at the same S3."""
    if opts.aws_profile:
        import boto3
        from botocore.exceptions import ProfileNotFound

        try:
            boto3.session.Session(profile_name=opts.aws_profile)
        except ProfileNotFound:
            raise UsageError(f"--aws-profile {opts.aws_profile} is not in the AWS config files "
                             f"(~/.aws/config, ~/.aws/credentials); name a profile they "
                             f"define") from None
    return AwsConfig(region=opts.aws_region, profile=opts.aws_profile,
                     s3_endpoint_url=options.view_as(S3Options).s3_endpoint_url,
                     bedrock_endpoint_url=opts.bedrock_endpoint_url,
                     bedrock_runtime_endpoint_url=opts.bedrock_runtime_endpoint_url)


@contextlib.contextmanager
def beam_s3(options: PipelineOptions, aws: AwsConfig) -> Iterator[None]:
    """Point Beam's S3 filesystem (s3:// input and output) where ``aws`` points the clients.

    Endpoint, region and the local backend's keys go into ``S3Options``, which travel with the
    pipeline to every worker. Beam's boto3 session takes no profile name, so --aws-profile
    reaches it through AWS_PROFILE, set for this process while the block runs; workers in other
    processes (Flink) use their own credential chain, as the README says.
    """
    s3 = options.view_as(S3Options)
    for name, value in beam_s3_options(aws).items():
        setattr(s3, name, value)
    if not aws.profile:
        yield
        return
    saved = os.environ.get("AWS_PROFILE")
    os.environ["AWS_PROFILE"] = aws.profile
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("AWS_PROFILE", None)
        else:
            os.environ["AWS_PROFILE"] = saved


def choose_runner(options: PipelineOptions) -> str:
    """Fill in the local runner when --runner is not given (``runners.default_runner``), and
    point Prism at the binary `make prism` built unless --prism_location names one. Returns the
    runner.

    Without that binary Beam downloads Prism from GitHub (and caches it); that happens here, so
    a machine that can neither build nor download Prism gets one line instead of a traceback.
    """
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        opts = options.view_as(BedrockBatchOptions)
        streaming = bool(standard.streaming)
        standard.runner = runners.default_runner(streaming, bool(runners.why_not_prism(
            streaming, streaming or bool(opts.window_seconds), opts.watch_seconds, opts.undersized_policy,
            opts.sink)))
    runner = str(standard.runner)
    if runners.is_flink(runner) and rest_base(options.view_as(FlinkRunnerOptions).flink_master):
        # Named, so the run can cancel its job on the cluster (pipeline.running.flink_rest).
        cloud = options.view_as(GoogleCloudOptions)
        cloud.job_name = cloud.job_name or f"bedrock-batch-{uuid.uuid4().hex[:12]}"
    if runners.is_prism(runner):
        portable = options.view_as(PortableOptions)
        portable.job_server_timeout = runners.prism_job_server_timeout(
            portable.job_server_timeout)
    prism = options.view_as(PrismRunnerOptions)
    if prism.prism_location or not (runners.is_prism(runner) or runners.is_fnapi(runner)):
        return runner
    from apache_beam.version import __version__
    version = (prism.prism_beam_version_override or __version__).removeprefix("v")
    binary = runners.prism_binary(version)
    if binary is not None:
        prism.prism_location = str(binary)
    elif runners.is_prism(runner):
        prism.prism_location = _download_prism(options, version)
    # Beam keeps one Prism job server per process, made with the options of the first pipeline
    # that asked for it: in a process that ran another pipeline first (a notebook, a test), that
    # one may lack --prism_location and then fails every later Prism run. This run's own server
    # is stopped when the process exits, as the shared one is.
    options.view_as(DebugOptions).add_experiment("disable_prism_server_singleton")
    return runner


def _download_prism(options: PipelineOptions, version: str) -> str:
    """Beam's own Prism download (cached in the home folder), as a local path."""
    from apache_beam.runners.portability.prism_runner import PrismJobServer

    try:
        return PrismJobServer(options)._get_executable_path()
    except Exception as exc:  # noqa: BLE001 - any failure means the same: no Prism here
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"the {runners.PRISM} (Prism {version}) is not here and could not be "
                         f"downloaded ({reason}); build it with `make prism` in the project's "
                         f"folder, or pass --prism_location PATH") from None


def check_runner(options: PipelineOptions) -> None:
    """Refuse runner settings that would silently lose work."""
    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    mode = options.view_as(DirectOptions).direct_running_mode
    if runners.is_fnapi(runner) and mode == "multi_processing":
        raise ValueError("--direct_running_mode multi_processing silently drops the deferred work "
                         "that waits for Bedrock jobs; use in_memory (default) or multi_threading")


@contextlib.contextmanager
def environment(options: PipelineOptions, quotas: Quotas) -> Iterator[Environment]:
    """Start the local backend when asked; the Environment's AwsConfig points at it.

    The local service enforces the same quotas the pipeline plans with: it stands in for an
    account whose quotas are the ones configured.
    """
    opts = options.view_as(BedrockBatchOptions)
    if opts.backend == "aws":
        yield Environment(aws_from_flags(opts, options), quotas)
        return
    from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
    from pipeline.local.jobs_store import Timing

    with LocalBackend(quotas=quotas, bucket=DEFAULT_BUCKET,
                      timing=Timing(speed=opts.local_speed)) as backend:
        yield Environment(backend.aws_config(), quotas, LOCAL_BUCKET_URI, SERVICE_ROLE_ARN,
                          default_poll_interval=1)  # local jobs take seconds, not hours
