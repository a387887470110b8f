"""Bedrock batch job lifecycle: deterministic names, idempotent create, poll, stop, reconcile.

No Beam here. ``JobsClient`` wraps a boto3 ``bedrock`` client (standard credential chain,
``endpoint_url`` for the local backend); ``plan_submissions`` is the pure scheduling decision the
await transform makes on every poll.
"""
from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from transforms.core.errors import ConfigError
from transforms.core.model import JobSpec

log = logging.getLogger(__name__)

IN_FLIGHT = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
# Terminal states whose output files hold (some) results worth harvesting.
HARVESTABLE = frozenset({"Completed", "PartiallyCompleted", "Stopped", "Expired"})

_RUN_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,22}[a-z0-9])?")
JOB_NAME_MAX = 63
NAME_PREFIX = "bb"


def validate_run_id(run_id: str) -> str:
    """``run_id`` itself, or a ConfigError when it cannot be part of job names.

    Args:
        run_id: 1-24 lowercase letters, digits or dashes.
    """
    if not _RUN_ID.fullmatch(run_id or ""):
        raise ConfigError(f"run_id {run_id!r} is invalid: use 1-24 lowercase letters, digits or "
                          f"dashes (it becomes part of Bedrock job names)", "run_id")
    return run_id


def run_prefix(run_id: str) -> str:
    """The nameContains filter that finds every job of a run.

    Args:
        run_id: The run id.
    """
    return f"{NAME_PREFIX}-{validate_run_id(run_id)}-"


def job_name(run_id: str, window_key: str, attempt: int, shard_index: int,
             generation: int = 0) -> str:
    """Deterministic job name: the same (run, window, attempt, shard, generation) always maps to
    one job. A rerun whose input holds records no existing job has gives them a new generation.

    Args:
        run_id: The run id.
        window_key: The window's key (``transforms.core.layout``).
        attempt: The round, from 1.
        shard_index: The job's index within the window and round.
        generation: 0, or the rerun generation for records no existing job has.
    """
    suffix = f"g{generation}-" if generation else ""
    name = f"{run_prefix(run_id)}{window_key}-a{attempt}-{suffix}{shard_index:04d}"
    if len(name) > JOB_NAME_MAX:  # keep the run prefix (reconcile filters on it), hash the rest
        digest = hashlib.sha256(name.encode()).hexdigest()
        name = f"{run_prefix(run_id)}{digest}"[:JOB_NAME_MAX]
    return name


def client_token(name: str) -> str:
    """clientRequestToken for a job name; the token pattern allows no dots, so derive from a hash.

    Args:
        name: The job name.
    """
    return "t" + hashlib.sha256(name.encode()).hexdigest()[:40]


def job_id_from_arn(arn: str) -> str:
    """The job id: the last part of a job ARN.

    Args:
        arn: The job ARN.
    """
    return arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class JobConfig:
    """Everything CreateModelInvocationJob needs besides the per-job spec.

    Args:
        role_arn: The service role Bedrock assumes for the jobs.
        model_invocation_type: ``InvokeModel`` or ``Converse``: the request shape of each record.
        timeout_hours: The job timeout (24 to 168); None keeps Bedrock's default.
        kms_key_id: The KMS key for the job output, or None.
        vpc_subnet_ids: Subnets for a VPC job; set with ``vpc_security_group_ids``.
        vpc_security_group_ids: Security groups for a VPC job; set with ``vpc_subnet_ids``.
        tags: Tags put on every job.
    """

    role_arn: str
    model_invocation_type: str = "InvokeModel"
    timeout_hours: int | None = None
    kms_key_id: str | None = None
    vpc_subnet_ids: tuple[str, ...] = ()
    vpc_security_group_ids: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.timeout_hours is not None and not 24 <= self.timeout_hours <= 168:
            raise ConfigError(f"timeout_hours {self.timeout_hours} is out of range: "
                              f"Bedrock accepts 24 to 168", "timeout_hours")
        if self.model_invocation_type not in ("InvokeModel", "Converse"):
            raise ConfigError(f"model_invocation_type {self.model_invocation_type!r}: "
                              f"use InvokeModel or Converse", "model_invocation_type")
        if bool(self.vpc_subnet_ids) != bool(self.vpc_security_group_ids):
            raise ConfigError("vpc_subnet_ids and vpc_security_group_ids go together: set both",
                              "vpc_subnet_ids", "vpc_security_group_ids")


