"""`collect`: parse any finished batch job's output folder into the sinks, with the manifest's counts.

The job need not come from this pipeline (no index sidecar): recordIds stand in for transcript
ids and nothing is resubmitted.
"""
from __future__ import annotations

import contextlib
import json
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.exit_codes import UsageError
from pipeline.options import BedrockBatchOptions
from transforms.core.aws import AwsConfig
from transforms.core.coders import typed_output
from transforms.core.model import Failure, Summary, truncate_raw
from transforms.core.storage import Storage, join
from transforms.jobs.harvest import FAILURES, RecordMetrics
from transforms.jobs.results import (MANIFEST_NAME, OUTPUT_SUFFIX, JobContext, Manifest,
                                     harvest_lines)
from transforms.sinks import commit
from transforms.sinks.files import WriteFailures, WriteSummaries


def _storage(aws: AwsConfig, uri: str) -> Storage:
    return Storage(aws.client("s3") if uri.startswith("s3://") else None)


_POINT_AT_A_JOB = "point --job-output at <output s3Uri>/<job id>/ of a finished job"
# The manifest's counts, in the order of Manifest's fields.
_MANIFEST_COUNTS = ("totalRecordCount", "processedRecordCount", "successRecordCount",
                    "errorRecordCount", "inputTokenCount", "outputTokenCount")


def output_files(storage: Storage, job_output: str) -> list[str]:
    """The job's output files, each checked to begin like one (nothing is written otherwise).

    Args:
        storage: Where the job output is.
        job_output: The job's output folder.

    Raises:
        UsageError: No output file, or one whose first line is no output record.
    """
    files = [u for u in storage.list(job_output)
             if u.endswith(OUTPUT_SUFFIX) and not u.endswith(MANIFEST_NAME)]
    if not files:
        raise UsageError(f"--job-output {job_output!r} holds no *{OUTPUT_SUFFIX} files; "
                         f"{_POINT_AT_A_JOB}")
    for uri in files:
        # Blank as the harvest counts it: str.isspace, not bytes' ASCII-only strip.
        first = next((line for line in storage.read_byte_lines(uri)
                      if line.decode("utf-8", "replace").strip()), None)
        if first is not None and not _is_output_record(first):
            raise UsageError(f"{uri} is not a batch job's output: its first line is no JSON "
                             f"record with a recordId; {_POINT_AT_A_JOB}")
    return files


def _is_output_record(line: bytes) -> bool:
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, nested too deep
        return False
    return isinstance(record, dict) and "recordId" in record


def read_manifest(storage: Storage, uri: str) -> Manifest | None:
    """The job's manifest, checked before any row is written; None when the job has none.

    Args:
        storage: Where the job output is.
        uri: The manifest's URI.

    Raises:
        UsageError: The manifest is not a JSON object of non-negative counts.
    """
    if not storage.exists(uri):
        return None
    fix = "copy it again from the job's output, or delete it to collect without its counts"
    try:
        data = json.loads(b"\n".join(storage.read_byte_lines(uri)).decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise UsageError(f"{uri} is not valid JSON ({type(exc).__name__}: {exc}); {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{uri} holds JSON that is not an object, so no job manifest; {fix}")
    wrong = [name for name in _MANIFEST_COUNTS if name in data and not (
        type(data[name]) is int and data[name] >= 0)]
    if wrong:
        raise UsageError(f"{uri}: {', '.join(wrong)} must be counts (integers >= 0); {fix}")
    return Manifest(*(data.get(name, 0) for name in _MANIFEST_COUNTS))


def _text_lines(raw_lines: Iterable[bytes], uri: str, bad: list[Failure]) -> Iterator[str]:
    """The lines as text; a line that is not UTF-8 becomes a failure row in ``bad`` and an empty
    line here (which the harvest skips, keeping the line numbers)."""
    for number, raw in enumerate(raw_lines, 1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(Failure(stage="parse", error_code="MalformedOutputLine",
                               error_message=f"{uri} output line {number} is not UTF-8 "
                                             f"({exc.reason} at byte {exc.start})",
                               raw=truncate_raw(raw)))
            yield ""


class _ParseOutputFn(beam.DoFn):
    def __init__(self, aws: AwsConfig, ctx: JobContext):
        self._aws = aws
        self._ctx = ctx

    def setup(self) -> None:
        self._metrics = RecordMetrics()

    def process(self, uri: str) -> Iterator[Any]:
        bad: list[Failure] = []
        lines = _text_lines(_storage(self._aws, uri).read_byte_lines(uri), uri, bad)
        harvest, _ = harvest_lines(lines, None, self._ctx)
        harvest.failures.extend(bad)
        yield from self._metrics.emit(harvest)


def collect(options: PipelineOptions, job_output: str, aws: AwsConfig) -> list[str]:
    opts = options.view_as(BedrockBatchOptions)
    storage = _storage(aws, job_output)
    files = output_files(storage, job_output)
    manifest = read_manifest(storage, join(job_output, MANIFEST_NAME))
    job_id = job_output.rstrip("/").rsplit("/", 1)[-1]
    ctx = JobContext(model_id=opts.model_id, job_arn=None, invocation_type=opts.model_invocation_type,
                     max_attempts=1)
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
                      | "Parse" >> beam.ParDo(_ParseOutputFn(aws, ctx)).with_output_types(
                          Summary).with_outputs(FAILURES, main="summaries"))
            parsed.summaries | "WriteSummaries" >> WriteSummaries(join(staging, "summaries"),
                                                                  format=opts.sink)
            typed_output(parsed, FAILURES, Failure) | "WriteFailures" >> WriteFailures(join(staging, "failures"),
                                                                format=opts.sink)
        commit.publish(opts.output, run_id)
    from apache_beam.metrics.metric import MetricsFilter

    from transforms.core.metrics import NAMESPACE
    counts = {c.key.metric.name: c.committed for c in
              p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}
    lines = [f"job {job_id}: {len(files)} output file(s)",
             f"summaries  {counts.get('records_succeeded', 0)}",
             f"failures   {counts.get('records_failed', 0)}"]
    if manifest is not None:
        lines.append(f"manifest   {manifest.total} total, {manifest.success} succeeded, "
                     f"{manifest.error} errored, {manifest.input_tokens} tokens in, "
                     f"{manifest.output_tokens} out")
    lines.append(f"written to {opts.output}")
    return lines
