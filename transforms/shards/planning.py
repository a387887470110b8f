"""Shard/job planner: pure, no Beam.

The planner decides from counts and sizes only (``WindowStats``: count, total, extremes and a
coarse size histogram), so a window's records are never held in memory: ``ShardAssigner`` then
places records one by one, in any stream order, with O(1) work per record.

How records are spread: think of the window's records sorted by size class, largest first, and
dealt like cards: position ``p`` goes to job ``p % jobs``, and within a job its ``q``-th record
goes to file ``q % files``. A streamed record only needs its size class and how many records of
that class came before it to know its position. Dealing gives every job (file) an even record
count (they differ by at most one) and an even share of every size class, so from the histogram
alone the planner bounds each job's (file's) bytes and picks the fewest jobs (files) whose bounds
fit the byte quotas. That is the lower bound ``max(ceil(N / max_records_per_job),
ceil(total / max_job_bytes))`` unless jobs would be within a size class's width (<= 12.5%) of
the byte quota. The smallest records are the ones left over when a tail goes to the policy.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence

from transforms.core.quotas import Quotas

ALL_SIZES = -1  # the one size class of stats built without a histogram


class UndersizedPolicy(str, Enum):
    """Where the records too few to make a batch job of the minimum size go."""

    PAD_MERGE = "pad-merge"  # rebalance the tail into the previous jobs when that fits
    DEFER = "defer"  # carry the tail into the next window
    ON_DEMAND = "on-demand"  # InvokeModel/Converse per record
    FAIL = "fail"  # to failures with the reason


def size_class(size: int) -> int:
    """Histogram class of a record size: exact below 8 bytes, then 8 classes per power of two.

    Args:
        size: The record's encoded JSONL line size in bytes.
    """
    if size < 8:
        return size
    exponent = size.bit_length() - 1
    return exponent * 8 + ((size >> (exponent - 3)) & 7)


def class_bounds(key: int) -> tuple[int, int]:
    """Smallest and largest size in a class (a class spans at most 12.5% of its lower bound).

    Args:
        key: A size class, as ``size_class`` returns it.
    """
    if key < 8:
        return key, key
    exponent, mantissa = divmod(key, 8)
    return (8 + mantissa) << (exponent - 3), ((9 + mantissa) << (exponent - 3)) - 1


@dataclass(frozen=True)
class WindowStats:
    """Record count and sizes of one window (and model): all the planner needs.

    ``histogram`` holds (size class, records) pairs in ascending class order; stats made without
    one (histogram empty) are planned with the extremes only, which is more conservative.

    Args:
        records: Records in the window.
        total_bytes: Their sizes summed.
        max_record_bytes: The largest size (0 when empty).
        min_record_bytes: The smallest size (0 when empty).
        histogram: (size class, records) pairs in ascending class order; may be empty.
    """

    records: int = 0
    total_bytes: int = 0
    max_record_bytes: int = 0
    min_record_bytes: int = 0
    histogram: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, sizes: Iterable[int]) -> "WindowStats":
        stats = cls()
        for size in sizes:
            stats = stats.add(size)
        return stats

    def add(self, size: int) -> "WindowStats":
        """These stats with one more record of ``size`` bytes (a new value: stats are frozen).

        Args:
            size: The record's encoded JSONL line size in bytes.
        """
        if not self.records:
            return WindowStats(1, size, size, size, ((size_class(size), 1),))
        hist = self.histogram
        if self._has_histogram():
            key = size_class(size)
            i = bisect.bisect_left(hist, (key, 0))
            if i < len(hist) and hist[i][0] == key:
                hist = hist[:i] + ((key, hist[i][1] + 1),) + hist[i + 1:]
            else:
                hist = hist[:i] + ((key, 1),) + hist[i:]
        return WindowStats(self.records + 1, self.total_bytes + size,
                           max(self.max_record_bytes, size), min(self.min_record_bytes, size), hist)

    def merge(self, other: "WindowStats") -> "WindowStats":
        """The stats of both windows' records together; the histogram is kept only when both
        have one.

        Args:
            other: Stats of other records.
        """
        if not other.records:
            return self
        if not self.records:
            return other
        hist: tuple[tuple[int, int], ...] = ()
        if self._has_histogram() and other._has_histogram():
            counts = dict(self.histogram)
            for key, count in other.histogram:
                counts[key] = counts.get(key, 0) + count
            hist = tuple(sorted(counts.items()))
        return WindowStats(self.records + other.records, self.total_bytes + other.total_bytes,
                           max(self.max_record_bytes, other.max_record_bytes),
                           min(self.min_record_bytes, other.min_record_bytes), hist)

    def _has_histogram(self) -> bool:
        return sum(count for _, count in self.histogram) == self.records > 0

    def classes(self) -> tuple[tuple[int, int, int, int], ...]:
        """(class, records, min size, max size), largest class first: the dealing order."""
        lo_all, hi_all = self.min_record_bytes, self.max_record_bytes
        if not self._has_histogram():
            return ((ALL_SIZES, self.records, lo_all, hi_all),) if self.records else ()
        return tuple((key, count, max(class_bounds(key)[0], lo_all), min(class_bounds(key)[1], hi_all))
                     for key, count in reversed(self.histogram))


@dataclass(frozen=True)
class JobPlan:
    """One planned batch job.

    Args:
        records: Records in the job.
        files: Records per input file of the job.
    """

    records: int
    files: tuple[int, ...]  # records per input file


@dataclass(frozen=True)
class WindowPlan:
    """The batch jobs of one window, and how many records go to the undersized policy.

    Args:
        jobs: The planned jobs.
        undersized: Records that cannot form a job of the minimum size: they go to the policy.
        policy: The undersized policy.
        undersized_reason: Why those records are undersized, for the ``plan`` command's JSON
            (the pipeline's UndersizedJob Failure rows are worded by
            ``shard_writer.undersized_failure``); None when there are none.
        size_classes: (size class, records) pairs in dealing order (largest class first).
    """

    jobs: tuple[JobPlan, ...]
    undersized: int  # records that cannot form a job of >= min records: they go to the policy
    policy: UndersizedPolicy
    undersized_reason: str | None = None
    size_classes: tuple[tuple[int, int], ...] = ()  # (class, records) in dealing order

    @property
    def batched(self) -> int:
        return sum(job.records for job in self.jobs)


@dataclass(frozen=True)
class Placement:
    """Where one record goes: a (job, file) of the plan, or the undersized or oversized path.

    Args:
        job_index: The job's index; None unless ``disposition`` is ``batch``.
        file_index: The file's index within the job; None unless ``disposition`` is ``batch``.
        disposition: ``batch``, ``undersized`` or ``oversized``.
    """

    job_index: int | None
    file_index: int | None
    disposition: str = "batch"  # "batch" | "undersized" | "oversized"


UNDERSIZED = Placement(None, None, "undersized")
OVERSIZED = Placement(None, None, "oversized")


def oversized(size: int, quotas: Quotas) -> str | None:
    """Why a record of ``size`` bytes can never be batched, or None if it can.

    Args:
        size: The record's encoded JSONL line size in bytes.
        quotas: The batch quotas.
    """
    limit = min(quotas.max_file_bytes, quotas.max_job_bytes)
    if size > limit:
        return (f"record is {size} bytes, more than the {limit}-byte batch input file limit; "
                f"shorten the transcript or raise --max-file-bytes")
    return None


def _dealt(start: int, end: int, slot: int, slots: int) -> int:
    """How many positions in [start, end) are dealt to ``slot`` (p % slots == slot)."""
    def upto(x: int) -> int:
        return (x - slot + slots - 1) // slots
    return upto(end) - upto(start) if end > start else 0


class _Deal:
    """Byte bounds of the parts a run of positions is dealt into."""

    def __init__(self, stats: WindowStats) -> None:
        self.total = stats.total_bytes
        self.spans = []  # (start, end, min size, max size) per size class, in dealing order
        position = 0
        for _, count, lo, hi in stats.classes():
            self.spans.append((position, position + count, lo, hi))
            position += count

    def max_bytes(self, spans: Sequence[tuple[int, int, int, int]], parts: int, placed: int) -> int:
        """Largest byte bound over ``parts`` parts dealt positions [0, placed) of ``spans``."""
        worst = 0
        for part in range(parts):
            heavy = light_elsewhere = 0
            for start, end, lo, hi in spans:
                mine = _dealt(start, min(end, placed), part, parts)
                heavy += mine * hi
                light_elsewhere += (end - start - mine) * lo
            worst = max(worst, min(heavy, self.total - light_elsewhere))
        return worst

    def job_spans(self, job: int, jobs: int) -> list[tuple[int, int, int, int]]:
        """The size-class spans of one job, in the job's own positions q (p = job + q * jobs)."""
        def q(p: int) -> int:
            return (p - job + jobs - 1) // jobs
        return [(q(start), q(end), lo, hi) for start, end, lo, hi in self.spans]


