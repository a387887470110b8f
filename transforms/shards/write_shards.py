"""Beam stages: a round's records -> JSONL shards on S3 and a JobBatch to submit.

``WriteShards`` is the stage; it picks one of two engines by the window type, once. Time
windows go ``WriteShardsByPane``: each window pane's records are one group (``WriteShardsFn``).
The global window goes ``WriteShardsInParallel``: each shard is written under its own key. Both
use the writer's shared core (``shard_writer``): the jobs a rerun adopts, job names, specs and
the JobBatch; each places records its own way (see docs/architecture.md, "Shard preparation").
"""
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.transforms import trigger
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import JobsClient
from transforms.core.coders import typed_output
from transforms.core.metrics import counter
from transforms.core.model import BatchRecord, Failure
from transforms.core.storage import Storage
from transforms.core.windowing import ALLOWED_LATENESS
from transforms.shards.bucket_plan import BucketPlacement, BucketSummary, bucket_count, bucket_of
from transforms.shards.planning import Placement, UndersizedPolicy, oversized
from transforms.shards.shard_writer import (ExistingJobs, JobLoad, ShardResult, ShardWriter,
                                            oversized_failure, owners, slice_line,
                                            undersized_failure)

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
        parts_base: Where the shards' slices go (see ``ShardWriter``); the run's S3 base when
            None.
    """

    def __init__(self, config: BatchConfig, attempt: int, parts_base: str | None = None):
        self._config = config
        self._attempt = attempt
        self._parts_base = parts_base
        self._jobs_planned = counter("jobs_planned")
        self._records_sharded = counter("records_sharded")
        self._records_adopted = counter("records_adopted")
        self._records_not_in_input = counter("records_not_in_input")

    def setup(self) -> None:
        self._writer = ShardWriter(self._config, Storage(self._config.aws.client("s3")),
                                   JobsClient(self._config.aws.client("bedrock"), self._config.job),
                                   self._parts_base)

    def _existing(self, count: int) -> ExistingJobs:
        """The run's existing jobs, for a window of ``count`` records to place."""
        if count:
            return self._writer.existing((layout.window_key(None), CARRIED), self._attempt)
        return ExistingJobs(frozenset(), ())  # nothing to place (a retry round with no retries)

    def _placement(self, summary: BucketSummary, existing: ExistingJobs) -> "ShardPlacement":
        """The global window's ShardPlacement from its summary; the new jobs' prefixes emptied
        and marked."""
        cfg = self._config
        buckets = BucketPlacement.of(summary, cfg.quotas, UndersizedPolicy(cfg.undersized_policy))
        key = layout.window_key(None)
        names = self._writer.new_names(key, self._attempt, len(buckets.plan.jobs),
                                       existing.run_jobs)
        self._writer.prepare_jobs(names, key, self._attempt)
        return ShardPlacement(buckets, tuple(names))

    def _count(self, result: ShardResult) -> None:
        self._records_sharded.inc(result.records_sharded)
        self._records_adopted.inc(result.records_adopted)
        self._records_not_in_input.inc(result.records_not_in_input)

    def _emit(self, result: ShardResult) -> Iterator[Any]:
        self._count(result)
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
TOTALS = "totals"


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
    """The window's record count -> the run's existing jobs (names only)."""

    def process(self, count: int) -> Iterator[ExistingJobs]:
        yield self._existing(count)


# A bucket's member: one of the window's records, or (recordId, job) for a record an existing
# job holds. Typed as optional halves rather than joined with beam.CoGroupByKey, whose shuffle
# types its values as a Union, which Beam pickles: here the records keep BatchRecordCoder.
Member = Tuple[Optional[BatchRecord], Optional[Tuple[str, str]]]


class _ReadIndexFn(ShardingDoFn):
    """An existing job -> (bucket, (None, (recordId, job))) for each record its index lists, in
    this window's hash buckets; (job, how many records it holds) on TOTALS."""

    def process(self, name: str, buckets: int) -> Iterator[Any]:
        total = 0
        for rid in self._writer.indexed_ids(name):
            total += 1
            yield bucket_of(rid, buckets), (None, (rid, name))
        yield beam.pvalue.TaggedOutput(TOTALS, (name, total))


