"""The insights task's pure parts: schema loading, answer extraction and validation, the repair
round's decisions, per-family JSON requests and repairs against the local model, and the local
model's seeded broken answers."""
from __future__ import annotations

import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline.local import insights as local_insights
from pipeline.local.responses import invoke
from tests.pipelines import transcripts
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig
from transforms.core.model import Failure, Transcript
from transforms.insights.answers import AnswerError, extract_object, read_answer, schema_error
from transforms.insights.prompts import REPAIR_MARKER, is_repair, repair_note
from transforms.insights.schemas import (SchemaFileError, check_schema, default_schema, load_schema,
                                         resolve_task)
from transforms.jobs.results import IndexEntry, JobContext, harvest_lines, repair_or_fail
from transforms.prepare.families import family_for, parse_model_output
from transforms.prepare.records import PromptConfig, build_record

SCHEMA = default_schema()
CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
# (model id, invocation type): every family the pipeline builds requests for.
FAMILIES = [(CLAUDE, "InvokeModel"), ("amazon.nova-lite-v1:0", "InvokeModel"),
            ("meta.llama3-1-8b-instruct-v1:0", "InvokeModel"),
            ("mistral.mistral-7b-instruct-v0:2", "InvokeModel"),
            ("amazon.titan-text-express-v1", "InvokeModel"), (CLAUDE, "Converse")]
USER_SCHEMA = {"type": "object", "required": ["summary", "priority", "tags"],
               "properties": {"summary": {"type": "string"},
                              "priority": {"type": "integer", "minimum": 1, "maximum": 5},
                              "tags": {"type": "array", "items": {"type": "string"},
                                       "minItems": 1},
                              "resolution": {"type": "string", "enum": ["resolved", "open"]}}}
CALL = ("Customer: I was charged twice on my bill and I am upset. Agent: I can verify your "
        "account with your date of birth. Agent: I have processed a refund and I will email "
        "you the confirmation by Friday. Customer: Great, thank you.")


def _transcript_without_faults(start: int = 0) -> Transcript:
    """A transcript the local model answers validly, first time and on repair."""
    i = start
    while local_insights.planned_fault(f"{CALL} #{i}", False) or \
            local_insights.planned_fault(f"{CALL} #{i}", True):
        i += 1
    return Transcript(id=f"t{i}", text=f"{CALL} #{i}")


# ---- schema files and the task ----------------------------------------------------------------

