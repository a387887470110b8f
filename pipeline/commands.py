"""The CLI subcommands (run, plan, collect, jobs) on top of the transforms."""
from __future__ import annotations

import json
import sys
from typing import Any, Iterator

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.environment import check_runner, environment
from pipeline.options import BedrockBatchOptions, batch_config, resolve_quotas
from transforms import pricing
from transforms.aws import AwsConfig
from transforms.jobs import JobConfig, JobsClient
from transforms.model import Transcript
from transforms.parsing import detect_format, read_transcripts
from transforms.quotas import Quotas
from transforms.planning import UndersizedPolicy, estimate_tokens, plan_sizes
from transforms.records import PromptConfig, build_record
from transforms.validation import DEFAULT_MAX_TEXT_CHARS, FieldMapping, validate_transcript


def _options(argv: list[str], *required: str) -> tuple[PipelineOptions, BedrockBatchOptions]:
    options = PipelineOptions(argv)
    opts = options.view_as(BedrockBatchOptions)
    for name in required:
        if not getattr(opts, name.replace("-", "_")):
            raise ValueError(f"--{name} is required")
    return options, opts


def _quotas(opts: BedrockBatchOptions) -> Quotas:
    if opts.quota_profile == "service-quotas":
        aws = AwsConfig(region=opts.aws_region, profile=opts.aws_profile)
        return resolve_quotas(opts, aws.client("service-quotas"))
    return resolve_quotas(opts)


def run_command(argv: list[str]) -> int:
    from pipeline.run import run

    from pipeline.run import sinks

    options, opts = _options(argv)
    if not opts.input and not opts.kafka_topic:
        raise ValueError("--input is required (or --kafka-topic)")
    destination = sinks(opts)[0]  # checks the sink flags before anything starts
    check_runner(options)
    with environment(opts, _quotas(opts)) as env:
        config = batch_config(opts, env.aws, env.quotas, env.default_bucket_uri,
                              env.default_role_arn, env.default_poll_interval)
        report = run(options, config)
    print("\n".join(report.lines(destination, config.model_id)))
    return 0


def _read_inputs(pattern: str, fmt: str, mapping: FieldMapping) -> Iterator[Any]:
    matches = [m.path for r in FileSystems.match([pattern]) for m in r.metadata_list]
    if not matches:
        raise ValueError(f"--input {pattern!r} matches no files")
    for path in sorted(matches):
        file_format = detect_format(path) if fmt == "auto" else fmt
        if file_format is None:
            raise ValueError(f"cannot tell the format of {path}; pass --input-format")
        with FileSystems.open(path) as handle:
            yield from read_transcripts(handle, path, file_format, mapping, DEFAULT_MAX_TEXT_CHARS)


def plan_command(argv: list[str]) -> int:
    """The plan for one window holding the whole input: what `run` would submit."""
    _, opts = _options(argv, "input")
    quotas = _quotas(opts)
    mapping = FieldMapping.of(opts.id_field, opts.text_field, opts.turns_field)
    prompt = PromptConfig.from_files(opts.prompt_template, opts.system_prompt_file,
                                     max_tokens=opts.max_tokens, temperature=opts.temperature)
    sized, tokens, invalid = [], 0, 0
    for item in _read_inputs(opts.input, opts.input_format, mapping):
        if not isinstance(item, Transcript) or validate_transcript(item) is not None:
            invalid += 1
            continue
        record = build_record(item, opts.model_id, prompt, opts.model_invocation_type)
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
    report = {
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
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def collect_command(argv: list[str]) -> int:
    from pipeline.collect import collect

    options, opts = _options(argv, "job-output", "output")
    # A downloaded job output needs no AWS at all; an s3:// one needs the S3 endpoint only.
    aws = AwsConfig(region=opts.aws_region, profile=opts.aws_profile) \
        if opts.job_output.startswith("s3://") else AwsConfig()
    print("\n".join(collect(options, opts.job_output, aws)))
    return 0


def _remote_aws(opts: BedrockBatchOptions) -> AwsConfig:
    """Clients for commands that look at existing jobs: real AWS, or a running serve-local."""
    if opts.backend == "local" and not opts.bedrock_endpoint_url:
        raise ValueError("this command looks at existing jobs: start `python -m pipeline "
                         "serve-local`, export the environment it prints (endpoints and its "
                         "key) and pass the --bedrock-endpoint-url it prints, or use --backend aws")
    return AwsConfig(region=opts.aws_region, profile=opts.aws_profile,
                     bedrock_endpoint_url=opts.bedrock_endpoint_url,
                     bedrock_runtime_endpoint_url=opts.bedrock_runtime_endpoint_url)


def jobs_command(argv: list[str]) -> int:
    _, opts = _options(argv)
    client = JobsClient(_remote_aws(opts).client("bedrock"), JobConfig(role_arn="unused"))
    rows = list(client.list(name_contains=opts.run_id, status=opts.status))
    print(f"{'JOB NAME':<48} {'STATUS':<18} {'PROCESSED':>10} {'TOTAL':>8}  MODEL")
    for job in rows:
        processed = "-" if job.processed is None else job.processed
        total = "-" if job.total is None else job.total
        print(f"{job.name:<48} {job.status:<18} {processed:>10} {total:>8}  {job.model_id}")
    return 0
