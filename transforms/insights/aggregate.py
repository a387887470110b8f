"""``AggregateInsights``: insights rows counted per window and overall, and
``WriteInsightsAggregate``, its file output. The counting itself is ``transforms.insights.tally``.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.transforms import trigger, window

from transforms.core.metrics import counter
from transforms.core.windowing import compact_utc
from transforms.insights import tally

OVERALL_FILE = "overall.jsonl"


def _insights_of(element: Any) -> Iterator[Any]:
    """The insights object of a Summary (or row dict); summary-task rows have none."""
    value = element.get("insights") if isinstance(element, dict) else getattr(
        element, "insights", None)
    if value is not None:
        yield value


class _CountInsights(beam.CombineFn):
    """Insights objects -> one ``tally.Tally``."""

    def create_accumulator(self) -> tally.Tally:
        return tally.Tally()

    def add_input(self, accumulator: tally.Tally, element: Any) -> tally.Tally:
        return tally.add(accumulator, element)

    def merge_accumulators(self, accumulators: Iterable[tally.Tally]) -> tally.Tally:
        return tally.merge(accumulators)

    def extract_output(self, accumulator: tally.Tally) -> tally.Tally:
        return accumulator


class _WindowRow(beam.DoFn):
    """A window's tally -> its aggregate row; in the global window the overall row says it all."""

    def process(self, counts: tally.Tally, win: Any = beam.DoFn.WindowParam,
                pane: Any = beam.DoFn.PaneInfoParam) -> Iterator[dict[str, Any]]:
        if isinstance(win, window.IntervalWindow):
            row = tally.aggregate_row(counts, "window", win.start.to_utc_datetime(has_tz=True),
                                      win.end.to_utc_datetime(has_tz=True))
            # A late pane (allowed lateness) counts only the rows that arrived late.
            row["pane"] = pane.index if pane is not None else 0
            yield row


class AggregateInsights(beam.PTransform):
    """Count insights rows per window and over the whole input (see ``transforms.insights.tally``
    for the figures).

    Input: Summary elements (or row dicts) from ``--task insights``; rows without insights are
    not counted. Output: a PCollection of aggregate dicts (``tally.aggregate_row``) in the
    global window: one per window pane (``scope`` "window", plus ``pane``, the pane index; only
    for windowed input) and one ``scope`` "overall" row, emitted when the input ends (a stream
    that never ends gets no overall row).
    """

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        insights = pcoll | "Insights" >> beam.FlatMap(_insights_of)
        windows = (insights
                   | "PerWindow" >> beam.CombineGlobally(_CountInsights()).without_defaults()
                   | "WindowRows" >> beam.ParDo(_WindowRow())
                   | "WindowRowsGlobal" >> beam.WindowInto(window.GlobalWindows()))
        # Unbounded input needs an explicit trigger in the global window: it fires once, when
        # the input ends.
        everything = (beam.WindowInto(window.GlobalWindows()) if pcoll.is_bounded else
                      beam.WindowInto(window.GlobalWindows(), trigger=trigger.AfterWatermark(),
                                      accumulation_mode=trigger.AccumulationMode.DISCARDING))
        overall = (insights
                   | "AllWindows" >> everything
                   | "Overall" >> beam.CombineGlobally(_CountInsights())
                   | "OverallRow" >> beam.Map(tally.aggregate_row, "overall"))
        return (windows, overall) | "AggregateRows" >> beam.Flatten()


def file_name(row: dict[str, Any]) -> str:
    """The file one aggregate row is written to: ``overall.jsonl``, or
    ``window-<start>-<end>[-p<pane>].jsonl`` (ISO 8601 basic UTC, as the row sinks name windows).

    Args:
        row: An aggregate row from ``AggregateInsights``.
    """
    if row["scope"] == "overall":
        return OVERALL_FILE
    start, end = (compact_utc(dt.datetime.fromisoformat(row[k]))
                  for k in ("window_start", "window_end"))
    pane = f"-p{row['pane']}" if row.get("pane") else ""
    return f"window-{start}-{end}{pane}.jsonl"


class _WriteRow(beam.DoFn):
    def __init__(self, path: str) -> None:
        self.path = path

    def setup(self) -> None:
        self.written = counter("insights_aggregate_rows_written")

    def process(self, row: dict[str, Any]) -> Iterator[str]:
        # One file per row, named by its window: a retried bundle rewrites the same file.
        full_name = FileSystems.join(self.path, file_name(row))
        with FileSystems.create(full_name, mime_type="application/x-ndjson") as handle:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True).encode("utf-8")
                         + b"\n")
        self.written.inc()
        yield full_name


class WriteInsightsAggregate(beam.PTransform):
    """Write ``AggregateInsights`` rows as JSON lines under the directory ``path``, one file per
    row (see ``file_name``). Output: the paths written.

    Args:
        path: The output directory (local, s3://, ...).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        if not path:
            raise ValueError("WriteInsightsAggregate needs an output directory path")
        self.path = path.rstrip("/")

    def expand(self, pcoll: beam.PCollection) -> beam.PCollection:
        return pcoll | "WriteRows" >> beam.ParDo(_WriteRow(self.path))


def read_overall(path: str) -> dict[str, Any] | None:
    """The overall aggregate row written under ``path``, or None when there is none.

    Args:
        path: The directory ``WriteInsightsAggregate`` wrote.
    """
    full_name = FileSystems.join(path, OVERALL_FILE)
    if not FileSystems.exists(full_name):
        return None
    with FileSystems.open(full_name) as handle:
        return json.loads(handle.read().decode("utf-8"))
