"""The local backend's model: extractive summaries in each Bedrock family's real response shape."""
from __future__ import annotations

import copy
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.local.responses import InvalidModelInput, InvokeResult, base_model_id, family_of, invoke
from pipeline.local.summarizer import (
    LABEL,
    count_tokens,
    cut_to_tokens,
    extract_transcript,
    split_sentences,
    summarize,
    summary_text,
)

TRANSCRIPT = """Agent: Thank you for calling Acme Internet, my name is Sam. How can I help you today?
Customer: Hi Sam. My internet has been down since yesterday and I work from home. I already restarted the router twice.
Agent: I'm sorry to hear that. Let me check your account. I can see an outage in your area affecting the fiber node.
Customer: How long will it take to fix? I was also charged a late fee this month which seems wrong.
Agent: The technicians expect the outage to be resolved by 5 pm today. I have also waived the late fee and applied a credit of ten dollars for the downtime.
Customer: Okay, thank you.
Agent: You're welcome. Is there anything else I can help with?
Customer: No, that's all."""

SYSTEM = "You write accurate, neutral call summaries."
PROMPT = (
    "Summarize the customer service call transcript below in at most five sentences.\n"
    "Cover the reason for the call and how it was resolved.\n\n"
    f"<transcript>\n{TRANSCRIPT}\n</transcript>"
)

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-lite-v1:0"
LLAMA = "meta.llama3-1-8b-instruct-v1:0"
MISTRAL = "mistral.mistral-7b-instruct-v0:2"
MISTRAL_CHAT = "mistral.mistral-large-2407-v1:0"
TITAN = "amazon.titan-text-express-v1"


def claude_body(max_tokens: int = 512, **extra) -> dict:
    return {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens, "system": SYSTEM,
            "temperature": 0.2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}], **extra}


def nova_body(max_tokens: int = 512, key: str = "maxTokens") -> dict:
    return {"schemaVersion": "messages-v1", "system": [{"text": SYSTEM}],
            "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
            "inferenceConfig": {key: max_tokens, "temperature": 0.2}}


def llama_body(max_tokens: int = 512) -> dict:
    prompt = (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYSTEM}<|eot_id|>"
              f"<|start_header_id|>user<|end_header_id|>\n\n{PROMPT}<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n")
    return {"prompt": prompt, "max_gen_len": max_tokens, "temperature": 0.2}


def mistral_body(max_tokens: int = 512) -> dict:
    return {"prompt": f"<s>[INST] {SYSTEM}\n\n{PROMPT} [/INST]", "max_tokens": max_tokens,
            "temperature": 0.2}


def mistral_chat_body(max_tokens: int = 512) -> dict:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": PROMPT}],
            "max_tokens": max_tokens, "temperature": 0.2}


def titan_body(max_tokens: int = 512) -> dict:
    return {"inputText": f"User: {SYSTEM}\n\n{PROMPT}\nBot:",
            "textGenerationConfig": {"maxTokenCount": max_tokens, "temperature": 0.2}}


