"""What every model family shares: the parsed answer, the error for an unreadable one, the
``Family`` interface, and the helpers the families' request builders and parsers have in common.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


def is_mapping(value: Any) -> bool:
    """Whether ``value`` is a JSON object (any Mapping).

    Args:
        value: a decoded JSON value, or None for a missing key.
    """
    # Decoded JSON objects are dicts, and a missing key is None: both are answered before the
    # abstract-class check of Mapping, which costs about ten times as much and would run
    # several times per output line.
    return isinstance(value, dict) or (value is not None and isinstance(value, Mapping))


def found(body: Any) -> str:
    """What a response that did not parse looked like, for the error message.

    Args:
        body: a decoded model response.
    """
    if isinstance(body, Mapping):
        return f"top-level keys {sorted(body)[:8]}"
    return f"a {type(body).__name__}"


def parsed_output(text: str, stop_reason: Any, input_tokens: Any, output_tokens: Any,
                  tool_input: Mapping[str, Any] | None = None) -> ParsedOutput:
    """A ``ParsedOutput`` from a response's raw fields: values of the wrong type become None.

    Args:
        text: the answer's text.
        stop_reason: the response's stop reason field.
        input_tokens: the response's input token count field.
        output_tokens: the response's output token count field.
        tool_input: the input of the answer's first tool-use block, if any.
    """
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


def content_blocks(blocks: Any, where: str,
                   tool_key: str) -> tuple[str, Mapping[str, Any] | None]:
    """The text of the content blocks, joined, and the input of the first tool-use block
    (Claude's {"type": "tool_use", "input"} with ``tool_key`` "", Converse's
    {"toolUse": {"input"}} with ``tool_key`` "toolUse"), in one pass over the blocks.

    Args:
        blocks: the response's content blocks.
        where: the blocks' path in the response, for the error message.
        tool_key: the key of a tool-use block, or "" for Claude's typed blocks.

    Raises:
        UnparseableOutput: ``blocks`` is not a list.
    """
    if not isinstance(blocks, list):
        raise UnparseableOutput(f"expected {where} to be a list of content blocks, "
                                f"found {type(blocks).__name__}")
    texts, tool_input = [], None
    for block in blocks:
        if not is_mapping(block):
            continue
        text = block.get("text")
        if isinstance(text, str):
            texts.append(text)
        if tool_input is None:
            use = block.get(tool_key) if tool_key else (
                block if block.get("type") == "tool_use" else None)
            if is_mapping(use) and is_mapping(use.get("input")):
                tool_input = use["input"]
    return "".join(texts), tool_input


def without_prefill(messages: Any) -> list[Any]:
    """The messages without a final assistant turn (the prefill the answer continued).

    Args:
        messages: a request body's chat messages.
    """
    messages = list(messages)
    if messages and isinstance(messages[-1], Mapping) and messages[-1].get("role") == "assistant":
        messages.pop()
    return messages


def continued(prefill: str, answer: str) -> str:
    """The whole answer: the prefill it continued, then its text (never empty: Bedrock rejects
    an empty content block). A fence prefill gets its line break back (parsing strips it).

    Args:
        prefill: the start of the answer the request gave, or "".
        answer: the answer's text as parsed.
    """
    if prefill and not answer.startswith(prefill):
        answer = prefill + ("\n" if prefill.startswith("```") else "") + answer
    return answer or "(no answer)"


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
        if not is_mapping(body) or not self.matches(body):
            raise UnparseableOutput(f"{self.name} response expected {self.shape}, found {found(body)}")
        return self._parse(body)

    def __repr__(self) -> str:
        return f"<Family {self.name}>"
