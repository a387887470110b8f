"""Bedrock batch inference quotas and the named profiles that set them.

Shared by the planner (to shape shards) and the local backend (to enforce them like AWS does).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from transforms.core.errors import ConfigError

MB = 1000 * 1000
GB = 1000 * MB


@dataclass(frozen=True)
class Quotas:
    """Bedrock batch inference quotas: what the planner shapes shards by and the local backend
    enforces.

    Args:
        max_concurrent_jobs: Batch jobs of one model in progress at once.
        max_records_per_file: Records in one input file.
        max_records_per_job: Records in one job.
        min_records_per_job: The fewest records a job may have.
        max_file_bytes: Bytes of one input file.
        max_job_bytes: Bytes of all of a job's input files.
    """

    max_concurrent_jobs: int = 10
    max_records_per_file: int = 50_000
    max_records_per_job: int = 50_000
    min_records_per_job: int = 100
    max_file_bytes: int = 1 * GB
    max_job_bytes: int = 5 * GB

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 1:
                raise ConfigError(f"quota {f.name} must be >= 1, got {getattr(self, f.name)}",
                                  f.name)
        if self.min_records_per_job > self.max_records_per_job:
            raise ConfigError(
                f"min_records_per_job ({self.min_records_per_job}) exceeds max_records_per_job "
                f"({self.max_records_per_job}); lower min_records_per_job",
                "min_records_per_job", "max_records_per_job")

    def override(self, **values: Any) -> "Quotas":
        """These quotas with the given non-None values replaced (explicit flags win over a profile).

        Args:
            **values: Quota field -> value; None keeps the current value.
        """
        return dataclasses.replace(self, **{k: v for k, v in values.items() if v is not None})


PROFILES: Mapping[str, Quotas] = {
    # The figures of the original article the project started from.
    "article": Quotas(max_concurrent_jobs=3, max_records_per_file=50_000, max_records_per_job=50_000,
                      min_records_per_job=1_000, max_file_bytes=200 * MB, max_job_bytes=1 * GB),
    "aws-default": Quotas(),
}

# Service Quotas names (ServiceCode "bedrock") for each field; matched case-insensitively by prefix
# because AWS appends the model name to several of them.
SERVICE_QUOTA_NAMES: Mapping[str, str] = {
    "max_records_per_file": "records per input file per batch inference job",
    "max_records_per_job": "records per batch inference job",
    "min_records_per_job": "minimum number of records per batch inference job",
    "max_file_bytes": "batch inference input file size",
    "max_job_bytes": "batch inference job size",
    "max_concurrent_jobs": "batch inference jobs per model",
}


def profile(name: str) -> Quotas:
    """The quotas of a named profile (``PROFILES``); a ValueError names the known ones.

    Args:
        name: The profile name, e.g. ``aws-default``.
    """
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown quota profile {name!r}; use one of {sorted(PROFILES)} "
                         f"or 'service-quotas'") from None
