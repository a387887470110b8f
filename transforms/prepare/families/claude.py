"""Anthropic Claude through InvokeModel: the Anthropic Messages API body and answer."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.prepare.families.base import (Family, ParsedOutput, content_blocks, continued,
                                              is_mapping, parsed_output, without_prefill)


def _turn(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "content": [{"type": "text", "text": text}]}


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
        body["messages"].append(_turn("assistant", self.PREFILL))
        return body

    def build_repair_request(self, model_input: Mapping[str, Any], answer: str,
                             note: str) -> dict[str, Any]:
        """The messages continued by the answer, the note and a new prefill; see
        ``Family.build_repair_request``."""
        messages = without_prefill(model_input["messages"])
        messages += [_turn("assistant", continued(self.PREFILL, answer)),
                     _turn("user", note), _turn("assistant", self.PREFILL)]
        return {**model_input, "messages": messages}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has a ``content`` list; see ``Family.matches``."""
        return is_mapping(body) and isinstance(body.get("content"), list)

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        usage = body.get("usage")
        if not is_mapping(usage):
            usage = {}
        text, tool_input = content_blocks(body["content"], "content", "")
        return parsed_output(text, body.get("stop_reason"), usage.get("input_tokens"),
                             usage.get("output_tokens"), tool_input)
