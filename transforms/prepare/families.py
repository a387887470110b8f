"""Per model family: the Bedrock request body for a summarization prompt, and its response parsed.

Field names follow AWS "Inference request parameters and response fields for foundation models"
and, for ``modelInvocationType="Converse"`` jobs, the Converse API request/response shape.
"""
from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

INVOCATION_TYPES = ("InvokeModel", "Converse")

# Cross-region inference profile ids prepend a geography to the foundation model id.
PROFILE_PREFIXES = ("us.", "us-gov.", "eu.", "apac.", "ap.", "jp.", "au.", "ca.", "global.")

# Each family's own word for "stopped at the max-tokens limit".
TRUNCATION_REASONS = frozenset({"max_tokens", "length", "LENGTH"})


@dataclass(frozen=True)
class ParsedOutput:
    """A model response read into the fields the rows need.

    Args:
        text: The answer's text, stripped.
        stop_reason: The model's stop reason, when it gave one.
        input_tokens: Input tokens billed, when reported.
        output_tokens: Output tokens billed, when reported.
        truncated: Whether generation hit the max-tokens limit.
        tool_input: The input of the answer's first tool-use block, if any.
    """

    text: str
    stop_reason: str | None
    input_tokens: int | None
    output_tokens: int | None
    truncated: bool  # generation hit the max-tokens limit
    # The input of the answer's first tool-use block (Claude tool_use, Converse toolUse), if any.
    tool_input: Mapping[str, Any] | None = None

    def __init__(self, text: str, stop_reason: str | None, input_tokens: int | None,
                 output_tokens: int | None, truncated: bool,
                 tool_input: Mapping[str, Any] | None = None) -> None:
        # Written out (the dataclass keeps it): the generated __init__ of a frozen dataclass
        # sets each field with its own object.__setattr__ call, and one is built per output
        # line; filling the instance's attribute dict at once makes the same object (a new
        # field goes into this signature too).
        self.__dict__.update(text=text, stop_reason=stop_reason, input_tokens=input_tokens,
                             output_tokens=output_tokens, truncated=truncated,
                             tool_input=tool_input)


class UnparseableOutput(ValueError):
    """A model response that does not have the shape its family (or any known family) produces."""


def _is_mapping(value: Any) -> bool:
    # Decoded JSON objects are dicts, and a missing key is None: both are answered before the
    # abstract-class check of Mapping, which costs about ten times as much and would run
    # several times per output line.
    return isinstance(value, dict) or (value is not None and isinstance(value, Mapping))


def _found(body: Any) -> str:
    if isinstance(body, Mapping):
        return f"top-level keys {sorted(body)[:8]}"
    return f"a {type(body).__name__}"


def _output(text: str, stop_reason: Any, input_tokens: Any, output_tokens: Any,
            tool_input: Mapping[str, Any] | None = None) -> ParsedOutput:
    # The type checks are written out here rather than in helpers: this runs once per output
    # line, and a function call costs more than the check. bool is an int subclass; a JSON true
    # is not a token count.
    reason = stop_reason if isinstance(stop_reason, str) else None
    if not isinstance(input_tokens, int) or isinstance(input_tokens, bool):
        input_tokens = None
    if not isinstance(output_tokens, int) or isinstance(output_tokens, bool):
        output_tokens = None
    return ParsedOutput(text.strip(), reason, input_tokens, output_tokens,
                        reason in TRUNCATION_REASONS, tool_input)


def _content_blocks(blocks: Any, where: str,
                    tool_key: str) -> tuple[str, Mapping[str, Any] | None]:
    """The text of the content blocks, joined, and the input of the first tool-use block
    (Claude's {"type": "tool_use", "input"} with ``tool_key`` "", Converse's
    {"toolUse": {"input"}} with ``tool_key`` "toolUse"), in one pass over the blocks."""
    if not isinstance(blocks, list):
        raise UnparseableOutput(f"expected {where} to be a list of content blocks, "
                                f"found {type(blocks).__name__}")
    texts, tool_input = [], None
    for block in blocks:
        if not _is_mapping(block):
            continue
        text = block.get("text")
        if isinstance(text, str):
            texts.append(text)
        if tool_input is None:
            use = block.get(tool_key) if tool_key else (
                block if block.get("type") == "tool_use" else None)
            if _is_mapping(use) and _is_mapping(use.get("input")):
                tool_input = use["input"]
    return "".join(texts), tool_input