def lower_bound_jobs(stats: WindowStats, quotas: Quotas) -> int:
    """The fewest jobs the record and byte quotas allow for the window's records.

    Args:
        stats: The window's record count and sizes.
        quotas: The batch quotas.
    """
    return max(math.ceil(stats.records / quotas.max_records_per_job),
               math.ceil(stats.total_bytes / quotas.max_job_bytes))


def _fits(deal: _Deal, jobs: int, placed: int, quotas: Quotas) -> bool:
    return (math.ceil(placed / jobs) <= quotas.max_records_per_job
            and deal.max_bytes(deal.spans, jobs, placed) <= quotas.max_job_bytes)


def _most_placed(deal: _Deal, jobs: int, limit: int, quotas: Quotas) -> int:
    """Most records (<= limit) that ``jobs`` jobs of >= min records hold, or 0."""
    lo, hi = jobs * quotas.min_records_per_job, min(limit, jobs * quotas.max_records_per_job)
    if lo > hi or not _fits(deal, jobs, lo, quotas):
        return 0
    while lo < hi:  # a job's bound only grows as positions are added
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _fits(deal, jobs, mid, quotas) else (lo, mid - 1)
    return lo


def _files(deal: _Deal, job: int, jobs: int, records: int, quotas: Quotas) -> tuple[int, ...]:
    spans = deal.job_spans(job, jobs)
    heavy = deal.max_bytes(spans, 1, records)
    count = max(math.ceil(records / quotas.max_records_per_file),
                math.ceil(heavy / quotas.max_file_bytes))
    # One record per file always fits (no record is oversized), so this ends.
    while deal.max_bytes(spans, count, records) > quotas.max_file_bytes:
        count += 1
    return tuple(_dealt(0, records, f, count) for f in range(count))


