"""Beam stages: a window's records -> JSONL shards on S3 and a JobBatch to submit.

``WriteShardsFn`` writes one window pane's grouped records (streaming windows, whose panes fire
by count and lateness); ``WriteShardsInParallel`` writes the global window's shards, each shard
under its own key.
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Tuple

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import JobsClient
from transforms.core.coders import typed_output
from transforms.core.metrics import counter
from transforms.core.model import BatchRecord, Failure, JobBatch
from transforms.core.storage import Storage
from transforms.shards.bucket_plan import BucketPlacement, BucketSummary, bucket_count, bucket_of
from transforms.shards.planning import UndersizedPolicy, oversized
from transforms.shards.shard_writer import (ExistingJobs, ShardResult, ShardWriter, log_planned,
                                            oversized_failure, slice_line, undersized_failure)

FAILURES = "failures"
ON_DEMAND = "on_demand"
DEFERRED = "deferred"
CARRIED = "c"  # job pool (and group key prefix) of the carried tails' jobs


def window_bounds(window: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """A Beam window's start and end as UTC datetimes; (None, None) for the global window.

    Args:
        window: A Beam window.

    Raises:
        ValueError: the window lies outside the dates a datetime can hold.
    """
    if isinstance(window, GlobalWindow) or not hasattr(window, "start"):
        return None, None
    try:
        return window.start.to_utc_datetime(has_tz=True), window.end.to_utc_datetime(has_tz=True)
    except (OverflowError, ValueError):
        # A bounded source's records all have Beam's minimum timestamp, whose window has no date.
        raise ValueError(
            f"a time window from {window.start} to {window.end} has no date: its records have no "
            f"event time (a bounded read gives them Beam's minimum timestamp); read them with "
            f"timestamp_field=... (the CLI: --timestamp-field) or timestamp them before "
            f"windowing") from None


class ShardingDoFn(beam.DoFn):
    """Shared set-up of the DoFns that write shards: clients in setup(), common counters.

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def __init__(self, config: BatchConfig, attempt: int):
        self._config = config
        self._attempt = attempt
        self._jobs_planned = counter("jobs_planned")
        self._records_sharded = counter("records_sharded")
        self._records_adopted = counter("records_adopted")
        self._records_not_in_input = counter("records_not_in_input")

    def setup(self) -> None:
        self._writer = ShardWriter(self._config, Storage(self._config.aws.client("s3")),
                                   JobsClient(self._config.aws.client("bedrock"), self._config.job))

    def _emit(self, result: ShardResult) -> Iterator[Any]:
        self._records_sharded.inc(result.records_sharded)
        self._records_adopted.inc(result.records_adopted)
        self._records_not_in_input.inc(result.records_not_in_input)
        for failure in result.oversized:
            yield beam.pvalue.TaggedOutput(FAILURES, failure)
        if result.batch is not None:
            self._jobs_planned.inc(len(result.batch.specs))
            yield result.batch


class WriteShardsFn(ShardingDoFn):
    """(key, records of one window pane) -> JobBatch; too-small tails to the undersized policy."""

    def process(self, element: tuple[Any, Iterable[BatchRecord]], window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam) -> Iterator[Any]:
        # An empty pane (Flink fires them with allowed lateness) has no job to plan.
        if next(iter(element[1]), None) is not None:
            yield from self._plan(element, window, pane)

    def _plan(self, element: tuple[Any, Iterable[BatchRecord]], window: Any,
              pane: Any) -> Iterator[Any]:
        start, end = window_bounds(window)
        # A window fires more than once in streaming (early when a full job is ready, late for
        # resubmissions): each pane gets job names of its own.
        key = layout.window_key(start, pane.index if pane is not None else 0)
        # A rerun's panes need not match the first run's: records are looked up window-wide, and
        # in the carried tails' jobs (a record the first run deferred may fill a job now).
        result = self._writer.write(element[1], key, self._attempt, start, end,
                                    pool=layout.window_key(start), also_in=(CARRIED,))
        yield from self._emit(result)
        for record in result.undersized:
            yield route_undersized(record, len(result.undersized), self._config, self._attempt,
                                   "left over could not be merged into another job and")


