"""The run's Beam graph: its source, ``SummarizeTranscripts``, the insights aggregate, the
sinks, and the counting steps the run report and the progress display read.
"""
from __future__ import annotations

import logging
from typing import Any, Iterator, Mapping

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import runners
from pipeline.options import BedrockBatchOptions, runner_flag
from pipeline.progress import note_written
from pipeline.report.data import window_counter
from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.metrics import counter
from transforms.core.model import Failure, Summary
from transforms.core.storage import join
from transforms.insights.aggregate import AggregateInsights, WriteInsightsAggregate
from transforms.shards.write_shards import window_bounds
from transforms.sinks import commit
from transforms.sinks.files import FORMATS, WriteFailures, WriteSummaries
from transforms.sources import ReadTranscripts, WatchTranscripts
from transforms.sources.source_ledger import SourceLedger
from transforms.summarize import SummarizeTranscripts, fixed_windows_with_lateness
from transforms.summarize_files import SummarizeTranscriptFiles

log = logging.getLogger(__name__)


def _count_in_window(window: Any, name: str) -> None:
    """Count a row of a time window (streaming) for the run report's per-window chart."""
    start, _ = window_bounds(window)
    if start is not None:
        counter(window_counter(start, name)).inc()


def _counted(name: str, per_window: str | None = None):
    total = counter(name)
    # The CLI's progress display counts the summaries reaching the sinks in this process.
    is_summary = name == "summaries_written"

    def count(element: Any, window: Any = beam.DoFn.WindowParam) -> Any:
        total.inc()
        if is_summary:
            note_written(summaries=1)
        if per_window:
            _count_in_window(window, per_window)
        return element
    return count


class _CountFailures(beam.DoFn):
    """Counts failure rows just before their sink: all of them, per stage and error code
    (``failures.<stage>.<code>``) and per time window, for the report's breakdowns."""

    def setup(self) -> None:
        self._total = counter("failures_written")
        self._by_cause: dict[tuple[str, str], Any] = {}

    def process(self, failure: Any, window: Any = beam.DoFn.WindowParam) -> Iterator[Any]:
        self._total.inc()
        note_written(failures=1)
        cause = (failure.stage, failure.error_code)
        if cause not in self._by_cause:
            self._by_cause[cause] = counter(f"failures.{cause[0]}.{cause[1]}")
        self._by_cause[cause].inc()
        _count_in_window(window, "failures")
        yield failure


def read_source(p: beam.Pipeline, opts: BedrockBatchOptions, streaming: bool,
                ledger: SourceLedger | None = None, hold_after_end: bool = False) -> dict:
    """The run's source; a file source, and a bounded Kafka read, keep their ledger in
    ``ledger`` (when given). With ``hold_after_end`` a bounded watch or Kafka read stays once
    it has ended, its watermark following the clock, until the job is cancelled
    (``WatchTranscripts``)."""
    fields = _fields(opts)
    if opts.kafka_topic:
        from transforms.sources.kafka import ReadTranscriptsFromKafka
        if not opts.kafka_bootstrap_servers:
            raise ValueError("--kafka-topic needs --kafka-bootstrap-servers host:port")
        return p | "ReadKafka" >> ReadTranscriptsFromKafka(
            opts.kafka_bootstrap_servers, opts.kafka_topic, stop_after_seconds=opts.watch_seconds,
            allowed_lateness_seconds=opts.allowed_lateness_seconds, ledger=ledger,
            hold_after_end=hold_after_end, **fields)
    if streaming:
        return p | "Watch" >> WatchTranscripts(
            _input(opts), interval_seconds=opts.watch_interval_seconds,
            stop_after_seconds=opts.watch_seconds, hold_after_end=hold_after_end,
            format=opts.input_format, timestamp_field=opts.timestamp_field,
            allowed_lateness_seconds=opts.allowed_lateness_seconds,
            ledger=ledger, **fields)
    return p | "Read" >> file_read(opts, ledger)


def _input(opts: BedrockBatchOptions) -> str:
    if not opts.input:
        raise ValueError("--input is required (or --kafka-topic)")
    return opts.input


def _fields(opts: BedrockBatchOptions) -> dict[str, Any]:
    return dict(id_field=opts.id_field, text_field=opts.text_field, turns_field=opts.turns_field,
                max_text_chars=opts.max_text_chars)


