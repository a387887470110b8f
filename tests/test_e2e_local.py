"""SummarizeTranscripts end to end on the embedded local backend (real moto S3, real local service).

Where the two local runners differ (how they bundle, window and resume deferred work), a test runs
on both: the FnApiRunner and Prism (tests/pipelines.py LOCAL_RUNNERS)."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from pipeline.local.backend import DEFAULT_BUCKET
from pipeline.local.faults import Faults
from pipeline.local.responses import invoke
from tests.pipelines import LOCAL_RUNNERS, local_config, pipeline_on, summarize, transcripts
from transforms.core.quotas import Quotas
from transforms.prepare.families import parse_model_output
from transforms.prepare.records import build_record

SMALL = Quotas(max_concurrent_jobs=3, max_records_per_file=40, max_records_per_job=100,
               min_records_per_job=20)


def _jobs(backend) -> list[dict]:
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate()
    return [j for page in pages for j in page["invocationJobSummaries"]]


def _assert_each_input_once(items, summaries, failures) -> None:
    ids = [t.id for t in items]
    out = [r["transcript_id"] for r in summaries] + [r["transcript_id"] for r in failures]
    assert sorted(out) == sorted(ids), "every input must end in exactly one of summaries/failures"


CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


@pytest.mark.parametrize("model_id, runner", [
    (CLAUDE, "FnApiRunner"), ("amazon.nova-lite-v1:0", "FnApiRunner"),
    ("meta.llama3-1-8b-instruct-v1:0", "FnApiRunner"), (CLAUDE, "PrismRunner")])
def test_every_input_summarized_once_and_matches_local_model(local_backend_factory, tmp_path,
                                                             model_id, runner):
    backend = local_backend_factory(quotas=SMALL)
    items = transcripts(90)
    config = local_config(backend, model_id=model_id)
    summaries, failures = summarize(items, config, tmp_path, runner=runner)
    _assert_each_input_once(items, summaries, failures)
    assert failures == []
    by_id = {r["transcript_id"]: r for r in summaries}
    for t in items[:10]:
        record = build_record(t, model_id, config.prompt)
        expected = parse_model_output(invoke(model_id, "InvokeModel", dict(record.model_input)).body,
                                      model_id)
        row = by_id[t.id]
        assert row["summary"] == expected.text
        assert row["summary"].startswith("[local extractive summary]")
        assert (row["input_tokens"], row["output_tokens"]) == (expected.input_tokens, expected.output_tokens)
        assert row["record_id"] == record.record_id and row["model_id"] == model_id
        assert row["metadata"] == '{"n": %d}' % int(t.id.split("-")[1])
        assert row["attempt"] == 1 and row["job_arn"].startswith("arn:aws:bedrock:")
    jobs = _jobs(backend)
    assert len(jobs) == 1 and jobs[0]["status"] == "Completed"
    assert jobs[0]["successRecordCount"] == len(items)
    # The job's manifest reconciles with the rows written.
    job_id = jobs[0]["jobArn"].rsplit("/", 1)[-1]
    manifest = json.loads(backend.boto3_client("s3").get_object(
        Bucket=DEFAULT_BUCKET, Key=f"runs/{config.run_id}/output/{job_id}/manifest.json.out")
        ["Body"].read())
    assert manifest["totalRecordCount"] == manifest["successRecordCount"] == len(summaries)
    assert manifest["errorRecordCount"] == 0
    assert manifest["inputTokenCount"] == sum(r["input_tokens"] for r in summaries)
    assert manifest["outputTokenCount"] == sum(r["output_tokens"] for r in summaries)


def test_converse_jobs(local_backend_factory, tmp_path):
    backend = local_backend_factory(quotas=SMALL)
    items = transcripts(25)
    summaries, failures = summarize(items, local_config(backend, model_invocation_type="Converse",
                                                       model_id="amazon.nova-pro-v1:0"), tmp_path)
    assert failures == [] and len(summaries) == 25
    assert _jobs(backend)[0]["modelInvocationType"] == "Converse"


def test_250_records_queue_behind_one_concurrent_job(local_backend_factory, tmp_path):
    quotas = Quotas(max_concurrent_jobs=1, max_records_per_file=50_000, max_records_per_job=100,
                    min_records_per_job=60)
    backend = local_backend_factory(quotas=quotas)
    items = transcripts(250)
    summaries, failures = summarize(items, local_config(backend), tmp_path)
    _assert_each_input_once(items, summaries, failures)
    assert failures == []
    jobs = sorted(_jobs(backend), key=lambda j: j["submitTime"])
    assert len(jobs) == 3  # the lower bound ceil(250 / 100)
    assert all(60 <= j["totalRecordCount"] <= 100 for j in jobs)
    # Queued: each job was created only after the previous one ended.
    for earlier, later in zip(jobs, jobs[1:]):
        assert later["submitTime"] >= earlier["endTime"]


def test_record_errors_are_retried_then_reported(local_backend_factory, tmp_path):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=200, min_records_per_job=1),
                                    faults=Faults(seed=7, record_error_rate=0.3))
    items = transcripts(60)
    counters: dict[str, int] = {}
    summaries, failures = summarize(items, local_config(backend, max_record_retries=2), tmp_path,
                                    counters=counters)
    _assert_each_input_once(items, summaries, failures)
    assert counters.get("manifest_mismatches", 0) == 0
    assert counters["records_succeeded"] == len(summaries)
    assert counters["records_retried"] > 0
    assert counters["input_tokens"] == sum(r["input_tokens"] for r in summaries)
    attempts = {r["attempt"] for r in summaries}
    assert {1, 2} <= attempts, "errored records must be resubmitted in a later job"
    for f in failures:  # only records that failed all three attempts
        assert f["stage"] == "model" and f["attempt"] == 3 and f["error_code"]
    assert len(_jobs(backend)) >= 2


@pytest.mark.parametrize("fault, runner", [
    ("partial_job_rate", "FnApiRunner"), ("expire_job_rate", "FnApiRunner"),
    ("fail_job_rate", "FnApiRunner"), ("partial_job_rate", "PrismRunner")])
def test_unfinished_jobs_are_harvested_and_resubmitted(local_backend_factory, tmp_path, fault,
                                                       runner):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=200, min_records_per_job=1),
                                    faults=Faults(seed=3, **{fault: 1.0}))
    items = transcripts(20)
    summaries, failures = summarize(items, local_config(backend, max_record_retries=1), tmp_path,
                                    runner=runner)
    _assert_each_input_once(items, summaries, failures)
    statuses = {j["status"] for j in _jobs(backend)}
    assert statuses <= {"PartiallyCompleted", "Expired", "Failed"}
    assert len(_jobs(backend)) == 2  # first attempt and one retry
    for f in failures:
        assert f["attempt"] == 2 and f["error_code"].startswith("Job")
        assert f["stage"] == ("submit" if fault == "fail_job_rate" else "model")


def test_undersized_tail_fail_policy(local_backend_factory, tmp_path):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=60))
    items = transcripts(101)  # one full job; the one record left can neither merge nor stand alone
    summaries, failures = summarize(items, local_config(backend, undersized_policy="fail"), tmp_path)
    _assert_each_input_once(items, summaries, failures)
    assert len(failures) >= 1
    assert {f["error_code"] for f in failures} == {"UndersizedJob"}
    assert "--undersized-policy on-demand" in failures[0]["error_message"]


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_windows_become_separate_jobs(local_backend_factory, tmp_path, runner):
    import apache_beam as beam
    from apache_beam.transforms import window

    from tests.pipelines import read_rows
    from transforms.sinks.files import WriteSummaries
    from transforms.summarize import SummarizeTranscripts

    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=5))
    items = transcripts(30)
    config = local_config(backend)
    with pipeline_on(runner) as p:
        stamped = (p | beam.Create([(t, 60 * (i % 3)) for i, t in enumerate(items)])
                   | beam.Map(lambda e: window.TimestampedValue(e[0], e[1]))
                   | beam.WindowInto(window.FixedWindows(60)))
        result = stamped | SummarizeTranscripts(config)
        result["summaries"] | WriteSummaries(str(tmp_path / "s"), format="jsonl")
    rows = read_rows(tmp_path / "s")
    assert len(rows) == 30
    starts = {r["window_start"] for r in rows}
    assert len(starts) == 3 and len(_jobs(backend)) == 3
    first = dt.datetime.fromisoformat(min(starts))
    assert first == dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def test_undersized_tail_on_demand_policy(local_backend_factory, tmp_path):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=60))
    items = transcripts(103)
    config = local_config(backend, undersized_policy="on-demand", on_demand_rps=50)
    summaries, failures = summarize(items, config, tmp_path)
    _assert_each_input_once(items, summaries, failures)
    assert failures == []
    on_demand = [r for r in summaries if r["job_arn"] is None]
    assert len(on_demand) == 3 and len(_jobs(backend)) == 1
    assert all(r["summary"].startswith("[local extractive summary]") for r in on_demand)


# On Prism a carried job's 6 rows reached the sink after their window closed (Prism let the
# output watermark pass the job's batch while it was pending), and were lost in 2 of 5 runs
# until the sinks kept late rows (docs/architecture.md, "Runner facts"): now they are written,
# as a later pane's file when late.
@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_defer_carries_tails_across_windows(local_backend_factory, tmp_path, runner):
    """Three windows of 4 records each, minimum 6 per job: no window can have a job of its own,
    so their tails are carried until two jobs of 6 can be made."""
    import apache_beam as beam
    from apache_beam.transforms import window

    from tests.pipelines import read_rows
    from transforms.sinks.files import WriteFailures, WriteSummaries
    from transforms.summarize import SummarizeTranscripts

    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=6))
    items = transcripts(12)
    config = local_config(backend, undersized_policy="defer")
    with pipeline_on(runner) as p:
        stamped = (p | beam.Create([(t, 60 * (i % 3)) for i, t in enumerate(items)])
                   | beam.Map(lambda e: window.TimestampedValue(e[0], e[1]))
                   | beam.WindowInto(window.FixedWindows(60)))
        result = stamped | SummarizeTranscripts(config)
        result["summaries"] | "S" >> WriteSummaries(str(tmp_path / "s"), format="jsonl")
        result["failures"] | "F" >> WriteFailures(str(tmp_path / "f"), format="jsonl")
    summaries = read_rows(tmp_path / "s")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in items)
    assert read_rows(tmp_path / "f") == []
    jobs = _jobs(backend)
    assert len(jobs) == 2 and all(j["totalRecordCount"] == 6 for j in jobs)
    assert all("-c" in j["jobName"] for j in jobs)


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_defer_reports_what_is_still_waiting_at_the_end(local_backend_factory, tmp_path, runner):
    """The end-of-input timer of the defer policy's bag fires on both local runners."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=60))
    items = transcripts(101)
    summaries, failures = summarize(items, local_config(backend, undersized_policy="defer"), tmp_path,
                                    runner=runner)
    _assert_each_input_once(items, summaries, failures)
    assert len(summaries) == 100
    [failure] = failures
    assert failure["error_code"] == "UndersizedJob"
    assert "still waiting at the end of the input" in failure["error_message"]
