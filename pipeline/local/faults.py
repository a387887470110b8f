"""Fault injection for the local Bedrock batch service: what to break, decided reproducibly from a seed.

Each decision draws from its own RNG keyed by (seed, what, job sequence, record index), so the same
seed gives the same faults for the same jobs and records regardless of thread timing.
"""
from __future__ import annotations

import dataclasses
import random
import threading
from dataclasses import dataclass
from typing import Any

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

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith(("_rate", "_unprocessed")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"fault {f.name} must be between 0 and 1, got {value}")
        if self.slow_multiplier < 1.0:
            raise ValueError(f"fault slow_multiplier must be >= 1, got {self.slow_multiplier}")


@dataclass(frozen=True)
class JobFaults:
    """The faults decided for one job. At most one of fail / expire / partial applies."""

    fail: bool = False
    expire: bool = False
    partial: bool = False
    slowdown: float = 1.0


class FaultPlan:
    """Draws the decisions for a Faults config; one per service instance."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._throttle_rng = random.Random(f"{faults.seed}:throttle")
        self._lock = threading.Lock()

    def throttle(self) -> bool:
        """Whether this API call is throttled (a sequence over calls in arrival order)."""
        if self.faults.throttle_rate <= 0:
            return False
        with self._lock:
            return self._throttle_rng.random() < self.faults.throttle_rate

    def for_job(self, seq: int) -> JobFaults:
        f = self.faults
        rng = random.Random(f"{f.seed}:job:{seq}")
        fail, expire, partial, slow = (rng.random() for _ in range(4))
        return JobFaults(
            fail=fail < f.fail_job_rate,
            expire=fail >= f.fail_job_rate and expire < f.expire_job_rate,
            partial=fail >= f.fail_job_rate and expire >= f.expire_job_rate and partial < f.partial_job_rate,
            slowdown=f.slow_multiplier if slow < f.slow_job_rate else 1.0,
        )

    def record_error(self, seq: int, index: int) -> dict[str, Any] | None:
        """The injected error object for record `index` of job `seq`, or None to let it succeed."""
        if self.faults.record_error_rate <= 0:
            return None
        rng = random.Random(f"{self.faults.seed}:record:{seq}:{index}")
        if rng.random() >= self.faults.record_error_rate:
            return None
        code, message = rng.choice(RECORD_ERRORS)
        return {"errorCode": code, "errorMessage": message}

    def unprocessed_from(self, total: int) -> int:
        """Index of the first record a partially completed job leaves unprocessed (at least one)."""
        kept = int(total * (1.0 - self.faults.partial_unprocessed))
        return max(0, min(kept, total - 1))