def file_read(opts: BedrockBatchOptions, ledger: SourceLedger | None) -> ReadTranscripts:
    """The read of --input's files, not applied yet."""
    return ReadTranscripts(_input(opts), format=opts.input_format,
                           timestamp_field=opts.timestamp_field, ledger=ledger, **_fields(opts))


def plans_on_disk(opts: BedrockBatchOptions, standard: StandardOptions) -> bool:
    """Whether the run spills its files' transcripts and plans them on local disk
    (``SummarizeTranscriptFiles``): a bounded read of files in one window, on the in-process
    runner, which otherwise keeps every record of each stage in memory for the next."""
    return (not standard.streaming and not opts.kafka_topic and not opts.window_seconds
            and runners.is_fnapi(standard.runner or runners.FNAPI))


def build(p: beam.Pipeline, opts: BedrockBatchOptions, config: BatchConfig, files_root: str,
          hold_after_end: bool = False) -> None:
    """The whole run; file sinks write under ``files_root``. ``hold_after_end``: see
    ``read_source`` (for a job the CLI ends itself, ``pipeline.running.drain``)."""
    standard = p.options.view_as(StandardOptions)
    streaming = standard.streaming
    if streaming and not opts.window_seconds:
        raise ValueError("--streaming needs --window-seconds N: jobs are submitted per window")
    ledger = SourceLedger(layout.source_ledger_prefix(config.base_uri, config.run_id), config.aws)
    if plans_on_disk(opts, standard):
        result = p | "Summarize" >> SummarizeTranscriptFiles(config, file_read(opts, ledger))
        failures = result["failures"]
    else:
        read = read_source(p, opts, streaming, ledger, hold_after_end)
        transcripts, source_failures = read["transcripts"], read["failures"]
        if opts.window_seconds:
            # With allowed lateness: a record behind the watermark is summarized in a late pane
            # instead of being dropped silently at the first GroupByKey (the dedup inside
            # SummarizeTranscripts).
            def windows() -> beam.WindowInto:
                return fixed_windows_with_lateness(opts.window_seconds,
                                                   opts.allowed_lateness_seconds)
            transcripts = transcripts | "Window" >> windows()
            source_failures = source_failures | "WindowFailures" >> windows()
        result = transcripts | "Summarize" >> SummarizeTranscripts(config)
        failures = ((source_failures, result["failures"]) | "AllFailures" >> beam.Flatten())
    schema = insights_schema(config)
    _, write_summaries, write_failures = sinks(opts, files_root, schema, config.run_id)
    if schema is not None and opts.sink in FORMATS:
        (result["summaries"] | "AggregateInsights" >> AggregateInsights()
         | "WriteAggregate" >> WriteInsightsAggregate(join(files_root, AGGREGATE_DIR)))
    # Every sink returns a SinkResult. Rows a sink refuses (a BigQuery table's rejects) come
    # back as failure rows: refused summaries join the failures; refused failures can only be
    # reported (logged at ERROR and counted in the run report).
    # Typed, as every row on the way to a sink: Beam then encodes them with their registered
    # coders (transforms/core/coders.py) instead of pickling them.
    written = (result["summaries"] | "CountSummaries" >> beam.Map(
                   _counted("summaries_written", per_window="summaries")).with_output_types(Summary)
               | "WriteSummaries" >> write_summaries)
    refused_summaries = written.failures | "CountRejected" >> beam.Map(
        _counted("summaries_rejected", per_window="summaries_rejected")).with_output_types(Failure)
    failures = ((failures, refused_summaries) | "WithRejected" >> beam.Flatten())
    refused = (failures | "CountFailures" >> beam.ParDo(_CountFailures()).with_output_types(Failure)
               | "WriteFailures" >> write_failures).failures
    refused | "ReportRejected" >> beam.Map(_report_rejected)


# Under --output with a file sink: the AggregateInsights rows of an insights run.
AGGREGATE_DIR = "insights_aggregate"


def insights_schema(config: BatchConfig) -> Mapping[str, Any] | None:
    """The JSON Schema the summaries' typed ``insights`` column follows; None for --task summary.

    Args:
        config: The run's settings.
    """
    return config.output_schema if config.task == "insights" else None


def _report_rejected(failure: Any) -> None:
    counter("failures_rejected").inc()
    log.error("failures table rejected a failure row: %s", failure)


