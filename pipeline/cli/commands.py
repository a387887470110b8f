"""The CLI subcommands (run, plan, collect, jobs, report) on top of the transforms."""
from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Any, Iterator

from apache_beam.io.filesystem import BeamIOError, CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipeline import pricing
from pipeline.cli import interrupts
from pipeline.cli.console import run_progress
from pipeline.exit_codes import UsageError
from pipeline.cli.extras import check_optional_parts
from pipeline.cli.field_flags import cli_message
from pipeline.cli.inputs import input_problem
from pipeline.flags import check_command_flags
from pipeline.options import BedrockBatchOptions, batch_config, parse_options, resolve_quotas
from pipeline.cli.preflight import check_cost, check_model, preflight, run_banner
from pipeline.running.environment import (aws_from_flags, beam_s3, check_runner, choose_runner,
                                          environment)
from transforms.core.aws import AwsConfig
from transforms.core.bedrock import JobConfig, JobsClient
from transforms.core.model import Transcript
from transforms.core.quotas import Quotas
from transforms.insights.schemas import SchemaFileError, resolve_task
from transforms.prepare.records import PromptConfig, build_record
from transforms.shards.planning import UndersizedPolicy, estimate_tokens, plan_sizes
from transforms.sinks.files import FORMATS
from transforms.sources import ReadTranscripts
from transforms.sources.parsing import detect_format, read_stored_file
from transforms.sources.validation import FieldMapping, validate_transcript


def _options(argv: list[str], command: str, *required: str
             ) -> tuple[PipelineOptions, BedrockBatchOptions]:
    options, opts = parse_options(argv)
    check_command_flags(argv, command)
    for name in required:
        if not getattr(opts, name.replace("-", "_")):
            raise UsageError(f"--{name} is required")
    return options, opts


def _quotas(opts: BedrockBatchOptions) -> Quotas:
    if opts.quota_profile == "service-quotas":
        aws = AwsConfig(region=opts.aws_region, profile=opts.aws_profile)
        return resolve_quotas(opts, aws.client("service-quotas"))
    return resolve_quotas(opts)


@contextlib.contextmanager
def _setup_errors() -> Iterator[None]:
    """Before the pipeline starts, a ValueError is a rejected flag or setting: exit 2, not 1."""
    try:
        yield
    except UsageError:
        raise
    except ValueError as exc:
        raise UsageError(cli_message(exc)) from exc


def _check_cost(options: PipelineOptions, opts: BedrockBatchOptions, quotas: Quotas) -> None:
    """Plan the whole input as `plan` does and compare its estimate with --max-cost-usd."""
    if options.view_as(StandardOptions).streaming or opts.kafka_topic:
        raise UsageError("--max-cost-usd needs a bounded --input to estimate before submitting; "
                         "a streaming run has no total in advance: drop --max-cost-usd")
    plan = plan_report(opts, quotas)
    check_cost(plan["estimate"]["max_cost_usd"], opts.max_cost_usd, opts.model_id, plan["records"])


def _match_input(pattern: str) -> list[str]:
    """The files --input matches; a usage error when it cannot be read as given."""
    try:
        matches = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    except BeamIOError as exc:  # e.g. an s3:// bucket that cannot be listed
        raise UsageError(f"--input {pattern!r} cannot be listed ({_first_error(exc)}); check the "
                         f"path and the credentials") from None
    problem = input_problem(pattern, matches)
    if problem:
        raise UsageError(problem)
    return matches


def _first_error(exc: BeamIOError) -> str:
    # BeamIOError keeps the filesystem's own exception per pattern: that is what a user needs.
    causes = list((exc.exception_details or {}).values())
    return str(causes[0] if causes else exc).splitlines()[0][:300]


