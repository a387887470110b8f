"""Request bodies and response parsing per model family (transforms/prepare/families/)."""
from __future__ import annotations

import pytest

from pipeline.local.responses import invoke
from transforms.prepare.families import (CONVERSE, ParsedOutput, UnparseableOutput, base_model_id,
                                         detect_family, family_for, parse_model_output)

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
MISTRAL_LARGE = "mistral.mistral-large-2407-v1:0"
TITAN = "amazon.titan-text-express-v1"

# Response bodies in the shapes AWS documents for each family.
CLAUDE_BODY = {"id": "msg_1", "type": "message", "role": "assistant",
               "content": [{"type": "text", "text": "Customer asked "}, {"type": "text", "text": "for a refund."}],
               "stop_reason": "end_turn", "usage": {"input_tokens": 120, "output_tokens": 9}}
NOVA_BODY = {"output": {"message": {"role": "assistant", "content": [{"text": "Refund issued."}]}},
             "stopReason": "max_tokens", "usage": {"inputTokens": 80, "outputTokens": 5, "totalTokens": 85}}
LLAMA_BODY = {"generation": " Refund issued. ", "prompt_token_count": 70,
              "generation_token_count": 4, "stop_reason": "length"}
MISTRAL_BODY = {"outputs": [{"text": "Refund issued.", "stop_reason": "stop"}]}
MISTRAL_CHAT_BODY = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Refund issued."},
                                  "stop_reason": "length"}]}
TITAN_BODY = {"inputTextTokenCount": 60,
              "results": [{"tokenCount": 3, "outputText": "\nRefund issued.\n", "completionReason": "LENGTH"}]}


@pytest.mark.parametrize("model_id, name", [
    (CLAUDE, "anthropic-claude"),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic-claude"),
    ("global.anthropic.claude-sonnet-4-20250514-v1:0", "anthropic-claude"),
    ("eu.amazon.nova-pro-v1:0", "amazon-nova"),
    ("apac.meta.llama3-2-3b-instruct-v1:0", "meta-llama"),
    (MISTRAL_LARGE, "mistral"),
    (TITAN, "amazon-titan-text"),
    ("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-1-70b-instruct-v1:0",
     "meta-llama"),
])
def test_family_for_strips_profile_prefixes(model_id: str, name: str) -> None:
    assert family_for(model_id).name == name


def test_converse_invocation_uses_the_converse_family_for_any_model() -> None:
    assert family_for("cohere.command-r-v1:0", "Converse") is CONVERSE
    assert family_for(CLAUDE, "Converse") is CONVERSE


def test_unknown_model_is_a_one_line_error_naming_it_and_the_known_prefixes() -> None:
    with pytest.raises(ValueError) as err:
        family_for("cohere.command-r-v1:0")
    message = str(err.value)
    assert "\n" not in message
    assert "cohere.command-r-v1:0" in message
    assert "anthropic.claude" in message and "meta.llama" in message and "Converse" in message


def test_unknown_invocation_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="InvokeModel, Converse"):
        family_for(CLAUDE, "Invoke")
    with pytest.raises(ValueError, match="invocation type"):
        parse_model_output(CLAUDE_BODY, CLAUDE, "invoke")


def test_base_model_id() -> None:
    assert base_model_id("us.amazon.nova-micro-v1:0") == "amazon.nova-micro-v1:0"
    assert base_model_id("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0") \
        == "amazon.nova-micro-v1:0"
    assert base_model_id(NOVA) == NOVA


def test_claude_request() -> None:
    body = family_for(CLAUDE).build_request("Summarize this.", "Be brief.", 256, 0.3)
    assert body == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "temperature": 0.3,
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarize this."}]}],
                    "system": "Be brief."}
    assert "system" not in family_for(CLAUDE).build_request("p", None, 10, 0.0)


def test_nova_and_converse_requests() -> None:
    nova = family_for(NOVA).build_request("Summarize this.", "Be brief.", 256, 0.3)
    assert nova == {"schemaVersion": "messages-v1",
                    "messages": [{"role": "user", "content": [{"text": "Summarize this."}]}],
                    "inferenceConfig": {"maxTokens": 256, "temperature": 0.3},
                    "system": [{"text": "Be brief."}]}
    converse = family_for(LLAMA, "Converse").build_request("Summarize this.", None, 64, 0.0)
    assert converse == {"messages": [{"role": "user", "content": [{"text": "Summarize this."}]}],
                        "inferenceConfig": {"maxTokens": 64, "temperature": 0.0}}


