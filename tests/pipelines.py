"""Helpers to run SummarizeTranscripts on a chosen runner against a LocalBackend and read results."""
from __future__ import annotations

import glob
import json
import uuid
from pathlib import Path
from typing import Any, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.version import __version__ as beam_version

from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from pipeline import runners
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig
from transforms.core.metrics import NAMESPACE
from transforms.core.model import Transcript
from transforms.sinks.files import WriteFailures, WriteSummaries
from transforms.summarize import SummarizeTranscripts

RUNNERS = ("DirectRunner", "FnApiRunner", "PortableRunner")
# The two local runners the CLI chooses between (pipeline/runners.py); tests that show
# where they differ run on both.
LOCAL_RUNNERS = (runners.FNAPI, runners.PRISM)


def prism_args() -> list[str]:
    """--runner and --prism_location for Prism, as `make prism` (a prerequisite of `make test`)
    built it."""
    binary = runners.prism_binary(beam_version)
    assert binary is not None, "Prism is not built: run `make prism`"
    # Not Beam's per-process Prism server: an earlier test's pipeline may have made it without
    # --prism_location (see pipeline.running.environment.choose_runner).
    return [f"--runner={runners.PRISM}", f"--prism_location={binary}",
            "--experiments=disable_prism_server_singleton",
            # As the CLI does: Beam's default would end every run longer than five minutes.
            f"--job_server_timeout={runners.PRISM_JOB_SERVER_TIMEOUT}"]


def local_config(backend: LocalBackend, run_id: str | None = None, **overrides: Any) -> BatchConfig:
    job = JobConfig(role_arn=SERVICE_ROLE_ARN,
                    model_invocation_type=overrides.pop("model_invocation_type", "InvokeModel"))
    # moto keeps S3 state per process, so each test run gets a run id of its own.
    run_id = run_id or f"t{uuid.uuid4().hex[:12]}"
    settings = dict(base_uri=f"s3://{DEFAULT_BUCKET}/runs", run_id=run_id, job=job,
                    quotas=backend.quotas, aws=backend.aws_config(), poll_interval_seconds=1)
    settings.update(overrides)
    return BatchConfig(**settings)


def transcripts(count: int, prefix: str = "call") -> list[Transcript]:
    return [Transcript(id=f"{prefix}-{i:04d}",
                       text=(f"Customer: Hello, my order {i} arrived damaged and I want a replacement. "
                             f"Agent: I am sorry about that. I have shipped replacement order R{i} "
                             f"today. Customer: Thank you, that solves it."),
                       metadata={"n": i})
            for i in range(count)]


def pipeline_on(runner: str, extra: Sequence[str] = ()) -> beam.Pipeline:
    """A pipeline on ``runner`` (one of RUNNERS or LOCAL_RUNNERS) with Beam flags ``extra``."""
    if runner == "FnApiRunner":
        return beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(list(extra)))
    if runner == runners.PRISM:
        return beam.Pipeline(options=PipelineOptions(prism_args() + list(extra)))
    if runner == "PortableRunner":
        args = ["--runner=PortableRunner", "--job_endpoint=embed", "--environment_type=LOOPBACK"]
        return beam.Pipeline(options=PipelineOptions(args + list(extra)))
    return beam.Pipeline(options=PipelineOptions([f"--runner={runner}", *extra]))


def read_rows(directory: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted(glob.glob(str(directory / "*.jsonl"))):
        with open(path, encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows


def summarize(items: Sequence[Transcript], config: BatchConfig, out: Path,
              runner: str = "DirectRunner", extra: Sequence[str] = (),
              counters: dict[str, int] | None = None) -> tuple[list[dict], list[dict]]:
    """Run the composite and return (summary rows, failure rows) as written by the JSONL sinks;
    the pipeline's counters go into ``counters`` when given."""
    with pipeline_on(runner, extra) as p:
        result = p | beam.Create(list(items)) | SummarizeTranscripts(config)
        result["summaries"] | "S" >> WriteSummaries(str(out / "summaries"), format="jsonl")
        result["failures"] | "F" >> WriteFailures(str(out / "failures"), format="jsonl")
    if counters is not None:
        query = p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
        for counter in query["counters"]:
            name = counter.key.metric.name
            counters[name] = counters.get(name, 0) + counter.committed
    return read_rows(out / "summaries"), read_rows(out / "failures")


def cli_with_counters(argv: Sequence[str], monkeypatch: Any) -> tuple[int, dict[str, int]]:
    """Runs the CLI in-process as a user would; returns its exit code and the counters of the
    run report it printed (read from the Report object, not parsed from its text)."""
    import pipeline.running.execute
    from pipeline.__main__ import main

    reports = []
    real_run = pipeline.running.execute.run

    def spy(options, config):
        reports.append(real_run(options, config))
        return reports[-1]

    monkeypatch.setattr(pipeline.running.execute, "run", spy)
    code = main(list(argv))
    assert reports, f"the run ended before its report (exit code {code})"
    return code, reports[0].counters
