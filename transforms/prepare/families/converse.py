"""Converse-type batch jobs: one request/response shape for every model."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.prepare.families.base import (Family, ParsedOutput, content_blocks, continued,
                                              is_mapping, parsed_output, without_prefill)


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
        messages = without_prefill(model_input["messages"]) if self.PREFILL else \
            list(model_input["messages"])
        messages += [{"role": "assistant", "content": [{"text": continued(self.PREFILL, answer)}]},
                     {"role": "user", "content": [{"text": note}]}]
        if self.PREFILL:
            messages.append({"role": "assistant", "content": [{"text": self.PREFILL}]})
        return {**model_input, "messages": messages}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has an ``output.message`` object; see ``Family.matches``."""
        output = body.get("output") if is_mapping(body) else None
        return is_mapping(output) and is_mapping(output.get("message"))

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        message = body["output"]["message"]
        usage = body.get("usage")
        if not is_mapping(usage):
            usage = {}
        text, tool_input = content_blocks(message.get("content"), "output.message.content",
                                          "toolUse")
        return parsed_output(text, body.get("stopReason"), usage.get("inputTokens"),
                             usage.get("outputTokens"), tool_input)