def test_llama_request_uses_the_llama3_chat_template() -> None:
    body = family_for(LLAMA).build_request("Summarize this.", "Be brief.", 300, 0.2)
    assert body["max_gen_len"] == 300 and body["temperature"] == 0.2
    assert body["prompt"] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nSummarize this.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_mistral_and_titan_requests() -> None:
    mistral = family_for(MISTRAL).build_request("Summarize this.", "Be brief.", 100, 0.5)
    assert mistral == {"prompt": "<s>[INST] Be brief.\n\nSummarize this. [/INST]", "max_tokens": 100,
                       "temperature": 0.5}
    titan = family_for(TITAN).build_request("Summarize this.", None, 100, 0.5)
    assert titan == {"inputText": "User: Summarize this.\nBot:",
                     "textGenerationConfig": {"maxTokenCount": 100, "temperature": 0.5}}


@pytest.mark.parametrize("model_id, body, expected", [
    (CLAUDE, CLAUDE_BODY, ParsedOutput("Customer asked for a refund.", "end_turn", 120, 9, False)),
    (NOVA, NOVA_BODY, ParsedOutput("Refund issued.", "max_tokens", 80, 5, True)),
    (LLAMA, LLAMA_BODY, ParsedOutput("Refund issued.", "length", 70, 4, True)),
    (MISTRAL, MISTRAL_BODY, ParsedOutput("Refund issued.", "stop", None, None, False)),
    (MISTRAL_LARGE, MISTRAL_CHAT_BODY, ParsedOutput("Refund issued.", "length", None, None, True)),
    (TITAN, TITAN_BODY, ParsedOutput("Refund issued.", "LENGTH", 60, 3, True)),
])
def test_parse_documented_shapes_by_model_and_by_shape(model_id: str, body: dict,
                                                       expected: ParsedOutput) -> None:
    assert family_for(model_id).parse_response(body) == expected
    assert parse_model_output(body, model_id) == expected
    assert parse_model_output(body) == expected  # auto-detected


def test_mistral_chat_finish_reason_and_usage() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 1}}
    assert parse_model_output(body, MISTRAL_LARGE) == ParsedOutput("ok", "stop", 12, 1, False)


def test_converse_job_output_parses_for_any_model() -> None:
    parsed = parse_model_output(NOVA_BODY, "cohere.command-r-v1:0", "Converse")
    assert parsed.text == "Refund issued." and parsed.truncated


def test_other_family_shape_is_still_parsed() -> None:
    """A Claude model run as a Converse-type job answers in the Converse shape."""
    assert parse_model_output(NOVA_BODY, CLAUDE).text == "Refund issued."
    assert detect_family(CLAUDE_BODY).name == "anthropic-claude"
    assert detect_family({"generation": 3}) is None


def test_unparseable_output_says_what_was_expected_and_found() -> None:
    with pytest.raises(UnparseableOutput) as err:
        parse_model_output({"message": "Internal error"}, CLAUDE)
    assert "anthropic-claude" in str(err.value) and "content[*].text" in str(err.value)
    assert "['message']" in str(err.value)
    with pytest.raises(UnparseableOutput, match="no known family.*found a list"):
        parse_model_output([1, 2])
    with pytest.raises(UnparseableOutput, match="expected output.message.content to be a list"):
        parse_model_output({"output": {"message": {"content": "text"}}})


def test_non_integer_token_counts_become_none() -> None:
    body = {"generation": "x", "prompt_token_count": "12", "generation_token_count": True}
    assert parse_model_output(body) == ParsedOutput("x", None, None, None, False)


@pytest.mark.parametrize("model_id, invocation_type", [
    (CLAUDE, "InvokeModel"), (NOVA, "InvokeModel"), (LLAMA, "InvokeModel"),
    (MISTRAL, "InvokeModel"), (TITAN, "InvokeModel"), ("cohere.command-r-v1:0", "Converse"),
    ("us.anthropic.claude-3-5-haiku-20241022-v1:0", "Converse"),
])
def test_round_trip_through_the_local_model(model_id: str, invocation_type: str) -> None:
    """Bodies we build are accepted by the local backend's model and its answers parse back."""
    transcript = ("Agent: Thank you for calling. Customer: My card was charged twice for the same "
                  "order last Tuesday. Agent: I see the duplicate charge and have refunded it; you "
                  "will get a confirmation email within two days.")
    family = family_for(model_id, invocation_type)
    full = invoke(model_id, invocation_type,
                  family.build_request(f"Summarize:\n{transcript}", "Be brief.", 512, 0.2))
    parsed = parse_model_output(full.body, model_id, invocation_type)
    assert parsed.text and not parsed.truncated
    if family.name != "mistral":  # Mistral text completions report no token counts
        assert (parsed.input_tokens, parsed.output_tokens) == (full.input_tokens, full.output_tokens)
    short = invoke(model_id, invocation_type,
                   family.build_request(f"Summarize:\n{transcript}", None, 3, 0.2))
    assert parse_model_output(short.body, model_id, invocation_type).truncated