class _ClassifyFn(beam.DoFn):
    """(bucket, its members) -> its records: adopted (job, (recordId, size)) when an existing job
    holds one, oversized failures, and (bucket, the fresh records) to place."""

    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, element: tuple[int, Iterable[Member]]) -> Iterator[Any]:
        bucket, members = element
        # Only this bucket's share of the existing jobs' recordIds (grouped values re-iterate).
        owner = owners(held for _, held in members if held is not None)
        quotas = self._config.quotas
        fresh = []
        for record, _ in members:
            if record is None:
                continue
            job = owner.get(record.record_id)
            if job is not None:
                yield beam.pvalue.TaggedOutput(ADOPTED,
                                               (job, (record.record_id, record.size_bytes)))
            elif oversized(record.size_bytes, quotas) is not None:
                yield beam.pvalue.TaggedOutput(FAILURES, oversized_failure(record, quotas))
            else:
                fresh.append(record)
        if fresh:
            yield bucket, fresh


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
        yield self._placement(summary, existing)


# A worker writes the slices it holds once their lines reach this size, and at the end of each
# bundle: its memory stays bounded, and the slices stay few (a bucket's records go to every job).
SLICE_BYTES = 64 * 1024 * 1024


class SliceWriterFn(ShardingDoFn):
    """Base of the DoFns that place records into slices of their shards: holds each shard's
    lines, writes them to S3 as slices (once they reach SLICE_BYTES, and at the end of each
    bundle) and emits ((job, file), (slice name, records, bytes)) per slice written.

    Only these small tuples are grouped by shard: Flink's batch mode carries a key's grouped
    values as one record of at most a few MB, which a whole shard's records would exceed."""

    def start_bundle(self) -> None:
        self._slices: dict[tuple[int, int], list[bytes]] = {}
        self._sizes: dict[tuple[int, int], int] = {}
        self._held = 0
        self._names: tuple[str, ...] = ()

    def _hold(self, record: BatchRecord, placement: Placement,
              names: tuple[str, ...]) -> Iterator[tuple[tuple[int, int], tuple[str, int, int]]]:
        """Hold ``record``'s line for its shard; the slices written, if that filled them."""
        self._names = names  # the same for every record of the window; finish_bundle needs it
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


class _PlaceFn(SliceWriterFn):
    """(bucket, its records) -> the records placed into slices of their shards (see
    ``SliceWriterFn``); the undersized aside."""

    def process(self, element: tuple[int, Iterable[BatchRecord]],
                shard_placement: ShardPlacement) -> Iterator[Any]:
        bucket, records = element
        ordered = sorted(records, key=lambda r: r.record_id)  # one bucket: a small slice
        placements = shard_placement.buckets.place(bucket, [r.size_bytes for r in ordered])
        for record, placement in zip(ordered, placements):
            if placement.job_index is None:
                yield beam.pvalue.TaggedOutput(UNDERSIZED, record)
            else:
                yield from self._hold(record, placement, shard_placement.names)


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


class _AdoptedLoadFn(ShardingDoFn):
    """(existing job, our records it holds and its record count) -> its JobLoad, if it holds any
    of ours."""

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterator[JobLoad]:
        name, grouped = element
        if grouped["placed"]:
            [total] = grouped["total"]
            result = ShardResult()
            load = self._writer.adopted_load(name, grouped["placed"], total, result)
            self._count(result)
            yield load


class _AssembleFn(ShardingDoFn):
    """The written shards and the adopted jobs (one small element each) of the window -> its
    JobBatch."""

    def process(self, element: tuple[None, Iterable[tuple[str, Any]]],
                shard_placement: ShardPlacement) -> Iterator[Any]:
        jobs: dict[int, list[int]] = {}
        adopted: list[JobLoad] = []
        for kind, value in element[1]:
            if kind == "shard":
                job, (records, size) = value
                load = jobs.setdefault(job, [0, 0])
                load[0] += records
                load[1] += size
            else:
                adopted.append(value)
        result = ShardResult(records_sharded=sum(records for records, _ in jobs.values()))
        result.batch = self._writer.batch(
            [(shard_placement.names[j], records, size)
             for j, (records, size) in sorted(jobs.items())],
            sorted(adopted), None, None, self._attempt)
        self._writer.delete_parts(shard_placement.names)  # every shard is joined by now
        yield from self._emit(result)