def test_default_schema_is_a_valid_object_schema_with_the_issue_fields():
    assert check_schema(SCHEMA, "default") == SCHEMA
    assert set(SCHEMA["required"]) == {"summary", "reason_for_call", "resolution",
                                       "customer_sentiment", "action_items", "topics",
                                       "agent_verified_identity", "language"}
    assert SCHEMA["properties"]["resolution"]["enum"] == [
        "resolved", "unresolved", "escalated", "callback_scheduled"]


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not JSON"),
    ('{"type": "object", "properties": {"a": {"type": 5}}}', "is not a valid JSON Schema"),
    ('{"type": "array", "items": {"type": "string"}}', '"type": "object"'),
    ('["summary"]', "not an object"),
])
def test_a_bad_schema_file_is_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "mine.json"
    path.write_text(content)
    with pytest.raises(SchemaFileError) as err:
        load_schema(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_task_resolution(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(USER_SCHEMA))
    assert resolve_task(None, None) == ("summary", None)
    assert resolve_task("insights", None) == ("insights", SCHEMA)
    assert resolve_task(None, str(path)) == ("insights", USER_SCHEMA)
    with pytest.raises(SchemaFileError, match="needs --task insights"):
        resolve_task("summary", str(path))


def test_batch_config_takes_the_default_schema_for_insights_and_rejects_a_stray_one():
    base = dict(base_uri="s3://b/p", run_id="r1", job=JobConfig(role_arn="arn:aws:iam::1:role/x"))
    assert BatchConfig(**base).output_schema is None
    assert BatchConfig(**base, task="insights").output_schema == SCHEMA
    with pytest.raises(ValueError, match="task"):
        BatchConfig(**base, output_schema=USER_SCHEMA)
    with pytest.raises(ValueError, match="not a valid JSON Schema"):
        BatchConfig(**base, task="insights", output_schema={"type": "object", "required": 3})


def test_cli_refuses_a_bad_output_schema_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "string"}')
    calls = tmp_path / "calls.jsonl"
    calls.write_text('{"id": "a", "text": "Customer: hi. Agent: hello."}\n')
    assert main(["run", "--input", str(calls), "--output", str(tmp_path / "out"),
                 "--output-schema", str(bad)]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert str(bad) in line and '"type": "object"' in line


# ---- extraction and validation ----------------------------------------------------------------

OBJECT = {"summary": "s", "nested": {"a": [1, {"b": None}]}}


@pytest.mark.parametrize("answer", [
    json.dumps(OBJECT),
    "Here is the JSON you asked for:\n" + json.dumps(OBJECT) + "\nLet me know {if} that helps.",
    "```json\n" + json.dumps(OBJECT, indent=2) + "\n```",
    "Sure.\n```\n" + json.dumps(OBJECT) + "\n```\nDone.",
    json.dumps(OBJECT)[1:],  # the continuation of a prefilled "{"
    "\n" + json.dumps(OBJECT) + "\n```",  # the continuation of a prefilled ```json fence
])
def test_the_object_is_found_in_what_models_wrap_it_in(answer):
    assert extract_object(answer) == OBJECT


def test_a_tool_use_block_is_the_answer():
    assert extract_object("", tool_input=OBJECT) == OBJECT


@pytest.mark.parametrize("answer, message", [
    ('"summary": "cut sho', "prefilled"),
    ("I cannot help with that.", "no complete JSON object"),
    ("[1, 2]", "no complete JSON object"),
    ('Here: {"summary": "cut', "not complete or not valid"),
])
def test_no_object_is_an_answer_error(answer, message):
    with pytest.raises(AnswerError, match=message):
        extract_object(answer)


def test_a_truncated_continuation_is_not_mistaken_for_a_nested_object():
    cut = json.dumps({"summary": "x", "reason_for_call": {"category": "other", "detail": "d"},
                      "resolution": "resol"})[1:-10]
    with pytest.raises(AnswerError, match="prefilled"):
        extract_object(cut)


def test_schema_errors_name_the_place():
    value = local_insights.fill(SCHEMA, CALL)
    assert schema_error(value, SCHEMA) is None
    assert schema_error({**value, "resolution": "maybe"}, SCHEMA).startswith("at /resolution:")
    sentiment = {**value, "customer_sentiment": {"start": 2, "end": 0}}
    assert "/customer_sentiment/start" in schema_error(sentiment, SCHEMA)


@settings(max_examples=5, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
                       max_size=5),
       st.sampled_from(["{}", "Answer: {} -- end", "```json\n{}\n```"]))
def test_any_object_survives_any_wrapping(value, wrapping):
    text = json.dumps(value)
    assert extract_object(wrapping.replace("{}", text)) == value


# ---- the repair round's decisions -------------------------------------------------------------

