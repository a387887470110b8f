"""Request parsing and response shaping per Bedrock model family for the local backend's model.

``invoke`` takes one batch record's ``modelInput`` as the real service would receive it (the
family's native InvokeModel body, or a Converse request for Converse-type jobs), validates it the
way Bedrock does, runs the extractive summarizer and answers in that family's real response shape
with token counts. Shapes follow AWS's "Inference request parameters and response fields for
foundation models" pages, because the pipeline's parsers are written against those pages too.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from pipeline.local.summarizer import count_tokens, cut_to_tokens, summary_text

INVOCATION_TYPES = ("InvokeModel", "Converse")

# Region / geography prefixes of cross-region inference profiles ("us.anthropic....").
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|ap|ca|jp|au|us-gov|global)\.")

# (model id prefix, family) - first match wins, so the more specific prefixes come first.
_FAMILIES = (
    ("anthropic.", "anthropic"),
    ("amazon.nova-", "nova"),
    ("amazon.titan-text-", "titan"),
    ("amazon.titan-tg1-", "titan"),
    ("meta.llama", "llama"),
    ("mistral.", "mistral"),
)

# Output budget when the body names none: each family's documented default.
_DEFAULT_MAX_TOKENS = {"nova": 5000, "llama": 512, "mistral": 8192, "titan": 512, "converse": 4096}

# Latency the Converse response reports is modelled, not measured, so output stays deterministic.
_LATENCY_BASE_MS = 180
_LATENCY_PER_TOKEN_MS = 12


class InvalidModelInput(ValueError):
    """The record's body is not a valid request for the model family (Bedrock ValidationException)."""


@dataclass(frozen=True)
class InvokeResult:
    """The model's response body plus the tokens billed for it."""

    body: dict
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class _Request:
    """What the model needs from any family's body."""

    prompt: str  # the text to summarize (the user's turn)
    billed_texts: tuple[str, ...]  # everything the model reads, system prompt included
    max_tokens: int
    stop_sequences: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Output:
    text: str
    stop: str  # "end" | "max_tokens" | "stop_sequence"
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int


# Any Bedrock model id: "<provider>.<model>", e.g. "cohere.command-r-v1:0" (Converse jobs).
_MODEL_ID = re.compile(r"^[a-z0-9-]+\.[A-Za-z0-9._:-]+$")


def base_model_id(model_id: str) -> str:
    """The foundation model id behind an ARN or inference-profile id ("us.anthropic.x" -> "anthropic.x")."""
    model = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    return _PROFILE_PREFIX.sub("", model, count=1)


def family_of(model_id: str) -> str:
    """The response family of a model id: anthropic | nova | titan | llama | mistral.

    Raises ValueError for a model the local backend does not serve.
    """
    base = base_model_id(model_id)
    for prefix, family in _FAMILIES:
        if base.startswith(prefix):
            return family
    served = ", ".join(prefix + "*" for prefix, _ in _FAMILIES)
    raise ValueError(
        f"model id {model_id!r} is not served by the local backend; use one of {served}"
    )


def invoke(model_id: str, invocation_type: str, model_input: dict) -> InvokeResult:
    """Answer one record: validate ``model_input`` for the family, summarize, shape the response.

    Raises InvalidModelInput for a body the real model would reject, ValueError for an unknown
    model id or invocation type.
    """
    if invocation_type not in INVOCATION_TYPES:
        raise ValueError(
            f"invocation type {invocation_type!r} is not one of {', '.join(INVOCATION_TYPES)}"
        )
    if invocation_type == "Converse":
        # The Converse shape is the same for every model, so any well-formed model id is served.
        if not _MODEL_ID.match(base_model_id(model_id)):
            raise ValueError(f"model id {model_id!r} is not a Bedrock model id "
                             f"(<provider>.<model>, e.g. anthropic.claude-3-haiku-20240307-v1:0)")
        family = "converse"
    else:
        family = family_of(model_id)
    if not isinstance(model_input, dict):
        raise _malformed("#", f"expected type: JSONObject, found: {_type_name(model_input)}")
    if family == "converse":
        request = _parse_converse(model_input)
        output = _generate(request)
        return _result(_converse_body(output), output)
    if family == "mistral" and "messages" in model_input:
        family = "mistral_chat"
    parse, shape = _HANDLERS[family]
    output = _generate(parse(model_input))
    return _result(shape(model_id, model_input, output), output)


