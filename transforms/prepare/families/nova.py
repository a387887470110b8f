"""Amazon Nova through InvokeModel: the Converse shape plus a schema version."""
from __future__ import annotations

from typing import Any

from transforms.prepare.families.converse import ConverseFamily


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