def route_undersized(record: BatchRecord, count: int, config: BatchConfig, attempt: int,
                     why: str) -> beam.pvalue.TaggedOutput:
    """Where a record too few for a job goes under the undersized policy.

    Args:
        record: The record.
        count: How many records of its group went this way (for the failure message).
        config: The run's config (its undersized policy).
        attempt: The submission round.
        why: How the records came to be too few, for the failure message.
    """
    # Retries too few for a job of their own (a few record errors of a big job, the usual case)
    # would otherwise never be retried: they go on-demand whatever the policy.
    if config.undersized_policy == "on-demand" or attempt > 1:
        return beam.pvalue.TaggedOutput(ON_DEMAND, record)
    if config.undersized_policy == "defer":
        return beam.pvalue.TaggedOutput(DEFERRED, record)
    return beam.pvalue.TaggedOutput(FAILURES, undersized_failure(record, count, config, why))


# ---- The global window, in parallel: plan from a summary, write each shard under its own key ---

ADOPTED = "adopted"
UNDERSIZED = "undersized"


@dataclass(frozen=True)
class ShardPlacement:
    """A window's bucket placement and the names of the new jobs it makes.

    Args:
        buckets: The window's plan and each bucket's dealing positions.
        names: The names of the new jobs, one per planned job.
    """

    buckets: BucketPlacement
    names: tuple[str, ...]


class _ExistingJobsFn(ShardingDoFn):
    """The window's record count -> the run's existing jobs and the records they hold."""

    def process(self, count: int) -> Iterator[ExistingJobs]:
        if count:
            yield self._writer.existing((layout.window_key(None), CARRIED), self._attempt)
        else:  # nothing to place (a retry round with no retries): ask no service
            yield ExistingJobs(frozenset(), {}, {})


class _ClassifyFn(beam.DoFn):
    """A record -> adopted (an existing job holds it), oversized (a failure) or (bucket, record)."""

    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, record: BatchRecord, existing: ExistingJobs, count: int) -> Iterator[Any]:
        owner = existing.owner.get(record.record_id)
        if owner is not None:
            yield beam.pvalue.TaggedOutput(ADOPTED, (owner, (record.record_id, record.size_bytes)))
        elif oversized(record.size_bytes, self._config.quotas) is not None:
            yield beam.pvalue.TaggedOutput(FAILURES, oversized_failure(record, self._config.quotas))
        else:
            yield bucket_of(record.record_id, bucket_count(count)), record


class _SummarizeBucketsFn(beam.CombineFn):
    """(bucket, size) pairs -> the window's BucketSummary."""

    def create_accumulator(self) -> BucketSummary:
        return BucketSummary()

    def add_input(self, summary: BucketSummary, element: tuple[int, int]) -> BucketSummary:
        return summary.add(*element)

    def merge_accumulators(self, summaries: Iterable[BucketSummary]) -> BucketSummary:
        merged = BucketSummary()
        for summary in summaries:
            merged.merge(summary)
        return merged

    def extract_output(self, summary: BucketSummary) -> BucketSummary:
        return summary


class _PlacementFn(ShardingDoFn):
    """The window's summary -> its ShardPlacement; the new jobs' prefixes emptied and marked."""

    def process(self, summary: BucketSummary, existing: ExistingJobs) -> Iterator[ShardPlacement]:
        cfg = self._config
        buckets = BucketPlacement.of(summary, cfg.quotas, UndersizedPolicy(cfg.undersized_policy))
        key = layout.window_key(None)
        names = self._writer.new_names(key, self._attempt, len(buckets.plan.jobs),
                                       existing.run_jobs)
        self._writer.prepare_jobs(names, key, self._attempt)
        yield ShardPlacement(buckets, tuple(names))


# A worker writes the slices it holds once their lines reach this size, and at the end of each
# bundle: its memory stays bounded, and the slices stay few (a bucket's records go to every job).
SLICE_BYTES = 64 * 1024 * 1024