def sinks(opts: BedrockBatchOptions, files_root: str | None = None,
          insights: Mapping[str, Any] | None = None, run_id: str | None = None
          ) -> tuple[tuple[str, str], beam.PTransform, beam.PTransform]:
    """((where summaries go, where failures go), the summaries sink, the failures sink).

    Args:
        opts: The CLI's options.
        files_root: Where file sinks write (default: --output).
        insights: The insights JSON Schema (--task insights): summaries get a typed
            ``insights`` column. None: the summary task's columns.
        run_id: The run id the Kafka messages carry in a header and BigQuery's insert ids
            start with, so a replayed row can be recognized; None for none.
    """
    if opts.sink == "kafka":
        from transforms.sinks.kafka import WriteFailuresToKafka, WriteSummariesToKafka
        servers, topics = opts.kafka_bootstrap_servers, (opts.kafka_summaries_topic,
                                                          opts.kafka_failures_topic)
        if not servers or not all(topics):
            raise ValueError("--sink kafka needs --kafka-bootstrap-servers, "
                             "--kafka-summaries-topic and --kafka-failures-topic")
        timeout = opts.kafka_delivery_timeout_seconds
        producer_config = {}
        if timeout is not None:
            # librdkafka reads 0 as "retry forever": a dead broker would hang the run.
            if not 1 <= timeout * 1000 <= 2**31 - 1:
                raise ValueError(f"--kafka-delivery-timeout-seconds {timeout:g} is out of range: "
                                 "pass seconds from 0.001 to 2147483, e.g. 300")
            producer_config["message.timeout.ms"] = int(timeout * 1000)
        return ((f"kafka:{topics[0]}", f"kafka:{topics[1]}"),
                WriteSummariesToKafka(servers, topics[0], format=opts.kafka_format,
                                      producer_config=producer_config, insights_schema=insights,
                                      run_id=run_id),
                WriteFailuresToKafka(servers, topics[1], format=opts.kafka_format,
                                     producer_config=producer_config, run_id=run_id))
    if opts.sink == "bigquery":
        from transforms.sinks.bigquery import WriteFailuresToBigQuery, WriteSummariesToBigQuery
        tables = (opts.bigquery_summaries_table, opts.bigquery_failures_table)
        if not all(tables):
            raise ValueError("--sink bigquery needs --bigquery-summaries-table and "
                             "--bigquery-failures-table (project:dataset.table)")
        settings = dict(create_disposition=opts.bigquery_create_disposition,
                        unreachable_timeout_s=opts.bigquery_unreachable_timeout_seconds,
                        run_id=run_id)
        return ((f"bigquery:{tables[0]}", f"bigquery:{tables[1]}"),
                WriteSummariesToBigQuery(tables[0], insights_schema=insights, **settings),
                WriteFailuresToBigQuery(tables[1], **settings))
    if not opts.output:
        raise ValueError(f"--output DIR is required with --sink {opts.sink}")
    root = files_root or opts.output
    return ((join(opts.output, "summaries"), join(opts.output, "failures")),
            WriteSummaries(join(root, "summaries"), format=opts.sink, insights_schema=insights),
            WriteFailures(join(root, "failures"), format=opts.sink))


def ended_by_the_cli(options: PipelineOptions) -> bool:
    """Whether ``run`` cancels the job itself once the durable facts agree
    (``runners.ended_by_the_cli``)."""
    opts = options.view_as(BedrockBatchOptions)
    standard = options.view_as(StandardOptions)
    return runners.ended_by_the_cli(standard.runner, bool(standard.streaming), opts.watch_seconds,
                                    runner_flag(options, "checkpointing_interval"))


def construct(options: PipelineOptions, config: BatchConfig) -> beam.Pipeline:
    """The run's pipeline, built and not started: every setting a transform checks while the
    graph is built is refused here, before ``hold_output`` claims --output."""
    opts = options.view_as(BedrockBatchOptions)
    streaming = options.view_as(StandardOptions).streaming
    files = opts.sink in FORMATS
    # A batch run stages its files and publishes them all once it succeeded; a streaming run
    # never ends by itself, so each window's files appear (whole) as the window closes.
    root = commit.staging_dir(opts.output, config.run_id) if files and not streaming else opts.output
    p = beam.Pipeline(options=options)
    build(p, opts, config, root, hold_after_end=ended_by_the_cli(options))
    return p
