"""`collect`: parse any finished batch job's output folder into the sinks, with the manifest's counts.

The job need not come from this pipeline (no index sidecar): recordIds stand in for transcript
ids and nothing is resubmitted.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.exit_codes import UsageError
from pipeline.options import BedrockBatchOptions
from transforms.aws import AwsConfig
from transforms.harvest import FAILURES, RecordMetrics
from transforms.results import MANIFEST_NAME, OUTPUT_SUFFIX, JobContext, Manifest, harvest_lines
from transforms.sinks import commit
from transforms.sinks.files import WriteFailures, WriteSummaries
from transforms.storage import Storage, join


def _storage(aws: AwsConfig, uri: str) -> Storage:
    return Storage(aws.client("s3") if uri.startswith("s3://") else None)


def output_files(storage: Storage, job_output: str) -> list[str]:
    files = [u for u in storage.list(job_output)
             if u.endswith(OUTPUT_SUFFIX) and not u.endswith(MANIFEST_NAME)]
    if not files:
        raise ValueError(f"--job-output {job_output!r} holds no *{OUTPUT_SUFFIX} files; point it at "
                         f"<output s3Uri>/<job id>/ of a finished job")
    return files


class _ParseOutputFn(beam.DoFn):
    def __init__(self, aws: AwsConfig, ctx: JobContext):
        self._aws = aws
        self._ctx = ctx

    def setup(self) -> None:
        self._metrics = RecordMetrics()

    def process(self, uri: str) -> Iterator[Any]:
        harvest, _ = harvest_lines(_storage(self._aws, uri).read_lines(uri), None, self._ctx)
        yield from self._metrics.emit(harvest)


def collect(options: PipelineOptions, job_output: str, aws: AwsConfig) -> list[str]:
    opts = options.view_as(BedrockBatchOptions)
    storage = _storage(aws, job_output)
    files = output_files(storage, job_output)
    job_id = job_output.rstrip("/").rsplit("/", 1)[-1]
    ctx = JobContext(model_id=opts.model_id, job_arn=None, invocation_type=opts.model_invocation_type,
                     max_attempts=1)
    if opts.overwrite:
        raise UsageError("collect never replaces another run's rows: drop --overwrite and "
                         "choose an empty --output")
    # Like a run, collect holds its folder while it writes, stages its rows and publishes them
    # whole; its run id is the job's, so collecting the same job again replaces its own rows.
    run_id = f"collect-{job_id}"
    FileSystems.set_options(options)
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(commit.hold(opts.output, run_id, overwrite=False,
                                            options=options, command="collect"))
        except commit.OutputInUse as exc:
            raise UsageError(str(exc)) from None
        staging = commit.staging_dir(opts.output, run_id)
        with beam.Pipeline(options=options) as p:
            parsed = (p | "Files" >> beam.Create(files)
                      | "Parse" >> beam.ParDo(_ParseOutputFn(aws, ctx)).with_outputs(
                          FAILURES, main="summaries"))
            parsed.summaries | "WriteSummaries" >> WriteSummaries(join(staging, "summaries"),
                                                                  format=opts.sink)
            parsed[FAILURES] | "WriteFailures" >> WriteFailures(join(staging, "failures"),
                                                                format=opts.sink)
        commit.publish(opts.output, run_id)
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.metrics import NAMESPACE
    counts = {c.key.metric.name: c.committed for c in
              p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    lines = [f"job {job_id}: {len(files)} output file(s)",
             f"summaries  {counts.get('records_succeeded', 0)}",
             f"failures   {counts.get('records_failed', 0)}"]
    manifest_uri = join(job_output, MANIFEST_NAME)
    if storage.exists(manifest_uri):
        m = Manifest.parse(storage.read_text(manifest_uri))
        lines.append(f"manifest   {m.total} total, {m.success} succeeded, {m.error} errored, "
                     f"{m.input_tokens} tokens in, {m.output_tokens} out")
    lines.append(f"written to {opts.output}")
    return lines