def plan_window(stats: WindowStats, quotas: Quotas, policy: UndersizedPolicy) -> WindowPlan:
    """Jobs and files for one window; records that cannot make a job >= min are ``undersized``.

    ``pad-merge`` spreads all records evenly over the fewest jobs, which merges an undersized
    tail into the previous jobs whenever every job still gets the minimum. The other policies
    keep jobs full and hand a tail smaller than the minimum to the policy (``defer`` carries it
    into the next window rather than making smaller jobs now).

    Args:
        stats: The window's plannable records (none oversized).
        quotas: The batch quotas the jobs must meet.
        policy: Where records too few for a job go.

    Raises:
        ValueError: the stats include an oversized record.
    """
    policy = UndersizedPolicy(policy)
    n, minimum = stats.records, quotas.min_records_per_job
    if n == 0:
        return WindowPlan((), 0, policy)
    if stats.max_record_bytes > min(quotas.max_file_bytes, quotas.max_job_bytes):
        raise ValueError(f"window stats include a {stats.max_record_bytes}-byte record; filter "
                         f"records with oversized() before planning")
    classes = tuple((key, count) for key, count, _, _ in stats.classes())
    if n < minimum:
        return WindowPlan((), n, policy, f"{n} records are fewer than the minimum of {minimum} "
                                         f"per batch job", classes)
    deal = _Deal(stats)
    jobs = lower_bound_jobs(stats, quotas)
    while not _fits(deal, jobs, n, quotas):  # n jobs of one record each always fit
        jobs += 1
    # A tail exists when the record quota decides the job count and the last job would be short.
    tail = n - (jobs - 1) * quotas.max_records_per_job
    tail_case = (policy is not UndersizedPolicy.PAD_MERGE and 0 < tail < minimum
                 and jobs == math.ceil(n / quotas.max_records_per_job))
    full = _most_placed(deal, jobs - 1, n, quotas) if tail_case else 0
    if tail_case and full == (jobs - 1) * quotas.max_records_per_job:
        placed, jobs = full, jobs - 1
    elif n // jobs >= minimum:
        placed = n
    else:
        placed, fewer = 0, min(jobs - 1, n // minimum)
        while fewer and not placed:
            placed = _most_placed(deal, fewer, n, quotas)
            jobs, fewer = fewer, fewer - 1
        jobs = jobs if placed else 0
    reason = None
    if placed < n:
        merged = " and do not fit into the previous jobs" if policy is UndersizedPolicy.PAD_MERGE else ""
        reason = (f"{n - placed} records are fewer than the minimum of {minimum} per batch job{merged}"
                  if n - placed < minimum else
                  f"{n - placed} records do not fit batch jobs of at least {minimum} records "
                  f"within the record and byte quotas")
    counts = [_dealt(0, placed, j, jobs) for j in range(jobs)]
    plans = tuple(JobPlan(c, _files(deal, j, jobs, c, quotas)) for j, c in enumerate(counts))
    return WindowPlan(plans, n - placed, policy, reason, classes)


class ShardAssigner:
    """Places records one at a time, in stream order, following a ``WindowPlan``.

    Each record takes the next dealing position of its size class. Records the stats did not
    announce (more records, or sizes outside the histogram) and placements that would break a
    quota go to overflow jobs after the planned ones, filled in order and split before any quota
    is exceeded: with truthful stats this never happens, and a quota is never broken either way.

    Args:
        plan: The window's plan.
        quotas: The batch quotas, the ones the plan was made with.
    """

    def __init__(self, plan: WindowPlan, quotas: Quotas) -> None:
        self._quotas = quotas
        self._jobs = len(plan.jobs)
        self._batched = plan.batched
        self._files = [len(job.files) for job in plan.jobs]
        self._by_class = plan.size_classes and plan.size_classes[0][0] != ALL_SIZES
        self._next: dict[int, list[int]] = {}  # class -> [next position, end]
        position = 0
        for key, count in plan.size_classes:
            self._next[key] = [position, position + count]
            position += count
        self._job_load: dict[int, list[int]] = {}  # job -> [records, bytes]
        self._file_load: dict[tuple[int, int], list[int]] = {}
        self._overflow: tuple[int, int] | None = None  # (job, file) being filled

    def assign(self, size_bytes: int) -> Placement:
        """Place the next record of the stream.

        Args:
            size_bytes: The record's encoded JSONL line size in bytes.
        """
        q = self._quotas
        if oversized(size_bytes, q):
            return OVERSIZED
        slot = self._next.get(size_class(size_bytes) if self._by_class else ALL_SIZES)
        if slot is None or slot[0] >= slot[1]:
            return self._place_overflow(size_bytes)
        position = slot[0]
        slot[0] += 1
        if position >= self._batched:
            return UNDERSIZED
        job = position % self._jobs
        file = (position // self._jobs) % self._files[job]
        if not self._room(job, file, size_bytes):
            return self._place_overflow(size_bytes)
        return self._take(job, file, size_bytes)

    def _room(self, job: int, file: int, size: int) -> bool:
        q = self._quotas
        jr, jb = self._job_load.get(job, (0, 0))
        fr, fb = self._file_load.get((job, file), (0, 0))
        return (jr < q.max_records_per_job and jb + size <= q.max_job_bytes
                and fr < q.max_records_per_file and fb + size <= q.max_file_bytes)

    def _take(self, job: int, file: int, size: int) -> Placement:
        for load in (self._job_load.setdefault(job, [0, 0]),
                     self._file_load.setdefault((job, file), [0, 0])):
            load[0] += 1
            load[1] += size
        return Placement(job, file)

    def _place_overflow(self, size: int) -> Placement:
        if self._overflow is None:
            self._overflow = (self._jobs, 0)
        job, file = self._overflow
        if not self._room(job, file, size):
            jr, jb = self._job_load.get(job, (0, 0))
            if jr < self._quotas.max_records_per_job and jb + size <= self._quotas.max_job_bytes:
                file += 1
            else:
                job, file = job + 1, 0
            self._overflow = (job, file)
        return self._take(job, file, size)


def plan_sizes(sizes: Sequence[int], quotas: Quotas,
               policy: UndersizedPolicy) -> tuple[WindowPlan, list[Placement]]:
    """Plan and place a window given its record sizes in stream order (for ``plan`` and tests).

    Args:
        sizes: The records' sizes in bytes, in stream order; oversized ones are placed
            ``oversized`` and left out of the plan.
        quotas: The batch quotas.
        policy: Where records too few for a job go.
    """
    stats = WindowStats.of(s for s in sizes if oversized(s, quotas) is None)
    plan = plan_window(stats, quotas, policy)
    assigner = ShardAssigner(plan, quotas)
    return plan, [assigner.assign(size) for size in sizes]


def estimate_tokens(text_or_bytes: str | bytes) -> int:
    """Rough token count (about 4 characters per token for English): an estimate, not billing.

    Args:
        text_or_bytes: The text, or its UTF-8 bytes.
    """
    if isinstance(text_or_bytes, bytes):
        text_or_bytes = text_or_bytes.decode("utf-8", errors="replace")
    return math.ceil(len(text_or_bytes) / 4)