def _line(record_id: str, model_input: dict, text: str) -> str:
    body = {"content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 5}}
    return json.dumps({"recordId": record_id, "modelInput": model_input, "modelOutput": body})


def test_invalid_answer_is_repaired_once_then_fails_with_the_raw_answer():
    record = build_record(Transcript("t1", CALL), CLAUDE, PromptConfig(), output_schema=SCHEMA)
    ctx = JobContext(CLAUDE, "arn:job", max_attempts=3, output_schema=SCHEMA)
    bad = '"summary": "ok", "resolution": "maybe"}'
    harvest, _ = harvest_lines([_line("R1", dict(record.model_input), bad)],
                               {"R1": IndexEntry("R1", "t1")}, ctx)
    [repair] = harvest.retries
    assert (harvest.repairs, repair.attempt, harvest.failures, harvest.summaries) == (1, 2, [], [])
    assert is_repair(repair.model_input) and not is_repair(record.model_input)
    assert "at /: 'reason_for_call' is a required property" in json.dumps(repair.model_input)
    # The repair's answer is invalid too: a failure row, though attempts are left.
    harvest, _ = harvest_lines([_line("R1", dict(repair.model_input), bad)],
                               {"R1": IndexEntry("R1", "t1", attempt=2)}, ctx)
    [failure] = harvest.failures
    assert (failure.stage, failure.error_code, failure.attempt) == ("parse", "SchemaViolation", 2)
    assert failure.raw == bad and harvest.retries == [] and harvest.repairs == 0
    assert harvest.input_tokens == 10  # the billed answer still counts


def test_no_round_left_means_a_failure_at_once():
    record = build_record(Transcript("t1", CALL), CLAUDE, PromptConfig(), output_schema=SCHEMA)
    outcome = repair_or_fail(IndexEntry("R1", "t1"), dict(record.model_input), "nope", "no object",
                             model_id=CLAUDE, invocation_type="InvokeModel", max_attempts=1,
                             job_arn="arn:job")
    assert isinstance(outcome, Failure) and outcome.error_code == "SchemaViolation"
    assert "after one repair" not in outcome.error_message


def test_a_valid_answer_is_an_insights_row_whose_summary_is_its_summary():
    record = build_record(Transcript("t1", CALL), CLAUDE, PromptConfig(), output_schema=SCHEMA)
    value = local_insights.fill(SCHEMA, CALL)
    ctx = JobContext(CLAUDE, "arn:job", output_schema=SCHEMA)
    harvest, _ = harvest_lines([_line("R1", dict(record.model_input), json.dumps(value)[1:])],
                               {"R1": IndexEntry("R1", "t1")}, ctx)
    [row] = harvest.summaries
    assert row.insights == value and row.summary == value["summary"]
    assert row.to_row()["insights"] == value


def test_summary_task_is_unchanged():
    record = build_record(Transcript("t1", CALL), CLAUDE, PromptConfig())
    assert record.model_input["messages"][-1]["role"] == "user"
    assert "<json_schema>" not in json.dumps(record.model_input)
    harvest, _ = harvest_lines([_line("R1", dict(record.model_input), "A summary.")],
                               {"R1": IndexEntry("R1", "t1")}, JobContext(CLAUDE, "arn:job"))
    assert [(s.summary, s.insights) for s in harvest.summaries] == [("A summary.", None)]
    assert "insights" not in harvest.summaries[0].to_row()  # the summary task's row as before


# ---- per family: the request, the local model's answer, the repair ----------------------------

@pytest.mark.parametrize("model_id, invocation", FAMILIES)
def test_each_family_asks_for_json_and_takes_a_repair(model_id, invocation):
    t = _transcript_without_faults()
    record = build_record(t, model_id, PromptConfig(max_tokens=1024), invocation,
                          output_schema=SCHEMA)
    body = invoke(model_id, invocation, dict(record.model_input)).body
    parsed = parse_model_output(body, model_id, invocation)
    first = read_answer(parsed.text, SCHEMA, parsed.tool_input)
    assert first.value == local_insights.fill(SCHEMA, t.text)
    repair = family_for(model_id, invocation).build_repair_request(
        record.model_input, parsed.text, repair_note("at /: something"))
    assert is_repair(repair)
    body = invoke(model_id, invocation, repair).body  # the local service accepts its shape
    parsed = parse_model_output(body, model_id, invocation)
    assert read_answer(parsed.text, SCHEMA, parsed.tool_input).value == first.value


def test_claude_and_llama_prefill_the_answer_and_converse_sends_no_tool_config():
    t = Transcript("t", CALL)
    claude = build_record(t, CLAUDE, PromptConfig(), output_schema=SCHEMA).model_input
    assert claude["messages"][-1] == {"role": "assistant", "content": [{"type": "text",
                                                                        "text": "{"}]}
    llama = build_record(t, "meta.llama3-1-8b-instruct-v1:0", PromptConfig(),
                         output_schema=SCHEMA).model_input
    assert llama["prompt"].endswith("<|end_header_id|>\n\n{")
    converse = build_record(t, CLAUDE, PromptConfig(), "Converse", output_schema=SCHEMA)
    assert "toolConfig" not in converse.model_input
    assert "<json_schema>" in converse.model_input["messages"][0]["content"][0]["text"]


# ---- the local model's insights ---------------------------------------------------------------

def test_the_local_model_fills_a_user_schema_validly():
    value = local_insights.fill(USER_SCHEMA, CALL)
    jsonschema.validate(value, USER_SCHEMA)
    assert value["resolution"] == "resolved"  # the rule's value fits this schema's enum


def test_the_local_model_follows_refs_of_a_user_schema():
    schema = {"$defs": {"level": {"type": "string", "enum": ["low", "high"]},
                        "item": {"type": "object", "required": ["level"],
                                 "properties": {"level": {"$ref": "#/$defs/level"}}}},
              "type": "object", "required": ["summary", "urgency", "items"],
              "properties": {"summary": {"type": "string"},
                             "urgency": {"$ref": "#/$defs/level"},
                             "items": {"type": "array", "minItems": 1,
                                       "items": {"$ref": "#/$defs/item"}}}}
    jsonschema.validate(local_insights.fill(check_schema(schema, "test"), CALL), schema)


def test_the_local_rules_read_the_call():
    value = local_insights.fill(SCHEMA, CALL)
    assert value["reason_for_call"]["category"] == "billing"
    assert value["resolution"] == "resolved" and value["agent_verified_identity"] is True
    assert value["customer_sentiment"]["start"] < value["customer_sentiment"]["end"]
    assert {"what": "I will email you the confirmation by Friday.",
            "owner": "agent", "due_date": "by Friday"} in value["action_items"]


def test_seeded_faults_are_rare_deterministic_and_broken_as_planned():
    texts = [t.text + f" {i}" for i, t in enumerate(transcripts(1500))]
    first = [local_insights.planned_fault(text, False) for text in texts]
    repair = [local_insights.planned_fault(text, True) for text in texts]
    assert first == [local_insights.planned_fault(text, False) for text in texts]
    assert 0.03 < sum(f is not None for f in first) / len(texts) < 0.09
    assert 0.01 < sum(f is not None for f in repair) / len(texts) < 0.05
    for kind in local_insights.FAULTS:
        text = texts[first.index(kind)]
        prompt = (f"<transcript>\n{text}\n</transcript>\n"
                  f"<json_schema>{json.dumps(SCHEMA)}</json_schema>")
        answer = local_insights.answer([prompt])
        if kind == "invalid_json":
            with pytest.raises(AnswerError, match="not complete or not valid"):
                extract_object(answer)
        else:
            assert schema_error(extract_object(answer), SCHEMA) is not None
        # The same transcript in a repair request is answered by the repair draw.
        repaired = local_insights.answer([prompt, REPAIR_MARKER])
        assert (schema_error(extract_object(repaired), SCHEMA) is None) == (
            repair[first.index(kind)] is None)


def test_a_summary_request_gets_no_insights_answer():
    assert local_insights.answer(["<transcript>Customer: hi</transcript> Summarize."]) is None


def test_plan_counts_the_schema_in_the_prompt_tokens(tmp_path, capsys):
    calls = tmp_path / "calls.jsonl"
    calls.write_text("".join(json.dumps({"id": f"c{i}", "text": CALL}) + "\n" for i in range(3)))
    assert main(["plan", "--input", str(calls)]) == 0
    summary_plan = json.loads(capsys.readouterr().out)
    assert main(["plan", "--input", str(calls), "--task", "insights"]) == 0
    insights_plan = json.loads(capsys.readouterr().out)
    extra = (insights_plan["estimate"]["input_tokens"]
             - summary_plan["estimate"]["input_tokens"])
    # The schema (~4 characters a token) is sent with every record.
    assert extra > 3 * len(json.dumps(SCHEMA, separators=(",", ":"))) // 4 * 0.9


def test_on_demand_repairs_at_once_and_bills_both_answers(local_backend):
    """The on-demand policy has no later round: the DoFn's call path is driven directly against
    the real local runtime endpoint (a pipeline adds nothing to what is checked here)."""
    from tests.pipelines import local_config
    from transforms.shards.invoke_on_demand import InvokeOnDemandFn
    from transforms.core.rate_control import RetryPolicy

    def first_broken(repair_broken: bool) -> Transcript:
        i = 0
        while not (local_insights.planned_fault(f"{CALL} #{i}", False)
                   and bool(local_insights.planned_fault(f"{CALL} #{i}", True)) == repair_broken):
            i += 1
        return Transcript(id=f"t{i}", text=f"{CALL} #{i}")

    config = local_config(local_backend, task="insights")
    fn = InvokeOnDemandFn(config, RetryPolicy(max_attempts=1))
    fn.setup()
    try:
        outcomes = {broken: fn._invoke(build_record(first_broken(broken), CLAUDE, config.prompt,
                                                    output_schema=SCHEMA), (None, None))
                    for broken in (False, True)}
    finally:
        fn.teardown()
    repaired, failed = outcomes[False], outcomes[True]
    assert repaired.calls == failed.calls == 2 and repaired.repairs == failed.repairs == 1
    assert repaired.output.attempt == 2 and repaired.output.insights is not None
    jsonschema.validate(repaired.output.insights, SCHEMA)
    assert (failed.output.error_code, failed.output.attempt) == ("SchemaViolation", 2)
    assert failed.parsed.input_tokens > 2 * len(json.dumps(SCHEMA)) // 6  # two prompts billed


def test_a_cut_off_answer_names_max_tokens():
    record = build_record(Transcript("t1", CALL), CLAUDE, PromptConfig(), output_schema=SCHEMA)
    body = {"content": [{"type": "text", "text": '"summary": "long'}], "stop_reason": "max_tokens",
            "usage": {"input_tokens": 10, "output_tokens": 512}}
    line = json.dumps({"recordId": "R1", "modelInput": dict(record.model_input),
                       "modelOutput": body})
    ctx = JobContext(CLAUDE, "arn:job", max_attempts=1, output_schema=SCHEMA)
    harvest, _ = harvest_lines([line], {"R1": IndexEntry("R1", "t1")}, ctx)
    [failure] = harvest.failures
    assert "raise --max-tokens" in failure.error_message and harvest.truncated == 1
