"""Which failures are retried: create errors the service will always refuse are not, record errors
that may go away are, even when too few of them remain for a batch job of their own."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from pipeline.local.faults import Faults
from tests.pipelines import local_config, summarize, transcripts
from transforms.core.bedrock import JobConfig, create_error_kind
from transforms.core.quotas import Quotas
from transforms.jobs.results import IndexEntry, JobContext, harvest_lines, retriable_record_error


@pytest.mark.parametrize("code,status,kind", [
    ("ThrottlingException", 429, "backoff"),
    ("ServiceQuotaExceededException", 400, "backoff"),
    ("InternalServerException", 500, "transient"),
    ("ServiceUnavailableException", 503, "transient"),
    ("SomethingNew", 502, "transient"),
    ("ValidationException", 400, "permanent"),
    ("AccessDeniedException", 403, "permanent"),
    ("ResourceNotFoundException", 404, "permanent"),
    ("ConflictException", 409, "permanent"),
])
def test_create_error_kinds(code: str, status: int, kind: str) -> None:
    assert create_error_kind(code, status) == kind


@pytest.mark.parametrize("code,retriable", [
    ("500", True), ("503", True), ("408", True), ("424", True), ("429", True),
    ("ModelError", True), ("400", False), ("403", False), ("422", False)])
def test_record_error_retriability(code: str, retriable: bool) -> None:
    assert retriable_record_error(code) is retriable


def test_invalid_model_input_fails_at_once_with_attempts_left() -> None:
    entry = IndexEntry("R1", "call-1")
    line = json.dumps({"recordId": "R1", "modelInput": {"x": 1},
                       "error": {"errorCode": 400, "errorMessage": "Malformed input request"}})
    harvest, _ = harvest_lines([line], {"R1": entry}, JobContext("m", "arn", max_attempts=3))
    [failure] = harvest.failures
    assert not harvest.retries and (failure.stage, failure.error_code, failure.attempt) == (
        "model", "400", 1)


def test_refused_create_fails_its_records_once_and_is_not_retried(local_backend_factory, tmp_path):
    """The local service validates roleArn against the real pattern, as Bedrock does."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=10, min_records_per_job=2))
    config = local_config(backend, job=JobConfig(role_arn="arn:aws:iam::123:role/not-an-account"))
    items = transcripts(25)
    counters: dict[str, int] = {}
    summaries, failures = summarize(items, config, tmp_path, counters=counters)
    assert not summaries
    assert Counter(f["transcript_id"] for f in failures) == Counter(t.id for t in items)
    assert {(f["stage"], f["error_code"], f["attempt"]) for f in failures} == {
        ("submit", "JobNotCreated", 1)}
    assert "ValidationException" in failures[0]["error_message"]
    assert "roleArn" in failures[0]["error_message"]
    assert counters["jobs_not_created"] == counters["jobs_planned"] == 3
    assert counters.get("records_retried", 0) == 0


def test_retries_below_the_job_minimum_go_on_demand(local_backend_factory, tmp_path):
    """1,200 records, 300 a job, minimum 100, 5% record errors, scaled down by 5: the dozen
    errored records are fewer than the minimum, and are still answered."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=60, min_records_per_job=20),
                                    faults=Faults(seed=11, record_error_rate=0.05))
    items = transcripts(240)
    counters: dict[str, int] = {}
    summaries, failures = summarize(items, local_config(backend, on_demand_rps=50), tmp_path,
                                    counters=counters)
    assert failures == []
    assert Counter(r["transcript_id"] for r in summaries) == Counter(t.id for t in items)
    retried = counters["records_retried"]
    assert 0 < retried < 20, "the scenario needs a retry set below the job minimum"
    assert counters["on_demand_calls"] == retried
    on_demand = [r for r in summaries if r["job_arn"] is None]
    assert len(on_demand) == retried and {r["attempt"] for r in on_demand} == {2}