def converse_body(max_tokens: int = 512) -> dict:
    return {"system": [{"text": SYSTEM}], "messages": [{"role": "user", "content": [{"text": PROMPT}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": 0.2}}


def transcript_sentences() -> set[str]:
    return {s.text for s in split_sentences(TRANSCRIPT)}


def assert_extractive(text: str) -> None:
    """Every sentence of the summary (after the label and speaker prefixes) is from the transcript."""
    assert text.startswith(LABEL)
    body = re.sub(r"(^|\s)(Agent|Customer): ", " ", text[len(LABEL):]).strip()
    pieces = re.split(r"(?<=[.!?])\s+", body)
    assert pieces and all(p in transcript_sentences() for p in pieces), pieces


# ---- response shapes, one normal and one max-tokens case per family ------------------------------

def test_anthropic_shape():
    result = invoke(CLAUDE, "InvokeModel", claude_body())
    body = result.body
    assert set(body) == {"id", "type", "role", "model", "content", "stop_reason", "stop_sequence",
                         "usage"}
    assert body["id"].startswith("msg_bdrk_")
    assert (body["type"], body["role"], body["model"]) == ("message", "assistant",
                                                           "claude-3-haiku-20240307")
    assert body["stop_reason"] == "end_turn" and body["stop_sequence"] is None
    assert [block["type"] for block in body["content"]] == ["text"]
    assert_extractive(body["content"][0]["text"])
    assert body["usage"] == {"input_tokens": result.input_tokens,
                             "output_tokens": result.output_tokens}
    assert result.output_tokens == count_tokens(body["content"][0]["text"])


def test_anthropic_max_tokens():
    result = invoke(CLAUDE, "InvokeModel", claude_body(max_tokens=15))
    assert result.body["stop_reason"] == "max_tokens"
    assert result.output_tokens == 15 == result.body["usage"]["output_tokens"]
    full = invoke(CLAUDE, "InvokeModel", claude_body()).body["content"][0]["text"]
    assert full.startswith(result.body["content"][0]["text"])


@pytest.mark.parametrize("key", ["maxTokens", "max_new_tokens"])
def test_nova_shape_and_max_tokens(key):
    normal = invoke(NOVA, "InvokeModel", nova_body(key=key))
    assert set(normal.body) == {"output", "stopReason", "usage"}
    message = normal.body["output"]["message"]
    assert message["role"] == "assistant" and normal.body["stopReason"] == "end_turn"
    assert_extractive(message["content"][0]["text"])
    usage = normal.body["usage"]
    assert usage == {"inputTokens": normal.input_tokens, "outputTokens": normal.output_tokens,
                     "totalTokens": normal.input_tokens + normal.output_tokens}
    cut = invoke(NOVA, "InvokeModel", nova_body(max_tokens=10, key=key))
    assert cut.body["stopReason"] == "max_tokens" and cut.body["usage"]["outputTokens"] == 10


def test_llama_shape_and_max_tokens():
    normal = invoke(LLAMA, "InvokeModel", llama_body())
    assert set(normal.body) == {"generation", "prompt_token_count", "generation_token_count",
                                "stop_reason"}
    assert normal.body["stop_reason"] == "stop"
    assert_extractive(normal.body["generation"])
    assert normal.body["prompt_token_count"] == normal.input_tokens
    assert normal.body["generation_token_count"] == normal.output_tokens
    cut = invoke(LLAMA, "InvokeModel", llama_body(max_tokens=8))
    assert cut.body["stop_reason"] == "length" and cut.body["generation_token_count"] == 8


def test_mistral_text_shape_and_max_tokens():
    normal = invoke(MISTRAL, "InvokeModel", mistral_body())
    assert set(normal.body) == {"outputs"}
    (output,) = normal.body["outputs"]
    assert output["stop_reason"] == "stop"
    assert_extractive(output["text"])
    cut = invoke(MISTRAL, "InvokeModel", mistral_body(max_tokens=8))
    assert cut.body["outputs"][0]["stop_reason"] == "length" and cut.output_tokens == 8


def test_mistral_chat_shape_and_max_tokens():
    normal = invoke(MISTRAL_CHAT, "InvokeModel", mistral_chat_body())
    (choice,) = normal.body["choices"]
    assert choice["index"] == 0 and choice["message"]["role"] == "assistant"
    assert choice["finish_reason"] == choice["stop_reason"] == "stop"
    assert_extractive(choice["message"]["content"])
    assert normal.body["usage"]["prompt_tokens"] == normal.input_tokens
    assert normal.body["usage"]["completion_tokens"] == normal.output_tokens
    assert normal.body["model"] == "mistral-large-2407"
    cut = invoke(MISTRAL_CHAT, "InvokeModel", mistral_chat_body(max_tokens=8))
    assert cut.body["choices"][0]["finish_reason"] == "length"


def test_titan_shape_and_max_tokens():
    normal = invoke(TITAN, "InvokeModel", titan_body())
    assert set(normal.body) == {"inputTextTokenCount", "results"}
    (res,) = normal.body["results"]
    assert res["completionReason"] == "FINISH"
    assert_extractive(res["outputText"])
    assert (normal.body["inputTextTokenCount"], res["tokenCount"]) == (normal.input_tokens,
                                                                       normal.output_tokens)
    cut = invoke(TITAN, "InvokeModel", titan_body(max_tokens=8))
    assert cut.body["results"][0]["completionReason"] == "LENGTH"
    assert cut.body["results"][0]["tokenCount"] == 8


@pytest.mark.parametrize("model_id", [CLAUDE, NOVA, LLAMA, TITAN, "cohere.command-r-plus-v1:0"])
def test_converse_shape_for_any_model(model_id):
    normal = invoke(model_id, "Converse", converse_body())
    assert set(normal.body) == {"output", "stopReason", "usage", "metrics"}
    assert normal.body["stopReason"] == "end_turn"
    assert_extractive(normal.body["output"]["message"]["content"][0]["text"])
    assert normal.body["usage"]["totalTokens"] == normal.input_tokens + normal.output_tokens
    assert isinstance(normal.body["metrics"]["latencyMs"], int)
    cut = invoke(model_id, "Converse", converse_body(max_tokens=6))
    assert cut.body["stopReason"] == "max_tokens" and cut.body["usage"]["outputTokens"] == 6


def test_input_tokens_count_system_prompt():
    with_system = invoke(CLAUDE, "InvokeModel", claude_body())
    without = claude_body()
    del without["system"]
    assert with_system.input_tokens == invoke(CLAUDE, "InvokeModel", without).input_tokens + \
        count_tokens(SYSTEM)
    assert with_system.input_tokens >= count_tokens(PROMPT)


def test_stop_sequence():
    stop = "Agent:"
    result = invoke(CLAUDE, "InvokeModel", claude_body(stop_sequences=[stop]))
    assert result.body["stop_reason"] == "stop_sequence" and result.body["stop_sequence"] == stop
    assert stop not in result.body["content"][0]["text"]
    titan = titan_body()
    titan["textGenerationConfig"]["stopSequences"] = [stop]
    assert invoke(TITAN, "InvokeModel", titan).body["results"][0]["completionReason"] == \
        "STOP_CRITERIA_MET"


# ---- model ids ------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix", ["us.", "eu.", "apac.", "global.", "us-gov."])
def test_inference_profile_prefixes(prefix):
    assert family_of(prefix + CLAUDE) == "anthropic"
    assert base_model_id(prefix + NOVA) == NOVA
    profiled = invoke(prefix + CLAUDE, "InvokeModel", claude_body())
    direct = invoke(CLAUDE, "InvokeModel", claude_body())
    assert profiled.body["model"] == "claude-3-haiku-20240307"
    assert profiled.body["content"] == direct.body["content"]
    assert (profiled.input_tokens, profiled.output_tokens) == (direct.input_tokens,
                                                               direct.output_tokens)


def test_arn_model_id():
    arn = f"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{LLAMA}"
    assert family_of(arn) == "llama"


def test_family_of_for_the_service():
    assert [family_of(m) for m in (CLAUDE, NOVA, LLAMA, MISTRAL, TITAN)] == \
        ["anthropic", "nova", "llama", "mistral", "titan"]
    assert family_of("cohere.command-r-v1:0", "Converse") == "converse"
    with pytest.raises(ValueError, match="or a Converse-type job"):
        family_of("cohere.command-r-v1:0")


def test_unknown_model_and_invocation_type():
    with pytest.raises(ValueError, match="not served by the local backend"):
        invoke("cohere.command-r-v1:0", "InvokeModel", {"message": "hi"})
    with pytest.raises(ValueError, match="not a Bedrock model id"):
        invoke("no-dot-here", "Converse", converse_body())
    with pytest.raises(ValueError, match="invocation type"):
        invoke(CLAUDE, "Embed", claude_body())


# ---- invalid bodies ------------------------------------------------------------------------------

def _without(body: dict, key: str) -> dict:
    body = copy.deepcopy(body)
    del body[key]
    return body


@pytest.mark.parametrize("model_id,invocation,body,message", [
    (CLAUDE, "InvokeModel", _without(claude_body(), "max_tokens"), r"required key \[max_tokens\]"),
    (CLAUDE, "InvokeModel", _without(claude_body(), "messages"), r"required key \[messages\]"),
    (CLAUDE, "InvokeModel", _without(claude_body(), "anthropic_version"),
     r"required key \[anthropic_version\]"),
    (CLAUDE, "InvokeModel", claude_body(max_tokens="512"), r"#/max_tokens: expected type: Integer"),
    (CLAUDE, "InvokeModel", claude_body(max_tokens=0), r"#/max_tokens: 0 is not greater"),
    (CLAUDE, "InvokeModel", claude_body(temperature=3), r"#/temperature"),
    (CLAUDE, "InvokeModel", claude_body(prompt="x"), r"extraneous key \[prompt\]"),
    (CLAUDE, "InvokeModel", claude_body(messages=[]), r"#/messages: expected minimum item count"),
    (CLAUDE, "InvokeModel", claude_body(messages=[{"role": "user", "content": 5}]),
     r"#/messages/0/content: expected type: JSONArray"),
    (CLAUDE, "InvokeModel", claude_body(messages=[{"role": "assistant", "content": "hi"}]),
     r"must start with a user message"),
    (CLAUDE, "InvokeModel",
     claude_body(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
     r"roles must alternate"),
    (CLAUDE, "InvokeModel", claude_body(messages=[{"role": "robot", "content": "a"}]),
     r"robot is not a valid enum value"),
    (NOVA, "InvokeModel", _without(nova_body(), "messages"), r"required key \[messages\]"),
    (NOVA, "InvokeModel", {**nova_body(), "schemaVersion": "v2"}, r"#/schemaVersion"),
    (NOVA, "InvokeModel", {**nova_body(), "inferenceConfig": {"maxTokens": 1.5}},
     r"#/inferenceConfig/maxTokens: expected type: Integer"),
    (LLAMA, "InvokeModel", {"max_gen_len": 10}, r"required key \[prompt\]"),
    (LLAMA, "InvokeModel", {"prompt": ["a"]}, r"#/prompt: expected type: String"),
    (MISTRAL, "InvokeModel", {"prompt": "x", "max_tokens": True}, r"#/max_tokens: expected type"),
    (MISTRAL_CHAT, "InvokeModel", {"messages": "hi"}, r"#/messages: expected type: JSONArray"),
    (TITAN, "InvokeModel", {"textGenerationConfig": {}}, r"required key \[inputText\]"),
    (TITAN, "InvokeModel", {"inputText": "x", "textGenerationConfig": {"stopSequences": [1]}},
     r"stopSequences/0: expected type: String"),
    (CLAUDE, "Converse", _without(converse_body(), "messages"), r"required key \[messages\]"),
    (CLAUDE, "Converse", {"messages": [{"role": "user", "content": "plain"}]},
     r"#/messages/0/content: expected type: JSONArray"),
    (CLAUDE, "Converse", ["not", "an", "object"], r"#: expected type: JSONObject"),
])
def test_invalid_bodies(model_id, invocation, body, message):
    with pytest.raises(InvalidModelInput, match=message) as info:
        invoke(model_id, invocation, body)
    assert str(info.value).startswith(("Malformed input request", "A conversation", "messages:"))


def test_invalid_model_input_is_value_error():
    assert issubclass(InvalidModelInput, ValueError)


# ---- the summarizer ------------------------------------------------------------------------------

def test_deterministic():
    first = invoke(CLAUDE, "InvokeModel", claude_body())
    second = invoke(CLAUDE, "InvokeModel", copy.deepcopy(claude_body()))
    assert isinstance(first, InvokeResult) and first == second
    assert invoke(NOVA, "Converse", converse_body()) == invoke(NOVA, "Converse", converse_body())


def test_summary_picks_issue_and_resolution_not_pleasantries():
    pieces = summarize(PROMPT)
    text = " ".join(pieces)
    assert "My internet has been down since yesterday" in text
    assert "waived the late fee" in text
    assert "Thank you for calling" not in text and "No, that's all." not in text
    order = [text.index(s) for s in ("internet has been down", "waived the late fee")]
    assert order == sorted(order)  # original order kept


def test_extract_transcript_leaves_instructions_out():
    assert extract_transcript(PROMPT) == TRANSCRIPT
    marker = "Please summarize.\nTranscript:\n" + TRANSCRIPT + "\n\nSummary:"
    assert extract_transcript(marker) == TRANSCRIPT
    assert extract_transcript("Just one paragraph of text.") == "Just one paragraph of text."


def test_anonymous_speakers_get_roles_from_who_speaks_first():
    transcript = (
        "spk_0: Good afternoon, this is Priya from Northwind Bank. How may I help you?\n"
        "spk_1: Hi, I noticed two identical charges of 49.99 on my credit card. I only made one "
        "purchase.\n"
        "spk_0: Can you confirm the last four digits of the card?\n"
        "spk_1: Sure, it's 4421.\n"
        "spk_0: I see both transactions. The second one looks like a duplicate authorization.\n"
        "spk_0: I've opened a dispute for the duplicate charge and issued a temporary credit.\n"
        "spk_1: Perfect, thanks so much.\n"
        "spk_0: You're welcome, have a great day.")
    text = " ".join(summarize(transcript))
    assert "spk_1: Hi, I noticed two identical charges" in text
    assert "opened a dispute" in text
    assert "this is Priya" not in text and "have a great day" not in text


def test_free_text_without_speakers():
    text = ("The caller reported that the washing machine stopped draining water. "
            "The technician visit was booked for Monday morning. "
            "The weather was mild. The warranty covers the replacement pump.")
    pieces = summarize(text)
    assert pieces and all(p in text for p in pieces)


def test_empty_prompt_still_answers():
    result = invoke(LLAMA, "InvokeModel", {"prompt": "   "})
    assert result.body["generation"].startswith(LABEL)
    assert result.body["stop_reason"] == "stop"


def test_claude_rejects_blank_text():
    with pytest.raises(InvalidModelInput, match="non-whitespace text"):
        invoke(CLAUDE, "InvokeModel", claude_body(
            messages=[{"role": "user", "content": [{"type": "text", "text": "  "}]}]))


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=400), max_tokens=st.integers(min_value=1, max_value=300))
def test_any_prompt_gets_a_bounded_extractive_answer(text, max_tokens):
    result = invoke(LLAMA, "InvokeModel", {"prompt": text, "max_gen_len": max_tokens})
    generation = result.body["generation"]
    assert result.output_tokens == count_tokens(generation) <= max_tokens
    assert (result.body["stop_reason"] == "length") == (count_tokens(summary_text(text)) > max_tokens)
    assert summary_text(text).startswith(generation)
    # Extractive: the summary writes no word of its own.
    summary_words = set(re.findall(r"\w+", " ".join(summarize(text))))
    assert summary_words <= set(re.findall(r"\w+", text))


def test_token_counting_and_cutting():
    assert count_tokens("") == 0
    assert count_tokens("hello world.") == 3
    assert count_tokens("internationalization") == 4  # long words cost one token per 6 chars
    text = "one two three four five"
    assert cut_to_tokens(text, 100) == (text, False)
    cut, was_cut = cut_to_tokens(text, 2)
    assert (cut, was_cut) == ("one two", True)
    partial, _ = cut_to_tokens("internationalization rocks", 2)
    assert count_tokens(partial) == 2 and "internationalization".startswith(partial)
