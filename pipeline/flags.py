"""The CLI's flags, defined with argparse alone: their value types, the help themes that group
them, and which command uses which. ``pipeline.options`` makes them a Beam PipelineOption and
parses a command's arguments."""
from __future__ import annotations

import argparse
import json
import math
from typing import Any, Callable

from pipeline.exit_codes import UsageError
from transforms.config import DEFAULT_MODEL_ID, UNDERSIZED_POLICIES
from transforms.core.bedrock import IN_FLIGHT, TERMINAL
from transforms.core.quotas import PROFILES
from transforms.insights.schemas import TASKS
from transforms.sources.common import DEFAULT_INPUT_LATENESS_SECONDS
from transforms.sources.validation import DEFAULT_MAX_TEXT_CHARS

QUOTA_FLAGS = ("max_concurrent_jobs", "max_records_per_file", "max_records_per_job",
               "min_records_per_job", "max_file_bytes", "max_job_bytes")
# Failure rows above this fraction of the rows out make the run exit 3 (see exit_codes).
DEFAULT_MAX_FAILURE_RATE = 0.2


RUN, PLAN, JOBS = ("run",), ("plan",), ("jobs",)


def _flag(group: Any, name: str, *, commands: tuple[str, ...] | None = None, **kwargs: Any) -> None:
    """Add one flag to ``group``, as --dash-form (documented) and --underscore_form (Beam's own).

    Args:
        group: the argparse group of the flag's theme.
        name: the flag in dash form, without the leading dashes.
        commands: the only commands whose ``--help`` shows it (default: every command showing the
            theme). Every command still accepts it, as every flag is a PipelineOption.
        **kwargs: argparse's ``add_argument`` settings.
    """
    shown_in = getattr(group, "command", None)
    if shown_in is not None and commands is not None and shown_in not in commands:
        return
    dashed, underscored = f"--{name}", f"--{name.replace('-', '_')}"
    flags = [dashed] if dashed == underscored else [dashed, underscored]
    group.add_argument(*flags, dest=name.replace("-", "_"), **kwargs)


def _csv(value: str) -> list[str]:
    return [v for v in (s.strip() for s in value.split(",")) if v]


def _number(value: str) -> float:
    """A float flag's value; NaN compares false with every limit, so no check would refuse it."""
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number")
    return number


def _positive(value: str) -> float:
    number = _number(value)
    if not 0 < number < math.inf:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number, e.g. 20")
    return number


# The longest duration a duration flag takes: ten years. Far longer ones crashed deep in a run
# (Python's sleep, Beam's microsecond timestamps, window dates past the year 9999).
MAX_SECONDS = 10 * 365 * 86400


def _seconds(low: float, example: str, *, whole: bool = False,
             above: bool = False) -> Callable[[str], float]:
    """The type of a duration flag: seconds from ``low`` (excluded when ``above``) up to
    MAX_SECONDS, refused with the accepted range otherwise.

    Args:
        low: The least value.
        example: A value and what it means, for the error.
        whole: Whole seconds only.
        above: ``low`` itself is refused.
    """
    least = f"above {low:g}" if above else f"from {low:g}"
    accepted = (f"{'whole ' if whole else ''}seconds {least} up to {MAX_SECONDS} (ten years): "
                f"use e.g. {example}")

    def parse(value: str) -> float:
        try:
            number = int(value) if whole else float(value)
        except ValueError:
            number = math.nan
        # NaN fails both comparisons.
        if not ((number > low if above else number >= low) and number <= MAX_SECONDS):
            raise argparse.ArgumentTypeError(f"{value!r} is not {accepted}")
        return number

    return parse


def _tags(value: str) -> dict[str, str]:
    try:
        tags = json.loads(value)
    except json.JSONDecodeError:
        tags = None
    if not isinstance(tags, dict):
        raise argparse.ArgumentTypeError(f"{value!r} is not a JSON object; write e.g. "
                                         f"'{{\"team\":\"cx\"}}'")
    return tags


# One function per help theme: adding a flag to a theme is one _flag line in its function.

