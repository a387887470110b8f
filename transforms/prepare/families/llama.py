"""Meta Llama through InvokeModel: a Llama 3 chat-template prompt, a ``generation`` answer."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transforms.prepare.families.base import (Family, ParsedOutput, continued, is_mapping,
                                              parsed_output)


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
        text += (f"{continued(self.PREFILL, answer)}<|eot_id|>"
                 f"<|start_header_id|>user<|end_header_id|>\n\n{note}<|eot_id|>"
                 f"<|start_header_id|>assistant<|end_header_id|>\n\n{self.PREFILL}")
        return {**model_input, "prompt": text}

    def matches(self, body: Any) -> bool:
        """Whether ``body`` has a ``generation`` string; see ``Family.matches``."""
        return is_mapping(body) and isinstance(body.get("generation"), str)

    def _parse(self, body: Mapping[str, Any]) -> ParsedOutput:
        return parsed_output(body["generation"], body.get("stop_reason"),
                             body.get("prompt_token_count"), body.get("generation_token_count"))
