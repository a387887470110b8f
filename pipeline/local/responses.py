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

from pipeline.local import insights
from pipeline.local.summarizer import count_tokens, cut_to_tokens, generate

INVOCATION_TYPES = ("InvokeModel", "Converse")

# Region / geography prefixes of cross-region inference profiles ("us.anthropic....").
_PROFILE_PREFIX = re.compile(r"^(us|eu|apac|ap|ca|jp|au|us-gov|global)\.")

# (model id prefix, family) - first match wins, so the more specific prefixes come first.
_FAMILIES = (("anthropic.", "anthropic"), ("amazon.nova-", "nova"), ("amazon.titan-text-", "titan"),
             ("amazon.titan-tg1-", "titan"), ("meta.llama", "llama"), ("mistral.", "mistral"))

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
    """What the model produced and why it stopped."""

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


def family_of(model_id: str, invocation_type: str = "InvokeModel") -> str:
    """The response family: anthropic | nova | titan | llama | mistral, or converse for Converse jobs.

    Raises ValueError for a model the local backend does not serve or an unknown invocation type.
    Converse jobs are served for any well-formed model id: the Converse shape is model-independent.
    """
    if invocation_type not in INVOCATION_TYPES:
        raise ValueError(f"invocation type {invocation_type!r} is not one of "
                         f"{', '.join(INVOCATION_TYPES)}")
    base = base_model_id(model_id)
    if invocation_type == "Converse":
        if _MODEL_ID.match(base):
            return "converse"
        raise ValueError(f"model id {model_id!r} is not a Bedrock model id "
                         f"(<provider>.<model>, e.g. anthropic.claude-3-haiku-20240307-v1:0)")
    family = next((family for prefix, family in _FAMILIES if base.startswith(prefix)), None)
    if family is None:
        served = ", ".join(prefix + "*" for prefix, _ in _FAMILIES)
        raise ValueError(f"model id {model_id!r} is not served by the local backend; use one of "
                         f"{served}, or a Converse-type job")
    return family


def invoke(model_id: str, invocation_type: str, model_input: dict) -> InvokeResult:
    """Answer one record: validate ``model_input`` for the family, summarize, shape the response.

    Raises InvalidModelInput for a body the real model would reject, ValueError for an unknown
    model id or invocation type.
    """
    family = family_of(model_id, invocation_type)
    if not isinstance(model_input, dict):
        raise _malformed("#", f"expected type: JSONObject, found: {_type_name(model_input)}")
    if family == "mistral" and "messages" in model_input:
        family = "mistral_chat"  # mistral-large-2407 and later take a chat body
    parse, shape = _HANDLERS[family]
    request = parse(model_input)
    out = _insights_output(request) or _generate(request)
    return InvokeResult(shape(out, model_id, model_input), out.input_tokens, out.output_tokens)


def _insights_output(request: _Request) -> _Output | None:
    """The answer to a request for JSON per a schema (``--task insights``), or None."""
    text = insights.answer(request.billed_texts)
    if text is None:
        return None
    stop, matched = "end", None
    hits = [(text.find(seq), seq) for seq in request.stop_sequences if seq and seq in text]
    if hits:  # Nova's JSON requests stop at the fence that closes the object
        position, matched = min(hits)
        text, stop = text[:position], "stop_sequence"
    text, cut = cut_to_tokens(text, request.max_tokens)
    if cut:
        stop, matched = "max_tokens", None
    input_tokens = sum(count_tokens(t) for t in request.billed_texts)
    return _Output(text, stop, matched, input_tokens, count_tokens(text))


def _generate(request: _Request) -> _Output:
    gen = generate(request.prompt, request.max_tokens, request.stop_sequences)
    input_tokens = sum(count_tokens(t) for t in request.billed_texts)
    return _Output(gen.text, gen.stop, gen.stop_sequence, input_tokens, gen.output_tokens)


# ---- validation helpers: messages in the style of Bedrock's ValidationException -----------------

def _malformed(path: str, problem: str) -> InvalidModelInput:
    return InvalidModelInput(
        f"Malformed input request: {path}: {problem}, please reformat your input and try again."
    )


# JSON type names as Bedrock's validator reports them; bool first because bool is an int in Python.
_TYPE_NAMES = ((bool, "Boolean"), (int, "Integer"), (float, "BigDecimal"), (str, "String"),
               (list, "JSONArray"), (dict, "JSONObject"), (type(None), "Null"))
