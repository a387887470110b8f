"""Fault injection for the local Bedrock batch service: what to break, decided reproducibly from a seed.

Each decision draws from its own RNG keyed by (seed, what, job sequence, record index), so the same
seed gives the same faults for the same jobs and records regardless of thread timing.
"""
from __future__ import annotations

import dataclasses
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

# Errors a batch record really gets from the model runtime, as (errorCode, errorMessage) in the output.
RECORD_ERRORS: tuple[tuple[int, str], ...] = (
    (500, "InternalServerException: The system encountered an unexpected error during processing. "
          "Try your request again."),
    (408, "ModelTimeoutException: The request took too long to process. Processing time exceeded the "
          "model timeout length."),
    (424, "ModelErrorException: The request failed due to an error while processing the model."),
    (503, "ServiceUnavailableException: The service isn't currently available. Try again later."),
)

THROTTLE_MESSAGE = "Too many requests, please wait before trying again."

# Server errors S3 really answers, as (HTTP status, S3 error code, message); botocore retries both.
S3_ERRORS: tuple[tuple[int, str, str], ...] = (
    (500, "InternalError", "We encountered an internal error. Please try again."),
    (503, "SlowDown", "Please reduce your request rate."),
)
S3_DENIED = (403, "AccessDenied", "Access Denied")
# Ways a job's delivered output can disagree with what it processed (see JobFaults.damage).
DAMAGES = ("torn_line", "missing_file", "manifest")


@dataclass(frozen=True)
class Faults:
    """Which faults a service instance injects; rates are fractions in [0, 1]."""

    seed: int = 0
    throttle_rate: float = 0.0        # API calls answered with ThrottlingException
    record_error_rate: float = 0.0    # records whose output line carries an error object
    partial_job_rate: float = 0.0     # jobs that end PartiallyCompleted with records left unprocessed
    partial_unprocessed: float = 0.5  # share of records such a job leaves out of its output
    expire_job_rate: float = 0.0      # jobs that time out while Scheduled (Expired)
    fail_job_rate: float = 0.0        # jobs that fail validation (Failed)
    slow_job_rate: float = 0.0        # jobs whose every phase takes slow_multiplier times longer
    slow_multiplier: float = 10.0
    stop_job_rate: float = 0.0        # jobs stopped halfway through their records (Stopped)
    torn_line_rate: float = 0.0       # jobs whose one output file ends in a line cut in half
    missing_output_rate: float = 0.0  # jobs that write no .out file for one input file
    manifest_mismatch_rate: float = 0.0  # jobs whose manifest counts one success too many
    s3_error_rate: float = 0.0        # S3 requests answered 500 InternalError or 503 SlowDown
    # "bucket/key" of objects whose every GET is answered 403 AccessDenied while HEAD and
    # listings work: one file storage will not serve however often it is asked (not a 5xx,
    # which Beam's S3 filesystem retries for minutes before its reader sees it).
    s3_denied_keys: tuple[str, ...] = ()
    lost_create_rate: float = 0.0     # creates that make the job but answer 500 (answer lost)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_rate", "_unprocessed")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {f.name} must be between 0 and 1, got {value}")
        damage = self.torn_line_rate + self.missing_output_rate + self.manifest_mismatch_rate
        if damage > 1.0:
            raise ValueError(f"fault torn_line_rate + missing_output_rate + "
                             f"manifest_mismatch_rate must be at most 1, got {damage}")
        if self.slow_multiplier < 1.0:
            raise ValueError(f"fault slow_multiplier must be >= 1, got {self.slow_multiplier}")


@dataclass(frozen=True)
class JobFaults:
    """The faults decided for one job. At most one of fail / expire / partial / stop applies,
    and at most one output damage (one of DAMAGES, or None)."""

    fail: bool = False
    expire: bool = False
    partial: bool = False
    slowdown: float = 1.0
    stop: bool = False
    damage: str | None = None