def _input_flags(g: Any) -> None:
    _flag(g, "input", help="Transcript files: a path, glob or s3:// pattern")
    _flag(g, "input-format", default="auto",
          help="auto (by extension), jsonl, json, csv, txt, avro, parquet, transcribe")
    _flag(g, "id-field", default="id", help="Field holding the transcript id")
    _flag(g, "text-field", default="text", help="Field holding the transcript text")
    _flag(g, "turns-field", default="turns", help="Field holding speaker turns, if any")
    _flag(g, "timestamp-field", metavar="FIELD", commands=RUN,
          help="Field holding each record's event time (e.g. the call's start), so "
               "--window-seconds groups calls by when they happened, also on bounded --input: "
               "ISO 8601 with an offset or Z (2026-01-05T09:30:00Z), or epoch seconds or, from "
               "100000000000 on, milliseconds. A record without a valid one becomes an "
               "InvalidTimestamp failure row. Not with --kafka-topic (the message time is used)")
    _flag(g, "max-text-chars", type=int, default=DEFAULT_MAX_TEXT_CHARS,
          help="Longest transcript text accepted; longer ones become TextTooLong failure rows")
    _flag(g, "redact", action="store_true", commands=RUN,
          help="Mask card numbers (Luhn-checked), emails, phone numbers and US SSNs in the "
               "transcripts before they are sent (best-effort pattern matching)")
    _flag(g, "redactor", metavar="MODULE:FUNCTION", commands=RUN,
          help="Your own redactor instead, a callable text -> (text, {kind: count}) "
               "importable on the workers (for example one calling Amazon Comprehend)")


def _model_flags(g: Any) -> None:
    _flag(g, "model-id", default=DEFAULT_MODEL_ID, help="Bedrock model id or inference profile")
    _flag(g, "model-invocation-type", default="InvokeModel", choices=["InvokeModel", "Converse"])
    _flag(g, "prompt-template", commands=RUN + PLAN, help="File with the user prompt; {transcript} marks the text")
    _flag(g, "system-prompt-file", commands=RUN + PLAN, help="File with the system prompt")
    _flag(g, "max-tokens", commands=RUN + PLAN, type=int, default=512, help="Max output tokens per summary")
    _flag(g, "temperature", type=_number, default=0.2, commands=RUN + PLAN)
    # Insights: one schema-checked JSON object per call instead of a free-text summary.
    _flag(g, "task", choices=TASKS, default=None, commands=RUN + PLAN,
          help="summary (default): a free-text summary per call; insights: one JSON object "
               "per call, valid against --output-schema (default: the bundled schema)")
    _flag(g, "output-schema", metavar="FILE", commands=RUN + PLAN,
          help="Your own JSON Schema (an object schema) for --task insights; implies it")


def _quota_flags(g: Any) -> None:
    _flag(g, "quota-profile", default="aws-default", choices=sorted(PROFILES) + ["service-quotas"],
          help="Quota set; explicit quota flags override it")
    for name in QUOTA_FLAGS:
        _flag(g, name.replace("_", "-"), type=int, help=f"Override the profile's {name}")
    _flag(g, "max-cost-usd", type=_number, commands=RUN + PLAN,
          help="Refuse to submit a batch run whose estimated cost exceeds this many USD "
               "(the estimate `plan` prints; plan prints the plan, then refuses it); a "
               "streaming or Kafka run has no total to estimate, so there the flag is refused")
    _flag(g, "undersized-policy", default="pad-merge", choices=list(UNDERSIZED_POLICIES),
          help="What to do with a tail smaller than the minimum records per job")
    _flag(g, "on-demand-rps", type=_number, default=20.0, commands=RUN,
          help="On-demand policy: most InvokeModel/Converse calls per second per worker; "
               "throttling lowers the pace below it")
    _flag(g, "on-demand-concurrency", type=int, default=8, commands=RUN,
          help="On-demand policy: calls in flight at once per worker")


def _job_flags(g: Any) -> None:
    _flag(g, "run-id", help="Names this run's jobs; reuse it to resume a crashed run "
                            "(default: generated). jobs: only this run's jobs")
    _flag(g, "status", commands=JOBS, choices=sorted(IN_FLIGHT | TERMINAL),
          help="jobs: only jobs with this status")
    _flag(g, "stop", action="store_true", commands=JOBS,
          help="jobs: first ask Bedrock to stop the jobs of --run-id that have not ended")
    _flag(g, "bucket-uri", commands=RUN, help="s3://bucket/prefix for job input/output (local "
                                              "default: s3://bedrock-batch-local/runs)")
    _flag(g, "role-arn", commands=RUN,
          help="Service role Bedrock assumes to read/write S3 (required on aws)")
    _flag(g, "kms-key-id", commands=RUN, help="KMS key for the job output")
    _flag(g, "vpc-subnet-ids", type=_csv, default=[], commands=RUN,
          help="Comma-separated subnet ids")
    _flag(g, "vpc-security-group-ids", type=_csv, default=[], commands=RUN,
          help="Comma-separated SG ids")
    _flag(g, "tags", type=_tags, default={}, commands=RUN,
          help='Job tags as JSON, e.g. {"team":"cx"}')
    _flag(g, "job-timeout-hours", type=int, commands=RUN, help="Job timeout, 24-168 hours")
    _flag(g, "poll-interval-seconds", type=_seconds(1, "60", whole=True), commands=RUN,
          help="Seconds between job status polls, whole seconds (default: 60 on aws, "
               "1 on the local backend, whose jobs take seconds)")
    _flag(g, "max-record-retries", type=int, default=2, commands=RUN,
          help="Resubmissions of records a job did not answer")


