"""The on-demand undersized policy end to end, on the real local backend (moto S3 + the project's
Bedrock service): beside the batch jobs, throttling retried, failures once, tokens counted."""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.transforms import window

from pipeline.__main__ import main
from pipeline.local.backend import SERVICE_ROLE_ARN
from pipeline.local.faults import Faults
from tests.pipelines import local_config, read_rows, summarize, transcripts
from pipeline.pricing import estimate_cost, estimate_on_demand_cost
from transforms.config import BatchConfig
from transforms.core.aws import AwsConfig
from transforms.core.bedrock import JobConfig
from transforms.core.metrics import NAMESPACE
from transforms.core.model import BatchRecord, Transcript
from transforms.core.quotas import Quotas
from transforms.core.rate_control import RetryPolicy
from transforms.prepare.records import PromptConfig, build_record
from transforms.shards.invoke_on_demand import InvokeOnDemand
from transforms.sinks.files import WriteFailures, WriteSummaries

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _record_requests(backend, hold_invokes: float = 0.0) -> list[tuple[float, str]]:
    """(time, operation) of every request the service answers, in arrival order.

    The service stays the real one: this only wraps its request handler to note the time. With
    ``hold_invokes``, each InvokeModel is answered only once a CreateModelInvocationJob has
    arrived (or after that many seconds), and is noted when answered: calls that overlap the
    job's creation then finish after it, whatever the machine's speed."""
    seen: list[tuple[float, str]] = []
    lock = threading.Lock()
    created = threading.Event()
    handle = backend.service.handle

    def noting(method, path, headers, body):
        operation = ("InvokeModel" if path.endswith("/invoke") else
                     "CreateModelInvocationJob" if method == "POST" and path == "/model-invocation-job"
                     else f"{method} {path.split('?')[0]}")
        if operation == "CreateModelInvocationJob":
            created.set()
        if operation == "InvokeModel" and hold_invokes:
            created.wait(hold_invokes)
            answer = handle(method, path, headers, body)
            with lock:
                seen.append((time.monotonic(), operation))
            return answer
        with lock:
            seen.append((time.monotonic(), operation))
        return handle(method, path, headers, body)

    backend.service.handle = noting
    return seen


def _each_once(items, summaries, failures) -> None:
    ids = sorted([r["transcript_id"] for r in summaries] + [f["transcript_id"] for f in failures])
    assert ids == sorted(t.id for t in items)


def test_batch_jobs_are_created_before_the_on_demand_calls_finish(local_backend_factory, tmp_path):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=50, min_records_per_job=40))
    # The calls wait for the job's creation (at most 60 s each): a pipeline that made the batch job
    # wait for the on-demand calls would only create it after they all finished.
    requests = _record_requests(backend, hold_invokes=60)
    items = transcripts(89)  # one job of 50; the 39 left are too few for a job of their own
    counters: dict[str, int] = {}
    config = local_config(backend, undersized_policy="on-demand", on_demand_rps=20,
                          on_demand_concurrency=4)
    summaries, failures = summarize(items, config, tmp_path, counters=counters)

    _each_once(items, summaries, failures)
    assert failures == []
    on_demand = [r for r in summaries if r["job_arn"] is None]
    assert len(on_demand) == 39
    creates = [t for t, op in requests if op == "CreateModelInvocationJob"]
    invokes = [t for t, op in requests if op == "InvokeModel"]
    assert len(creates) == 1 and len(invokes) == 39
    assert creates[0] < max(invokes), "the batch job waited for the on-demand calls"
    assert counters["on_demand_calls"] == 39
    assert counters["on_demand_input_tokens"] == sum(r["input_tokens"] for r in on_demand) > 0
    assert counters["on_demand_output_tokens"] == sum(r["output_tokens"] for r in on_demand) > 0


def _records(count: int, invocation_type: str = "InvokeModel") -> list[BatchRecord]:
    return [build_record(t, MODEL, PromptConfig(), invocation_type) for t in transcripts(count)]


