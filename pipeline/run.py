"""`run`: read transcripts, summarize them with Bedrock batch jobs, write summaries and failures."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.transforms import window

from pipeline.options import BedrockBatchOptions
from transforms.config import BatchConfig
from transforms.pricing import estimate_cost
from transforms.sinks.files import WriteFailures, WriteSummaries
from transforms.sources import DeduplicateTranscripts, ReadTranscripts, WatchTranscripts
from transforms.storage import join
from transforms.summarize import SummarizeTranscripts

log = logging.getLogger(__name__)


def _counted(name: str):
    counter = Metrics.counter("pipeline", name)

    def count(element: Any) -> Any:
        counter.inc()
        return element
    return count


def read_source(p: beam.Pipeline, opts: BedrockBatchOptions, streaming: bool) -> dict:
    fields = dict(id_field=opts.id_field, text_field=opts.text_field, turns_field=opts.turns_field)
    if opts.kafka_topic:
        from transforms.kafka_source import ReadTranscriptsFromKafka
        if not opts.kafka_bootstrap_servers:
            raise ValueError("--kafka-topic needs --kafka-bootstrap-servers host:port")
        return p | "ReadKafka" >> ReadTranscriptsFromKafka(
            opts.kafka_bootstrap_servers, opts.kafka_topic, stop_after_seconds=opts.watch_seconds,
            **fields)
    if not opts.input:
        raise ValueError("--input is required (or --kafka-topic)")
    if streaming:
        return p | "Watch" >> WatchTranscripts(
            opts.input, interval_seconds=opts.watch_interval_seconds,
            stop_after_seconds=opts.watch_seconds, format=opts.input_format, **fields)
    return p | "Read" >> ReadTranscripts(opts.input, format=opts.input_format, **fields)


def build(p: beam.Pipeline, opts: BedrockBatchOptions, config: BatchConfig) -> None:
    streaming = p.options.view_as(StandardOptions).streaming
    if streaming and not opts.window_seconds:
        raise ValueError("--streaming needs --window-seconds N: jobs are submitted per window")
    read = read_source(p, opts, streaming)
    transcripts, source_failures = read["transcripts"], read["failures"]
    if opts.window_seconds:
        windows = window.FixedWindows(opts.window_seconds)
        transcripts = transcripts | "Window" >> beam.WindowInto(windows)
        source_failures = source_failures | "WindowFailures" >> beam.WindowInto(windows)
    unique = transcripts | "Dedup" >> DeduplicateTranscripts()
    result = unique["transcripts"] | "Summarize" >> SummarizeTranscripts(config)
    failures = ((source_failures, unique["failures"], result["failures"])
                | "AllFailures" >> beam.Flatten())
    _, write_summaries, write_failures = sinks(opts)
    if opts.sink == "bigquery":
        # Rows a table rejects come back: rejected summaries join the failures; rejected
        # failures can only be reported (logged at ERROR and counted in the run report).
        written = result["summaries"] | "WriteSummaries" >> write_summaries
        rejected_summaries = written["failures"] | "CountRejected" >> beam.Map(
            _counted("summaries_rejected"))
        failures = ((failures, rejected_summaries) | "WithRejected" >> beam.Flatten())
        rejected = (failures | "CountFailures" >> beam.Map(_counted("failures_written"))
                    | "WriteFailures" >> write_failures)["failures"]
        rejected | "ReportRejected" >> beam.Map(_report_rejected)
        result["summaries"] | "CountSummaries" >> beam.Map(_counted("summaries_written"))
        return
    (result["summaries"] | "CountSummaries" >> beam.Map(_counted("summaries_written"))
     | "WriteSummaries" >> write_summaries)
    (failures | "CountFailures" >> beam.Map(_counted("failures_written"))
     | "WriteFailures" >> write_failures)


def _report_rejected(failure: Any) -> None:
    Metrics.counter("pipeline", "failures_rejected").inc()
    log.error("failures table rejected a failure row: %s", failure)


def sinks(opts: BedrockBatchOptions) -> tuple[str, beam.PTransform, beam.PTransform]:
    """(where summaries go, for the report; the summaries sink; the failures sink)."""
    if opts.sink == "kafka":
        from transforms.sinks.kafka import WriteFailuresToKafka, WriteSummariesToKafka
        servers, topics = opts.kafka_bootstrap_servers, (opts.kafka_summaries_topic,
                                                          opts.kafka_failures_topic)
        if not servers or not all(topics):
            raise ValueError("--sink kafka needs --kafka-bootstrap-servers, "
                             "--kafka-summaries-topic and --kafka-failures-topic")
        return (f"kafka:{topics[0]} (failures: kafka:{topics[1]})",
                WriteSummariesToKafka(servers, topics[0], format=opts.kafka_format),
                WriteFailuresToKafka(servers, topics[1], format=opts.kafka_format))
    if opts.sink == "bigquery":
        from transforms.sinks.bigquery import WriteFailuresToBigQuery, WriteSummariesToBigQuery
        tables = (opts.bigquery_summaries_table, opts.bigquery_failures_table)
        if not all(tables):
            raise ValueError("--sink bigquery needs --bigquery-summaries-table and "
                             "--bigquery-failures-table (project:dataset.table)")
        create = opts.bigquery_create_disposition
        return (f"bigquery:{tables[0]} (failures: bigquery:{tables[1]})",
                WriteSummariesToBigQuery(tables[0], create_disposition=create),
                WriteFailuresToBigQuery(tables[1], create_disposition=create))
    if not opts.output:
        raise ValueError(f"--output DIR is required with --sink {opts.sink}")
    return (f"{join(opts.output, 'summaries')} (failures: {join(opts.output, 'failures')})",
            WriteSummaries(join(opts.output, "summaries"), format=opts.sink),
            WriteFailures(join(opts.output, "failures"), format=opts.sink))


@dataclass(frozen=True)
class Report:
    run_id: str
    counters: dict[str, int]

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    def lines(self, destination: str, model_id: str) -> list[str]:
        # A summary the sink rejected (BigQuery) was written again as a failure row.
        summaries = self.get("summaries_written") - self.get("summaries_rejected")
        failures = self.get("failures_written")
        tin, tout = self.get("input_tokens"), self.get("output_tokens")
        lines = [
            f"run id          {self.run_id}",
            f"records in      {summaries + failures}",
            f"summaries       {summaries}  ({self.get('summaries_truncated')} cut at max tokens)",
            f"failures        {failures}",
            f"jobs            {self.get('jobs_submitted')} submitted, {self.get('jobs_finished')} finished",
            f"tokens          {tin} in, {tout} out",
        ]
        cost = estimate_cost(model_id, tin, tout)
        if cost is not None:
            lines.append(f"estimated cost  ${cost:.4f} at batch prices (estimate)")
        redacted = redaction_line(self.counters)
        if redacted:
            lines.append(redacted)
        if self.get("failures_rejected"):
            lines.append(f"NOT WRITTEN     {self.get('failures_rejected')} failure rows the "
                         f"failures table rejected (logged above)")
        lines.append(f"written to      {destination}")
        return lines


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


def run(options: PipelineOptions, config: BatchConfig) -> Report:
    opts = options.view_as(BedrockBatchOptions)
    with beam.Pipeline(options=options) as p:
        build(p, opts, config)
    result = p.result
    counters: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + (counter.committed or 0)
    return Report(config.run_id, counters)