class RoundTransform(beam.PTransform):
    """A PTransform of one submission round.

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def __init__(self, config: BatchConfig, attempt: int):
        super().__init__()
        self._config = config
        self._attempt = attempt


class WriteShardsInParallel(RoundTransform):
    """PCollection[BatchRecord] in the global window -> the outputs of ``WriteShards``.

    No step holds the window: a count and a per-bucket size summary plan it, each hash bucket of
    recordIds is placed by itself into slices of its records' shards, and each shard is joined
    from its slices under its own key, so as many workers as there are write shards at once.
    Placement depends only on the records, so a rerun lays out the same shards and job names.
    A rerun reads each existing job's index by itself, and each bucket's records meet only the
    recordIds of their own bucket to find which of them an existing job already holds.

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg, attempt = self._config, self._attempt
        counted = (records
                   | "One" >> beam.Map(lambda _: 1)
                   | "Count" >> beam.CombineGlobally(sum))
        buckets = beam.pvalue.AsSingleton(counted | "Buckets" >> beam.Map(bucket_count))
        existing_jobs = counted | "Existing" >> beam.ParDo(_ExistingJobsFn(cfg, attempt))
        # A rerun's records meet the recordIds its existing jobs hold in their own hash bucket:
        # each job's index is read by itself, and no step holds more of them than a bucket's.
        indexed = (existing_jobs
                   | "PoolJobs" >> beam.FlatMap(lambda existing: existing.pool_jobs)
                   .with_output_types(str)
                   | "SpreadJobs" >> beam.Reshuffle()
                   | "ReadIndexes" >> beam.ParDo(_ReadIndexFn(cfg, attempt), buckets=buckets)
                   .with_output_types(Tuple[int, Member]).with_outputs(TOTALS, main="held"))
        totals = typed_output(indexed, TOTALS, Tuple[str, int])
        keyed = records | "KeyByBucket" >> beam.Map(
            lambda r, n: (bucket_of(r.record_id, n), (r, None)), n=buckets).with_output_types(
            Tuple[int, Member])
        classified = ((keyed, indexed.held)
                      | "Members" >> beam.Flatten()
                      | "ByBucket" >> beam.GroupByKey()
                      | "Classify" >> beam.ParDo(_ClassifyFn(cfg)).with_output_types(
                          Tuple[int, List[BatchRecord]]).with_outputs(ADOPTED, FAILURES,
                                                                      main="fresh"))
        adopted_ids = typed_output(classified, ADOPTED, Tuple[str, Tuple[str, int]])
        shard_placement = beam.pvalue.AsSingleton(
            classified.fresh
            | "Sizes" >> beam.FlatMap(lambda kv: ((kv[0], r.size_bytes) for r in kv[1]))
            | "Summarize" >> beam.CombineGlobally(_SummarizeBucketsFn())
            | "Placement" >> beam.ParDo(_PlacementFn(cfg, attempt),
                                        existing=beam.pvalue.AsSingleton(existing_jobs)))
        placed = (classified.fresh
                  | "Place" >> beam.ParDo(_PlaceFn(cfg, attempt), shard_placement=shard_placement)
                  .with_output_types(Tuple[Tuple[int, int], Tuple[str, int, int]])
                  .with_outputs(UNDERSIZED, main="placed"))
        return join_shards(cfg, attempt, placed, shard_placement, adopted_ids, totals,
                           typed_output(classified, FAILURES, Failure))