@dataclass(frozen=True)
class JobStatus:
    """A job as GetModelInvocationJob / ListModelInvocationJobs describe it.

    Args:
        arn: The job ARN.
        name: The job name.
        status: Bedrock's status, e.g. ``InProgress`` or ``Completed``.
        model_id: The job's model.
        message: Bedrock's status message, if any.
        output_s3_uri: The output location the job was created with.
        total: Records in the job, when Bedrock reports it.
        processed: Records processed so far.
        succeeded: Records answered.
        errored: Records that ended in an error.
    """

    arn: str
    name: str
    status: str
    model_id: str
    message: str | None = None
    output_s3_uri: str | None = None
    total: int | None = None
    processed: int | None = None
    succeeded: int | None = None
    errored: int | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def job_output_uri(self) -> str | None:
        """Where Bedrock writes this job's files: <output uri>/<job id>/."""
        if not self.output_s3_uri:
            return None
        return f"{self.output_s3_uri.rstrip('/')}/{job_id_from_arn(self.arn)}/"

    @classmethod
    def from_response(cls, job: Mapping[str, Any]) -> "JobStatus":
        out = job.get("outputDataConfig", {}).get("s3OutputDataConfig", {})
        return cls(arn=job["jobArn"], name=job["jobName"], status=job["status"],
                   model_id=job["modelId"], message=job.get("message"),
                   output_s3_uri=out.get("s3Uri"), total=job.get("totalRecordCount"),
                   processed=job.get("processedRecordCount"),
                   succeeded=job.get("successRecordCount"), errored=job.get("errorRecordCount"))

    def progress(self) -> str:
        """One log line: name, id, status and records processed of total."""
        counts = f"{self.processed}/{self.total} records" if self.total is not None else "counts n/a"
        return f"{self.name} ({job_id_from_arn(self.arn)}): {self.status}, {counts}"


# Create errors that mean "no slot now": wait for the next poll.
BACKOFF_CODES = frozenset({"ServiceQuotaExceededException", "ThrottlingException",
                           "TooManyRequestsException"})
# Create errors of the service itself (5xx): the same request may succeed at the next poll.
TRANSIENT_CODES = frozenset({"InternalServerException", "ServiceUnavailableException"})