class Family(ABC):
    """How one model family is asked for a summary and how its answer is read."""

    name: str = ""
    model_prefixes: tuple[str, ...] = ()  # foundation model id prefixes (after the profile prefix)
    shape: str = ""  # the response shape, for error messages

    @abstractmethod
    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """The ``modelInput`` body asking for a completion of ``prompt``.

        Args:
            prompt: the user prompt.
            system: the system prompt, or None.
            max_tokens: the output token budget.
            temperature: the sampling temperature.
        """

    def build_json_request(self, prompt: str, system: str | None, max_tokens: int,
                           temperature: float) -> dict[str, Any]:
        """The ``modelInput`` body asking for one JSON object; ``prompt`` already holds the
        schema. By default the plain request: families whose docs recommend more override it.

        Args:
            prompt: the user prompt, schema instructions included.
            system: the system prompt, or None.
            max_tokens: the output token budget.
            temperature: the sampling temperature.
        """
        return self.build_request(prompt, system, max_tokens, temperature)

    @abstractmethod
    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """``model_input`` (a ``build_json_request`` body) continued by the model's ``answer``
        and a user turn ``note`` asking it to correct that answer.

        Args:
            model_input: the request that got the answer.
            answer: the answer's text as parsed (without a prefill it continued).
            note: what was wrong, from ``prompts.repair_note``.
        """

    @abstractmethod
    def matches(self, body: Any) -> bool:
        """Whether ``body`` has this family's response shape (used for auto-detection).

        Args:
            body: a decoded model response.
        """

    @abstractmethod
    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        """Read a body that ``matches``."""

    def parse_response(self, body: Any) -> ParsedOutput:
        """Read a response of this family.

        Args:
            body: a decoded model response.

        Raises:
            UnparseableOutput: ``body`` does not have this family's shape.
        """
        if not _is_mapping(body) or not self.matches(body):
            raise UnparseableOutput(f"{self.name} response expected {self.shape}, found {_found(body)}")
        return self._parse(body)

    def __repr__(self) -> str:
        return f"<Family {self.name}>"


