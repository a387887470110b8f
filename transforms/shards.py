"""Beam stage: one window pane's records -> JSONL shards on S3 and a JobBatch to submit."""
from __future__ import annotations

import datetime as dt
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.transforms.window import GlobalWindow

from transforms import layout
from transforms.config import BatchConfig
from transforms.jobs import JobsClient
from transforms.metrics import counter
from transforms.model import BatchRecord
from transforms.shard_writer import ShardResult, ShardWriter, undersized_failure
from transforms.storage import Storage

FAILURES = "failures"
ON_DEMAND = "on_demand"
DEFERRED = "deferred"
CARRIED = "c"  # job family (and group key prefix) of the carried tails' jobs


def window_bounds(window: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if isinstance(window, GlobalWindow) or not hasattr(window, "start"):
        return None, None
    return window.start.to_utc_datetime(has_tz=True), window.end.to_utc_datetime(has_tz=True)


class ShardingDoFn(beam.DoFn):
    """Shared set-up of the DoFns that write shards: clients in setup(), common counters."""

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
                                    family=layout.window_key(start), also_in=(CARRIED,))
        yield from self._emit(result)
        policy = self._config.undersized_policy
        for record in result.undersized:
            # Retries too few for a job of their own (a few record errors of a big job, the
            # usual case) would otherwise never be retried: they go on-demand whatever the policy.
            if policy == "on-demand" or self._attempt > 1:
                yield beam.pvalue.TaggedOutput(ON_DEMAND, record)
            elif policy == "defer":
                yield beam.pvalue.TaggedOutput(DEFERRED, record)
            else:
                yield beam.pvalue.TaggedOutput(FAILURES, undersized_failure(
                    record, len(result.undersized), self._config,
                    "left over could not be merged into another job and"))