def join_shards(config: BatchConfig, attempt: int, placed: beam.pvalue.DoOutputsTuple,
                shard_placement: beam.pvalue.AsSingleton, adopted_ids: beam.PCollection,
                totals: beam.PCollection, failures: beam.PCollection,
                parts_base: str | None = None) -> dict[str, beam.PCollection]:
    """The global window's placed slices -> the outputs of ``WriteShards``: each shard joined
    from its slices under its own key, the undersized routed, the adopted jobs' loads, and the
    window's JobBatch gathered from one small element per shard and per adopted job.

    Args:
        config: The run's configuration.
        attempt: The submission round.
        placed: A ``SliceWriterFn``'s outputs: the slices written (main) and UNDERSIZED records.
        shard_placement: The window's ShardPlacement, as a singleton side input.
        adopted_ids: (existing job, (recordId, size)) per record an existing job holds.
        totals: (existing job, how many records it holds) per existing job of the pool.
        failures: Failure rows of the records no job takes: the oversized (and, from a plan on
            disk, the duplicates and the records that cannot be built).
        parts_base: Where ``placed``'s slices were written (see ``ShardWriter``).
    """
    cfg = config
    undersized = typed_output(placed, UNDERSIZED, BatchRecord)
    written = (placed.placed
               | "ByShard" >> beam.GroupByKey()
               | "JoinShard" >> beam.ParDo(_JoinShardFn(cfg, attempt, parts_base),
                                            shard_placement=shard_placement))
    routed = undersized | "Undersized" >> beam.ParDo(
        _RouteUndersizedFn(cfg, attempt), shard_placement=shard_placement).with_outputs(
        FAILURES, ON_DEMAND, DEFERRED)
    # Each existing job's share is summed up under its own key, so the one-key gather below
    # gets one small element per adopted job, as per written shard, not the adopted ids.
    adopted = ({"placed": adopted_ids, "total": totals}
               | "AdoptedPerJob" >> beam.CoGroupByKey()
               | "AdoptedLoad" >> beam.ParDo(_AdoptedLoadFn(cfg, attempt)))
    batches = ((written | "TagShards" >> beam.Map(lambda kv: ("shard", kv)),
                adopted | "TagAdopted" >> beam.Map(lambda load: ("adopted", load)))
               | "Both" >> beam.Flatten()
               | "OneKey" >> beam.Map(lambda tagged: (None, tagged))
               | "Gather" >> beam.GroupByKey()
               | "Assemble" >> beam.ParDo(_AssembleFn(cfg, attempt, parts_base),
                                          shard_placement=shard_placement))
    failures = ((failures, typed_output(routed, FAILURES, Failure))
                | "AllFailures" >> beam.Flatten())
    # The tail is routed before the shards are written: the on-demand records wait for the
    # batches, so a runner that runs one stage at a time (the DirectRunner) creates the jobs
    # first and the calls run while the jobs do. (A round's records go either on-demand or
    # deferred, never both, so the carried tails' batches have nothing to wait for here.)
    on_demand = typed_output(routed, ON_DEMAND, BatchRecord) | "AfterBatches" >> beam.Map(
        lambda record, _batches: record, beam.pvalue.AsList(batches)).with_output_types(
        BatchRecord)
    return {"batches": batches, FAILURES: failures, ON_DEMAND: on_demand,
            DEFERRED: typed_output(routed, DEFERRED, BatchRecord)}


class WriteShardsByPane(RoundTransform):
    """PCollection[BatchRecord] in time windows -> the outputs of ``WriteShards``, one group of
    records per window pane.

    A window becomes jobs when it closes, or early as soon as a full job's worth of records is
    there; records that come late (resubmissions) still form jobs of their own instead of being
    dropped. Panes fire per key, so a pane's records stay under one key (the model).

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self._config
        written = (records
                   | "SizeTrigger" >> beam.WindowInto(
                       records.windowing.windowfn, trigger=trigger.AfterWatermark(
                           early=trigger.AfterCount(cfg.quotas.max_records_per_job),
                           late=trigger.AfterCount(1)),
                       accumulation_mode=trigger.AccumulationMode.DISCARDING,
                       allowed_lateness=ALLOWED_LATENESS)
                   | "ByModel" >> beam.Map(lambda r, model=cfg.model_id: (model, r))
                   .with_output_types(Tuple[str, BatchRecord])
                   | "Group" >> beam.GroupByKey()
                   | "Write" >> beam.ParDo(WriteShardsFn(cfg, self._attempt))
                   .with_outputs(FAILURES, ON_DEMAND, DEFERRED, main="batches"))
        return {"batches": written.batches, FAILURES: typed_output(written, FAILURES, Failure),
                ON_DEMAND: typed_output(written, ON_DEMAND, BatchRecord),
                DEFERRED: typed_output(written, DEFERRED, BatchRecord)}


class WriteShards(RoundTransform):
    """PCollection[BatchRecord] of one round -> JobBatch (main, "batches"), tagged FAILURES
    (records no job can take, or too few for one under the ``fail`` policy), ON_DEMAND and
    DEFERRED (records too few for a job, by the undersized policy).

    The window type picks the engine here, and nowhere else. The global window fires once, when
    the input ends, so all its records can be counted and summarized before any is placed:
    ``WriteShardsInParallel``. A time window fires panes (early, on time, late), each the records
    of one key that fire together, which cannot be split across keys before they are placed:
    ``WriteShardsByPane``, one group per pane.

    Args:
        config: The run's configuration.
        attempt: The submission round: 1 for the first, +1 per retry round.
    """

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        if isinstance(records.windowing.windowfn, GlobalWindows):
            return records | "InParallel" >> WriteShardsInParallel(self._config, self._attempt)
        return records | "ByPane" >> WriteShardsByPane(self._config, self._attempt)
