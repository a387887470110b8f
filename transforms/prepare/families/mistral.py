"""Mistral through InvokeModel: an ``[INST]`` prompt; text or chat completion answers."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.prepare.families.base import Family, ParsedOutput, is_mapping, parsed_output


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
        if not is_mapping(body):
            return False
        outputs, choices = body.get("outputs"), body.get("choices")
        if isinstance(outputs, list) and outputs and is_mapping(outputs[0]):
            return isinstance(outputs[0].get("text"), str)
        if isinstance(choices, list) and choices and is_mapping(choices[0]):
            message = choices[0].get("message")
            return is_mapping(message) and isinstance(message.get("content"), str)
        return False

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        # Text completions carry no token counts; chat completions may report usage.
        if isinstance(body.get("outputs"), list) and body["outputs"]:
            first = body["outputs"][0]
            return parsed_output(first["text"], first.get("stop_reason"), None, None)
        # Chat-style models (mistral-large-2407 and later) answer in the chat completion shape;
        # AWS documents stop_reason, Mistral's own schema finish_reason.
        first = body["choices"][0]
        reason = first.get("stop_reason", first.get("finish_reason"))
        usage = body.get("usage") if is_mapping(body.get("usage")) else {}
        return parsed_output(first["message"]["content"], reason, usage.get("prompt_tokens"),
                             usage.get("completion_tokens"))
