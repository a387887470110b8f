"""The CLI's flags (``pipeline.flags``) as one Beam PipelineOption, so the transforms see them
under any runner: parsing a command's arguments strictly, and resolving the options into a
``BatchConfig``."""
from __future__ import annotations

import argparse
import difflib
import importlib
import logging
import re
import uuid
import datetime as dt
from typing import Any, Callable, Iterator

from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

from pipeline.exit_codes import UsageError
from pipeline import runners
from pipeline.flags import QUOTA_FLAGS, add_every_flag, cli_flags
from transforms.config import BatchConfig
from transforms.core.aws import AwsConfig
from transforms.core.bedrock import JobConfig
from transforms.core.quotas import Quotas, profile
from transforms.insights.schemas import SchemaFileError, resolve_task
from transforms.prepare.records import PromptConfig
from transforms.prepare.redaction import redact_pii

log = logging.getLogger(__name__)


class BedrockBatchOptions(PipelineOptions):
    """Every flag of the CLI, so the transforms see them under any runner."""

    @classmethod
    def _add_argparse_args(cls, parser: argparse.ArgumentParser) -> None:
        add_every_flag(parser)


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
    ours = sorted(cli_flags())
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
