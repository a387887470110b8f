"""`run`: run the pipeline ``graph.construct`` built while --output is held, end a run that
does not end by itself (``drain``), publish the file output and account for every record.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
from typing import Any, Callable, Iterator, TypeVar

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (CrossLanguageOptions, FlinkRunnerOptions,
                                                  GoogleCloudOptions, PipelineOptions,
                                                  StandardOptions)
from apache_beam.runners.runner import PipelineResult
from apache_beam.utils import subprocess_server

from pipeline import exit_codes, runners
from pipeline.options import BedrockBatchOptions
from pipeline.report.drain import drain_seconds, quiet_seconds
from pipeline.report.files import harvested_jobs, read_ledger, run_jobs
from pipeline.report.reconcile import Facts, RunJob
from pipeline.running.drain import drain
from pipeline.running.flink_rest import cancel_named, rest_base
from pipeline.running.graph import AGGREGATE_DIR, ended_by_the_cli, insights_schema, sinks
from pipeline.running.outcome import Report, write_run_report
from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.metrics import NAMESPACE
from transforms.core.storage import Storage, join
from transforms.insights.aggregate import read_overall
from transforms.sinks import commit
from transforms.sinks.files import FORMATS, rows_in
from transforms.sources.source_ledger import WATCH_END_NAME, parse_watch_end

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def run(p: beam.Pipeline, config: BatchConfig) -> Report:
    """Run the pipeline ``construct`` built (after ``prepare``, inside ``hold_output``), publish
    file output, and account for every record."""
    options = p.options
    opts = options.view_as(BedrockBatchOptions)
    streaming = options.view_as(StandardOptions).streaming
    files = opts.sink in FORMATS
    not_done: list[str] = []
    if ended_by_the_cli(options):
        with beam_services(options), flink_job_ends_with_the_run(options):
            result = p.run()
            listed = lambda: listed_inputs(opts, config)  # noqa: E731
            not_done = drain(
                # A topic's partitions are listed once (a consumer each time otherwise); the
                # watch's record is read at each look, as a restored watch may write it again.
                result, functools.cache(listed) if opts.kafka_topic else listed,
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
        with flink_job_ends_with_the_run(options), p:
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
def flink_job_ends_with_the_run(options: PipelineOptions) -> Iterator[None]:
    """On a Flink cluster (``--flink_master host:port``), cancel the run's Flink job when the
    run ends, however it ends (done, failed, cancelled by ``drain``, Ctrl-C): Beam's own cancel
    only stops its job server's client there (``pipeline.running.flink_rest``)."""
    runner = options.view_as(StandardOptions).runner
    base = rest_base(options.view_as(FlinkRunnerOptions).flink_master) if runners.is_flink(
        runner) else None
    try:
        yield
    finally:
        if base is not None:
            name = options.view_as(GoogleCloudOptions).job_name
            try:
                left = cancel_named(base, name)
            except OSError as err:
                left = [f"unknown ({err})"]
            if left:
                log.error("the Flink job %r (%s) may still run on %s: cancel it there (Flink's "
                          "web UI or `flink cancel`)", name, ", ".join(left), base)


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


def listed_inputs(opts: BedrockBatchOptions, config: BatchConfig) -> list[str] | None:
    """The source ledger paths the run's read must cover: the files the watch had listed when
    it ended (``WatchEnd``; None until it has ended), or the partitions of --kafka-topic
    (``transforms.sources.kafka_messages.partition_origin``)."""
    if opts.kafka_topic:
        from confluent_kafka import Consumer

        from transforms.sources.kafka import METADATA_TIMEOUT_SECONDS
        from transforms.sources.kafka_messages import partition_origin
        consumer = Consumer({"bootstrap.servers": opts.kafka_bootstrap_servers,
                             "group.id": "bedrock-batch-beam"})
        try:
            topic = consumer.list_topics(opts.kafka_topic,
                                         timeout=METADATA_TIMEOUT_SECONDS).topics[opts.kafka_topic]
            return [partition_origin(opts.kafka_topic, n) for n in topic.partitions]
        finally:
            consumer.close()
    # The watch's own record, not a listing of --input here: the watch ends a while after the
    # CLI's clock says (its clock starts at its first listing), and a file moved in meanwhile
    # would be read by the watch but not waited for.
    storage = Storage(config.aws.client("s3"))
    uri = join(layout.source_ledger_prefix(config.base_uri, config.run_id), WATCH_END_NAME)
    if not storage.exists(uri):
        return None
    return sorted(parse_watch_end(storage.read_text(uri)).paths)


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


def _durable(what: str, read: Callable[[], T]) -> T | None:
    """What ``read`` returns, or None (logged) when it fails: the report then says what it
    could not confirm instead of failing a run whose rows are written."""
    try:
        return read()
    except Exception as exc:  # botocore and filesystem errors, an unreadable ledger entry
        log.error("run report: %s could not be read (%s: %s); the Beam counters stand in",
                  what, type(exc).__name__, exc)
        return None