def _result(body: dict, output: _Output) -> InvokeResult:
    return InvokeResult(body=body, input_tokens=output.input_tokens, output_tokens=output.output_tokens)


def _generate(request: _Request) -> _Output:
    """Summarize, then stop like a model would: at a stop sequence or when max tokens run out."""
    text = summary_text(request.prompt)
    stop, matched = "end", None
    hits = [(text.find(seq), seq) for seq in request.stop_sequences if seq and seq in text]
    if hits:
        position, matched = min(hits)
        text, stop = text[:position], "stop_sequence"
    text, cut = cut_to_tokens(text, request.max_tokens)
    if cut:
        stop, matched = "max_tokens", None
    input_tokens = sum(count_tokens(t) for t in request.billed_texts)
    return _Output(text, stop, matched, input_tokens, count_tokens(text))


# ---- validation helpers: messages in the style of Bedrock's ValidationException -----------------

def _malformed(path: str, problem: str) -> InvalidModelInput:
    return InvalidModelInput(
        f"Malformed input request: {path}: {problem}, please reformat your input and try again."
    )


def _type_name(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "BigDecimal"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "JSONArray"
    if isinstance(value, dict):
        return "JSONObject"
    return type(value).__name__


_TYPES: dict[str, Callable[[Any], bool]] = {
    "String": lambda v: isinstance(v, str),
    "Integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "Number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "JSONArray": lambda v: isinstance(v, list),
    "JSONObject": lambda v: isinstance(v, dict),
}


def _get(body: dict, key: str, kind: str, path: str, required: bool = False) -> Any:
    """body[key] checked against a JSON type; None when optional and absent."""
    if key not in body or (body[key] is None and not required):
        if required:
            raise _malformed(path, f"required key [{key}] not found")
        return None
    value = body[key]
    if not _TYPES[kind](value):
        raise _malformed(f"{path}/{key}", f"expected type: {kind}, found: {_type_name(value)}")
    return value


def _no_extra_keys(body: dict, allowed: frozenset[str], path: str) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise _malformed(path, f"extraneous key [{extra[0]}] is not permitted")


def _max_tokens(value: int | None, default: int | None, path: str) -> int:
    if value is None:
        if default is None:
            raise _malformed("#", f"required key [{path.rsplit('/', 1)[-1]}] not found")
        return default
    if value < 1:
        raise _malformed(path, f"{value} is not greater or equal to 1")
    return value


def _range(value: float | None, low: float, high: float, path: str) -> None:
    if value is not None and not low <= value <= high:
        raise _malformed(path, f"{value} is not in range [{low}, {high}]")


def _strings(value: list | None, path: str) -> tuple[str, ...]:
    if value is None:
        return ()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _malformed(f"{path}/{i}", f"expected type: String, found: {_type_name(item)}")
    return tuple(value)


def _chat_turns(messages: list, path: str, text_of: Callable[[Any, str], list[str]]) -> list[tuple[str, str]]:
    """(role, text) per message; roles must be user/assistant, start with user and alternate."""
    if not messages:
        raise _malformed(f"{path}", "expected minimum item count: 1, found: 0")
    turns = []
    for i, message in enumerate(messages):
        where = f"{path}/{i}"
        if not isinstance(message, dict):
            raise _malformed(where, f"expected type: JSONObject, found: {_type_name(message)}")
        role = _get(message, "role", "String", where, required=True)
        if role not in ("user", "assistant"):
            raise _malformed(f"{where}/role", f"{role} is not a valid enum value")
        if "content" not in message:
            raise _malformed(where, "required key [content] not found")
        turns.append((role, "\n".join(text_of(message["content"], f"{where}/content"))))
    if turns[0][0] != "user":
        raise InvalidModelInput("A conversation must start with a user message. Try again with a "
                                "conversation that starts with a user message.")
    for (previous, _), (role, _) in zip(turns, turns[1:]):
        if previous == role:
            raise InvalidModelInput(
                f"messages: roles must alternate between \"user\" and \"assistant\", but found "
                f"multiple \"{role}\" roles in a row"
            )
    return turns


def _last_user_text(turns: list[tuple[str, str]]) -> str:
    return next(text for role, text in reversed(turns) if role == "user")


def _text_blocks(content: Any, path: str, typed: bool) -> list[str]:
    """Texts of a content list: [{"type":"text","text":..}] (typed) or [{"text":..}] (Converse/Nova).

    Non-text blocks (images, documents) are accepted and ignored: the summarizer reads text only.
    """
    if not isinstance(content, list):
        raise _malformed(path, f"expected type: JSONArray, found: {_type_name(content)}")
    texts = []
    for i, block in enumerate(content):
        where = f"{path}/{i}"
        if not isinstance(block, dict):
            raise _malformed(where, f"expected type: JSONObject, found: {_type_name(block)}")
        if typed:
            kind = _get(block, "type", "String", where, required=True)
            if kind == "text":
                texts.append(_get(block, "text", "String", where, required=True))
        elif "text" in block:
            texts.append(_get(block, "text", "String", where, required=True))
    return texts


def _response_id(prefix: str, model_id: str, model_input: dict) -> str:
    """Deterministic id from the request, so the same record always gets the same response."""
    digest = hashlib.sha256(
        (model_id + json.dumps(model_input, sort_keys=True, default=str)).encode()
    ).hexdigest()
    return prefix + digest[:24]


# ---- Anthropic Claude (Messages API) ------------------------------------------------------------

_ANTHROPIC_KEYS = frozenset(
    {"anthropic_version", "anthropic_beta", "max_tokens", "system", "messages", "temperature",
     "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "thinking", "metadata"}
)


def _anthropic_content(content: Any, path: str) -> list[str]:
    texts = [content] if isinstance(content, str) else _text_blocks(content, path, typed=True)
    if any(not text.strip() for text in texts):
        raise InvalidModelInput("messages: text content blocks must contain non-whitespace text")
    return texts


def _parse_anthropic(body: dict) -> _Request:
    _no_extra_keys(body, _ANTHROPIC_KEYS, "#")
    _get(body, "anthropic_version", "String", "#", required=True)
    max_tokens = _max_tokens(_get(body, "max_tokens", "Integer", "#", required=True), None, "#/max_tokens")
    _range(_get(body, "temperature", "Number", "#"), 0, 1, "#/temperature")
    system = body.get("system")
    if system is None:
        system_texts: list[str] = []
    elif isinstance(system, str):
        system_texts = [system]
    else:
        system_texts = _text_blocks(system, "#/system", typed=True)
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    turns = _chat_turns(messages, "#/messages", _anthropic_content)
    stops = _strings(_get(body, "stop_sequences", "JSONArray", "#"), "#/stop_sequences")
    return _Request(_last_user_text(turns), tuple(system_texts) + tuple(t for _, t in turns),
                    max_tokens, stops)


def _reported_model_name(model_id: str) -> str:
    """"anthropic.claude-3-haiku-20240307-v1:0" -> "claude-3-haiku-20240307", as the model reports it."""
    name = base_model_id(model_id).split(".", 1)[1]
    return re.sub(r"-v\d+(:\d+)?$", "", name)


def _shape_anthropic(model_id: str, model_input: dict, out: _Output) -> dict:
    return {
        "id": _response_id("msg_bdrk_", model_id, model_input),
        "type": "message",
        "role": "assistant",
        "model": _reported_model_name(model_id),
        "content": [{"type": "text", "text": out.text}],
        "stop_reason": {"end": "end_turn"}.get(out.stop, out.stop),
        "stop_sequence": out.stop_sequence,
        "usage": {"input_tokens": out.input_tokens, "output_tokens": out.output_tokens},
    }


# ---- Amazon Nova (messages-v1) and Converse ------------------------------------------------------

def _plain_content(content: Any, path: str) -> list[str]:
    return _text_blocks(content, path, typed=False)


def _parse_messages_v1(body: dict, default_max: int, max_keys: tuple[str, ...]) -> _Request:
    """Nova's native body and the Converse request share this shape (system/messages/inferenceConfig)."""
    system = _get(body, "system", "JSONArray", "#")
    system_texts = _plain_content(system, "#/system") if system is not None else []
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    turns = _chat_turns(messages, "#/messages", _plain_content)
    config = _get(body, "inferenceConfig", "JSONObject", "#") or {}
    key = next((k for k in max_keys if k in config), max_keys[0])
    max_tokens = _max_tokens(_get(config, key, "Integer", "#/inferenceConfig"), default_max,
                             f"#/inferenceConfig/{key}")
    _range(_get(config, "temperature", "Number", "#/inferenceConfig"), 0, 1,
           "#/inferenceConfig/temperature")
    stops = _strings(_get(config, "stopSequences", "JSONArray", "#/inferenceConfig"),
                     "#/inferenceConfig/stopSequences")
    return _Request(_last_user_text(turns), tuple(system_texts) + tuple(t for _, t in turns),
                    max_tokens, stops)


def _parse_nova(body: dict) -> _Request:
    version = _get(body, "schemaVersion", "String", "#")
    if version is not None and version != "messages-v1":
        raise _malformed("#/schemaVersion", f"{version} is not a valid enum value")
    return _parse_messages_v1(body, _DEFAULT_MAX_TOKENS["nova"], ("maxTokens", "max_new_tokens"))


def _parse_converse(body: dict) -> _Request:
    return _parse_messages_v1(body, _DEFAULT_MAX_TOKENS["converse"], ("maxTokens",))


def _messages_v1_body(out: _Output) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": out.text}]}},
        "stopReason": {"end": "end_turn"}.get(out.stop, out.stop),
        "usage": {
            "inputTokens": out.input_tokens,
            "outputTokens": out.output_tokens,
            "totalTokens": out.input_tokens + out.output_tokens,
        },
    }


def _shape_nova(model_id: str, model_input: dict, out: _Output) -> dict:
    return _messages_v1_body(out)


def _converse_body(out: _Output) -> dict:
    body = _messages_v1_body(out)
    body["metrics"] = {"latencyMs": _LATENCY_BASE_MS + _LATENCY_PER_TOKEN_MS * out.output_tokens}
    return body


# ---- Meta Llama ----------------------------------------------------------------------------------

def _parse_prompt_body(body: dict, max_key: str, default_max: int) -> _Request:
    prompt = _get(body, "prompt", "String", "#", required=True)
    max_tokens = _max_tokens(_get(body, max_key, "Integer", "#"), default_max, f"#/{max_key}")
    _range(_get(body, "temperature", "Number", "#"), 0, 1, "#/temperature")
    stops = _strings(_get(body, "stop", "JSONArray", "#"), "#/stop")
    return _Request(prompt, (prompt,), max_tokens, stops)


def _parse_llama(body: dict) -> _Request:
    return _parse_prompt_body(body, "max_gen_len", _DEFAULT_MAX_TOKENS["llama"])


def _shape_llama(model_id: str, model_input: dict, out: _Output) -> dict:
    return {
        "generation": out.text,
        "prompt_token_count": out.input_tokens,
        "generation_token_count": out.output_tokens,
        "stop_reason": "length" if out.stop == "max_tokens" else "stop",
    }


# ---- Mistral (text completion and chat) ----------------------------------------------------------

def _parse_mistral(body: dict) -> _Request:
    return _parse_prompt_body(body, "max_tokens", _DEFAULT_MAX_TOKENS["mistral"])


def _shape_mistral(model_id: str, model_input: dict, out: _Output) -> dict:
    reason = "length" if out.stop == "max_tokens" else "stop"
    return {"outputs": [{"text": out.text, "stop_reason": reason}]}


def _mistral_chat_content(content: Any, path: str) -> list[str]:
    return [content] if isinstance(content, str) else _text_blocks(content, path, typed=True)


def _parse_mistral_chat(body: dict) -> _Request:
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    # Chat bodies carry the system prompt as a "system" role message; it is billed, not summarized.
    system_texts = []
    chat = []
    for i, message in enumerate(messages):
        if isinstance(message, dict) and message.get("role") == "system":
            system_texts.extend(_mistral_chat_content(message.get("content", ""), f"#/messages/{i}/content"))
        else:
            chat.append(message)
    turns = _chat_turns(chat, "#/messages", _mistral_chat_content)
    max_tokens = _max_tokens(_get(body, "max_tokens", "Integer", "#"),
                             _DEFAULT_MAX_TOKENS["mistral"], "#/max_tokens")
    _range(_get(body, "temperature", "Number", "#"), 0, 1, "#/temperature")
    stops = _strings(_get(body, "stop", "JSONArray", "#"), "#/stop")
    return _Request(_last_user_text(turns), tuple(system_texts) + tuple(t for _, t in turns),
                    max_tokens, stops)


def _shape_mistral_chat(model_id: str, model_input: dict, out: _Output) -> dict:
    reason = "length" if out.stop == "max_tokens" else "stop"
    return {
        "id": _response_id("", model_id, model_input),
        "object": "chat.completion",
        "model": _reported_model_name(model_id),
        # AWS's Mistral chat page names the field stop_reason; the Mistral chat-completion schema
        # the model actually emits names it finish_reason. Both carry the same value.
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": out.text},
            "stop_reason": reason,
            "finish_reason": reason,
        }],
        "usage": {
            "prompt_tokens": out.input_tokens,
            "completion_tokens": out.output_tokens,
            "total_tokens": out.input_tokens + out.output_tokens,
        },
    }