class _PlaceFn(ShardingDoFn):
    """(bucket, its records) -> the records placed into slices of their shards, written to S3,
    and ((job, file), (slice name, records, bytes)) per slice written; the undersized aside.

    Only these small tuples are grouped by shard: Flink's batch mode carries a key's grouped
    values as one record of at most a few MB, which a whole shard's records would exceed."""

    def start_bundle(self) -> None:
        self._slices: dict[tuple[int, int], list[str]] = {}
        self._sizes: dict[tuple[int, int], int] = {}
        self._held = 0
        self._names: tuple[str, ...] = ()

    def process(self, element: tuple[int, Iterable[BatchRecord]],
                shard_placement: ShardPlacement) -> Iterator[Any]:
        bucket, records = element
        self._names = shard_placement.names  # the same for every bucket; finish_bundle needs it
        ordered = sorted(records, key=lambda r: r.record_id)  # one bucket: a small slice
        placements = shard_placement.buckets.place(bucket, [r.size_bytes for r in ordered])
        for record, placement in zip(ordered, placements):
            if placement.job_index is None:
                yield beam.pvalue.TaggedOutput(UNDERSIZED, record)
                continue
            shard = placement.job_index, placement.file_index
            line = slice_line(record)
            self._slices.setdefault(shard, []).append(line)
            self._sizes[shard] = self._sizes.get(shard, 0) + record.size_bytes
            self._held += len(line)
        if self._held >= SLICE_BYTES:
            yield from self._write_slices()

    def finish_bundle(self) -> Iterator[WindowedValue]:
        for written in self._write_slices():
            yield GlobalWindows.windowed_value(written)

    def _write_slices(self) -> Iterator[tuple[tuple[int, int], tuple[str, int, int]]]:
        for (job, file), lines in sorted(self._slices.items()):
            lines.sort()  # recordId order (see slice_line)
            part = uuid.uuid4().hex  # a retried bundle's slices get other names, never used
            self._writer.upload_part(self._names[job], file, part, lines)
            yield (job, file), (part, len(lines), self._sizes[job, file])
        self._slices, self._sizes, self._held = {}, {}, 0


class _RouteUndersizedFn(beam.DoFn):
    def __init__(self, config: BatchConfig, attempt: int):
        self._config = config
        self._attempt = attempt

    def process(self, record: BatchRecord, shard_placement: ShardPlacement) -> Iterator[Any]:
        yield route_undersized(record, shard_placement.buckets.plan.undersized, self._config,
                               self._attempt, "left over could not be merged into another job and")


class _JoinShardFn(ShardingDoFn):
    """((job, file), its slices) -> the shard and its index on S3; (job, (records, bytes))."""

    def process(self, element: tuple[tuple[int, int], Iterable[tuple[str, int, int]]],
                shard_placement: ShardPlacement) -> Iterator[tuple[int, tuple[int, int]]]:
        (job, file), grouped = element
        slices = list(grouped)  # (slice name, records, bytes): a few per placing worker
        self._writer.join_parts(shard_placement.names[job], file, [part for part, *_ in slices])
        yield job, (sum(records for _, records, _ in slices), sum(size for *_, size in slices))


class _AssembleFn(ShardingDoFn):
    """The written shards (one element each) and the adopted records (one list per existing
    job) of the window -> its JobBatch."""

    def process(self, element: tuple[None, Iterable[tuple[str, Any]]], shard_placement: ShardPlacement,
                existing: ExistingJobs) -> Iterator[Any]:
        jobs: dict[int, list[int]] = {}
        adopted: dict[str, list[tuple[str, int]]] = {}
        for kind, (key, value) in element[1]:
            if kind == "shard":
                load = jobs.setdefault(key, [0, 0])
                load[0] += value[0]
                load[1] += value[1]
            else:
                adopted.setdefault(key, []).extend(value)
        result = ShardResult(records_sharded=sum(records for records, _ in jobs.values()))
        attempt = self._attempt
        specs = [self._writer.spec(shard_placement.names[j], records, size, None, None, attempt)
                 for j, (records, size) in sorted(jobs.items())]
        specs += self._writer.adopted_specs(adopted, existing.totals, result, None, None, attempt)
        log_planned(specs, set(adopted))
        self._writer.delete_parts(shard_placement.names)  # every shard is joined by now
        result.batch = JobBatch(self._config.model_id, tuple(specs),
                                self._config.poll_interval_seconds)
        yield from self._emit(result)