class FaultPlan:
    """Draws the decisions for a Faults config; one per service instance."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._throttle_rng = random.Random(f"{faults.seed}:throttle")
        self._s3_rng = random.Random(f"{faults.seed}:s3")
        self._create_rng = random.Random(f"{faults.seed}:lost-create")
        self._lock = threading.Lock()
        # How often each kind of fault was injected, so a test can tell that its fault happened.
        self.injected: Counter[str] = Counter()

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def throttle(self) -> bool:
        """Whether this API call is throttled (a sequence over calls in arrival order)."""
        if self.faults.throttle_rate <= 0:
            return False
        with self._lock:
            hit = self._throttle_rng.random() < self.faults.throttle_rate
            self.injected["throttle"] += hit
            return hit

    def s3_error(self, method: str, path: str) -> tuple[int, str, str] | None:
        """The error this S3 request gets, or None to serve it: AccessDenied for a GET of one of
        ``s3_denied_keys``, else a server error drawn at ``s3_error_rate`` (a sequence over
        requests in arrival order, like throttle).

        Args:
            method: The request's HTTP method.
            path: The request's path, ``/bucket/key`` (URL-encoded).
        """
        if method == "GET" and unquote(path.lstrip("/")) in self.faults.s3_denied_keys:
            self.count("s3_denied")
            return S3_DENIED
        if self.faults.s3_error_rate <= 0:
            return None
        with self._lock:
            if self._s3_rng.random() >= self.faults.s3_error_rate:
                return None
            self.injected["s3_error"] += 1
            return self._s3_rng.choice(S3_ERRORS)

    def lose_create_answer(self) -> bool:
        """Whether the answer to a create that made a new job is lost (a sequence over such
        creates in arrival order): the client sees a 500 and retries with the same token."""
        if self.faults.lost_create_rate <= 0:
            return False
        with self._lock:
            hit = self._create_rng.random() < self.faults.lost_create_rate
            self.injected["lost_create"] += hit
            return hit

    def for_job(self, seq: int) -> JobFaults:
        f = self.faults
        rng = random.Random(f"{f.seed}:job:{seq}")
        # Drawn in a fixed order, newer kinds last, so a seed keeps the faults it gave before.
        fail, expire, partial, slow, stop, damage = (rng.random() for _ in range(6))
        ends_early = fail < f.fail_job_rate or expire < f.expire_job_rate
        partial_job = not ends_early and partial < f.partial_job_rate
        damages = (f.torn_line_rate, f.missing_output_rate, f.manifest_mismatch_rate)
        chosen, bound = None, 0.0
        for kind, rate in zip(DAMAGES, damages):  # disjoint slices of [0, 1)
            if bound <= damage < bound + rate:
                chosen = kind
            bound += rate
        return JobFaults(
            fail=fail < f.fail_job_rate,
            expire=fail >= f.fail_job_rate and expire < f.expire_job_rate,
            partial=partial_job,
            slowdown=f.slow_multiplier if slow < f.slow_job_rate else 1.0,
            stop=not ends_early and not partial_job and stop < f.stop_job_rate,
            damage=chosen,
        )

    def record_error(self, seq: int, index: int) -> dict[str, Any] | None:
        """The injected error object for record `index` of job `seq`, or None to let it succeed."""
        if self.faults.record_error_rate <= 0:
            return None
        rng = random.Random(f"{self.faults.seed}:record:{seq}:{index}")
        if rng.random() >= self.faults.record_error_rate:
            return None
        code, message = rng.choice(RECORD_ERRORS)
        self.count("record_error")
        return {"errorCode": code, "errorMessage": message}

    def unprocessed_from(self, total: int) -> int:
        """Index of the first record a partially completed job leaves unprocessed (at least one)."""
        kept = int(total * (1.0 - self.faults.partial_unprocessed))
        return max(0, min(kept, total - 1))
