"""Job records of the local Bedrock batch service: lifecycle, idempotency, concurrency quota, listing.

Pure state (no HTTP, no S3): the service calls it for API operations, the runner for progress.
Reported times are wall-clock UTC; phase durations and timeouts are divided by Timing.speed so a test
can run a job in milliseconds while every timestamp stays consistent with what it observes.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import random
import string
import threading
from dataclasses import dataclass, field
from typing import Any

from transforms.core.quotas import Quotas

from pipeline.local.validation import ApiError

ACCOUNT_ID = "123456789012"
DEFAULT_TIMEOUT_HOURS = 24
STOPPED_MESSAGE = "The job was stopped by a user"

# Submitted + in progress, as the "batch inference jobs per model" quota counts them.
ACTIVE = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
TRANSITIONS: dict[str, frozenset[str]] = {
    "Submitted": frozenset({"Validating", "Stopping", "Failed"}),
    "Validating": frozenset({"Scheduled", "Stopping", "Failed"}),
    "Scheduled": frozenset({"InProgress", "Stopping", "Expired", "Failed"}),
    "InProgress": frozenset({"Completed", "PartiallyCompleted", "Stopping", "Failed"}),
    "Stopping": frozenset({"Stopped", "Failed"}),
}


@dataclass(frozen=True)
class Timing:
    """Simulated phase durations in seconds; every one is divided by `speed` in real time."""

    submitted: float = 1.0
    validating: float = 2.0
    scheduled: float = 2.0
    per_record: float = 0.02
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"timing speed must be > 0, got {self.speed}")
        for name in ("submitted", "validating", "scheduled", "per_record"):
            if getattr(self, name) < 0:
                raise ValueError(f"timing {name} must be >= 0, got {getattr(self, name)}")

    def real(self, seconds: float) -> float:
        return seconds / self.speed


def utcnow() -> dt.datetime:
    """Now in UTC at the millisecond precision the API reports, so reported times filter exactly."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Job:
    seq: int
    job_id: str
    arn: str
    params: dict[str, Any]
    submit_time: dt.datetime
    expiration_time: dt.datetime
    status: str = "Submitted"
    message: str | None = None
    last_modified: dt.datetime | None = None
    end_time: dt.datetime | None = None
    total: int | None = None
    processed: int = 0
    success: int = 0
    errors: int = 0
    stop_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return self.params["jobName"]

    @property
    def model_id(self) -> str:
        return self.params["modelId"]

    @property
    def invocation_type(self) -> str:
        return self.params.get("modelInvocationType", "InvokeModel")

    def to_api(self) -> dict[str, Any]:
        """The job as GetModelInvocationJob / ModelInvocationJobSummary report it."""
        p = self.params
        out: dict[str, Any] = {
            "jobArn": self.arn, "jobName": p["jobName"], "modelId": p["modelId"],
            "clientRequestToken": p.get("clientRequestToken"), "roleArn": p["roleArn"],
            "status": self.status, "message": self.message, "submitTime": self.submit_time,
            "lastModifiedTime": self.last_modified, "endTime": self.end_time,
            "inputDataConfig": p["inputDataConfig"], "outputDataConfig": p["outputDataConfig"],
            "vpcConfig": p.get("vpcConfig"),
            "timeoutDurationInHours": p.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS),
            "jobExpirationTime": self.expiration_time, "modelInvocationType": self.invocation_type,
        }
        if self.total is not None:  # counts appear once validation has counted the records
            out.update(totalRecordCount=self.total, processedRecordCount=self.processed,
                       successRecordCount=self.success, errorRecordCount=self.errors)
        return {k: v for k, v in out.items() if v is not None}