# Which reported names each expected type accepts.
_ACCEPTS = {"String": {"String"}, "Integer": {"Integer"}, "Number": {"Integer", "BigDecimal"},
            "JSONArray": {"JSONArray"}, "JSONObject": {"JSONObject"}}


# The types json.loads makes, looked up in one step; subclasses take the ordered walk above.
_TYPE_NAME_OF = dict(_TYPE_NAMES)


def _type_name(value: Any) -> str:
    name = _TYPE_NAME_OF.get(type(value))
    if name is not None:
        return name
    return next((name for kind, name in _TYPE_NAMES if isinstance(value, kind)), type(value).__name__)


def _get(body: dict, key: str, kind: str, path: str, required: bool = False) -> Any:
    """body[key] checked against a JSON type; None when optional and absent."""
    if key not in body or (body[key] is None and not required):
        if required:
            raise _malformed(path, f"required key [{key}] not found")
        return None
    value = body[key]
    if _type_name(value) not in _ACCEPTS[kind]:
        raise _malformed(f"{path}/{key}", f"expected type: {kind}, found: {_type_name(value)}")
    return value


def _no_extra_keys(body: dict, allowed: frozenset[str], path: str) -> None:
    if allowed.issuperset(body):  # the usual case, without building a set
        return
    extra = sorted(set(body) - allowed)
    if extra:
        raise _malformed(path, f"extraneous key [{extra[0]}] is not permitted")


def _limits(config: dict, where: str, max_key: str, default_max: int,
            stop_key: str) -> tuple[int, tuple[str, ...]]:
    """(max tokens, stop sequences) of a body's inference settings; temperature range-checked.

    Temperature is validated but has no effect: the extractive model is deterministic.
    """
    max_tokens = _get(config, max_key, "Integer", where)
    if max_tokens is not None and max_tokens < 1:
        raise _malformed(f"{where}/{max_key}", f"{max_tokens} is not greater or equal to 1")
    temperature = _get(config, "temperature", "Number", where)
    if temperature is not None and not 0 <= temperature <= 1:
        raise _malformed(f"{where}/temperature", f"{temperature} is not in range [0, 1]")
    stops = _get(config, stop_key, "JSONArray", where) or []
    for i, item in enumerate(stops):
        if not isinstance(item, str):
            raise _malformed(f"{where}/{stop_key}/{i}",
                             f"expected type: String, found: {_type_name(item)}")
    return (default_max if max_tokens is None else max_tokens), tuple(stops)


def _chat(messages: list, path: str, text_of: Callable[[Any, str], list[str]],
          system: list[str]) -> tuple[str, tuple[str, ...]]:
    """(text to summarize, billed texts) of a chat: user/assistant roles, user first, alternating.

    The last user turn is summarized; the system prompt and every turn are billed as input.
    """
    if not messages:
        raise _malformed(path, "expected minimum item count: 1, found: 0")
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
            raise InvalidModelInput(f'messages: roles must alternate between "user" and '
                                    f'"assistant", but found multiple "{role}" roles in a row')
    prompt = next(text for role, text in reversed(turns) if role == "user")
    return prompt, tuple(system) + tuple(text for _, text in turns)


def _blocks(content: Any, path: str, typed: bool = False) -> list[str]:
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
        is_text = _get(block, "type", "String", where, required=True) == "text" if typed \
            else "text" in block
        if is_text:
            texts.append(_get(block, "text", "String", where, required=True))
    return texts


def _str_or_blocks(content: Any, path: str) -> list[str]:
    """Anthropic and Mistral chat content: a plain string or typed blocks."""
    return [content] if isinstance(content, str) else _blocks(content, path, typed=True)


_VERSION_SUFFIX = re.compile(r"-v\d+(:\d+)?$")


def _reported_model_name(model_id: str) -> str:
    """"anthropic.claude-3-haiku-20240307-v1:0" -> "claude-3-haiku-20240307", as the model reports it."""
    return _VERSION_SUFFIX.sub("", base_model_id(model_id).split(".", 1)[1])


# json.dumps(..., sort_keys=True, default=str), without building an encoder for every record.
_ID_ENCODER = json.JSONEncoder(sort_keys=True, default=str)