def _invoke(records, config, out: Path, retry: RetryPolicy | None = None):
    """Run InvokeOnDemand alone; (summary rows, failure rows, counters)."""
    with beam.Pipeline() as p:
        result = p | beam.Create(records) | InvokeOnDemand(config, retry=retry)
        result["summaries"] | "S" >> WriteSummaries(str(out / "s"), format="jsonl")
        result["failures"] | "F" >> WriteFailures(str(out / "f"), format="jsonl")
    query = p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    counters = {c.key.metric.name: c.committed for c in query["counters"]}
    return read_rows(out / "s"), read_rows(out / "f"), counters


def test_throttled_calls_are_retried_until_every_record_has_a_summary(local_backend_factory,
                                                                      tmp_path, caplog):
    backend = local_backend_factory(faults=Faults(seed=7, throttle_rate=0.3))
    records = _records(30)
    config = local_config(backend, on_demand_rps=50, on_demand_concurrency=4)
    with caplog.at_level(logging.INFO, logger="transforms.shards.invoke_on_demand"):
        summaries, failures, counters = _invoke(records, config, tmp_path)

    assert failures == []
    assert sorted(r["transcript_id"] for r in summaries) == sorted(r.transcript_id for r in records)
    assert counters["on_demand_throttled"] > 0
    assert counters["on_demand_calls"] == 30 + counters["on_demand_throttled"]
    assert "on-demand calls: 30/30 done (0 failed)" in caplog.text
    assert "on-demand calls throttled (ThrottlingException): pace lowered to" in caplog.text


def test_each_output_keeps_its_own_records_window(local_backend, tmp_path):
    """Results are emitted as calls finish, often while another record is being processed:
    each still lands in the window of the record it answers."""
    records = _records(12)
    with beam.Pipeline() as p:
        stamped = (p | beam.Create([(r, 60 * (i % 3)) for i, r in enumerate(records)])
                   | beam.Map(lambda e: window.TimestampedValue(e[0], e[1]))
                   | beam.WindowInto(window.FixedWindows(60)))
        result = stamped | InvokeOnDemand(local_config(local_backend, on_demand_concurrency=3))
        result["summaries"] | WriteSummaries(str(tmp_path / "s"), format="jsonl")
    rows = read_rows(tmp_path / "s")
    assert len(rows) == 12
    index = {r.transcript_id: i for i, r in enumerate(records)}
    for row in rows:
        start = dt.datetime.fromisoformat(row["window_start"])
        assert start == EPOCH + dt.timedelta(seconds=60 * (index[row["transcript_id"]] % 3))


def test_converse_calls_are_counted_like_invoke_model(local_backend, tmp_path):
    config = local_config(local_backend, model_invocation_type="Converse")
    summaries, failures, counters = _invoke(_records(3, "Converse"), config, tmp_path)
    assert failures == [] and len(summaries) == 3
    assert all(r["summary"].startswith("[local extractive summary]") for r in summaries)
    assert counters["on_demand_input_tokens"] == sum(r["input_tokens"] for r in summaries) > 0
    assert counters["on_demand_output_tokens"] == sum(r["output_tokens"] for r in summaries) > 0


def test_a_record_the_model_rejects_becomes_one_failure_row_without_retries(local_backend,
                                                                            tmp_path):
    records = _records(5)
    bad = replace(records[2], model_input={**records[2].model_input, "messages": []})
    records[2] = bad
    summaries, failures, counters = _invoke(records, local_config(local_backend), tmp_path)

    assert sorted(r["transcript_id"] for r in summaries) == sorted(
        r.transcript_id for r in records if r is not bad)
    [failure] = failures
    assert failure["transcript_id"] == bad.transcript_id and failure["record_id"] == bad.record_id
    assert failure["stage"] == "model" and failure["error_code"] == "ValidationException"
    assert counters["on_demand_calls"] == 5  # the rejected record was called once


