"""Beam stage for the ``defer`` undersized policy: tails too small for a job of their own wait,
across windows, until together they reach the minimum records per job.

A stateful DoFn in the global window (state is per window in Beam, so only the global window
outlives one) keeps the tail records of every window in a bag. When the bag reaches the minimum
it becomes jobs, attributed to the window of the record that completed it. At the end of a
bounded input an event-time timer flushes what is left: jobs if it is enough, else Failure rows.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.coders import PickleCoder, VarIntCoder
from apache_beam.transforms import userstate, window
from apache_beam.transforms.timeutil import TimeDomain

from transforms import layout
from transforms.config import BatchConfig
from transforms.model import BatchRecord, JobBatch
from transforms.shard_writer import undersized_failure
from transforms.shards import CARRIED, FAILURES, ShardingDoFn, window_bounds


class CarryTailsFn(ShardingDoFn):
    """Keeps tail records in the global window until they are enough for a job (see the module
    docstring); input keyed by model.

    Args:
        config: The run's settings.
        attempt: The round, from 1.
        windowfn: The input's window fn: a released job is attributed to a window of it.
    """

    TAIL = userstate.BagStateSpec("tail", PickleCoder())
    COUNT = userstate.ReadModifyWriteStateSpec("count", VarIntCoder())
    GROUPS = userstate.ReadModifyWriteStateSpec("groups", VarIntCoder())
    FLUSH = userstate.TimerSpec("flush", TimeDomain.WATERMARK)

    def __init__(self, config: BatchConfig, attempt: int, windowfn: window.WindowFn):
        super().__init__(config, attempt)
        self._windowfn = windowfn

    def process(self, element: tuple[str, BatchRecord], timestamp=beam.DoFn.TimestampParam,
                tail=beam.DoFn.StateParam(TAIL), count=beam.DoFn.StateParam(COUNT),
                groups=beam.DoFn.StateParam(GROUPS),
                flush=beam.DoFn.TimerParam(FLUSH)) -> Iterator[Any]:
        flush.set(window.GlobalWindow().max_timestamp())
        tail.add(element[1])
        count.write((count.read() or 0) + 1)
        if count.read() >= self._config.quotas.min_records_per_job:
            [target] = self._windowfn.assign(window.WindowFn.AssignContext(timestamp))
            yield from self._release(tail, count, groups, *window_bounds(target))

    @userstate.on_timer(FLUSH)
    def end_of_input(self, tail=beam.DoFn.StateParam(TAIL), count=beam.DoFn.StateParam(COUNT),
                     groups=beam.DoFn.StateParam(GROUPS)) -> Iterator[Any]:
        """At the end of a bounded input: the bag as jobs if it is enough, else Failure rows.

        Args:
            tail: The bag of carried records.
            count: How many it holds.
            groups: How many jobs were released so far.
        """
        records = list(tail.read())
        if len(records) >= self._config.quotas.min_records_per_job:
            yield from self._release(tail, count, groups, None, None)
            return
        for record in records:
            yield beam.pvalue.TaggedOutput(FAILURES, undersized_failure(
                record, len(records), self._config, "still waiting at the end of the input"))
        tail.clear()
        count.clear()

    def _release(self, tail, count, groups, start, end) -> Iterator[Any]:
        groups.write((groups.read() or 0) + 1)
        # Which tails complete a group depends on arrival order, so a rerun looks up its records
        # in every carried group's jobs; in the global window also in the window's own jobs (a
        # record the first run put in a full job may be a tail now).
        also_in = ((layout.window_key(None),)
                   if isinstance(self._windowfn, window.GlobalWindows) else ())
        result = self._writer.write(list(tail.read()), f"{CARRIED}{groups.read()}", self._attempt,
                                    start, end, family=CARRIED, also_in=also_in)
        tail.clear()
        count.clear()
        yield from self._emit(result)
        for record in result.undersized:  # cannot happen with >= min records; never drop one
            yield beam.pvalue.TaggedOutput(FAILURES, undersized_failure(
                record, len(result.undersized), self._config, "carried over"))


class CarryTails(beam.PTransform):
    """PCollection[BatchRecord] (deferred tails) -> {"batches": JobBatch, "failures": Failure},
    both back in the input's windowing.

    Args:
        config: The run's settings.
        attempt: The round, from 1.
    """

    def __init__(self, config: BatchConfig, attempt: int):
        super().__init__()
        self._config = config
        self._attempt = attempt

    def expand(self, tails: beam.PCollection) -> dict[str, beam.PCollection]:
        windowing = tails.windowing
        windowfn = windowing.windowfn
        model = self._config.model_id
        out = (tails
               | "Key" >> beam.Map(lambda r: (model, r))
               | "Global" >> beam.WindowInto(window.GlobalWindows())
               | "Carry" >> beam.ParDo(CarryTailsFn(self._config, self._attempt, windowfn))
               .with_output_types(JobBatch).with_outputs(FAILURES, main="batches"))
        # Back into the input's windowing, trigger included, so they flatten with its batches.
        def rewindow() -> beam.WindowInto:
            return beam.WindowInto(windowfn, trigger=windowing.triggerfn,
                                   accumulation_mode=windowing.accumulation_mode,
                                   allowed_lateness=windowing.allowed_lateness)
        return {"batches": out.batches | "BatchWindows" >> rewindow(),
                "failures": out[FAILURES] | "FailureWindows" >> rewindow()}