def _response_id(prefix: str, model_id: str, model_input: dict) -> str:
    """Deterministic id from the request, so the same record always gets the same response."""
    key = model_id + _ID_ENCODER.encode(model_input)
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:24]


def _length_or_stop(out: _Output) -> str:
    """Llama's and Mistral's stop reasons."""
    return "length" if out.stop == "max_tokens" else "stop"


# ---- Anthropic Claude (Messages API) ------------------------------------------------------------

_ANTHROPIC_KEYS = frozenset(
    {"anthropic_version", "anthropic_beta", "max_tokens", "system", "messages", "temperature",
     "top_p", "top_k", "stop_sequences", "tools", "tool_choice", "thinking", "metadata"}
)


def _claude_content(content: Any, path: str) -> list[str]:
    texts = _str_or_blocks(content, path)
    # isspace() stops at the first non-space character; strip() would copy the whole prompt.
    if any([not text or text.isspace() for text in texts]):
        raise InvalidModelInput("messages: text content blocks must contain non-whitespace text")
    return texts


def _parse_anthropic(body: dict) -> _Request:
    _no_extra_keys(body, _ANTHROPIC_KEYS, "#")
    _get(body, "anthropic_version", "String", "#", required=True)
    _get(body, "max_tokens", "Integer", "#", required=True)  # Claude has no default budget
    system = [] if body.get("system") is None else _str_or_blocks(body["system"], "#/system")
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    prompt, billed = _chat(messages, "#/messages", _claude_content, system)
    return _Request(prompt, billed, *_limits(body, "#", "max_tokens", 0, "stop_sequences"))


def _shape_anthropic(out: _Output, model_id: str, model_input: dict) -> dict:
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


# ---- Amazon Nova (messages-v1) and Converse: one request shape -----------------------------------

def _parse_messages_v1(body: dict, default_max: int, max_keys: tuple[str, ...]) -> _Request:
    system = _get(body, "system", "JSONArray", "#")
    system_texts = _blocks(system, "#/system") if system is not None else []
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    prompt, billed = _chat(messages, "#/messages", _blocks, system_texts)
    config = _get(body, "inferenceConfig", "JSONObject", "#") or {}
    key = next((k for k in max_keys if k in config), max_keys[0])
    limits = _limits(config, "#/inferenceConfig", key, default_max, "stopSequences")
    return _Request(prompt, billed, *limits)


def _parse_nova(body: dict) -> _Request:
    version = _get(body, "schemaVersion", "String", "#")
    if version is not None and version != "messages-v1":
        raise _malformed("#/schemaVersion", f"{version} is not a valid enum value")
    return _parse_messages_v1(body, _DEFAULT_MAX_TOKENS["nova"], ("maxTokens", "max_new_tokens"))


def _parse_converse(body: dict) -> _Request:
    return _parse_messages_v1(body, _DEFAULT_MAX_TOKENS["converse"], ("maxTokens",))


def _shape_nova(out: _Output, model_id: str, model_input: dict) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": out.text}]}},
        "stopReason": {"end": "end_turn"}.get(out.stop, out.stop),
        "usage": {"inputTokens": out.input_tokens, "outputTokens": out.output_tokens,
                  "totalTokens": out.input_tokens + out.output_tokens},
    }


def _shape_converse(out: _Output, model_id: str, model_input: dict) -> dict:
    latency = _LATENCY_BASE_MS + _LATENCY_PER_TOKEN_MS * out.output_tokens
    return {**_shape_nova(out, model_id, model_input), "metrics": {"latencyMs": latency}}


# ---- Meta Llama and Mistral text completion: a raw prompt ----------------------------------------

# Chat-template markup of raw prompts (Llama 3 headers, Mistral [INST]) is not conversation text.
# Two patterns, each starting with one literal character, which the regex engine jumps to; one
# pattern of both made it test every character of the prompt. Their matches cannot overlap.
_ANGLE_MARKUP = re.compile(r"<(?:\|start_header_id\|>\w+<\|end_header_id\|>|\|[a-z_]+\|>|/?s>)")
_INST_MARKUP = re.compile(r"\[/?INST\]")


def _prompt_parser(max_key: str, default_max: int) -> Callable[[dict], _Request]:
    def parse(body: dict) -> _Request:
        prompt = _get(body, "prompt", "String", "#", required=True)
        text = _INST_MARKUP.sub(" ", _ANGLE_MARKUP.sub(" ", prompt))
        return _Request(text, (prompt,), *_limits(body, "#", max_key, default_max, "stop"))
    return parse


