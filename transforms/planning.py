"""Shard/job planner (DESIGN.md sections 3 and 4): pure, no Beam.

The planner decides from counts and sizes only (``WindowStats``), so a window's records never
need to be held in memory: ``ShardAssigner`` then places records one by one, in stream order.

Byte quotas are met by construction. Knowing only the count, total, largest and smallest record
size, the heaviest set of ``n`` records weighs at most ``min(n * max, total - (N - n) * min)``; a
job (file) is never planned with more records than fit its byte quota in that worst case, so
records can be streamed in any order without a job or file overflowing. When that worst case
allows it, the job count is the lower bound ``max(ceil(N / max_records_per_job),
ceil(total / max_job_bytes))``; with very skewed sizes it can be higher.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence

from transforms.quotas import Quotas


class UndersizedPolicy(str, Enum):
    PAD_MERGE = "pad-merge"  # rebalance the tail into the previous jobs when that fits
    DEFER = "defer"  # carry the tail into the next window
    ON_DEMAND = "on-demand"  # InvokeModel/Converse per record
    FAIL = "fail"  # to failures with the reason


@dataclass(frozen=True)
class WindowStats:
    """Record count and sizes of one window (and model): all the planner needs."""

    records: int = 0
    total_bytes: int = 0
    max_record_bytes: int = 0
    min_record_bytes: int = 0  # 0 when there are no records

    @classmethod
    def of(cls, sizes: Iterable[int]) -> "WindowStats":
        stats = cls()
        for size in sizes:
            stats = stats.add(size)
        return stats

    def add(self, size: int) -> "WindowStats":
        return self.merge(WindowStats(1, size, size, size))

    def merge(self, other: "WindowStats") -> "WindowStats":
        if not other.records:
            return self
        if not self.records:
            return other
        return WindowStats(self.records + other.records, self.total_bytes + other.total_bytes,
                           max(self.max_record_bytes, other.max_record_bytes),
                           min(self.min_record_bytes, other.min_record_bytes))

    def heaviest(self, n: int) -> int:
        """Upper bound on the bytes of any ``n`` of these records."""
        return min(n * self.max_record_bytes,
                   self.total_bytes - (self.records - n) * self.min_record_bytes)


@dataclass(frozen=True)
class JobPlan:
    records: int
    files: tuple[int, ...]  # records per input file


@dataclass(frozen=True)
class WindowPlan:
    jobs: tuple[JobPlan, ...]
    undersized: int  # records that cannot form a job of >= min records: they go to the policy
    policy: UndersizedPolicy
    undersized_reason: str | None = None

    @property
    def batched(self) -> int:
        return sum(job.records for job in self.jobs)


@dataclass(frozen=True)
class Placement:
    """Where one record goes: a (job, file) of the plan, or the undersized or oversized path."""

    job_index: int | None
    file_index: int | None
    disposition: str = "batch"  # "batch" | "undersized" | "oversized"


UNDERSIZED = Placement(None, None, "undersized")
OVERSIZED = Placement(None, None, "oversized")


def oversized(size: int, quotas: Quotas) -> str | None:
    """Why a record of ``size`` bytes can never be batched, or None if it can."""
    limit = min(quotas.max_file_bytes, quotas.max_job_bytes)
    if size > limit:
        return (f"record is {size} bytes, more than the {limit}-byte batch input file limit; "
                f"shorten the transcript or raise --max-file-bytes")
    return None


def _capacity(stats: WindowStats, max_records: int, max_bytes: int) -> int:
    """Most records a job (or file) can be planned with so that any such set fits ``max_bytes``."""
    lo, hi = 0, min(max_records, stats.records)
    while lo < hi:  # heaviest(n) grows with n: binary search the largest n that fits
        mid = (lo + hi + 1) // 2
        if stats.heaviest(mid) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as possible, larger parts first."""
    base, extra = divmod(total, parts)
    return [base + 1] * extra + [base] * (parts - extra)


def lower_bound_jobs(stats: WindowStats, quotas: Quotas) -> int:
    return max(math.ceil(stats.records / quotas.max_records_per_job),
               math.ceil(stats.total_bytes / quotas.max_job_bytes))


