"""Reruns with the same run id are exact: a changed input loses and duplicates no record, and no
record goes into a second billed job. Runs the public composite twice against one local backend."""
from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pipeline.local.backend import LocalBackend
from tests.pipelines import local_config, summarize, transcripts
from transforms.quotas import Quotas


def _jobs(backend: LocalBackend, run_id: str) -> dict[str, dict[str, Any]]:
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate(
        nameContains=run_id)
    return {j["jobName"]: j for page in pages for j in page["invocationJobSummaries"]}


@pytest.fixture
def creates(local_backend_factory, monkeypatch) -> tuple[LocalBackend, Counter]:
    """A backend whose CreateModelInvocationJob calls are counted by job name."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=20, min_records_per_job=5))
    calls: Counter = Counter()
    create = backend.service.create_model_invocation_job

    def counted(params: dict[str, Any]) -> dict[str, Any]:
        calls[params["jobName"]] += 1
        return create(params)

    monkeypatch.setattr(backend.service, "create_model_invocation_job", counted)
    return backend, calls


def test_rerun_with_changed_input_emits_each_record_once_and_bills_none_twice(creates, tmp_path):
    backend, calls = creates
    first = transcripts(60)                       # call-0000 .. call-0059
    second = first[30:] + transcripts(50, "new")  # 30 of them again, 50 new
    config = local_config(backend, run_id="rerun-changed")

    summaries, failures = summarize(first, config, tmp_path / "one")
    assert not failures and len(summaries) == 60
    before = _jobs(backend, config.run_id)
    assert len(before) == 3 and set(calls) == set(before)

    counters: dict[str, int] = {}
    summaries, failures = summarize(second, config, tmp_path / "two", counters=counters)
    assert not failures
    ids = [r["transcript_id"] for r in summaries]
    assert Counter(ids) == Counter(t.id for t in second), "every record of the rerun exactly once"
    after = _jobs(backend, config.run_id)
    # The first run's jobs are adopted as they are, never created again.
    assert {n: after[n]["jobArn"] for n in before} == {n: j["jobArn"] for n, j in before.items()}
    assert all(calls[name] == 1 for name in before)
    new = set(after) - set(before)
    assert len(new) == 3 and all(calls[name] == 1 for name in new)
    # No record is in two jobs: the billed records are the union of the two inputs.
    assert sum(j["totalRecordCount"] for j in after.values()) == 60 + 50
    assert counters["records_adopted"] == 30
    assert counters["records_not_in_input"] == 30
    overlap = {r["transcript_id"]: r["job_arn"] for r in summaries if r["transcript_id"] < "call-9"}
    assert set(overlap.values()) <= {j["jobArn"] for j in before.values()}


def test_unchanged_rerun_creates_no_job(creates, tmp_path):
    backend, calls = creates
    items = transcripts(45)
    config = local_config(backend, run_id="rerun-same")
    summarize(items, config, tmp_path / "one")
    before = dict(calls)
    summaries, failures = summarize(items, config, tmp_path / "two")
    assert dict(calls) == before
    assert not failures and sorted(r["transcript_id"] for r in summaries) == [t.id for t in items]
