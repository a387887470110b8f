"""Beam stage for the ``defer`` undersized policy: tails too small for a job of their own wait,
across windows, until together they reach the minimum records per job.

A stateful DoFn in the global window (state is per window in Beam, so only the global window
outlives one) keeps the tail records of every window in a bag. When the bag reaches the minimum
it becomes jobs, attributed to the window of the record that completed it. At the end of a
bounded input an event-time timer flushes what is left: jobs if it is enough (attributed to the
window of the latest record), else Failure rows, each in its own record's window.
"""
from __future__ import annotations

from typing import Any, Iterator, Tuple

import apache_beam as beam
from apache_beam.coders import TupleCoder, VarIntCoder
from apache_beam.transforms import userstate, window
from apache_beam.transforms.timeutil import TimeDomain
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Timestamp

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.coders import BatchRecordCoder, typed_output
from transforms.core.model import BatchRecord, Failure, JobBatch
from transforms.core.windowing import restore_windowing
from transforms.shards.shard_writer import undersized_failure
from transforms.shards.write_shards import (CARRIED, FAILURES, RoundTransform, ShardingDoFn,
                                            window_bounds)


class CarryTailsFn(ShardingDoFn):
    """Keeps tail records in the global window until they are enough for a job (see the module
    docstring); input keyed by model.

    Args:
        config: The run's settings.
        attempt: The round, from 1.
        windowfn: The input's window fn: a released job is attributed to a window of it.
    """

    # (record, its timestamp in microseconds): records coded as between stages, not pickled.
    TAIL = userstate.BagStateSpec("tail", TupleCoder((BatchRecordCoder(), VarIntCoder())))
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
        tail.add((element[1], timestamp.micros))
        count.write((count.read() or 0) + 1)
        if count.read() >= self._config.quotas.min_records_per_job:
            # Emitted at this element's timestamp: the job lands in the window it is named after.
            yield from self._release(tail, count, groups, timestamp)

    @userstate.on_timer(FLUSH)
    def end_of_input(self, tail=beam.DoFn.StateParam(TAIL), count=beam.DoFn.StateParam(COUNT),
                     groups=beam.DoFn.StateParam(GROUPS)) -> Iterator[Any]:
        """At the end of a bounded input: the bag as jobs if it is enough, else Failure rows.

        The timer fires at the end of the global window; what it emits is stamped with its
        records' own times (a job with its latest record's), so it goes back into their
        windows and not into one at the end of time, which has no date.

        Args:
            tail: The bag of carried records, with their timestamps.
            count: How many it holds.
            groups: How many jobs were released so far.
        """
        carried = list(tail.read())
        if len(carried) >= self._config.quotas.min_records_per_job:
            latest = Timestamp(micros=max(micros for _, micros in carried))
            yield from self._release(tail, count, groups, latest)
            return
        for record, micros in carried:
            yield beam.pvalue.TaggedOutput(FAILURES, TimestampedValue(
                undersized_failure(record, len(carried), self._config,
                                   "still waiting at the end of the input"),
                Timestamp(micros=micros)))
        tail.clear()
        count.clear()

    def _release(self, tail, count, groups, at: Timestamp) -> Iterator[Any]:
        """The bag as jobs attributed to the window of ``at``, every output stamped with ``at``
        (a timer's outputs would otherwise carry the timer's time)."""
        [target] = self._windowfn.assign(window.WindowFn.AssignContext(at))
        start, end = window_bounds(target)
        groups.write((groups.read() or 0) + 1)
        # Which tails complete a group depends on arrival order, so a rerun looks up its records
        # in every carried group's jobs; in the global window also in the window's own jobs (a
        # record the first run put in a full job may be a tail now).
        also_in = ((layout.window_key(None),)
                   if isinstance(self._windowfn, window.GlobalWindows) else ())
        records = [record for record, _ in tail.read()]
        result = self._writer.write(records, f"{CARRIED}{groups.read()}", self._attempt,
                                    start, end, pool=CARRIED, also_in=also_in)
        tail.clear()
        count.clear()
        outputs = list(self._emit(result))
        for record in result.undersized:  # cannot happen with >= min records; never drop one
            outputs.append(beam.pvalue.TaggedOutput(FAILURES, undersized_failure(
                record, len(result.undersized), self._config, "carried over")))
        for output in outputs:
            yield _stamped(output, at)


def _stamped(output: Any, at: Timestamp) -> Any:
    """A DoFn output, tagged or not, with the timestamp ``at``."""
    if isinstance(output, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(output.tag, TimestampedValue(output.value, at))
    return TimestampedValue(output, at)


class CarryTails(RoundTransform):
    """PCollection[BatchRecord] (deferred tails) -> {"batches": JobBatch, "failures": Failure},
    both back in the input's windowing.

    Args:
        config: The run's settings.
        attempt: The round, from 1.
    """

    def expand(self, tails: beam.PCollection) -> dict[str, beam.PCollection]:
        windowing = tails.windowing
        model = self._config.model_id
        out = (tails
               | "Key" >> beam.Map(lambda r: (model, r))
               .with_output_types(Tuple[str, BatchRecord])
               | "Global" >> beam.WindowInto(window.GlobalWindows())
               | "Carry" >> beam.ParDo(CarryTailsFn(self._config, self._attempt, windowing.windowfn))
               .with_output_types(JobBatch).with_outputs(FAILURES, main="batches"))
        # Back into the input's windowing, trigger included, so they flatten with its batches.
        return {"batches": out.batches | "BatchWindows" >> restore_windowing(windowing),
                "failures": (typed_output(out, FAILURES, Failure)
                             | "FailureWindows" >> restore_windowing(windowing))}
