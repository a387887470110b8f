"""`run`: read transcripts, summarize them with Bedrock batch jobs, write summaries and failures."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, TypeVar

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (CrossLanguageOptions, PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineResult
from apache_beam.utils import subprocess_server

from pipeline.cli import exit_codes
from pipeline.cli.options import DEFAULT_MAX_FAILURE_RATE, BedrockBatchOptions
from pipeline.cli.progress import note_written
from pipeline.pricing import estimate_cost, estimate_on_demand_cost
from pipeline.report.data import report_data, window_counter
from pipeline.report.drain import drain_seconds, quiet_seconds
from pipeline.report.files import harvested_jobs, read_ledger, run_jobs, write_report
from pipeline.report.reconcile import Accounting, Facts, RunJob, reconcile
from pipeline.running import runners
from pipeline.running.drain import drain
from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.metrics import NAMESPACE, counter
from transforms.core.model import Failure, Summary
from transforms.core.storage import Storage, join
from transforms.insights.aggregate import AggregateInsights, WriteInsightsAggregate, read_overall
from transforms.shards.write_shards import window_bounds
from transforms.sinks import commit
from transforms.sinks.files import FORMATS, WriteFailures, WriteSummaries, rows_in
from transforms.sources import ReadTranscripts, WatchTranscripts
from transforms.sources.source_ledger import SourceLedger
from transforms.summarize import SummarizeTranscripts, fixed_windows_with_lateness

log = logging.getLogger(__name__)
T = TypeVar("T")


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
                ledger: SourceLedger | None = None) -> dict:
    """The run's source; a file source, and a bounded Kafka read, keep their ledger in
    ``ledger`` (when given)."""
    fields = dict(id_field=opts.id_field, text_field=opts.text_field, turns_field=opts.turns_field,
                  max_text_chars=opts.max_text_chars)
    if opts.kafka_topic:
        from transforms.sources.kafka import ReadTranscriptsFromKafka
        if not opts.kafka_bootstrap_servers:
            raise ValueError("--kafka-topic needs --kafka-bootstrap-servers host:port")
        return p | "ReadKafka" >> ReadTranscriptsFromKafka(
            opts.kafka_bootstrap_servers, opts.kafka_topic, stop_after_seconds=opts.watch_seconds,
            allowed_lateness_seconds=opts.allowed_lateness_seconds, ledger=ledger, **fields)
    if not opts.input:
        raise ValueError("--input is required (or --kafka-topic)")
    if streaming:
        return p | "Watch" >> WatchTranscripts(
            opts.input, interval_seconds=opts.watch_interval_seconds,
            stop_after_seconds=opts.watch_seconds, format=opts.input_format,
            timestamp_field=opts.timestamp_field,
            allowed_lateness_seconds=opts.allowed_lateness_seconds,
            ledger=ledger, **fields)
    return p | "Read" >> ReadTranscripts(opts.input, format=opts.input_format,
                                         timestamp_field=opts.timestamp_field,
                                         ledger=ledger, **fields)


def check_windows(options: PipelineOptions, opts: BedrockBatchOptions) -> None:
    """Window flags that cannot work: windows of a bounded read need each record's event time.

    Records read from files without --streaming all carry Beam's minimum timestamp, so their
    time windows would mean nothing (and have no date to name their jobs and files by).
    """
    if opts.timestamp_field is not None and opts.kafka_topic:
        raise exit_codes.UsageError("--timestamp-field does not apply to --kafka-topic: Kafka "
                                    "records are windowed by their message time; drop "
                                    "--timestamp-field")
    streaming = options.view_as(StandardOptions).streaming
    if opts.window_seconds and not (streaming or opts.kafka_topic or opts.timestamp_field):
        raise exit_codes.UsageError(
            "--window-seconds on a bounded --input needs --timestamp-field FIELD (each "
            "record's event time, e.g. the call's start) to window by, or --streaming to "
            "window files by when they arrive")


def unused_flags(given: set[str], opts: BedrockBatchOptions, streaming: bool) -> str | None:
    """Why flags ``given`` on the command line do nothing in this run, or None: a flag of one
    sink or source mode given for another would otherwise be ignored silently.

    Args:
        given: The flags on the command line, in --dash-form.
        opts: The run's options.
        streaming: Whether the run is a --streaming one.
    """
    kafka_sink, watch = opts.sink == "kafka", streaming and not opts.kafka_topic
    rules = (
        (("--kafka-summaries-topic", "--kafka-failures-topic", "--kafka-format",
          "--kafka-delivery-timeout-seconds"), kafka_sink, "--sink kafka"),
        (("--bigquery-summaries-table", "--bigquery-failures-table",
          "--bigquery-create-disposition", "--bigquery-unreachable-timeout-seconds"),
         opts.sink == "bigquery", "--sink bigquery"),
        (("--kafka-bootstrap-servers",), kafka_sink or bool(opts.kafka_topic),
         "--kafka-topic or --sink kafka"),
        (("--watch-seconds",), watch or bool(opts.kafka_topic), "--streaming or --kafka-topic"),
        (("--watch-interval-seconds",), watch, "--streaming over a watched --input"),
        (("--allowed-lateness-seconds",), bool(opts.window_seconds or opts.kafka_topic) or watch,
         "--window-seconds, --streaming or --kafka-topic"),
        (("--overwrite",), opts.sink in FORMATS, "a file --sink (parquet, jsonl, avro)"),
    )
    for flags, used, needs in rules:
        unused = [flag for flag in flags if flag in given]
        if unused and not used:
            return (f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} nothing "
                    f"without {needs}: drop {'it' if len(unused) == 1 else 'them'} or add "
                    f"what {'it needs' if len(unused) == 1 else 'they need'}")
    return None


def check_run_flags(argv: list[str], options: PipelineOptions, opts: BedrockBatchOptions) -> None:
    """Refuse flags this run would ignore (see ``unused_flags``).

    Args:
        argv: The command's arguments.
        options: The run's pipeline options.
        opts: The run's options.
    """
    given = {arg.split("=", 1)[0].replace("_", "-") for arg in argv if arg.startswith("--")}
    problem = unused_flags(given, opts, options.view_as(StandardOptions).streaming)
    if problem:
        raise exit_codes.UsageError(problem)


def check_streaming(options: PipelineOptions, opts: BedrockBatchOptions) -> None:
    """Streaming flags that cannot work; an unbounded --streaming run on the FnApiRunner would
    never submit a job."""
    check_windows(options, opts)
    streaming = bool(options.view_as(StandardOptions).streaming)
    runner = options.view_as(StandardOptions).runner
    # A --streaming run is always windowed (build() refuses one without --window-seconds).
    prism_fails = runners.why_not_prism(streaming, streaming or bool(opts.window_seconds),
                                        opts.watch_seconds, opts.undersized_policy, opts.sink)
    if prism_fails and runner is not None and runners.is_prism(runner):
        raise exit_codes.UsageError(
            f"--runner {runner}: {prism_fails}; run on the FnApiRunner (drop --runner"
            f"{' and add --watch-seconds N' if streaming and not opts.watch_seconds else ''})")
    if not streaming:
        return
    check_checkpointed_watch(options, opts)
    # The FnApiRunner holds the watermark behind the file watch and the Kafka read until they
    # stop, so no window would close, and no job be submitted, before the watch ends
    # (docs/architecture.md, "Runner facts"). Prism, the default for --streaming, closes each.
    if runner is None:  # the CLI chooses (environment.choose_runner): Prism unless it fails
        if prism_fails and not opts.watch_seconds:
            raise exit_codes.UsageError(
                f"--streaming without --watch-seconds runs on Prism, but {prism_fails}; add "
                f"--watch-seconds N to run on the FnApiRunner, or run on Flink")
        return
    if not opts.watch_seconds and runners.is_fnapi(runner):  # 0 watches forever too
        raise exit_codes.UsageError(
            f"--streaming without --watch-seconds never submits a job on --runner {runner} (it "
            f"closes windows only when the watch ends); drop --runner to run on Prism, which "
            f"submits each window's jobs as it closes, or add --watch-seconds N")


def _given(options: PipelineOptions, name: str) -> str | None:
    """A runner flag Beam passes through to the job server (not one of Python's options)."""
    value = options.get_all_options(retain_unknown_options=True).get(name)
    return None if value is None else str(value)


def ended_by_the_cli(options: PipelineOptions) -> bool:
    """Whether ``run`` cancels the job itself once the durable facts agree
    (``runners.ended_by_the_cli``)."""
    opts = options.view_as(BedrockBatchOptions)
    standard = options.view_as(StandardOptions)
    return runners.ended_by_the_cli(standard.runner, bool(standard.streaming), opts.watch_seconds,
                                    _given(options, "checkpointing_interval"))


def check_checkpointed_watch(options: PipelineOptions, opts: BedrockBatchOptions) -> None:
    """A bounded watch or Kafka read on Flink with checkpointing ends when the CLI sees every
    record as a row in --output (``pipeline.running.drain``): Beam's idle shutdown of sources
    would drop the records still on their way as late, and other sinks' rows are not counted
    where they land."""
    if not ended_by_the_cli(options):
        return
    if _given(options, "shutdown_sources_after_idle_ms") is not None:
        raise exit_codes.UsageError(
            "--shutdown_sources_after_idle_ms with --checkpointing_interval and --watch-seconds: "
            "a source ended this way drops the records still on their way as late; drop the "
            "flag, the run ends once every record is a row and every job is harvested")
    if opts.sink not in FORMATS:
        raise exit_codes.UsageError(
            f"--sink {opts.sink} with --checkpointing_interval and --watch-seconds on Flink: the "
            f"run ends once the rows in --output account for every record, which needs a file "
            f"sink; use --sink {' or '.join(sorted(FORMATS))}")


def build(p: beam.Pipeline, opts: BedrockBatchOptions, config: BatchConfig, files_root: str) -> None:
    """The whole run; file sinks write under ``files_root``."""
    streaming = p.options.view_as(StandardOptions).streaming
    if streaming and not opts.window_seconds:
        raise ValueError("--streaming needs --window-seconds N: jobs are submitted per window")
    read = read_source(p, opts, streaming, SourceLedger(
        layout.source_ledger_prefix(config.base_uri, config.run_id), config.aws))
    transcripts, source_failures = read["transcripts"], read["failures"]
    if opts.window_seconds:
        # With allowed lateness: a record behind the watermark is summarized in a late pane
        # instead of being dropped silently at the first GroupByKey (the dedup inside
        # SummarizeTranscripts).
        def windows() -> beam.WindowInto:
            return fixed_windows_with_lateness(opts.window_seconds, opts.allowed_lateness_seconds)
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


def prepare(opts: BedrockBatchOptions, run_id: str) -> None:
    """Checks that need no pipeline, before the output folder is claimed and any job exists."""
    if not 0 <= opts.max_failure_rate <= 1:
        raise exit_codes.UsageError(f"--max-failure-rate {opts.max_failure_rate:g} is not a "
                                    f"fraction: pass a number from 0 to 1, e.g. 0.05")
    if opts.input and not opts.kafka_topic:
        files = opts.sink in FORMATS
        overlap = commit.output_in_input(opts.input, opts.output if files else None, run_id,
                                         FORMATS.get(opts.sink, ""), opts.report_dir)
        if overlap:
            raise exit_codes.UsageError(overlap)


@contextlib.contextmanager
def hold_output(opts: BedrockBatchOptions, run_id: str) -> Iterator[None]:
    """Hold a file sink's --output for ``run_id`` while the block runs (see ``commit.hold``);
    another process holding it, or another run's files in it, is a usage error (exit 2).
    Kafka and BigQuery sinks have no folder to hold.

    Args:
        opts: The run's options.
        run_id: The run's id.
    """
    if opts.sink not in FORMATS:
        yield
        return
    FileSystems.set_options(opts)  # e.g. s3:// settings; a pipeline sets them only when built
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(commit.hold(opts.output, run_id, opts.overwrite, opts))
        except commit.OutputInUse as exc:
            raise exit_codes.UsageError(str(exc)) from None
        yield


_FAILURES_PREFIX = "failures."


@dataclass(frozen=True)
class Report:
    """The run's accounting: the plugin's Beam counters (``transforms.core.metrics``), summed by
    name, reconciled with the durable facts (``pipeline.report.reconcile``): the source
    ledger, the run's jobs and the rows in the file sink's folders.

    ``written`` names the destinations that hold this run's rows (nothing when none do);
    ``report_html`` is the path of the run's report.html, or why it was not written.
    """

    run_id: str
    counters: dict[str, int]
    written: tuple[str, ...] = ()
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE
    # The overall AggregateInsights row of an insights run with a file sink (None otherwise).
    insights_aggregate: dict[str, Any] | None = None
    report_html: str | None = None
    facts: Facts = Facts()
    # What the durable facts still lacked when the CLI cancelled a run that does not end by
    # itself (``pipeline.running.drain``); empty when it was done.
    not_done: tuple[str, ...] = ()

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def ledger_unit(self) -> str:
        """What the source ledger's entries are: Kafka partitions or files."""
        ledger = self.facts.ledger or ()
        return "partition" if ledger and all(e.path.startswith("kafka:") for e in ledger) else "file"

    @functools.cached_property
    def accounting(self) -> Accounting:
        return reconcile(self.counters, self.facts)

    @property
    def records_in(self) -> int:
        return self.accounting.records_in  # counted at the source, one per input unit

    @property
    def summaries(self) -> int:
        return self.accounting.summaries

    @property
    def failures(self) -> int:
        return self.accounting.failures

    @property
    def unaccounted(self) -> int:
        """Records in minus rows out: > 0 lost, < 0 produced twice (or not counted in)."""
        return self.accounting.unaccounted

    def failures_by_cause(self) -> list[tuple[str, str, int]]:
        """(stage, error code, count), most frequent first."""
        causes = []
        for name, count in self.counters.items():
            if name.startswith(_FAILURES_PREFIX) and count:
                stage, _, code = name[len(_FAILURES_PREFIX):].partition(".")
                causes.append((stage, code, count))
        return sorted(causes, key=lambda c: (-c[2], c[0], c[1]))

    def failure_rate(self) -> float:
        out = self.summaries + self.failures
        return self.failures / out if out else 0.0

    def exit_code(self) -> int:
        # A failure row its table rejected was logged but is in no output: as good as lost.
        # So is a job of the run that was never harvested: its records are in no output.
        if (self.unaccounted or self.get("manifest_mismatches") or self.get("failures_rejected")
                or self.accounting.open_jobs or self.accounting.jobs_without_input()
                or self.not_done):
            return exit_codes.UNACCOUNTED
        if self.failures and (not self.summaries or self.failure_rate() > self.max_failure_rate):
            return exit_codes.FAILURES_ABOVE_THRESHOLD
        return exit_codes.OK

    def cost(self, model_id: str) -> tuple[float, float] | None:
        """Estimated (batch, on-demand) USD, or None for a model without a listed price."""
        batch = estimate_cost(model_id, self.get("input_tokens"), self.get("output_tokens"))
        on_demand = estimate_on_demand_cost(model_id, self.get("on_demand_input_tokens"),
                                            self.get("on_demand_output_tokens"))
        if batch is None or on_demand is None:
            return None
        return batch, on_demand

    def lines(self, model_id: str) -> list[str]:
        failures = self.failures
        rate = f"  ({self.failure_rate():.1%} of rows out)" if failures else ""
        books = self.accounting
        lines = [
            f"run id          {self.run_id}",
            f"records in      {self.records_in}{ledger_note(books.ledger_files, self.ledger_unit)}",
            f"summaries       {self.summaries}  ({self.get('summaries_truncated')} cut at max tokens)",
            f"failures        {failures}{rate}",
        ]
        lines += [f"  {stage:<8} {code:<32} {count}" for stage, code, count in self.failures_by_cause()]
        lines += [
            f"jobs            {self.get('jobs_planned')} planned, {self.get('jobs_submitted')} "
            f"submitted, {self.get('jobs_finished')} finished, {self.get('jobs_not_created')} "
            f"not created{listed_note(books.jobs, len(books.open_jobs))}",
            f"tokens          batch {self.get('input_tokens')} in, {self.get('output_tokens')} out; "
            f"on demand {self.get('on_demand_calls')} calls, "
            f"{self.get('on_demand_input_tokens')} in, {self.get('on_demand_output_tokens')} out",
        ]
        cost = self.cost(model_id)
        if cost is None:
            lines.append(f"estimated cost  unknown: no listed price for {model_id}")
        else:
            batch, on_demand = cost
            lines.append(f"estimated cost  ${batch + on_demand:.4f} (batch ${batch:.4f}, on demand "
                         f"${on_demand:.4f}; estimate from list prices)")
        for name, text in (("failures_rejected", "failure rows the failures table rejected "
                                                 "(logged above)"),
                           ("manifest_mismatches", "job manifests disagree with their output "
                                                   "files (logged above)")):
            if self.get(name):
                lines.append(f"NOT ACCOUNTED   {self.get(name)} {text}")
        if books.counters_differ():
            lines.append(f"counted         {books.counted_in} in, {books.counted_summaries} "
                         f"summaries, {books.counted_failures} failures by the Beam counters "
                         f"(a restarted attempt starts them from zero; the figures above are "
                         f"the durable ones)")
        lines += books.problems(model_id)
        lines += [f"NOT ACCOUNTED   cancelled before done: {gap}" for gap in self.not_done]
        if self.unaccounted > 0:
            lines.append(f"NOT ACCOUNTED   {self.unaccounted} records in are neither a summary "
                         f"nor a failure row: records were lost")
        elif self.unaccounted < 0:
            lines.append(f"NOT ACCOUNTED   {-self.unaccounted} more rows out than records in: "
                         f"rows were produced twice, or the source did not count them")
        redacted = redaction_line(self.counters)
        if redacted:
            lines.append(redacted)
        if self.insights_aggregate:
            lines.append(insights_line(self.insights_aggregate))
        lines.append(f"written to      {', '.join(self.written) if self.written else 'nothing'}")
        lines.append(self.verdict())
        if self.report_html:
            lines.append(f"report          {self.report_html}")
        return lines

    def verdict(self) -> str:
        """The exit code and why, as the report's verdict line."""
        code = self.exit_code()
        if code == exit_codes.UNACCOUNTED:
            why = "records are not accounted for (see NOT ACCOUNTED above)"
        elif code == exit_codes.FAILURES_ABOVE_THRESHOLD and not self.summaries:
            why = "every record failed (see the failure rows)"
        elif code == exit_codes.FAILURES_ABOVE_THRESHOLD:
            why = (f"failures are {self.failure_rate():.1%} of rows, above --max-failure-rate "
                   f"{self.max_failure_rate:g} (see the failure rows)")
        elif self.accounting.input_empty():
            why = "the input held no records"
        elif self.accounting.input_empty() is None:
            missing = [what for what, known in (
                ("no source ledger", self.accounting.ledger_files is not None),
                ("no job ledger", self.accounting.jobs is not None)) if not known]
            why = f"no record was counted in ({' and '.join(missing)} to confirm it)"
        else:
            why = "every record is a summary or a failure row"
        return f"exit code       {code}: {why}"


def ledger_note(files: int | None, unit: str = "file") -> str:
    """What the records in figure rests on, beside it.

    Args:
        files: The source ledger's entries, or None without a ledger (the figure is the
            source counter's then).
        unit: What an entry is: a file, or a Kafka partition.
    """
    if files is None:
        return ""
    return f"  (source ledger: {files} {unit}{'' if files == 1 else 's'})"


def listed_note(jobs: int | None, open_jobs: int) -> str:
    """The jobs line's ending: the run's jobs as the service lists them.

    Args:
        jobs: The jobs of the run at the service, or None when not known (the verdict
            says so when it matters).
        open_jobs: How many of them the run never harvested.
    """
    if jobs is None:
        return ""
    return f"; {jobs} at the service, {open_jobs} not harvested"


def insights_line(aggregate: Mapping[str, Any]) -> str:
    """The report's one line on the overall insights aggregate.

    Args:
        aggregate: The overall AggregateInsights row.
    """
    rate, change = aggregate["resolution_rate"], aggregate["mean_sentiment_change"]
    items = sum(aggregate["open_action_items_by_owner"].values())
    return (f"insights        {aggregate['calls']} calls, "
            f"{'no resolution stated' if rate is None else f'{rate:.0%} resolved'}, mean "
            f"sentiment change {'n/a' if change is None else f'{change:+.2f}'}, {items} open "
            f"action items (see {AGGREGATE_DIR}/)")


def redaction_line(counters: dict[str, int]) -> str | None:
    """What --redact masked, or None when no redaction ran."""
    kinds = {name[len("redacted_"):]: n for name, n in sorted(counters.items())
             if name.startswith("redacted_")}
    if not counters.get("redaction_transcripts") and not kinds:
        return None
    labels = {"ssns": "SSNs"}
    found = ", ".join(f"{n} {labels.get(kind, kind.replace('_', ' '))}" for kind, n in kinds.items())
    return (f"redacted        {found or 'nothing'} in {counters.get('redaction_transcripts', 0)} "
            f"transcripts (best-effort)")


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
    build(p, opts, config, root)
    return p


def run(p: beam.Pipeline, config: BatchConfig) -> Report:
    """Run the pipeline ``construct`` built (after ``prepare``, inside ``hold_output``), publish
    file output, and account for every record."""
    options = p.options
    opts = options.view_as(BedrockBatchOptions)
    streaming = options.view_as(StandardOptions).streaming
    files = opts.sink in FORMATS
    not_done: list[str] = []
    if ended_by_the_cli(options):
        with beam_services(options):
            result = p.run()
            not_done = drain(
                result, lambda: listed_inputs(opts),
                lambda: durable_facts(opts, config, run_jobs(
                    config.aws.client("bedrock"), config.aws.client("s3"), config.run_id)[0]),
                opts.watch_seconds,
                drain_seconds(opts.window_seconds, config.poll_interval_seconds,
                              opts.job_timeout_hours),
                quiet_seconds(opts.window_seconds, config.poll_interval_seconds),
                max(config.poll_interval_seconds, 5))
            counters = _durable("the Beam counters", lambda: counted(result)) or {}
    else:
        # Leaving Beam's own block runs the built pipeline and waits for it; the block also
        # keeps the runner's job server (Flink's) up for the run, as building inside it would.
        with p:
            pass
        result = p.result
        counters = counted(result)
    if files and streaming:
        commit.mark_finished(opts.output, config.run_id)
    elif files:
        commit.publish(opts.output, config.run_id)
    jobs, jobs_note = run_jobs(config.aws.client("bedrock"), config.aws.client("s3"),
                               config.run_id)
    report = Report(config.run_id, counters, max_failure_rate=opts.max_failure_rate,
                    facts=durable_facts(opts, config, jobs), not_done=tuple(not_done))
    if files:
        written = commit.written_dirs(opts.output)
        if insights_schema(config) is not None:
            report = dataclasses.replace(
                report, insights_aggregate=read_overall(join(opts.output, AGGREGATE_DIR)))
    else:
        (to_summaries, to_failures), _, _ = sinks(opts)
        written = [d for d, rows in ((to_summaries, report.summaries),
                                     (to_failures, report.failures)) if rows]
    report = dataclasses.replace(report, written=tuple(written))
    return dataclasses.replace(report, report_html=write_run_report(
        report, opts, config, streaming, jobs, jobs_note))


@contextlib.contextmanager
def beam_services(options: PipelineOptions) -> Iterator[None]:
    """What Beam's own ``with pipeline`` block holds while a pipeline runs (the job server a
    FlinkRunner starts stays up), for a run the CLI ends itself."""
    with subprocess_server.JavaJarServer.beam_services(
            options.view_as(CrossLanguageOptions).beam_services), \
            subprocess_server.SubprocessServer.cache_subprocesses():
        yield


def counted(result: PipelineResult) -> dict[str, int]:
    """The plugin's Beam counters, summed by name."""
    counters: dict[str, int] = {}
    for metric in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        name = metric.key.metric.name
        counters[name] = counters.get(name, 0) + (metric.committed or 0)
    return counters


def listed_inputs(opts: BedrockBatchOptions) -> list[str]:
    """The source ledger paths the run's read must have by now: the files under --input, or
    the partitions of --kafka-topic (``transforms.sources.kafka.partition_origin``)."""
    if opts.kafka_topic:
        from confluent_kafka import Consumer

        from transforms.sources.kafka import METADATA_TIMEOUT_SECONDS, partition_origin
        consumer = Consumer({"bootstrap.servers": opts.kafka_bootstrap_servers,
                             "group.id": "bedrock-batch-beam"})
        try:
            topic = consumer.list_topics(opts.kafka_topic,
                                         timeout=METADATA_TIMEOUT_SECONDS).topics[opts.kafka_topic]
            return [partition_origin(opts.kafka_topic, n) for n in topic.partitions]
        finally:
            consumer.close()
    from transforms.sources.source_ledger import file_identity
    (result,) = FileSystems.match([opts.input])
    # Named as the ledger names them: a relative or symlinked --input matches the same files
    # under other spellings, and the run would never be seen as done.
    return [file_identity(found.path) for found in result.metadata_list]


def durable_facts(opts: BedrockBatchOptions, config: BatchConfig,
                  jobs: list[dict[str, Any]] | None) -> Facts:
    """What outlives an attempt of the pipeline, for ``Report``: the source ledger (file
    sources), the run's jobs and whether each was harvested, the rows in a file sink's folders.

    The rows are written by then: a fact that cannot be read is logged and left unknown (the
    counters stand in, and the report says what it could not confirm).

    Args:
        opts: The run's options.
        config: The run's settings (where the run keeps its files, AWS clients).
        jobs: The run's jobs (``run_jobs``), or None when the service could not be asked.
    """
    storage = Storage(config.aws.client("s3"))
    run_jobs_ = None
    if jobs is not None:
        harvested = _durable("the run's harvest markers", lambda: harvested_jobs(
            storage, layout.harvested_prefix(config.base_uri, config.run_id)))
        if harvested is not None:
            run_jobs_ = tuple(RunJob(job["name"], job["status"], job["name"] in harvested,
                                     job["job_output"]) for job in jobs)
    # A Kafka read ledgers each partition once its bounded read has ended: none if unbounded.
    kept = not opts.kafka_topic or bool(opts.watch_seconds)
    ledger = None if not kept else _durable("the source ledger", lambda: read_ledger(
        storage, layout.source_ledger_prefix(config.base_uri, config.run_id)))
    rows = None
    if opts.sink in FORMATS:
        rows = _durable("the rows in --output", lambda: (
            rows_in(join(opts.output, "summaries"), opts.sink),
            rows_in(join(opts.output, "failures"), opts.sink)))
    return Facts(ledger=ledger, jobs=run_jobs_, rows=rows)


def report_dir(opts: BedrockBatchOptions, run_id: str) -> str:
    """Where report.json and report.html go: --report-dir, else the --output of a file sink,
    else reports/<run id> in the current directory (Kafka and BigQuery have no folder).

    Args:
        opts: The run's options.
        run_id: The run's id.
    """
    if opts.report_dir:
        return opts.report_dir
    return opts.output if opts.sink in FORMATS else join("reports", run_id)


def _durable(what: str, read: Callable[[], T]) -> T | None:
    """What ``read`` returns, or None (logged) when it fails: the report then says what it
    could not confirm instead of failing a run whose rows are written."""
    try:
        return read()
    except Exception as exc:  # botocore and filesystem errors, an unreadable ledger entry
        log.error("run report: %s could not be read (%s: %s); the Beam counters stand in",
                  what, type(exc).__name__, exc)
        return None


def write_run_report(report: Report, opts: BedrockBatchOptions, config: BatchConfig,
                     streaming: bool, jobs: list[dict[str, Any]] | None,
                     jobs_note: str | None) -> str:
    """Write report.json and report.html.

    The rows are written by then, so a report that cannot be written is logged and named in
    the returned text; it does not change the exit code.

    Args:
        report: The run's accounting.
        opts: The run's options (where the report goes).
        config: The run's settings (AWS endpoints, model).
        streaming: Whether the run was a streaming one.
        jobs: The run's jobs (``run_jobs``), or None when the service could not be asked.
        jobs_note: Why ``jobs`` may be incomplete, or None.

    Returns:
        The path of report.html, or why it was not written.
    """
    directory = report_dir(opts, config.run_id)
    harvested = {job.name for job in report.facts.jobs or () if job.harvested}
    try:
        entries = [{**job, "harvested": job["name"] in harvested} for job in jobs or ()]
        data = report_data(report, config.model_id, entries, streaming=streaming,
                           jobs_note=jobs_note, insights_aggregate=report.insights_aggregate)
        return write_report(directory, data)
    except Exception as exc:  # e.g. a read-only folder: the rows are written all the same
        log.error("the run report could not be written to %s: %s", directory, exc)
        return f"not written to {directory}: {type(exc).__name__}: {exc}"