def _shape_llama(out: _Output, model_id: str, model_input: dict) -> dict:
    return {"generation": out.text, "prompt_token_count": out.input_tokens,
            "generation_token_count": out.output_tokens, "stop_reason": _length_or_stop(out)}


def _shape_mistral(out: _Output, model_id: str, model_input: dict) -> dict:
    return {"outputs": [{"text": out.text, "stop_reason": _length_or_stop(out)}]}


# ---- Mistral chat (mistral-large-2407 and later) -------------------------------------------------

def _parse_mistral_chat(body: dict) -> _Request:
    messages = _get(body, "messages", "JSONArray", "#", required=True)
    # The system prompt is a "system" role message here; it is billed, not summarized.
    system = [text for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "system"
              for text in _str_or_blocks(m.get("content", ""), f"#/messages/{i}/content")]
    chat = [m for m in messages if not (isinstance(m, dict) and m.get("role") == "system")]
    prompt, billed = _chat(chat, "#/messages", _str_or_blocks, system)
    limits = _limits(body, "#", "max_tokens", _DEFAULT_MAX_TOKENS["mistral"], "stop")
    return _Request(prompt, billed, *limits)


def _shape_mistral_chat(out: _Output, model_id: str, model_input: dict) -> dict:
    reason = _length_or_stop(out)
    return {
        "id": _response_id("", model_id, model_input),
        "object": "chat.completion",
        "model": _reported_model_name(model_id),
        # AWS's Mistral chat page names the field stop_reason; the Mistral chat-completion schema
        # the model emits names it finish_reason. Both carry the same value.
        "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                     "stop_reason": reason, "finish_reason": reason}],
        "usage": {"prompt_tokens": out.input_tokens, "completion_tokens": out.output_tokens,
                  "total_tokens": out.input_tokens + out.output_tokens},
    }


# ---- Amazon Titan Text ---------------------------------------------------------------------------

# Titan's conversational wrapper: "User: " before the prompt, "\nBot:" after it.
_TITAN_USER = re.compile(r"\s*User:\s*")
_TITAN_BOT = re.compile(r"\n\s*Bot:\s*\Z")


def _parse_titan(body: dict) -> _Request:
    _no_extra_keys(body, frozenset({"inputText", "textGenerationConfig"}), "#")
    text = _get(body, "inputText", "String", "#", required=True)
    config = _get(body, "textGenerationConfig", "JSONObject", "#") or {}
    limits = _limits(config, "#/textGenerationConfig", "maxTokenCount",
                     _DEFAULT_MAX_TOKENS["titan"], "stopSequences")
    # Titan's documented conversational form wraps the prompt as "User: ...\nBot:"; the wrapper is
    # not part of the transcript (its "User:" would read as a speaker line). A match at the start
    # and a search from "\n"s: one pattern of both tested every character of the prompt.
    user = _TITAN_USER.match(text)
    start = user.end() if user else 0
    bot = _TITAN_BOT.search(text, start)
    prompt = text[start:bot.start() if bot else len(text)]
    return _Request(prompt, (text,), *limits)


def _shape_titan(out: _Output, model_id: str, model_input: dict) -> dict:
    reason = {"end": "FINISH", "max_tokens": "LENGTH", "stop_sequence": "STOP_CRITERIA_MET"}[out.stop]
    return {"inputTextTokenCount": out.input_tokens,
            "results": [{"tokenCount": out.output_tokens, "outputText": out.text,
                         "completionReason": reason}]}


_HANDLERS: dict[str, tuple[Callable[[dict], _Request], Callable[[_Output, str, dict], dict]]] = {
    "anthropic": (_parse_anthropic, _shape_anthropic),
    "nova": (_parse_nova, _shape_nova),
    "converse": (_parse_converse, _shape_converse),
    "llama": (_prompt_parser("max_gen_len", _DEFAULT_MAX_TOKENS["llama"]), _shape_llama),
    "mistral": (_prompt_parser("max_tokens", _DEFAULT_MAX_TOKENS["mistral"]), _shape_mistral),
    "mistral_chat": (_parse_mistral_chat, _shape_mistral_chat),
    "titan": (_parse_titan, _shape_titan),
}
