"""Parallel, deterministic shard placement: pure, no Beam.

A window's records are spread over ``bucket_count`` hash buckets of their recordId. The planner needs
only a small summary of them (``BucketSummary``: records per size class and bucket, total bytes,
extremes), from which ``plan_window`` makes the same kind of plan as for one big group and every
bucket learns where its records start in each size class's dealing order (see planning.py for
the dealing). A bucket then places its own records in recordId order, so a record's (job, file)
depends on the window's records only: never on bundle order, worker count or which bucket is
placed first. Buckets are placed, and shards written, by as many workers as there are.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from transforms.core.quotas import Quotas
from transforms.shards.planning import (UNDERSIZED, Placement, UndersizedPolicy, WindowPlan,
                                        WindowStats, plan_window, size_class)

# A bucket's records travel as one group through a GroupByKey, and Flink's batch mode carries a
# key's grouped values as a single record of at most a few MB (its sort buffer): a bucket holds
# about this many records (under 1 MB at typical transcript sizes) however large the window.
RECORDS_PER_BUCKET = 256
# Enough buckets that a small window is still placed by more than one worker.
MIN_BUCKETS = 8


def bucket_count(records: int) -> int:
    """How many hash buckets a window of ``records`` records is spread over.

    Depends on the count only, so the same input gets the same buckets on every run.

    Args:
        records: The window's record count.
    """
    return max(MIN_BUCKETS, -(-records // RECORDS_PER_BUCKET))


def bucket_of(record_id: str, buckets: int) -> int:
    """The hash bucket of a recordId: the same in every process and run (crc32, not ``hash``).

    Args:
        record_id: The record's Bedrock recordId.
        buckets: How many buckets there are.
    """
    return zlib.crc32(record_id.encode("utf-8")) % buckets


@dataclass
class BucketSummary:
    """Counts and sizes of a window's plannable records, per size class and bucket.

    A Beam combiner's accumulator: ``add`` one record, ``merge`` two partial summaries (in any
    order; the result is the same).

    Args:
        counts: Records per (size class, bucket).
        records: Records counted.
        total_bytes: Their encoded JSONL line sizes summed.
        max_record_bytes: The largest of those sizes (0 when empty).
        min_record_bytes: The smallest of those sizes (0 when empty).
    """

    counts: dict[tuple[int, int], int] = field(default_factory=dict)  # (class, bucket) -> records
    records: int = 0
    total_bytes: int = 0
    max_record_bytes: int = 0
    min_record_bytes: int = 0

    def add(self, bucket: int, size: int) -> "BucketSummary":
        """Count one record of ``size`` bytes in ``bucket``; returns self.

        Args:
            bucket: The record's ``bucket_of``.
            size: The record's encoded JSONL line size in bytes.
        """
        key = (size_class(size), bucket)
        self.counts[key] = self.counts.get(key, 0) + 1
        self.min_record_bytes = size if not self.records else min(self.min_record_bytes, size)
        self.max_record_bytes = max(self.max_record_bytes, size)
        self.records += 1
        self.total_bytes += size
        return self

    def merge(self, other: "BucketSummary") -> "BucketSummary":
        """Add ``other``'s counts into this summary; returns self.

        Args:
            other: A summary of other records of the same window.
        """
        if not other.records:
            return self
        for key, count in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + count
        self.min_record_bytes = (other.min_record_bytes if not self.records
                                 else min(self.min_record_bytes, other.min_record_bytes))
        self.max_record_bytes = max(self.max_record_bytes, other.max_record_bytes)
        self.records += other.records
        self.total_bytes += other.total_bytes
        return self

    def stats(self) -> WindowStats:
        """The window's ``WindowStats`` (histogram summed over buckets)."""
        classes: dict[int, int] = {}
        for (key, _), count in self.counts.items():
            classes[key] = classes.get(key, 0) + count
        return WindowStats(self.records, self.total_bytes, self.max_record_bytes,
                           self.min_record_bytes, tuple(sorted(classes.items())))


@dataclass(frozen=True)
class BucketPlacement:
    """A window's plan and, per (size class, bucket), the first dealing position of the bucket's
    records of that class.

    Args:
        plan: The window's plan.
        starts: Per (size class, bucket), the dealing position of the bucket's first record of
            that class.
    """

    plan: WindowPlan
    starts: Mapping[tuple[int, int], int]

    @classmethod
    def of(cls, summary: BucketSummary, quotas: Quotas, policy: UndersizedPolicy) -> "BucketPlacement":
        """Plan a window from its summary.

        Args:
            summary: Every plannable (not oversized) record of the window.
            quotas: The batch quotas the jobs must meet.
            policy: Where records too few for a job go.
        """
        plan = plan_window(summary.stats(), quotas, policy)
        starts: dict[tuple[int, int], int] = {}
        position = 0
        # Dealing order: size classes largest first (as plan_window deals them), then buckets.
        for key in sorted(summary.counts, key=lambda kb: (-kb[0], kb[1])):
            starts[key] = position
            position += summary.counts[key]
        return cls(plan, starts)

    def place(self, bucket: int, sizes: Sequence[int]) -> list[Placement]:
        """Where each record of one bucket goes.

        Args:
            bucket: The bucket the records are in.
            sizes: Sizes of all the bucket's plannable records, in recordId order.
        """
        taken: dict[int, int] = {}
        placements = []
        for size in sizes:
            key = size_class(size)
            rank = taken.get(key, 0)
            taken[key] = rank + 1
            start = self.starts.get((key, bucket))
            if start is None:
                raise ValueError(f"bucket {bucket} has a {size}-byte record its summary did not "
                                 f"count: the summary must be made from the same records")
            placements.append(self.placement_at(start + rank))
        return placements

    def placement_at(self, position: int) -> Placement:
        """The (job, file) of dealing position ``position``, or the undersized path.

        Args:
            position: The record's position in the window's dealing order.
        """
        plan = self.plan
        if position >= plan.batched:
            return UNDERSIZED
        jobs = len(plan.jobs)
        job = position % jobs
        return Placement(job, (position // jobs) % len(plan.jobs[job].files))