def _aws_flags(g: Any) -> None:
    _flag(g, "backend", default="local", choices=["local", "aws"], commands=RUN + JOBS,
          help="local: embedded local Bedrock batch service + S3; aws: the real services")
    _flag(g, "aws-region", help="AWS region (default: the standard chain)")
    _flag(g, "aws-profile", help="Named AWS profile (default: the standard chain)")
    _flag(g, "bedrock-endpoint-url", commands=RUN + JOBS, help="Override the bedrock control-plane endpoint")
    _flag(g, "bedrock-runtime-endpoint-url", commands=RUN,
          help="Override the bedrock-runtime endpoint")
    _flag(g, "local-speed", type=_positive, default=20.0, commands=RUN,
          help="Speed factor of the local service's simulated job clock")


def _output_flags(g: Any) -> None:
    _flag(g, "job-output", commands=("collect",),
          help="collect: a finished job's output folder (local or s3://.../<job id>/)")
    _flag(g, "output", help="Output directory (local or s3://): writes summaries/ and failures/")
    _flag(g, "sink", default="parquet", choices=["parquet", "jsonl", "avro", "kafka", "bigquery"],
          help="Output file format, or kafka / bigquery (summaries and failures to two "
               "topics / tables)")
    _flag(g, "overwrite", action="store_true", commands=RUN,
          help="Replace the summaries/ and failures/ of another run in --output (without "
               "it, a run refuses an --output that holds another run's files)")
    _flag(g, "report-dir", commands=RUN,
          help="Folder (local or s3://) for the run report, report.json and report.html "
               "(default: --output for file sinks, reports/<run id> for kafka and bigquery)")
    _flag(g, "max-failure-rate", type=_number, default=DEFAULT_MAX_FAILURE_RATE, commands=RUN,
          help="Exit with code 3 when failure rows are more than this fraction of the rows "
               "out (default 0.2; 0 = any failure). A run where every record failed always "
               "exits 3")
    _flag(g, "bigquery-summaries-table", commands=RUN, help="--sink bigquery: project:dataset.table")
    _flag(g, "bigquery-failures-table", commands=RUN, help="--sink bigquery: project:dataset.table")
    _flag(g, "bigquery-create-disposition", commands=RUN, default="CREATE_IF_NEEDED",
          choices=["CREATE_IF_NEEDED", "CREATE_NEVER"],
          help="--sink bigquery: create missing tables (with the schema) or not")
    _flag(g, "bigquery-unreachable-timeout-seconds", commands=RUN,
          type=_seconds(0, "120", above=True), default=120.0,
          help="--sink bigquery: how long an insert retries a BigQuery that does not "
               "answer before the run fails (exit 1) (default 120)")
    _flag(g, "kafka-summaries-topic", commands=RUN, help="--sink kafka: topic for summary rows")
    _flag(g, "kafka-failures-topic", commands=RUN, help="--sink kafka: topic for failure rows")
    _flag(g, "kafka-format", commands=RUN, default="json", choices=["json", "avro"],
          help="--sink kafka: message value encoding (avro carries its schema in the "
               "'avro.schema' header)")
    _flag(g, "kafka-delivery-timeout-seconds", commands=RUN, type=_number,
          help="--sink kafka: how long the producer keeps retrying a row while the brokers "
               "are unreachable before the run fails (exit 1) (default: librdkafka's 300)")


def _streaming_flags(g: Any) -> None:
    _flag(g, "window-seconds", type=_seconds(1, "86400 for daily windows", whole=True),
          help="Fixed windows of this many seconds; each window's records become its jobs "
               "(early, as soon as a full job's worth is ready). On a bounded --input (no "
               "--streaming) it needs --timestamp-field")
    _flag(g, "allowed-lateness-seconds", type=_seconds(0, "86400 for a day"),
          default=DEFAULT_INPUT_LATENESS_SECONDS,
          help="Records arriving up to this long after their window closed are still "
               "summarized (in late jobs); later ones become LateRecord failure rows "
               "(Kafka) (default: one day)")
    # Each interval lists --input again (an S3 LIST on s3://): a tenth of a second at least.
    _flag(g, "watch-interval-seconds", type=_seconds(0.1, "10"), default=10.0,
          help="How often --input is checked for new files when streaming")
    _flag(g, "watch-seconds", type=_seconds(0, "3600 for an hour"),
          help="Stop watching for new input after this many seconds (default: never). On "
               "Flink with --checkpointing_interval the job would not end by itself: the CLI "
               "cancels it once every file under --input (every partition of --kafka-topic) is "
               "read, every record is a row and every job harvested; if that does not come, "
               "once nothing has changed for the longest of 5 minutes, two windows and ten job "
               "polls with no job running, or at the latest --window-seconds plus "
               "--job-timeout-hours (default 24) plus ten job polls after the watch (exit 4, "
               "naming what is missing)")
    _flag(g, "kafka-bootstrap-servers",
          help="Kafka brokers for --kafka-topic and --sink kafka (host:port,...)")
    _flag(g, "kafka-topic", help="Kafka topic to read transcripts from")


