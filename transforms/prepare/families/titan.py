"""Amazon Titan Text through InvokeModel: an ``inputText`` prompt, ``results`` answers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.prepare.families.base import Family, ParsedOutput, is_mapping, parsed_output


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
        results = body.get("results") if is_mapping(body) else None
        return (isinstance(results, list) and bool(results) and is_mapping(results[0])
                and isinstance(results[0].get("outputText"), str))

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        first = body["results"][0]
        return parsed_output(first["outputText"], first.get("completionReason"),
                             body.get("inputTextTokenCount"), first.get("tokenCount"))