def create_error_kind(code: str | None, http_status: int | None) -> str:
    """How to treat a CreateModelInvocationJob error: "backoff" (quota or throttling: wait for a
    slot), "transient" (a server error: try again at the next poll) or "permanent" (the request
    itself is refused, such as ValidationException, AccessDeniedException or
    ResourceNotFoundException: sending it again would fail the same way).

    Args:
        code: The error code of the refused call.
        http_status: Its HTTP status, when known.
    """
    if code in BACKOFF_CODES or http_status == 429:
        return "backoff"
    if code in TRANSIENT_CODES or (http_status is not None and http_status >= 500):
        return "transient"
    return "permanent"


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a botocore ClientError, or None for other exceptions.

    Args:
        exc: The exception raised by a boto3 call.
    """
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def error_code(exc: BaseException) -> str | None:
    """The error code of a botocore ClientError, or None for other exceptions.

    Args:
        exc: The exception raised by a boto3 call.
    """
    response = getattr(exc, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


class JobsClient:
    """Bedrock batch job operations over a boto3 ``bedrock`` client.

    Args:
        bedrock: A boto3 ``bedrock`` client.
        config: The settings every job shares.
    """

    def __init__(self, bedrock: Any, config: JobConfig):
        self._bedrock = bedrock
        self._config = config

    def create_request(self, spec: JobSpec) -> dict[str, Any]:
        """The CreateModelInvocationJob request for ``spec``.

        Args:
            spec: The job to create.
        """
        c = self._config
        request: dict[str, Any] = {
            "jobName": spec.job_name,
            "clientRequestToken": spec.client_request_token,
            "roleArn": c.role_arn,
            "modelId": spec.model_id,
            "modelInvocationType": c.model_invocation_type,
            "inputDataConfig": {"s3InputDataConfig": {"s3Uri": spec.input_s3_uri,
                                                      "s3InputFormat": "JSONL"}},
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": spec.output_s3_uri}},
        }
        if c.kms_key_id:
            request["outputDataConfig"]["s3OutputDataConfig"]["s3EncryptionKeyId"] = c.kms_key_id
        if c.timeout_hours is not None:
            request["timeoutDurationInHours"] = c.timeout_hours
        if c.vpc_subnet_ids:
            request["vpcConfig"] = {"subnetIds": list(c.vpc_subnet_ids),
                                    "securityGroupIds": list(c.vpc_security_group_ids)}
        if c.tags:
            request["tags"] = [{"key": k, "value": v} for k, v in sorted(c.tags.items())]
        return request

    def create(self, spec: JobSpec) -> str:
        """Create the job, or return the ARN of the one this spec already created.

        The clientRequestToken makes a retried call idempotent on the service side; a name
        conflict (the job exists from an earlier, crashed run) resolves to the existing job.

        Args:
            spec: The job to create.
        """
        try:
            return self._bedrock.create_model_invocation_job(**self.create_request(spec))["jobArn"]
        except Exception as exc:  # botocore ClientError; imported lazily by boto3 users
            if error_code(exc) != "ConflictException":
                raise
            existing = self.find(spec.job_name)
            if existing is None:
                raise
            return existing.arn

    def get(self, arn: str) -> JobStatus:
        """The job's status now.

        Args:
            arn: The job ARN.
        """
        return JobStatus.from_response(self._bedrock.get_model_invocation_job(jobIdentifier=arn))

    def list(self, name_contains: str | None = None, status: str | None = None) -> Iterator[JobStatus]:
        """Every job (all pages), oldest first.

        Args:
            name_contains: Only jobs whose name contains this.
            status: Only jobs in this status.
        """
        kwargs: dict[str, Any] = {"sortBy": "CreationTime", "sortOrder": "Ascending"}
        if name_contains:
            kwargs["nameContains"] = name_contains
        if status:
            kwargs["statusEquals"] = status
        for page in self._bedrock.get_paginator("list_model_invocation_jobs").paginate(**kwargs):
            for job in page.get("invocationJobSummaries", []):
                yield JobStatus.from_response(job)

    def find(self, name: str) -> JobStatus | None:
        """The job named ``name``, or None.

        Args:
            name: The exact job name.
        """
        return next((j for j in self.list(name_contains=name) if j.name == name), None)

    def reconcile(self, names: Iterable[str], prefix: str) -> dict[str, JobStatus]:
        """Jobs that already exist under ``prefix`` (one List call), by name.

        Args:
            names: The job names wanted.
            prefix: A name prefix they share (``run_prefix``).
        """
        wanted = set(names)
        return {j.name: j for j in self.list(name_contains=prefix) if j.name in wanted}

    def in_flight(self, model_id: str) -> int:
        """Jobs of this model counting against the concurrent-jobs quota, from any client.

        Args:
            model_id: The model.
        """
        return sum(1 for status in sorted(IN_FLIGHT) for j in self.list(status=status)
                   if j.model_id == model_id)

    def stop(self, arn: str) -> None:
        """Ask Bedrock to stop the job.

        Args:
            arn: The job ARN.
        """
        self._bedrock.stop_model_invocation_job(jobIdentifier=arn)

    def stop_run(self, run_id: str) -> list[str]:
        """Ask Bedrock to stop every job of run ``run_id`` that has not ended; their names.

        A rerun with the same run id adopts stopped jobs as any ended one: it harvests what they
        answered and sends the rest again.

        Args:
            run_id: The run id.
        """
        prefix = run_prefix(run_id)
        stopped = []
        for job in self.list(name_contains=prefix):
            if job.name.startswith(prefix) and not job.terminal and job.status != "Stopping":
                self.stop(job.arn)
                stopped.append(job.name)
        return stopped


def plan_submissions(pending: Sequence[int], sizes: Sequence[int], in_flight: int,
                     max_concurrent: int) -> list[int]:
    """Which of the not-yet-created jobs may be submitted now: the largest first.

    A job runs longer the more input it has, and the longest ones started first leave no long
    job running alone at the end once the queue is empty (longest-processing-time-first). Jobs
    of the same size go in queue order.

    Args:
        pending: Indexes of the jobs not created yet, in queue order.
        sizes: Every job's input bytes, by index.
        in_flight: Jobs of the model counting against the quota now.
        max_concurrent: The concurrent-jobs quota.
    """
    free = max(0, max_concurrent - in_flight)
    return sorted(pending, key=lambda index: -sizes[index])[:free]
