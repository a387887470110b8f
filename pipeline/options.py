"""Every CLI flag as a Beam PipelineOption, so the transforms see them under any runner."""
from __future__ import annotations

import argparse
import difflib
import importlib
import json
import logging
import math
import re
import uuid
import datetime as dt
from typing import Any, Callable, Iterator

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.exit_codes import UsageError
from pipeline import runners
from transforms.config import DEFAULT_MODEL_ID, UNDERSIZED_POLICIES, BatchConfig
from transforms.core.aws import AwsConfig
from transforms.core.bedrock import IN_FLIGHT, TERMINAL, JobConfig
from transforms.core.quotas import PROFILES, Quotas, profile
from transforms.insights.schemas import TASKS, SchemaFileError, resolve_task
from transforms.prepare.records import PromptConfig
from transforms.prepare.redaction import redact_pii
from transforms.sources.common import DEFAULT_INPUT_LATENESS_SECONDS
from transforms.sources.validation import DEFAULT_MAX_TEXT_CHARS

log = logging.getLogger(__name__)

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
    parser = argparse.ArgumentParser(add_help=False)
    add_command_flags(parser, command)
    return {flag for action in parser._actions for flag in action.option_strings}


def check_command_flags(argv: list[str], command: str) -> None:
    """Refuse this CLI's flags that ``command`` does not use: a flag is never ignored silently.

    Beam's own flags (--runner, --streaming, ...) are not checked here.

    Args:
        argv: The command's arguments.
        command: one of COMMAND_THEMES.
    """
    ours = {flag for action in _cli_parser()._actions for flag in action.option_strings}
    used = command_flags(command)
    unused = sorted({name for name in (arg.split("=", 1)[0] for arg in argv)
                     if name in ours and name not in used})
    if unused:
        raise UsageError(f"{command} does not use {', '.join(unused)}: drop "
                         f"{'it' if len(unused) == 1 else 'them'} (`python -m pipeline "
                         f"{command} --help` lists its flags)")


class BedrockBatchOptions(PipelineOptions):
    """Every flag of the CLI, so the transforms see them under any runner."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        for title, description, add in THEMES:
            if add is not None:
                add(parser.add_argument_group(title, description))


class _StrictParser(_BeamArgumentParser):
    """Beam's parser (it knows ValueProvider options), raising UsageError instead of printing
    usage and exiting, so the CLI prints one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _option_classes(cls: type = PipelineOptions) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _option_classes(sub)


def known_flags() -> set[str]:
    """Every flag of this CLI and of every Beam PipelineOptions class imported so far."""
    return {flag for action in _all_options_parser()._actions for flag in action.option_strings}


def _all_options_parser() -> argparse.ArgumentParser:
    parser = _StrictParser(allow_abbrev=False, add_help=False)
    seen: set[str] = set()
    for cls in _option_classes():
        # Beam pipeline classes may be defined twice (e.g. re-imported main sessions); add once.
        if str(cls) in seen:
            continue
        seen.add(str(cls))
        cls._add_argparse_args(parser)
    return parser


def _cli_parser() -> argparse.ArgumentParser:
    parser = _StrictParser(allow_abbrev=False, add_help=False)
    BedrockBatchOptions._add_argparse_args(parser)
    return parser


def _runner(argv: list[str]) -> str:
    from apache_beam.options.pipeline_options import StandardOptions
    return str(PipelineOptions(argv).view_as(StandardOptions).runner or "DirectRunner")


def _unknown_flag_error(name: str) -> UsageError:
    close = difflib.get_close_matches(name, sorted(f for f in known_flags() if f.startswith("--")),
                                      n=1)
    hint = f"; did you mean {close[0]}?" if close else "; see --help for the flags"
    return UsageError(f"unknown flag {name}{hint}")


