"""The one result type every sink returns, in the manner of Beam's ``WriteResult``.

A pipeline can then handle any sink's output the same way: flatten ``failures`` into its other
failure rows, sum ``counts``, watch ``written``. Nothing here depends on which sink wrote.
"""
from __future__ import annotations

from dataclasses import dataclass

import apache_beam as beam

from transforms.core.model import Failure
from transforms.core.windowing import keep_late


@dataclass(frozen=True)
class SinkResult:
    """What a sink wrote and what it could not write.

    Every PCollection is in the windows of the sink's input, so it can be flattened with the
    pipeline's other PCollections of those windows; rows that arrived after their window closed
    are in later panes of it (the sinks keep them, see ``transforms.core.windowing.keep_late``).
    Numbers and rows in them are final once the pipeline has succeeded: a sink that cannot reach
    its destination fails the bundle instead of leaving rows out of both ``counts`` and
    ``failures``.

    Args:
        destination: Where the sink writes: a directory (files), ``kafka:<topic>`` or
            ``bigquery:<project:dataset.table>``.
        written: What was written: each file's full path (files); ``destination`` once per
            bundle and window the brokers confirmed (Kafka) or per window with accepted rows
            (BigQuery).
        failures: One Failure row (stage ``sink``) per row the destination refused, e.g. a row
            BigQuery rejected; empty for sinks that refuse no single row (files, Kafka).
        counts: Rows written, one or more numbers per window: sum them for a total.
    """

    destination: str
    written: beam.PCollection
    failures: beam.PCollection
    counts: beam.PCollection


def no_failures(rows: beam.PCollection) -> beam.PCollection:
    """An empty PCollection of Failure rows in ``rows``' windowing (Flatten needs equal windowing).

    Args:
        rows: The sink's input.
    """
    return rows | "NoFailures" >> beam.FlatMap(lambda _row: ()).with_output_types(Failure)


def count_per_window(ones: beam.PCollection) -> beam.PCollection:
    """The sum of integers per window (and per pane), with nothing for an empty window. Rows
    that arrive after their window closed are summed in a later pane, not dropped.

    Args:
        ones: A PCollection of ints, e.g. 1 per row written and -1 per row refused.
    """
    return (keep_late(ones, "KeepLateCounts")
            | "SumPerWindow" >> beam.CombineGlobally(sum).without_defaults()
            .with_output_types(int))


def written_once(counts: beam.PCollection, destination: str) -> beam.PCollection:
    """``destination`` for every positive count: where rows were written, per window.

    Args:
        counts: Rows written, as in ``SinkResult.counts``.
        destination: The sink's ``destination``.
    """
    return (counts
            | "Wrote" >> beam.Filter(lambda n: n > 0)
            | "Destination" >> beam.Map(lambda _n: destination).with_output_types(str))