class JobStore:
    """All jobs of one service instance; every method is thread-safe."""

    def __init__(self, quotas: Quotas, region: str = "us-east-1", timing: Timing | None = None,
                 seed: int = 0) -> None:
        self.quotas = quotas
        self.region = region
        self.timing = timing or Timing()
        self._ids = random.Random(f"{seed}:job-ids")
        self._lock = threading.RLock()
        self._jobs: dict[str, Job] = {}
        self._by_token: dict[str, Job] = {}
        self._by_name: dict[str, Job] = {}

    def create(self, params: dict[str, Any]) -> tuple[Job, bool]:
        """The job for a validated CreateModelInvocationJob request, and whether it is new."""
        token = params.get("clientRequestToken")
        with self._lock:
            if token and token in self._by_token:
                job = self._by_token[token]
                if _fingerprint(job.params) != _fingerprint(params):
                    raise ApiError("ConflictException",
                                   f"clientRequestToken {token!r} was already used for job {job.arn} with "
                                   f"different parameters; use a new token for a different job")
                return job, False
            if params["jobName"] in self._by_name:
                raise ApiError("ValidationException",
                               f"The provided job name {params['jobName']!r} is currently in use "
                               f"(by {self._by_name[params['jobName']].arn}); job names must be unique "
                               f"per account and region")
            active = sum(1 for j in self._jobs.values()
                         if j.model_id == params["modelId"] and j.status in ACTIVE)
            if active >= self.quotas.max_concurrent_jobs:
                raise ApiError("ServiceQuotaExceededException",
                               f"You have reached the quota of {self.quotas.max_concurrent_jobs} batch "
                               f"inference jobs per model (submitted + in progress) for "
                               f"{params['modelId']}; wait for a job to finish or stop one")
            now = utcnow()
            hours = params.get("timeoutDurationInHours", DEFAULT_TIMEOUT_HOURS)
            job_id = self._new_id()
            job = Job(seq=len(self._jobs), job_id=job_id, params=dict(params), submit_time=now,
                      last_modified=now,
                      arn=f"arn:aws:bedrock:{self.region}:{ACCOUNT_ID}:model-invocation-job/{job_id}",
                      expiration_time=now + dt.timedelta(seconds=self.timing.real(hours * 3600)))
            self._jobs[job_id] = job
            if token:
                self._by_token[token] = job
            self._by_name[job.name] = job
            return job, True

    def get(self, identifier: str) -> Job:
        """The job for a job id or job ARN."""
        job_id = identifier.rsplit("/", 1)[-1]
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (identifier != job_id and identifier != job.arn):
            raise ApiError("ResourceNotFoundException",
                           f"Could not find the batch inference job {identifier!r} in {self.region}")
        return job

    def jobs(self) -> list[Job]:
        """Every job created so far, in creation order."""
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.seq)

    def snapshot(self, job: Job) -> dict[str, Any]:
        with self._lock:
            return job.to_api()

    def transition(self, job: Job, status: str, message: str | None = None) -> bool:
        """Move a job along the lifecycle; False when a pending stop won and the job went Stopped.

        Raises on a transition the real service never makes.
        """
        wanted = status
        with self._lock:
            if job.status == "Stopping" and status not in ("Stopped", "Failed"):
                status, message = "Stopped", STOPPED_MESSAGE
            if status not in TRANSITIONS.get(job.status, frozenset()):
                raise RuntimeError(f"job {job.job_id}: illegal transition {job.status} -> {status}")
            job.status = status
            job.last_modified = utcnow()
            if message is not None:
                job.message = message
            if status in TERMINAL:
                job.end_time = job.last_modified
            return status == wanted

    def request_stop(self, identifier: str) -> Job:
        """StopModelInvocationJob: an active job goes Stopping; the runner finishes it as Stopped."""
        job = self.get(identifier)
        with self._lock:
            if job.status in TERMINAL:
                raise ApiError("ValidationException",
                               f"Job {job.arn} is in status {job.status} and can no longer be stopped")
            if job.status == "Stopping":
                raise ApiError("ConflictException", f"Job {job.arn} is already being stopped")
            self.transition(job, "Stopping")
            job.stop_requested.set()
        return job

    def set_total(self, job: Job, total: int) -> None:
        with self._lock:
            job.total = total

    def count_record(self, job: Job, ok: bool) -> None:
        with self._lock:
            job.processed += 1
            if ok:
                job.success += 1
            else:
                job.errors += 1

    def list_jobs(self, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """One page of ListModelInvocationJobs summaries and the next page's token."""
        after, before = params.get("submitTimeAfter"), params.get("submitTimeBefore")
        status, name = params.get("statusEquals"), params.get("nameContains")
        with self._lock:
            jobs = [j for j in self._jobs.values()
                    if (status is None or j.status == status)
                    and (name is None or name in j.name)
                    and (after is None or j.submit_time > after)
                    and (before is None or j.submit_time < before)]
            jobs.sort(key=lambda j: (j.submit_time, j.seq),
                      reverse=params.get("sortOrder", "Descending") == "Descending")
            start = _decode_token(params.get("nextToken"))
            size = params.get("maxResults", 1000)
            page = [j.to_api() for j in jobs[start:start + size]]
        more = start + size < len(jobs)
        return page, _encode_token(start + size) if more else None

    def _new_id(self) -> str:
        alphabet = string.ascii_lowercase + string.digits
        while True:
            job_id = "".join(self._ids.choice(alphabet) for _ in range(12))
            if job_id not in self._jobs:
                return job_id


def _fingerprint(params: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in params.items() if k != "clientRequestToken"},
                      sort_keys=True, default=str)


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _decode_token(token: str | None) -> int:
    if token is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError, binascii.Error):
        pass
    raise ApiError("ValidationException",
                   f"Invalid nextToken {token!r}; pass the nextToken of the previous response unchanged")