def _console_flags(g: Any) -> None:
    # Short forms as users expect them; Beam's parser accepts them like any other option.
    g.add_argument("-q", "--quiet", action="store_true",
                   help="No progress display and no INFO lines: the run id line, warnings, errors "
                        "and the result only")
    g.add_argument("-v", "--verbose", action="count", default=0,
                   help="More detail: -v adds the INFO log lines, -vv the DEBUG ones")
    _flag(g, "debug", action="store_true", help="Show stack traces")


# Help themes in the order --help lists them: (title, description, the function adding the flags).
THEMES: tuple[tuple[str, str | None, Callable[[Any], None]], ...] = (
    ("input", None, _input_flags),
    ("model and prompt", None, _model_flags),
    ("quotas", "Batch quotas the plan keeps to, and the on-demand pace", _quota_flags),
    ("jobs", None, _job_flags),
    ("AWS", "Where the clients point: the embedded local backend (default) or AWS",
     _aws_flags),
    ("output", None, _output_flags),
    ("streaming", "With Beam's --streaming", _streaming_flags),
    ("runner", "Beam's own pipeline flags pass through: --runner (default: FnApiRunner, or "
               "PrismRunner with --streaming; see the README's \"Local runners\"), "
               "--prism_location, --flink_master, --parallelism, --environment_type, "
               "--streaming, ...", None),
    ("console", None, _console_flags),
)

# The themes each command's --help shows.
COMMAND_THEMES: dict[str, tuple[str, ...]] = {
    "run": tuple(title for title, _, _ in THEMES),
    "plan": ("input", "model and prompt", "quotas", "AWS", "runner", "console"),
    "collect": ("output", "model and prompt", "AWS", "runner", "console"),
    "jobs": ("jobs", "AWS", "console"),
}


class _CommandGroup:
    """An argparse group that knows which command's help it is part of (see _flag)."""

    def __init__(self, group: Any, command: str) -> None:
        self._group = group
        self.command = command

    def add_argument(self, *args: Any, **kwargs: Any) -> Any:
        return self._group.add_argument(*args, **kwargs)


def add_every_flag(parser: argparse.ArgumentParser) -> None:
    """Add every flag of the CLI to ``parser``, grouped by theme (whichever command uses it)."""
    for title, description, add in THEMES:
        if add is not None:
            add(parser.add_argument_group(title, description))


def add_command_flags(parser: argparse.ArgumentParser, command: str) -> None:
    """Add the flags ``command`` documents to ``parser``, grouped by theme, for its --help.

    Args:
        parser: the command's parser (help only: parse_options parses every flag).
        command: one of COMMAND_THEMES.
    """
    for title, description, add in THEMES:
        if title not in COMMAND_THEMES[command]:
            continue
        group = parser.add_argument_group(title, description)
        if add is not None:
            add(_CommandGroup(group, command))


def command_flags(command: str) -> set[str]:
    """Every spelling of the flags ``command`` uses: the ones its --help lists.

    Args:
        command: one of COMMAND_THEMES.
    """
    return _spellings(lambda parser: add_command_flags(parser, command))


def cli_flags() -> set[str]:
    """Every spelling of every flag of the CLI (Beam's own are not among them)."""
    return _spellings(add_every_flag)


def _spellings(add: Callable[[argparse.ArgumentParser], None]) -> set[str]:
    parser = argparse.ArgumentParser(add_help=False)
    add(parser)
    return {flag for action in parser._actions for flag in action.option_strings}


def check_command_flags(argv: list[str], command: str) -> None:
    """Refuse this CLI's flags that ``command`` does not use: a flag is never ignored silently.

    Beam's own flags (--runner, --streaming, ...) are not checked here.

    Args:
        argv: The command's arguments.
        command: one of COMMAND_THEMES.
    """
    ours, used = cli_flags(), command_flags(command)
    unused = sorted({name for name in (arg.split("=", 1)[0] for arg in argv)
                     if name in ours and name not in used})
    if unused:
        raise UsageError(f"{command} does not use {', '.join(unused)}: drop "
                         f"{'it' if len(unused) == 1 else 'them'} (`python -m pipeline "
                         f"{command} --help` lists its flags)")