def test_a_record_still_throttled_after_its_last_attempt_becomes_one_failure_row(
        local_backend_factory, tmp_path):
    backend = local_backend_factory(faults=Faults(throttle_rate=1.0))
    records = _records(4)
    retry = RetryPolicy(max_attempts=3, base_seconds=0.01, cap_seconds=0.05)
    summaries, failures, counters = _invoke(records, local_config(backend), tmp_path, retry)

    assert summaries == []
    assert sorted(f["transcript_id"] for f in failures) == sorted(r.transcript_id for r in records)
    for failure in failures:
        assert failure["error_code"] == "ThrottlingException"
        assert failure["error_message"].endswith("(after 3 attempts)")
    assert counters["on_demand_calls"] == counters["on_demand_throttled"] == 12


def test_cli_report_shows_the_on_demand_calls_tokens_and_cost(local_backend, tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(12)))
    out = tmp_path / "out"
    assert main(["run", "--input", str(path), "--output", str(out), "--sink", "jsonl",
                 "--min-records-per-job", "100", "--undersized-policy", "on-demand"]) == 0
    report = capsys.readouterr().out
    summaries = read_rows(out / "summaries")
    assert len(summaries) == 12 and all(r["job_arn"] is None for r in summaries)
    tokens_in = sum(r["input_tokens"] for r in summaries)
    tokens_out = sum(r["output_tokens"] for r in summaries)
    cost = estimate_on_demand_cost(MODEL, tokens_in, tokens_out)
    assert (f"on demand 12 calls, {tokens_in} in, {tokens_out} out") in report
    assert f"on demand ${cost:.4f}" in report


def test_on_demand_cost_is_the_list_price_twice_the_batch_estimate():
    assert estimate_on_demand_cost(MODEL, 1_000_000, 1_000_000) == 0.25 + 1.25
    assert estimate_on_demand_cost("us." + MODEL, 2000, 400) == pytest.approx(
        2 * estimate_cost(MODEL, 2000, 400))
    assert estimate_on_demand_cost("example.unlisted-model-v1:0", 10, 10) is None


def test_an_unreachable_service_is_retried_then_fails_the_pipeline_loudly(tmp_path, caplog):
    """No service at all (a closed port): a connection error has no error code to become a
    failure row with, so after its attempts the bundle fails and the runner reports it."""
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    config = BatchConfig(base_uri="s3://unused/runs", run_id="unreachable",
                         job=JobConfig(role_arn=SERVICE_ROLE_ARN),
                         aws=AwsConfig(region="us-east-1", bedrock_runtime_endpoint_url=closed,
                                       access_key_id="testing", secret_access_key="testing"))
    retry = RetryPolicy(max_attempts=2, base_seconds=0.01, cap_seconds=0.01)
    with caplog.at_level(logging.WARNING, logger="transforms.shards.invoke_on_demand"):
        with pytest.raises(Exception, match="Could not connect to the endpoint URL"):
            _invoke(_records(1), config, tmp_path, retry)
    assert "attempt 2 of 2" in caplog.text


@pytest.mark.parametrize("retries, attempt, calls", [(0, 1, 1), (1, 2, 2)])
def test_an_invalid_insights_answer_is_repaired_only_when_max_record_retries_allows(
        local_backend, tmp_path, retries, attempt, calls):
    """The README: the repair needs --max-record-retries of at least 1. Transcripts whose first
    and repair answers the local model both breaks (planned_fault) end as one SchemaViolation
    row: of the first answer with 0 retries, of the repair answer with 1."""
    from pipeline.local.insights import planned_fault

    config = local_config(local_backend, task="insights", max_record_retries=retries)
    texts = (f"Customer: my parcel {i} never came. Agent: I will send another." for i in range(10**4))
    broken = [text for text in texts if planned_fault(text, False) and planned_fault(text, True)][:2]
    records = [build_record(Transcript(f"t{n}", text), MODEL, config.prompt,
                            output_schema=config.output_schema) for n, text in enumerate(broken)]
    summaries, failures, counters = _invoke(records, config, tmp_path)

    assert summaries == []
    assert sorted((f["transcript_id"], f["error_code"], f["attempt"]) for f in failures) == [
        ("t0", "SchemaViolation", attempt), ("t1", "SchemaViolation", attempt)]
    assert counters.get("insights_repair_requests", 0) == retries * 2
    assert counters["on_demand_calls"] == calls * 2
