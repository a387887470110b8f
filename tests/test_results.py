"""transforms/jobs/results.py: job output lines -> Summary / Failure / retry, on real response
bodies.

Output lines are built the way Bedrock (and the local backend's runner) writes them, with model
outputs produced by the local backend's model (pipeline.local.responses.invoke) for each family.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, Mapping

import pytest

from pipeline.local.faults import RECORD_ERRORS
from pipeline.local.responses import invoke
from transforms.core.model import RAW_LIMIT, BatchRecord, Failure, Transcript
from transforms.jobs.results import (Harvest, IndexEntry, JobContext, Manifest, harvest_lines,
                                     index_line, iter_index, parse_index_line, read_input_models,
                                     unanswered)
from transforms.prepare.records import PromptConfig, build_record

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"
START = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
END = START + dt.timedelta(minutes=5)
TEXT = ("Agent: Thank you for calling, this is Zoë. Customer: My parcel from order 4471 arrived two "
        "weeks late. Agent: I am sorry about the delay. I will refund the shipping fee of 12 euros "
        "today. Customer: Thanks, that works for me. Agent: You will get a confirmation email by Friday.")


def content_text(body: Mapping[str, Any]) -> str:
    return body["content"][0]["text"]


def converse_text(body: Mapping[str, Any]) -> str:
    return body["output"]["message"]["content"][0]["text"]


# model id, invocation type, and how that family's response says (text, stop reason, in, out tokens):
# an oracle written from the AWS response field pages, independent of
# transforms/prepare/families/.
FAMILIES: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]] = {
    "claude": (CLAUDE, "InvokeModel", lambda b: (
        content_text(b), b["stop_reason"], b["usage"]["input_tokens"], b["usage"]["output_tokens"])),
    "nova": ("us.amazon.nova-lite-v1:0", "InvokeModel", lambda b: (
        converse_text(b), b["stopReason"], b["usage"]["inputTokens"], b["usage"]["outputTokens"])),
    "llama": ("meta.llama3-8b-instruct-v1:0", "InvokeModel", lambda b: (
        b["generation"], b["stop_reason"], b["prompt_token_count"], b["generation_token_count"])),
    "mistral": ("mistral.mistral-7b-instruct-v0:2", "InvokeModel", lambda b: (
        b["outputs"][0]["text"], b["outputs"][0]["stop_reason"], None, None)),
    "titan": ("amazon.titan-text-express-v1", "InvokeModel", lambda b: (
        b["results"][0]["outputText"], b["results"][0]["completionReason"], b["inputTextTokenCount"],
        b["results"][0]["tokenCount"])),
    "converse": ("cohere.command-r-v1:0", "Converse", lambda b: (
        converse_text(b), b["stopReason"], b["usage"]["inputTokens"], b["usage"]["outputTokens"])),
}
TRUNCATED = {"claude": "max_tokens", "nova": "max_tokens", "llama": "length", "mistral": "length",
             "titan": "LENGTH", "converse": "max_tokens"}


def record(tid: str, model: str = CLAUDE, invocation_type: str = "InvokeModel", attempt: int = 1,
           max_tokens: int = 300, metadata: Mapping[str, Any] | None = None) -> BatchRecord:
    t = Transcript(tid, TEXT, metadata=metadata if metadata is not None else {"queue": "billing"})
    return build_record(t, model, PromptConfig(max_tokens=max_tokens), invocation_type, attempt=attempt)


def ok_line(r: BatchRecord, model: str = CLAUDE, invocation_type: str = "InvokeModel") -> str:
    body = invoke(model, invocation_type, dict(r.model_input)).body
    return json.dumps({"recordId": r.record_id, "modelInput": r.model_input, "modelOutput": body})


def error_line(r: BatchRecord, which: int = 0, with_input: bool = True) -> str:
    code, message = RECORD_ERRORS[which]
    line: dict[str, Any] = {"recordId": r.record_id, "error": {"errorCode": code, "errorMessage": message}}
    if with_input:
        line["modelInput"] = r.model_input
    return json.dumps(line)


def entry(r: BatchRecord) -> IndexEntry:
    return parse_index_line(index_line(r))


def index_of(*records: BatchRecord) -> dict[str, IndexEntry]:
    return {r.record_id: entry(r) for r in records}


def ctx(model: str = CLAUDE, invocation_type: str = "InvokeModel", **kw: Any) -> JobContext:
    return JobContext(model_id=model, job_arn=ARN, invocation_type=invocation_type,
                      window_start=START, window_end=END, **kw)


# ---- successes ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_success_becomes_a_summary_for_every_family(family: str) -> None:
    model, itype, oracle = FAMILIES[family]
    r = record("call-1", model, itype, metadata={"queue": "billing", "agent": "Zoë"})
    line = ok_line(r, model, itype)
    text, stop, tokens_in, tokens_out = oracle(json.loads(line)["modelOutput"])
    harvest, seen = harvest_lines([line], index_of(r), ctx(model, itype))
    assert seen == {r.record_id} and not harvest.failures and not harvest.retries
    [s] = harvest.summaries
    assert (s.transcript_id, s.record_id, s.model_id, s.job_arn) == ("call-1", r.record_id, model, ARN)
    assert s.summary == text.strip() and s.summary
    assert (s.stop_reason, s.input_tokens, s.output_tokens) == (stop, tokens_in, tokens_out)
    assert (s.window_start, s.window_end, s.attempt) == (START, END, 1)
    assert json.loads(s.metadata) == {"queue": "billing", "agent": "Zoë"}
    assert (harvest.input_tokens, harvest.output_tokens) == (tokens_in or 0, tokens_out or 0)
    assert harvest.truncated == 0 and harvest.model_errors == 0


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_max_tokens_stop_is_a_counted_summary(family: str) -> None:
    model, itype, _ = FAMILIES[family]
    r = record("call-t", model, itype, max_tokens=4)
    harvest, _ = harvest_lines([ok_line(r, model, itype)], index_of(r), ctx(model, itype))
    [s] = harvest.summaries
    assert s.stop_reason == TRUNCATED[family] and harvest.truncated == 1


def test_many_records_in_any_order_join_on_record_id() -> None:
    records = [record(f"call-{i}", attempt=1 + i % 2, metadata={"n": i}) for i in range(6)]
    lines = [ok_line(r) for r in reversed(records)] + ["", "   "]
    harvest, seen = harvest_lines(lines, index_of(*records), ctx())
    by_tid = {s.transcript_id: s for s in harvest.summaries}
    assert seen == {r.record_id for r in records} and len(by_tid) == 6
    for i, r in enumerate(records):
        assert by_tid[f"call-{i}"].record_id == r.record_id
        assert by_tid[f"call-{i}"].attempt == 1 + i % 2
        assert json.loads(by_tid[f"call-{i}"].metadata) == {"n": i}
    assert harvest.input_tokens == sum(s.input_tokens for s in harvest.summaries) > 0


def test_empty_metadata_is_null_not_an_empty_object() -> None:
    r = record("call-m", metadata={})
    harvest, _ = harvest_lines([ok_line(r)], index_of(r), ctx())
    assert harvest.summaries[0].metadata is None


# ---- record errors: retried while attempts remain, then failed ----------------------------------

def test_record_error_is_retried_with_the_next_attempt() -> None:
    r = record("call-ü", metadata={"agent": "Zoë"})
    harvest, seen = harvest_lines([error_line(r)], index_of(r), ctx(max_attempts=3))
    assert seen == {r.record_id} and harvest.model_errors == 1
    assert not harvest.summaries and not harvest.failures
    [retry] = harvest.retries
    assert retry == BatchRecord(r.record_id, "call-ü", r.model_input, r.size_bytes, {"agent": "Zoë"}, 2)
    assert retry.size_bytes == len(retry.jsonl_line().encode("utf-8")) > len(retry.jsonl_line())


def test_second_attempt_is_retried_again_when_allowed() -> None:
    r = record("call-2", attempt=2)
    harvest, _ = harvest_lines([error_line(r, 1)], index_of(r), ctx(max_attempts=3))
    assert [x.attempt for x in harvest.retries] == [3]


@pytest.mark.parametrize("which", range(len(RECORD_ERRORS)))
def test_record_error_on_the_last_attempt_is_a_model_failure(which: int) -> None:
    r = record("call-3", attempt=3)
    harvest, seen = harvest_lines([error_line(r, which)], index_of(r), ctx(max_attempts=3))
    code, message = RECORD_ERRORS[which]
    assert not harvest.retries and harvest.model_errors == 1 and seen == {r.record_id}
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.error_message) == ("model", str(code), message)
    assert (f.transcript_id, f.record_id, f.attempt, f.job_arn) == ("call-3", r.record_id, 3, ARN)
    assert json.loads(f.raw) == r.model_input


def test_no_retries_configured_fails_at_once() -> None:
    r = record("call-4")
    harvest, _ = harvest_lines([error_line(r)], index_of(r), ctx(max_attempts=1))
    assert not harvest.retries and [f.attempt for f in harvest.failures] == [1]


def test_error_without_model_input_cannot_be_resubmitted() -> None:
    r = record("call-5")
    harvest, _ = harvest_lines([error_line(r, with_input=False)], index_of(r), ctx(max_attempts=3))
    [f] = harvest.failures
    assert not harvest.retries and f.stage == "model" and f.raw is None and f.attempt == 1


@pytest.mark.parametrize("extra,code,message", [
    ({"error": "quota exhausted"}, "ModelError", "quota exhausted"),
    ({}, "ModelError", "no modelOutput"),
    ({"error": {"errorMessage": "boom"}}, "ModelError", "boom"),
    ({"error": {"errorCode": 400}}, "400", "record failed"),
])
def test_odd_error_shapes_still_give_a_reason(extra: dict[str, Any], code: str, message: str) -> None:
    r = record("call-6", attempt=3)
    line = json.dumps({"recordId": r.record_id, "modelInput": r.model_input, **extra})
    harvest, _ = harvest_lines([line], index_of(r), ctx(max_attempts=3))
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.error_message) == ("model", code, message)
    assert harvest.model_errors == 1


# ---- lines that cannot be used --------------------------------------------------------------------

def test_unparseable_model_output_is_a_parse_failure() -> None:
    r = record("call-7")
    line = json.dumps({"recordId": r.record_id, "modelInput": r.model_input,
                       "modelOutput": {"completion": "old text-completions shape"}})
    harvest, seen = harvest_lines([line], index_of(r), ctx())
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.transcript_id, f.record_id) == ("parse", "UnparseableOutput",
                                                                    "call-7", r.record_id)
    assert "content" in f.error_message and json.loads(f.raw) == {"completion": "old text-completions shape"}
    assert seen == {r.record_id}  # answered, so not reported missing as well
    assert not harvest.retries and harvest.model_errors == 0


BAD_LINES = ["not json", "[1, 2]", '"a string"', "null", '{"modelOutput": {"content": []}}']


@pytest.mark.parametrize("bad", BAD_LINES)
def test_malformed_line_of_a_job_from_elsewhere_is_a_parse_failure_with_its_line_number(
        bad: str) -> None:
    r = record("call-8")
    harvest, seen = harvest_lines([ok_line(r), "", bad], None, ctx())
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.job_arn) == ("parse", "MalformedOutputLine", ARN)
    assert f.error_message.startswith("output line 3: ") and f.raw == bad
    assert len(harvest.summaries) == 1 and seen == {r.record_id}


@pytest.mark.parametrize("bad", BAD_LINES)
def test_malformed_line_of_an_indexed_job_is_counted_and_its_record_retried(bad: str) -> None:
    answered, torn = record("call-8"), record("call-9")
    index = {**index_of(answered), **index_of(torn)}
    harvest, seen = harvest_lines([ok_line(answered), bad], index, ctx())
    assert harvest.failures == [] and harvest.unreadable == 1
    assert seen == {answered.record_id}  # the torn record is unanswered: one retry, no extra row
    retry = unanswered(index, seen, {torn.record_id: torn.model_input}, ctx())
    assert [r.transcript_id for r in retry.retries] == ["call-9"] and retry.failures == []


def test_huge_malformed_line_is_cut_in_the_failure_row() -> None:
    harvest, _ = harvest_lines(["x" * (RAW_LIMIT * 3)], None, ctx())
    assert len(harvest.failures[0].raw) < RAW_LIMIT + 50


def test_unknown_record_id_is_a_parse_failure() -> None:
    known, stranger = record("call-9"), record("call-10")
    harvest, seen = harvest_lines([ok_line(stranger), ok_line(known)], index_of(known), ctx())
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.record_id, f.transcript_id) == ("parse", "UnknownRecordId",
                                                                    stranger.record_id, None)
    assert stranger.record_id in f.error_message
    assert seen == {known.record_id} and [s.transcript_id for s in harvest.summaries] == ["call-9"]


# ---- collect mode: no index ---------------------------------------------------------------------

def test_without_index_record_id_stands_in_and_nothing_is_retried() -> None:
    """As `collect` calls it (max_attempts=1) for a job this pipeline did not submit."""
    good, bad = record("call-11"), record("call-12")
    lines = [ok_line(good), error_line(bad)]
    harvest, seen = harvest_lines(lines, None, ctx(max_attempts=1))
    [s] = harvest.summaries
    assert (s.transcript_id, s.record_id, s.attempt, s.metadata) == (good.record_id, good.record_id, 1, None)
    [f] = harvest.failures
    assert (f.stage, f.transcript_id, f.attempt) == ("model", bad.record_id, 1)
    assert not harvest.retries and seen == {good.record_id, bad.record_id}


def test_without_index_errors_are_not_retried_even_with_retries_configured() -> None:
    bad = record("call-13")
    harvest, _ = harvest_lines([error_line(bad)], None, ctx(max_attempts=3))
    assert not harvest.retries and len(harvest.failures) == 1


def test_without_model_id_the_shape_decides() -> None:
    model, itype, oracle = FAMILIES["titan"]
    r = record("call-14", model, itype)
    line = ok_line(r, model, itype)
    harvest, _ = harvest_lines([line], None, JobContext(model_id=None, job_arn=None, max_attempts=1))
    [s] = harvest.summaries
    assert s.summary == oracle(json.loads(line)["modelOutput"])[0].strip()
    assert s.model_id == "unknown"


# ---- records with no output line ----------------------------------------------------------------

def test_unanswered_records_are_retried_or_failed_with_the_job_status() -> None:
    answered, retried, lost = record("a"), record("b", metadata={"k": 1}), record("c", attempt=3)
    index = index_of(answered, retried, lost)
    inputs = read_input_models([answered.jsonl_line(), retried.jsonl_line(), lost.jsonl_line()],
                               {retried.record_id, lost.record_id})
    c = ctx(job_status="PartiallyCompleted", job_message="Processed 1 of 3 records", max_attempts=3)
    harvest = unanswered(index, {answered.record_id}, inputs, c)
    assert harvest.missing == 2 and not harvest.summaries
    assert harvest.retries == [BatchRecord(retried.record_id, "b", retried.model_input,
                                           retried.size_bytes, {"k": 1}, 2)]
    [f] = harvest.failures
    assert (f.stage, f.error_code, f.transcript_id, f.attempt) == ("model", "JobPartiallyCompleted", "c", 3)
    assert f.error_message == ("job ended PartiallyCompleted without processing the record: "
                               "Processed 1 of 3 records")
    assert json.loads(f.raw) == lost.model_input


def test_records_of_a_failed_job_fail_at_the_submit_stage() -> None:
    r = record("d", attempt=3)
    c = ctx(job_status="Failed", job_message="Access Denied", max_attempts=3)
    harvest = unanswered(index_of(r), set(), {r.record_id: r.model_input}, c)
    [f] = harvest.failures
    assert (f.stage, f.error_code) == ("submit", "JobFailed")
    assert f.error_message.endswith("without processing the record: Access Denied")


def test_records_of_a_job_that_was_never_created_fail_at_the_submit_stage() -> None:
    """HarvestJobFn passes job_status "NotCreated" and max_attempts 0 when CreateModelInvocationJob
    refused the job: its records never reached a model, so the row must say stage "submit"."""
    r = record("e")
    c = JobContext(model_id=CLAUDE, job_arn=None, job_status="NotCreated",
                   job_message="ValidationException: bad role", max_attempts=0)
    harvest = unanswered(index_of(r), set(), {r.record_id: r.model_input}, c)
    [f] = harvest.failures
    assert not harvest.retries and f.error_code == "JobNotCreated"
    assert f.stage == "submit", f


def test_unanswered_without_message_and_without_input() -> None:
    r = record("f")
    harvest = unanswered(index_of(r), set(), {}, ctx(job_status="Expired", max_attempts=3))
    [f] = harvest.failures  # no input to resubmit, so it fails even with attempts left
    assert f.error_message == "job ended Expired without processing the record" and f.raw is None


def test_nothing_missing_gives_an_empty_harvest() -> None:
    r = record("g")
    harvest = unanswered(index_of(r), {r.record_id}, {}, ctx())
    assert harvest == Harvest()


# ---- inputs, manifest, index sidecar ------------------------------------------------------------

def test_read_input_models_returns_only_wanted_ids() -> None:
    records = [record(f"in-{i}") for i in range(4)]
    lines = [r.jsonl_line() for r in records] + ["", "\n"]
    wanted = {records[1].record_id, records[3].record_id, "RNOTINFILE"}
    found = read_input_models(lines, wanted)
    assert found == {records[1].record_id: records[1].model_input,
                     records[3].record_id: records[3].model_input}
    assert read_input_models(lines, set()) == {}


def test_manifest_parse() -> None:
    text = json.dumps({"totalRecordCount": 10, "processedRecordCount": 9, "successRecordCount": 7,
                       "errorRecordCount": 2, "inputTokenCount": 1234, "outputTokenCount": 321})
    assert Manifest.parse(text) == Manifest(10, 9, 7, 2, 1234, 321)
    assert Manifest.parse('{"totalRecordCount": 3}') == Manifest(total=3)


def test_index_line_round_trip() -> None:
    r = record("idx-ü", attempt=2, metadata={"agent": "Zoë", "n": 3, "tags": ["a", "b"], "x": None})
    line = index_line(r)
    assert line.endswith("\n") and line.count("\n") == 1 and "Zoë" in line
    assert parse_index_line(line) == IndexEntry(r.record_id, "idx-ü", dict(r.metadata), 2)


def test_index_line_defaults_and_iter_index() -> None:
    assert parse_index_line('{"recordId": "R1", "transcriptId": "t1"}') == IndexEntry("R1", "t1", {}, 1)
    records = [record("i1"), record("i2", attempt=3)]
    entries = list(iter_index([index_line(records[0]), "", index_line(records[1])]))
    assert [(e.transcript_id, e.attempt) for e in entries] == [("i1", 1), ("i2", 3)]


def test_index_line_renders_non_json_metadata_as_text() -> None:
    r = record("when", metadata={"at": START})
    assert parse_index_line(index_line(r)).metadata == {"at": str(START)}


def test_harvest_merge_adds_everything() -> None:
    a, b = record("m1"), record("m2", attempt=3)
    first, _ = harvest_lines([ok_line(a)], index_of(a), ctx())
    second, _ = harvest_lines([error_line(b)], index_of(b), ctx(max_attempts=3))
    second.missing, second.truncated = 2, 1
    first.merge(second)
    assert (len(first.summaries), len(first.failures), first.model_errors, first.missing,
            first.truncated) == (1, 1, 1, 2, 1)
    assert first.input_tokens == first.summaries[0].input_tokens
    assert isinstance(first.failures[0], Failure)