# ---- Amazon Titan Text ---------------------------------------------------------------------------

def _parse_titan(body: dict) -> _Request:
    _no_extra_keys(body, frozenset({"inputText", "textGenerationConfig"}), "#")
    text = _get(body, "inputText", "String", "#", required=True)
    config = _get(body, "textGenerationConfig", "JSONObject", "#") or {}
    max_tokens = _max_tokens(_get(config, "maxTokenCount", "Integer", "#/textGenerationConfig"),
                             _DEFAULT_MAX_TOKENS["titan"], "#/textGenerationConfig/maxTokenCount")
    _range(_get(config, "temperature", "Number", "#/textGenerationConfig"), 0, 1,
           "#/textGenerationConfig/temperature")
    stops = _strings(_get(config, "stopSequences", "JSONArray", "#/textGenerationConfig"),
                     "#/textGenerationConfig/stopSequences")
    # Titan's documented conversational form wraps the prompt as "User: ...\nBot:"; the wrapper is
    # not part of the transcript (its "User:" would read as a speaker line).
    prompt = re.sub(r"\A\s*User:\s*|\n\s*Bot:\s*\Z", "", text)
    return _Request(prompt, (text,), max_tokens, stops)


def _shape_titan(model_id: str, model_input: dict, out: _Output) -> dict:
    reason = {"end": "FINISH", "max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET"}[out.stop]
    return {
        "inputTextTokenCount": out.input_tokens,
        "results": [{"tokenCount": out.output_tokens, "outputText": out.text,
                     "completionReason": reason}],
    }


_HANDLERS: dict[str, tuple[Callable[[dict], _Request], Callable[[str, dict, _Output], dict]]] = {
    "anthropic": (_parse_anthropic, _shape_anthropic),
    "nova": (_parse_nova, _shape_nova),
    "llama": (_parse_llama, _shape_llama),
    "mistral": (_parse_mistral, _shape_mistral),
    "mistral_chat": (_parse_mistral_chat, _shape_mistral_chat),
    "titan": (_parse_titan, _shape_titan),
}
