"""Checks of `run`'s flags against each other and the runner: windows that need event times,
flags this run would ignore, streaming that cannot close a window, a checkpointed watch.

Each raises ``UsageError`` with one line naming the flag and the fix, before anything starts.
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import exit_codes, runners
from pipeline.options import BedrockBatchOptions, runner_flag
from pipeline.running.graph import ended_by_the_cli
from transforms.sinks.files import FORMATS


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


def check_checkpointed_watch(options: PipelineOptions, opts: BedrockBatchOptions) -> None:
    """A bounded watch or Kafka read on Flink with checkpointing ends when the CLI sees every
    record as a row in --output (``pipeline.running.drain``): Beam's idle shutdown of sources
    would drop the records still on their way as late, and other sinks' rows are not counted
    where they land."""
    if not ended_by_the_cli(options):
        return
    if runner_flag(options, "shutdown_sources_after_idle_ms") is not None:
        raise exit_codes.UsageError(
            "--shutdown_sources_after_idle_ms with --checkpointing_interval and --watch-seconds: "
            "a source ended this way drops the records still on their way as late; drop the "
            "flag, the run ends once every record is a row and every job is harvested")
    if opts.sink not in FORMATS:
        raise exit_codes.UsageError(
            f"--sink {opts.sink} with --checkpointing_interval and --watch-seconds on Flink: the "
            f"run ends once the rows in --output account for every record, which needs a file "
            f"sink; use --sink {' or '.join(sorted(FORMATS))}")
