"""HarvestJobFn reconciles a job's rows with its manifest: a disagreement, or a completed job
without a manifest, counts in manifest_mismatches; a job harvested for part of its records (a
rerun's input lacks the others) still reconciles. A real job on the local backend, harvested in a
one-step DirectRunner pipeline."""
from __future__ import annotations

import dataclasses
import json
import time

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from tests.pipelines import transcripts
from tests.test_reruns import _Run
from transforms.core.metrics import NAMESPACE
from transforms.core.quotas import Quotas
from transforms.core.storage import join, split_s3
from transforms.jobs.await_jobs import JobOutcome
from transforms.jobs.harvest import FAILURES, RETRIES, HarvestJobFn


def _finished(run: _Run, spec) -> JobOutcome:
    arn = run.jobs.create(spec)
    deadline = time.monotonic() + 120
    while not (status := run.jobs.get(arn)).terminal:
        assert time.monotonic() < deadline, "the local job never finished"
        time.sleep(0.3)
    assert status.status == "Completed"
    return JobOutcome(spec, status)


def _harvest(run: _Run, outcome: JobOutcome) -> dict[str, int]:
    """The harvest's counters."""
    with beam.Pipeline(runner="DirectRunner") as p:
        _ = (p | beam.Create([outcome])
             | beam.ParDo(HarvestJobFn(run.config)).with_outputs(FAILURES, RETRIES, main="rows"))
    return {c.key.metric.name: c.committed for c in
            p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]}


@pytest.fixture
def job(local_backend_factory) -> tuple[_Run, JobOutcome]:
    run = _Run(local_backend_factory(quotas=Quotas(max_records_per_job=20, min_records_per_job=5)))
    [spec] = run.write(transcripts(12), "g", "g").batch.specs
    return run, _finished(run, spec)


def _manifest_uri(outcome: JobOutcome) -> str:
    return join(outcome.status.job_output_uri, "manifest.json.out")


def test_partial_harvest_reconciles(job) -> None:
    run, outcome = job
    wanted = frozenset(sorted(run.index_ids(outcome.spec.job_name))[:5])
    counters = _harvest(run, JobOutcome(dataclasses.replace(outcome.spec, record_ids=wanted),
                                        outcome.status))
    assert counters["records_succeeded"] == 5 and counters.get("records_failed", 0) == 0
    assert counters.get("manifest_mismatches", 0) == 0


def test_manifest_disagreement_counts(job) -> None:
    run, outcome = job
    manifest = json.loads(run.storage.read_text(_manifest_uri(outcome)))
    run.storage.write_text(_manifest_uri(outcome), json.dumps({**manifest, "successRecordCount": 13}))
    counters = _harvest(run, outcome)
    assert counters["records_succeeded"] == 12 and counters["manifest_mismatches"] == 1


def test_completed_job_without_manifest_counts(job) -> None:
    run, outcome = job
    bucket, key = split_s3(_manifest_uri(outcome))
    run.config.aws.client("s3").delete_object(Bucket=bucket, Key=key)
    counters = _harvest(run, outcome)
    assert counters["manifest_mismatches"] == 1


def test_torn_last_line_is_retried_not_a_mismatch(job) -> None:
    """The manifest counts the torn line's record; the harvest resubmits that record instead of
    writing a failure row for the line as well."""
    run, outcome = job
    [out_uri] = [u for u in run.storage.list(outcome.status.job_output_uri)
                 if u.endswith(".jsonl.out")]
    text = run.storage.read_text(out_uri)
    run.storage.write_text(out_uri, text[: len(text) - 40])  # cuts into the last line
    counters = _harvest(run, outcome)
    assert counters["records_succeeded"] == 11 and counters["records_retried"] == 1
    assert counters.get("records_failed", 0) == 0
    assert counters["output_lines_unreadable"] == 1
    assert counters.get("manifest_mismatches", 0) == 0