def run_command(argv: list[str]) -> int:
    """`run`: every check (flags, the input match, the destinations, the pipeline graph, the
    cost) comes before ``hold_output`` claims --output, so a refused run leaves the folder as it
    was and the corrected command runs."""
    from pipeline.cli.run_flags import check_run_flags, check_streaming
    from pipeline.running.execute import hold_output, prepare, run
    from pipeline.running.graph import construct, sinks

    options, opts = _options(argv, "run")
    streaming = options.view_as(StandardOptions).streaming
    with _setup_errors():
        if not opts.input and not opts.kafka_topic:
            raise UsageError("--input is required (or --kafka-topic)")
        check_optional_parts(opts.sink, opts.kafka_topic)
        sinks(opts)  # checks the sink flags before anything starts
        check_runner(options)
        check_streaming(options, opts)
        check_run_flags(argv, options, opts)
        choose_runner(options)
        quotas = _quotas(opts)
    with environment(options, quotas) as env, beam_s3(options, env.aws):
        with _setup_errors():
            config = batch_config(opts, env.aws, env.quotas, env.default_bucket_uri,
                                  env.default_role_arn, env.default_poll_interval)
            interrupts.note_run(config, opts.backend)  # Ctrl-C from here on names the run
            FileSystems.set_options(options)  # the output probe writes as the sinks will
            if opts.input and not opts.kafka_topic and not streaming:
                # A watched folder may still be empty when the watch starts.
                _match_input(opts.input)
            preflight(opts, config)
            # Every setting a transform refuses while the graph is built (a ConfigError).
            pipeline = construct(options, config)
            if opts.max_cost_usd is not None:
                _check_cost(options, opts, env.quotas)
            prepare(opts, config.run_id)  # the last checks of --output, before it is claimed
        # Held from here until the run ends, however it ends; refused (exit 2) before any job
        # exists when another process holds the folder or it holds another run's files.
        with hold_output(opts, config.run_id):
            print(run_banner(config, opts.backend), file=sys.stderr)
            # Job listings as often as the pipeline polls, but at least twice a minute on AWS.
            poll_seconds = min(config.poll_interval_seconds, 30)
            with run_progress(config.run_id, env.aws.client("bedrock"), opts.quiet, poll_seconds):
                report = run(pipeline, config)
    print("\n".join(report.lines(config.model_id)))
    return report.exit_code()


def _read_inputs(pattern: str, fmt: str, mapping: FieldMapping, max_text_chars: int
                 ) -> Iterator[Any]:
    for path in sorted(_match_input(pattern)):
        file_format = detect_format(path) if fmt == "auto" else fmt
        if file_format is None:
            raise UsageError(f"cannot tell the format of {path}; pass --input-format")
        # Raw bytes: read_file decompresses, and turns a damaged file into a failure item;
        # read_stored_file retries a storage error, then makes it one too, as `run` does.
        open_raw = functools.partial(FileSystems.open, path,
                                     compression_type=CompressionTypes.UNCOMPRESSED)
        yield from read_stored_file(open_raw(), open_raw, path, file_format, mapping,
                                    max_text_chars)


def plan_command(argv: list[str]) -> int:
    """The plan for one window holding the whole input: what `run` would submit."""
    options, opts = _options(argv, "plan", "input")
    with _setup_errors(), beam_s3(options, aws_from_flags(opts, options)):
        # The checks `run` makes of the flags plan uses, so a plan is never of a run that
        # would be refused.
        ReadTranscripts(opts.input, format=opts.input_format, id_field=opts.id_field,
                        text_field=opts.text_field, turns_field=opts.turns_field,
                        max_text_chars=opts.max_text_chars)
        check_model(opts.model_id, opts.model_invocation_type)
        FileSystems.set_options(options)  # s3:// input, read where `run` would read it
        plan = plan_report(opts, _quotas(opts))
    json.dump(plan, sys.stdout, indent=2)
    print()
    if opts.max_cost_usd is not None:  # the plan is printed, so the refusal can be weighed
        check_cost(plan["estimate"]["max_cost_usd"], opts.max_cost_usd, opts.model_id,
                   plan["records"])
    return 0