class WriteShardsInParallel(beam.PTransform):
    """PCollection[BatchRecord] in the global window -> JobBatch (main), tagged FAILURES,
    ON_DEMAND and DEFERRED: the same outputs as ``WriteShardsFn`` after a GroupByKey.

    No step holds the window: a count and a per-bucket size summary plan it, each hash bucket of
    recordIds is placed by itself into slices of its records' shards, and each shard is joined
    from its slices under its own key, so as many workers as there are write shards at once.
    Placement depends only on the records, so a rerun lays out the same shards and job names.

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def __init__(self, config: BatchConfig, attempt: int):
        super().__init__()
        self._config = config
        self._attempt = attempt

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg, attempt = self._config, self._attempt
        counted = (records
                   | "One" >> beam.Map(lambda _: 1)
                   | "Count" >> beam.CombineGlobally(sum))
        existing = beam.pvalue.AsSingleton(
            counted | "Existing" >> beam.ParDo(_ExistingJobsFn(cfg, attempt)))
        classified = records | "Classify" >> beam.ParDo(
            _ClassifyFn(cfg), existing=existing,
            count=beam.pvalue.AsSingleton(counted)).with_output_types(
            Tuple[int, BatchRecord]).with_outputs(ADOPTED, FAILURES, main="fresh")
        shard_placement = beam.pvalue.AsSingleton(
            classified.fresh
            | "Sizes" >> beam.Map(lambda kv: (kv[0], kv[1].size_bytes))
            | "Summarize" >> beam.CombineGlobally(_SummarizeBucketsFn())
            | "Placement" >> beam.ParDo(_PlacementFn(cfg, attempt), existing=existing))
        placed = (classified.fresh
                  | "ByBucket" >> beam.GroupByKey()
                  | "Place" >> beam.ParDo(_PlaceFn(cfg, attempt), shard_placement=shard_placement)
                  .with_output_types(Tuple[Tuple[int, int], Tuple[str, int, int]])
                  .with_outputs(UNDERSIZED, main="placed"))
        written = (placed.placed
                   | "ByShard" >> beam.GroupByKey()
                   | "JoinShard" >> beam.ParDo(_JoinShardFn(cfg, attempt),
                                                shard_placement=shard_placement))
        routed = placed[UNDERSIZED] | "Undersized" >> beam.ParDo(
            _RouteUndersizedFn(cfg, attempt), shard_placement=shard_placement).with_outputs(
            FAILURES, ON_DEMAND, DEFERRED)
        batches = ((written | "TagShards" >> beam.Map(lambda kv: ("shard", kv)),
                    # One element per existing job, not per record: the group below is one key.
                    classified[ADOPTED]
                    | "AdoptedPerJob" >> beam.CombinePerKey(beam.combiners.ToListCombineFn())
                    | "TagAdopted" >> beam.Map(lambda kv: ("adopted", kv)))
                   | "Both" >> beam.Flatten()
                   | "OneKey" >> beam.Map(lambda tagged: (None, tagged))
                   | "Gather" >> beam.GroupByKey()
                   | "Assemble" >> beam.ParDo(_AssembleFn(cfg, attempt),
                                              shard_placement=shard_placement, existing=existing))
        failures = ((typed_output(classified, FAILURES, Failure), typed_output(routed, FAILURES, Failure))
                    | "AllFailures" >> beam.Flatten())
        return {"batches": batches, FAILURES: failures, ON_DEMAND: routed[ON_DEMAND],
                DEFERRED: routed[DEFERRED]}