def plan_window(stats: WindowStats, quotas: Quotas, policy: UndersizedPolicy) -> WindowPlan:
    """Jobs and files for one window; records that cannot make a job >= min are ``undersized``.

    ``pad-merge`` spreads all records evenly over the fewest jobs, which merges an undersized
    tail into the previous jobs whenever every job still gets the minimum. The other policies
    keep jobs full and hand a tail smaller than the minimum to the policy (e.g. ``defer`` carries
    it into the next window instead of making smaller jobs now).
    """
    policy = UndersizedPolicy(policy)
    n, minimum = stats.records, quotas.min_records_per_job
    if n == 0:
        return WindowPlan((), 0, policy)
    if stats.max_record_bytes > min(quotas.max_file_bytes, quotas.max_job_bytes):
        raise ValueError(f"window stats include a {stats.max_record_bytes}-byte record; filter "
                         f"records with oversized() before planning")
    per_job = _capacity(stats, quotas.max_records_per_job, quotas.max_job_bytes)
    if per_job < minimum:
        return WindowPlan((), n, policy, f"{n} records cannot form a batch job of at least "
                                         f"{minimum} records within the job quotas")
    jobs = math.ceil(n / per_job)
    tail = n - (jobs - 1) * per_job
    if tail >= minimum or (policy is UndersizedPolicy.PAD_MERGE and n // jobs >= minimum):
        counts = _split(n, jobs)
        undersized, reason = 0, None
    else:
        counts = [per_job] * (jobs - 1)
        undersized = tail
        merged = "" if policy is not UndersizedPolicy.PAD_MERGE else (
            " and do not fit into the previous jobs")
        reason = (f"{tail} records are fewer than the minimum of {minimum} per batch job{merged}")
    per_file = _capacity(stats, quotas.max_records_per_file, quotas.max_file_bytes)
    plans = tuple(JobPlan(c, tuple(_split(c, math.ceil(c / per_file)))) for c in counts)
    return WindowPlan(plans, undersized, policy, reason)


class _Slot:
    """A job or file being filled: target record count, what it holds so far."""

    __slots__ = ("index", "target", "records", "bytes")

    def __init__(self, index: int, target: int) -> None:
        self.index, self.target, self.records, self.bytes = index, target, 0, 0


class ShardAssigner:
    """Places records one at a time, in stream order, following a ``WindowPlan``.

    Jobs and files are filled in order up to their planned record counts. A record that would
    push a file (job) over its byte quota opens a new file (job) that takes over the rest of the
    target; with truthful ``WindowStats`` this never happens for jobs, but a quota is never
    broken either way. Records beyond the planned batch count go to the undersized path.
    """

    def __init__(self, plan: WindowPlan, quotas: Quotas) -> None:
        self._quotas = quotas
        self._pending: deque[tuple[int, deque[int]]] = deque(
            (job.records, deque(job.files)) for job in plan.jobs)
        self._job: _Slot | None = None
        self._file: _Slot | None = None
        self._files: deque[int] = deque()
        self._next_job = 0
        self._next_file = 0

    def _open_job(self, target: int, files: deque[int]) -> None:
        self._job = _Slot(self._next_job, target)
        self._next_job += 1
        self._files, self._next_file, self._file = files, 0, None

    def _open_file(self, target: int) -> None:
        self._file = _Slot(self._next_file, target)
        self._next_file += 1

    def _remaining_files(self) -> deque[int]:
        """File targets not yet filled in the current job, the open file's remainder first."""
        rest = deque(self._files)
        if self._file is not None and self._file.records < self._file.target:
            rest.appendleft(self._file.target - self._file.records)
        return rest

    def assign(self, size_bytes: int) -> Placement:
        q = self._quotas
        if oversized(size_bytes, q):
            return OVERSIZED
        if self._job is None or self._job.records >= self._job.target:
            if not self._pending:
                return UNDERSIZED
            self._open_job(*self._pending.popleft())
        job = self._job
        if job.bytes + size_bytes > q.max_job_bytes:
            # Stats understated the sizes: move the rest of this job's target to a new job.
            rest = self._remaining_files()
            self._open_job(job.target - job.records, rest)
            job = self._job
        if self._file is None or self._file.records >= self._file.target:
            self._open_file(self._files.popleft())
        elif self._file.bytes + size_bytes > q.max_file_bytes:
            self._open_file(self._file.target - self._file.records)
        file = self._file
        job.records += 1
        job.bytes += size_bytes
        file.records += 1
        file.bytes += size_bytes
        return Placement(job.index, file.index)


def plan_sizes(sizes: Sequence[int], quotas: Quotas,
               policy: UndersizedPolicy) -> tuple[WindowPlan, list[Placement]]:
    """Plan and place a window given its record sizes in stream order (for ``plan`` and tests)."""
    stats = WindowStats.of(s for s in sizes if oversized(s, quotas) is None)
    plan = plan_window(stats, quotas, policy)
    assigner = ShardAssigner(plan, quotas)
    return plan, [assigner.assign(size) for size in sizes]


def estimate_tokens(text_or_bytes: str | bytes) -> int:
    """Rough token count (about 4 characters per token for English): an estimate, not billing."""
    if isinstance(text_or_bytes, bytes):
        text_or_bytes = text_or_bytes.decode("utf-8", errors="replace")
    return math.ceil(len(text_or_bytes) / 4)