class ClaudeFamily(Family):
    """Anthropic Claude through InvokeModel: the Anthropic Messages API body."""

    name = "anthropic-claude"
    model_prefixes = ("anthropic.claude",)
    shape = "content[*].text blocks (Anthropic Messages API)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """An Anthropic Messages body with one user turn; see ``Family.build_request``."""
        body: dict[str, Any] = {
            "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": max_tokens,
            "temperature": temperature,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        }
        if system:
            body["system"] = system
        return body

    # Bedrock's "Anthropic Claude Messages API" page documents prefilling: a final assistant
    # message that Claude's answer picks up from. Starting it with "{" skips any preamble.
    PREFILL = "{"

    def build_json_request(self, prompt: str, system: str | None, max_tokens: int,
                           temperature: float) -> dict[str, Any]:
        """The plain request plus an assistant turn prefilled with ``{``; see
        ``Family.build_json_request``."""
        body = self.build_request(prompt, system, max_tokens, temperature)
        body["messages"].append(_claude_turn("assistant", self.PREFILL))
        return body

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """The messages continued by the answer, the note and a new prefill; see
        ``Family.build_repair_request``."""
        messages = _without_prefill(model_input["messages"])
        messages += [_claude_turn("assistant", _continued(self.PREFILL, answer)),
                     _claude_turn("user", note), _claude_turn("assistant", self.PREFILL)]
        return {**model_input, "messages": messages}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has a ``content`` list; see ``Family.matches``."""
        return _is_mapping(body) and isinstance(body.get("content"), list)

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        usage = body.get("usage")
        if not _is_mapping(usage):
            usage = {}
        text, tool_input = _content_blocks(body["content"], "content", "")
        return _output(text, body.get("stop_reason"), usage.get("input_tokens"),
                       usage.get("output_tokens"), tool_input)


class ConverseFamily(Family):
    """Converse-type batch jobs: one request/response shape for every model."""

    name = "converse"
    shape = "output.message.content[*].text (Converse shape)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """A Converse body with one user turn and ``inferenceConfig``; see
        ``Family.build_request``."""
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": max_tokens, "temperature": temperature},
        }
        if system:
            body["system"] = [{"text": system}]
        return body

    # No toolConfig and no outputConfig: AWS "Process multiple prompts with batch inference"
    # says Converse-type batch jobs fail records that include toolConfig (400), and "Get
    # validated JSON results from models" offers outputConfig.textFormat only for some models,
    # while a Converse job may name any model. The schema goes in the prompt; answers are
    # validated here, and a prefill is not used because not every model accepts a final
    # assistant turn.
    PREFILL = ""

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """The messages continued by the answer and the note; see
        ``Family.build_repair_request``."""
        messages = _without_prefill(model_input["messages"]) if self.PREFILL else \
            list(model_input["messages"])
        messages += [{"role": "assistant", "content": [{"text": _continued(self.PREFILL, answer)}]},
                     {"role": "user", "content": [{"text": note}]}]
        if self.PREFILL:
            messages.append({"role": "assistant", "content": [{"text": self.PREFILL}]})
        return {**model_input, "messages": messages}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has an ``output.message`` object; see ``Family.matches``."""
        output = body.get("output") if _is_mapping(body) else None
        return _is_mapping(output) and _is_mapping(output.get("message"))

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        message = body["output"]["message"]
        usage = body.get("usage")
        if not _is_mapping(usage):
            usage = {}
        text, tool_input = _content_blocks(message.get("content"), "output.message.content",
                                           "toolUse")
        return _output(text, body.get("stopReason"), usage.get("inputTokens"),
                       usage.get("outputTokens"), tool_input)


class NovaFamily(ConverseFamily):
    """Amazon Nova's native InvokeModel body is the Converse shape plus a schema version."""

    name = "amazon-nova"
    model_prefixes = ("amazon.nova",)
    shape = "output.message.content[*].text (Amazon Nova messages-v1)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """The Converse body with ``schemaVersion`` messages-v1; see ``Family.build_request``."""
        return {"schemaVersion": "messages-v1",
                **super().build_request(prompt, system, max_tokens, temperature)}

    # "Require structured outputs - Amazon Nova" recommends prefilling the assistant turn with
    # a ```json fence and stopping at the closing ``` : the answer is then the bare object.
    PREFILL = "```json"

    def build_json_request(self, prompt: str, system: str | None, max_tokens: int,
                           temperature: float) -> dict[str, Any]:
        """The plain request prefilled with a ```json fence and stopped at the closing fence;
        see ``Family.build_json_request``."""
        body = self.build_request(prompt, system, max_tokens, temperature)
        body["inferenceConfig"]["stopSequences"] = ["```"]
        body["messages"].append({"role": "assistant", "content": [{"text": self.PREFILL}]})
        return body


class LlamaFamily(Family):
    """Meta Llama through InvokeModel: a Llama 3 chat-template prompt, a ``generation`` answer."""

    name = "meta-llama"
    model_prefixes = ("meta.llama",)
    shape = "a 'generation' string (Meta Llama)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """A Llama 3 instruct chat-template ``prompt`` body; see ``Family.build_request``."""
        # Llama 3 instruct chat template; the assistant header asks the model to answer.
        text = "<|begin_of_text|>"
        if system:
            text += f"<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
        text += (f"<|start_header_id|>user<|end_header_id|>\n\n{prompt}<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n")
        return {"prompt": text, "max_gen_len": max_tokens, "temperature": temperature}

    # The Llama 3 prompt ends with the assistant header: text after it is the start of the
    # answer, so it is started with "{" as Claude's is.
    PREFILL = "{"

    def build_json_request(self, prompt: str, system: str | None, max_tokens: int,
                           temperature: float) -> dict[str, Any]:
        """The plain request with the answer started with ``{``; see
        ``Family.build_json_request``."""
        body = self.build_request(prompt, system, max_tokens, temperature)
        return {**body, "prompt": body["prompt"] + self.PREFILL}

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """The prompt continued by the answer, a user turn with the note and a new
        prefill; see ``Family.build_repair_request``."""
        text = model_input["prompt"].removesuffix(self.PREFILL)
        text += (f"{_continued(self.PREFILL, answer)}<|eot_id|>"
                 f"<|start_header_id|>user<|end_header_id|>\n\n{note}<|eot_id|>"
                 f"<|start_header_id|>assistant<|end_header_id|>\n\n{self.PREFILL}")
        return {**model_input, "prompt": text}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has a ``generation`` string; see ``Family.matches``."""
        return _is_mapping(body) and isinstance(body.get("generation"), str)

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        return _output(body["generation"], body.get("stop_reason"),
                       body.get("prompt_token_count"), body.get("generation_token_count"))


class MistralFamily(Family):
    """Mistral through InvokeModel: an ``[INST]`` prompt; text or chat completion answers."""

    name = "mistral"
    model_prefixes = ("mistral.",)
    shape = "outputs[0].text or choices[0].message.content (Mistral)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """An ``[INST]`` prompt body, the system text leading the instruction; see
        ``Family.build_request``."""
        # The [INST] template has no system role: the system text leads the instruction.
        instruction = f"{system}\n\n{prompt}" if system else prompt
        return {"prompt": f"<s>[INST] {instruction} [/INST]", "max_tokens": max_tokens,
                "temperature": temperature}

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """A chat body's messages, or the ``[INST]`` prompt, continued by the answer and the
        note; see ``Family.build_repair_request``."""
        if isinstance(model_input.get("messages"), list):  # a chat body (mistral-large-2407+)
            return {**model_input, "messages": [*model_input["messages"],
                                                {"role": "assistant", "content": answer},
                                                {"role": "user", "content": note}]}
        # Mistral's template for a conversation: each answer closes with </s>, each turn [INST].
        return {**model_input,
                "prompt": f"{model_input['prompt']} {answer}</s>[INST] {note} [/INST]"}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has ``outputs[0].text`` or ``choices[0].message.content``; see
        ``Family.matches``."""
        if not _is_mapping(body):
            return False
        outputs, choices = body.get("outputs"), body.get("choices")
        if isinstance(outputs, list) and outputs and _is_mapping(outputs[0]):
            return isinstance(outputs[0].get("text"), str)
        if isinstance(choices, list) and choices and _is_mapping(choices[0]):
            message = choices[0].get("message")
            return _is_mapping(message) and isinstance(message.get("content"), str)
        return False

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        # Text completions carry no token counts; chat completions may report usage.
        if isinstance(body.get("outputs"), list) and body["outputs"]:
            first = body["outputs"][0]
            return _output(first["text"], first.get("stop_reason"), None, None)
        # Chat-style models (mistral-large-2407 and later) answer in the chat completion shape;
        # AWS documents stop_reason, Mistral's own schema finish_reason.
        first = body["choices"][0]
        reason = first.get("stop_reason", first.get("finish_reason"))
        usage = body.get("usage") if _is_mapping(body.get("usage")) else {}
        return _output(first["message"]["content"], reason, usage.get("prompt_tokens"),
                       usage.get("completion_tokens"))


class TitanTextFamily(Family):
    """Amazon Titan Text through InvokeModel: an ``inputText`` prompt, ``results`` answers."""

    name = "amazon-titan-text"
    model_prefixes = ("amazon.titan-text", "amazon.titan-tg1")
    shape = "results[0].outputText (Amazon Titan Text)"

    def build_request(self, prompt: str, system: str | None, max_tokens: int,
                      temperature: float) -> dict[str, Any]:
        """A Titan ``inputText`` body in its "User: ...\\nBot:" form, the system text leading
        the instruction; see ``Family.build_request``."""
        # Titan has no system field; its documented conversational form is "User: ...\nBot:".
        instruction = f"{system}\n\n{prompt}" if system else prompt
        return {"inputText": f"User: {instruction}\nBot:",
                "textGenerationConfig": {"maxTokenCount": max_tokens, "temperature": temperature}}

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """The ``inputText`` continued by the answer and a user turn with the note; see
        ``Family.build_repair_request``."""
        return {**model_input,
                "inputText": f"{model_input['inputText']} {answer}\nUser: {note}\nBot:"}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has ``results[0].outputText``; see ``Family.matches``."""
        results = body.get("results") if _is_mapping(body) else None
        return (isinstance(results, list) and bool(results) and _is_mapping(results[0])
                and isinstance(results[0].get("outputText"), str))

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        first = body["results"][0]
        return _output(first["outputText"], first.get("completionReason"),
                       body.get("inputTextTokenCount"), first.get("tokenCount"))


def _claude_turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


def _without_prefill(messages: Any) -> list[Any]:
    """The messages without a final assistant turn (the prefill the answer continued)."""
    messages = list(messages)
    if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
        messages.pop()
    return messages


def _continued(prefill: str, answer: str) -> str:
    """The whole answer: the prefill it continued, then its text (never empty: Bedrock rejects
    an empty content block). A fence prefill gets its line break back (parsing strips it)."""
    if prefill and not answer.startswith(prefill):
        answer = prefill + ("\n" if prefill.startswith("```") else "") + answer
    return answer or "(no answer)"


CONVERSE = ConverseFamily()
# InvokeModel families, looked up by model id prefix.
FAMILIES: tuple[Family, ...] = (ClaudeFamily(), NovaFamily(), LlamaFamily(), MistralFamily(),
                                TitanTextFamily())
# Response shapes tried by auto-detection; Nova's shape is the Converse shape.
DETECT_ORDER: tuple[Family, ...] = tuple(CONVERSE if isinstance(f, NovaFamily) else f
                                         for f in FAMILIES)


def base_model_id(model_id: str) -> str:
    """The foundation model id behind an ARN or a cross-region inference profile id.

    Args:
        model_id: A model id, model ARN or inference profile id.
    """
    model = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    for prefix in PROFILE_PREFIXES:
        if model.startswith(prefix):
            return model[len(prefix):]
    return model


def _check_invocation_type(invocation_type: str) -> None:
    if invocation_type not in INVOCATION_TYPES:
        raise ValueError(f"unknown model invocation type {invocation_type!r}; "
                         f"use one of {', '.join(INVOCATION_TYPES)}")


@functools.lru_cache(maxsize=64)  # asked per job and per on-demand answer, for few models a run
def _known_family(model_id: str, invocation_type: str) -> Family | None:
    if invocation_type == "Converse":
        return CONVERSE
    base = base_model_id(model_id)
    return next((f for f in FAMILIES if base.startswith(f.model_prefixes)), None)


def family_for(model_id: str, invocation_type: str = "InvokeModel") -> Family:
    """The family that builds and parses bodies for ``model_id`` under ``invocation_type``.

    Args:
        model_id: A model id, model ARN or inference profile id.
        invocation_type: ``InvokeModel`` or ``Converse`` (one of ``INVOCATION_TYPES``).

    Raises:
        ValueError: the invocation type is unknown, or no family has the model's prefix.
    """
    _check_invocation_type(invocation_type)
    family = _known_family(model_id, invocation_type)
    if family is None:
        known = ", ".join(p for f in FAMILIES for p in f.model_prefixes)
        raise ValueError(f"model id {model_id!r} is not of a known model family (known prefixes: "
                         f"{known}); use --model-invocation-type Converse for other models")
    return family


def detect_family(body: Any) -> Family | None:
    """The family whose response shape ``body`` has, or None.

    Args:
        body: A decoded model response.
    """
    return next((f for f in DETECT_ORDER if f.matches(body)), None)


def response_reader(model_id: str | None = None,
                    invocation_type: str = "InvokeModel") -> Callable[[Any], ParsedOutput]:
    """``parse_model_output`` for one job's responses: the model's family is looked up once,
    not once per output line.

    Args:
        model_id: The model the job ran, when known.
        invocation_type: The job's ``InvokeModel`` or ``Converse`` invocation type.

    Returns:
        A function reading one decoded model response; it raises ``UnparseableOutput`` for a
        body that matches no known family's shape.
    """
    _check_invocation_type(invocation_type)
    family = _known_family(model_id, invocation_type) if model_id is not None else None

    def read(body: Any) -> ParsedOutput:
        # ``_parse`` rather than ``parse_response``: ``matches`` was just checked.
        if family is not None and family.matches(body):
            return family._parse(body)
        detected = detect_family(body)
        if detected is not None:
            return detected._parse(body)
        if family is not None:
            raise UnparseableOutput(f"{family.name} response for {model_id} expected "
                                    f"{family.shape}, found {_found(body)}")
        shapes = "; ".join(f.shape for f in DETECT_ORDER)
        raise UnparseableOutput(f"model output matches no known family (expected one of: "
                                f"{shapes}), found {_found(body)}")
    return read


def parse_model_output(body: Any, model_id: str | None = None,
                       invocation_type: str = "InvokeModel") -> ParsedOutput:
    """Parse one model response, by the model's family when known, else by the body's shape.

    A body of another family's shape is still parsed: the collector does not always know how a
    job was submitted (a job started from the console may be Converse-type for any model).
    To read many responses of one job, ``response_reader`` looks the family up once.

    Args:
        body: A decoded model response.
        model_id: The model the job ran, when known.
        invocation_type: The job's ``InvokeModel`` or ``Converse`` invocation type.

    Raises:
        UnparseableOutput: the body matches no known family's shape.
    """
    return response_reader(model_id, invocation_type)(body)