def plan_report(opts: BedrockBatchOptions, quotas: Quotas) -> dict[str, Any]:
    """The plan for the whole input as one window, as `plan` prints it."""
    mapping = FieldMapping.of(opts.id_field, opts.text_field, opts.turns_field)
    prompt = PromptConfig.from_files(opts.prompt_template, opts.system_prompt_file,
                                     max_tokens=opts.max_tokens, temperature=opts.temperature)
    try:  # insights prompts carry the schema: its tokens are part of the estimate
        _, schema = resolve_task(opts.task, opts.output_schema)
    except SchemaFileError as exc:
        raise UsageError(str(exc)) from None
    sized, tokens, invalid = [], 0, 0
    for item in _read_inputs(opts.input, opts.input_format, mapping, opts.max_text_chars):
        if (not isinstance(item, Transcript)
                or validate_transcript(item, opts.max_text_chars) is not None):
            invalid += 1
            continue
        try:
            record = build_record(item, opts.model_id, prompt, opts.model_invocation_type,
                                  output_schema=schema)
        except ValueError:  # as in `run`, a transcript that cannot be built is a failure row
            invalid += 1
            continue
        sized.append((record.record_id, record.size_bytes))
        tokens += estimate_tokens(json.dumps(record.model_input))
    # In recordId order, as the shard writer places them, so the plan is the one `run` makes.
    sizes = [size for _, size in sorted(sized)]
    plan, placements = plan_sizes(sizes, quotas, UndersizedPolicy(opts.undersized_policy))
    jobs: dict[int, dict[str, Any]] = {}
    for size, placement in zip(sizes, placements):
        if placement.job_index is None:
            continue
        job = jobs.setdefault(placement.job_index, {"records": 0, "bytes": 0, "files": {}})
        file = job["files"].setdefault(placement.file_index, {"records": 0, "bytes": 0})
        for target in (job, file):
            target["records"] += 1
            target["bytes"] += size
    out_tokens = len(sizes) * opts.max_tokens
    return {
        "records": len(sizes),
        "invalid_records": invalid,
        "model_id": opts.model_id,
        "quotas": quotas.__dict__,
        "jobs": [{"records": j["records"], "bytes": j["bytes"],
                  "files": [j["files"][f] for f in sorted(j["files"])]}
                 for _, j in sorted(jobs.items())],
        "undersized": {"records": sum(p.disposition == "undersized" for p in placements),
                       "policy": opts.undersized_policy, "reason": plan.undersized_reason},
        "oversized_records": sum(p.disposition == "oversized" for p in placements),
        "estimate": {"input_tokens": tokens, "max_output_tokens": out_tokens,
                     "max_cost_usd": pricing.estimate_cost(opts.model_id, tokens, out_tokens),
                     "note": "estimate: ~4 characters per token, output at --max-tokens, "
                             "batch prices"},
    }


def collect_command(argv: list[str]) -> int:
    from pipeline.running.collect import collect

    options, opts = _options(argv, "collect", "job-output", "output")
    if opts.sink not in FORMATS:
        raise UsageError(f"collect writes files: --sink {opts.sink} is for `run`; use --sink "
                         f"{', '.join(FORMATS)}")
    aws = aws_from_flags(opts, options)
    with beam_s3(options, aws):
        print("\n".join(collect(options, opts.job_output, aws)))
    return 0


def jobs_command(argv: list[str]) -> int:
    options, opts = _options(argv, "jobs")
    if opts.backend == "local" and not opts.bedrock_endpoint_url:
        raise UsageError("jobs looks at existing jobs: start `python -m pipeline serve-local`, "
                         "export the environment it prints (endpoints and its key) and pass the "
                         "--bedrock-endpoint-url it prints, or use --backend aws")
    if opts.stop and not opts.run_id:
        raise UsageError("jobs --stop needs --run-id RUN_ID: it stops only that run's jobs")
    client = JobsClient(aws_from_flags(opts, options).client("bedrock"),
                        JobConfig(role_arn="unused"))
    if opts.stop:
        stopped = client.stop_run(opts.run_id)
        print(f"asked Bedrock to stop {len(stopped)} job(s) of run {opts.run_id}",
              file=sys.stderr)
    rows = list(client.list(name_contains=opts.run_id, status=opts.status))
    print(f"{'JOB NAME':<48} {'STATUS':<18} {'PROCESSED':>10} {'TOTAL':>8}  MODEL")
    for job in rows:
        processed = "-" if job.processed is None else job.processed
        total = "-" if job.total is None else job.total
        print(f"{job.name:<48} {job.status:<18} {processed:>10} {total:>8}  {job.model_id}")
    return 0


def report_command(argv: list[str]) -> int:
    """`report RUN_OUTPUT`: write report.html again from the report.json a run left there.

    Args:
        argv: The command's arguments (the folder, or --help).
    """
    import argparse

    from pipeline.report.files import rebuild

    parser = argparse.ArgumentParser(
        prog="python -m pipeline report",
        description="Rebuild a run's report.html from the report.json in its folder.")
    parser.add_argument("run_output", metavar="RUN_OUTPUT",
                        help="the folder holding the run's report.json: its --report-dir, else "
                             "its --output (file sinks) or reports/<run id> (kafka, bigquery)")
    args = parser.parse_args(argv)
    print(rebuild(args.run_output))
    return 0