def parse_options(argv: list[str]) -> tuple[PipelineOptions, BedrockBatchOptions]:
    """Beam options from ``argv``, refusing what no option class defines.

    Beam alone drops an unknown flag with a warning; a misspelt quota flag would
    then silently run with the default, so here it is a usage error with a suggestion. A portable
    runner (Flink, Spark, ...) hands unknown flags to its Java job server, whose options
    (--checkpointing_interval, ...) Python cannot list: those pass when they are in Beam's
    underscore_form and not a near miss of one of this CLI's flags. A Flink run with
    checkpointing gets the flags it needs added (``runners.checkpointing_flags``).
    """
    parser = _all_options_parser()
    _, unknown = parser.parse_known_args(argv)
    ours = [f for a in _cli_parser()._actions for f in a.option_strings]
    # The local runners have no Java job server: an unknown flag there would be dropped.
    runner = _runner(argv)
    direct = runners.is_fnapi(runner) or runners.is_prism(runner)
    takes_value = False  # the previous token was a passed-through flag without "=value"
    for arg in unknown:
        if not arg.startswith("-"):
            if not takes_value:
                raise UsageError(f"unexpected argument {arg!r}: every input is given by a flag "
                                 f"(e.g. --input {arg})")
            takes_value = False
            continue
        name = arg.split("=", 1)[0]
        if (direct or "-" in name[2:]
                or difflib.get_close_matches(name, ours, n=1, cutoff=0.85)):
            raise _unknown_flag_error(name)
        log.info("passing %s to the runner (not a flag of this CLI or of Beam's Python SDK)", name)
        takes_value = "=" not in arg
    options = PipelineOptions(argv)
    added = runners.checkpointing_flags(runner, runner_flag(options, "checkpointing_interval"),
                                        argv)
    if added:
        log.info("adding %s (a checkpointed Flink run needs it)", " ".join(added))
        options = PipelineOptions(argv + added)
    return options, options.view_as(BedrockBatchOptions)


def runner_flag(options: PipelineOptions, name: str) -> str | None:
    """A runner flag Beam passes through to the job server (not one of Python's options)."""
    value = options.get_all_options(retain_unknown_options=True).get(name)
    return None if value is None else str(value)


def new_run_id() -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dt%H%M%S}-{uuid.uuid4().hex[:4]}"


def resolve_quotas(opts: BedrockBatchOptions, service_quotas=None) -> Quotas:
    """Profile, then explicit flags; ``service_quotas`` is a client for the service-quotas profile."""
    if opts.quota_profile == "service-quotas":
        if service_quotas is None:
            raise ValueError("--quota-profile service-quotas reads AWS Service Quotas: use it with "
                             "--backend aws, or pick article / aws-default")
        from pipeline.service_quotas import read_quotas
        base = read_quotas(service_quotas, opts.model_id)
    else:
        base = profile(opts.quota_profile)
    return base.override(**{name: getattr(opts, name) for name in QUOTA_FLAGS})


def resolve_redactor(opts: BedrockBatchOptions) -> Callable[[str], Any] | None:
    """--redactor MODULE:FUNCTION, else the built-in one with --redact, else None."""
    if not opts.redactor:
        return redact_pii if opts.redact else None
    module_name, _, attr = opts.redactor.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), attr) if attr else None
    except (ImportError, AttributeError) as e:
        raise UsageError(f"--redactor {opts.redactor!r} cannot be loaded ({e}): give "
                         f"MODULE:FUNCTION importable from this Python") from None
    if not callable(found):
        raise UsageError(f"--redactor {opts.redactor!r} is not MODULE:FUNCTION naming a callable")
    return found


def batch_config(opts: BedrockBatchOptions, aws: AwsConfig, quotas: Quotas,
                 default_bucket_uri: str | None = None, default_role: str | None = None,
                 default_poll_interval: int = 60) -> BatchConfig:
    bucket_uri = opts.bucket_uri or default_bucket_uri
    if not bucket_uri:
        raise ValueError("--bucket-uri is required with --backend aws: an s3://bucket/prefix "
                         "the service role can read and write")
    role = opts.role_arn or default_role
    if not role:
        raise ValueError("--role-arn is required with --backend aws: the service role Bedrock "
                         "assumes for batch jobs")
    run_id = opts.run_id or new_run_id()
    if not re.fullmatch(r"[a-z0-9-]+", run_id):
        raise ValueError(f"--run-id {run_id!r}: use lowercase letters, digits and dashes")
    job = JobConfig(role_arn=role, model_invocation_type=opts.model_invocation_type,
                    timeout_hours=opts.job_timeout_hours, kms_key_id=opts.kms_key_id,
                    vpc_subnet_ids=tuple(opts.vpc_subnet_ids),
                    vpc_security_group_ids=tuple(opts.vpc_security_group_ids), tags=opts.tags)
    prompt = PromptConfig.from_files(opts.prompt_template, opts.system_prompt_file,
                                     max_tokens=opts.max_tokens, temperature=opts.temperature)
    try:
        task, schema = resolve_task(opts.task, opts.output_schema)
    except SchemaFileError as exc:
        raise UsageError(str(exc)) from None
    return BatchConfig(base_uri=bucket_uri, run_id=run_id, job=job, model_id=opts.model_id,
                       quotas=quotas, undersized_policy=opts.undersized_policy, prompt=prompt,
                       task=task, output_schema=schema,
                       aws=aws, max_record_retries=opts.max_record_retries,
                       poll_interval_seconds=opts.poll_interval_seconds or default_poll_interval,
                       on_demand_rps=opts.on_demand_rps,
                       on_demand_concurrency=opts.on_demand_concurrency,
                       redactor=resolve_redactor(opts))
