"""Transcript -> BatchRecord: the prompt, the model family's request body and a stable recordId."""
from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from transforms.families import family_for
from transforms.insights.prompts import INSIGHTS_TEMPLATE, schema_instructions
from transforms.model import BatchRecord, Transcript, encode_jsonl_line

PLACEHOLDER = "{transcript}"

DEFAULT_SYSTEM = ("You are an assistant for a customer contact center. You write accurate, "
                  "neutral call summaries for agents and supervisors, using only facts stated "
                  "in the transcript.")

DEFAULT_TEMPLATE = """Summarize the customer service call transcript below in at most five sentences.
Cover:
- the reason for the call,
- how it was resolved (or that it was not resolved),
- any follow-up actions, with who owns them and any dates mentioned.
Do not invent details that are not in the transcript.

<transcript>
{transcript}
</transcript>"""

RECORD_ID_PREFIX = "R"
RECORD_ID_HASH_CHARS = 15  # 75 bits of sha256: collisions are rare, and checked anyway


@dataclass(frozen=True)
class PromptConfig:
    """The user prompt template (with a ``{transcript}`` placeholder), system prompt and limits."""

    template: str = DEFAULT_TEMPLATE
    system_prompt: str | None = DEFAULT_SYSTEM
    max_tokens: int = 512
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if PLACEHOLDER not in self.template:
            raise ValueError(f"prompt template has no {PLACEHOLDER} placeholder; add it where the "
                             f"transcript text goes")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 1.0:
            raise ValueError(f"temperature must be between 0 and 1, got {self.temperature}")

    @classmethod
    def from_files(cls, template_path: str | Path | None = None,
                   system_path: str | Path | None = None, max_tokens: int = 512,
                   temperature: float = 0.2) -> "PromptConfig":
        """Read the user template and/or system prompt from files; missing paths keep the defaults."""
        template = DEFAULT_TEMPLATE if template_path is None else _read(template_path, "template")
        if PLACEHOLDER not in template:
            raise ValueError(f"prompt template file {template_path} has no {PLACEHOLDER} "
                             f"placeholder; add it where the transcript text goes")
        system = DEFAULT_SYSTEM if system_path is None else _read(system_path, "system prompt")
        return cls(template=template, system_prompt=system.strip() or None,
                   max_tokens=max_tokens, temperature=temperature)

    def render(self, transcript_text: str) -> str:
        # str.replace rather than str.format: templates may contain other braces (JSON examples).
        return self.template.replace(PLACEHOLDER, transcript_text)


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {what} file {path}: {exc}; pass a readable UTF-8 text file") \
            from None


def record_id_for(transcript_id: str, salt: int = 0) -> str:
    """Deterministic Bedrock recordId for a transcript id: "R" + 15 base32 chars of sha256."""
    key = transcript_id if salt == 0 else f"{transcript_id}\x00{salt}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return RECORD_ID_PREFIX + base64.b32encode(digest).decode("ascii")[:RECORD_ID_HASH_CHARS]


def assign_record_ids(transcript_ids: Iterable[str]) -> dict[str, str]:
    """Unique record ids for distinct transcript ids, stable whatever order they arrive in.

    Ids are taken in sorted order; one whose record id is already taken gets salt 1, 2, ... until
    it finds a free one, so the first (in sort order) of a colliding group keeps its plain id.
    """
    ids = sorted(set(transcript_ids))
    plain = {tid: record_id_for(tid) for tid in ids}
    # Plain ids are reserved first so a salted id can never take another transcript's plain id.
    taken: set[str] = set()
    assigned: dict[str, str] = {}
    collided: list[str] = []
    for tid in ids:
        if plain[tid] in taken:
            collided.append(tid)
        else:
            taken.add(plain[tid])
            assigned[tid] = plain[tid]
    for tid in collided:
        salt = 1
        while record_id_for(tid, salt) in taken:
            salt += 1
        assigned[tid] = record_id_for(tid, salt)
        taken.add(assigned[tid])
    return assigned


def render_transcript(t: Transcript) -> str:
    """The transcript as prompt text: "Speaker: text" lines when turns are known, else the text."""
    if t.turns:
        return "\n".join(f"{turn.speaker}: {turn.text}" for turn in t.turns)
    return t.text


def build_record(t: Transcript, model_id: str, prompt: PromptConfig,
                 invocation_type: str = "InvokeModel", record_id: str | None = None,
                 attempt: int = 1, output_schema: Mapping[str, Any] | None = None) -> BatchRecord:
    """The batch input record for one transcript; ``record_id`` overrides the default id.

    Args:
        t: the transcript.
        model_id: the Bedrock model (its family shapes the request body).
        prompt: the prompt template, system prompt and limits.
        invocation_type: "InvokeModel" or "Converse", as the job is created.
        record_id: the recordId to use instead of ``record_id_for(t.id)``.
        attempt: 1 for a first submission.
        output_schema: the insights JSON Schema (``--task insights``), or None for a summary.
    """
    family = family_for(model_id, invocation_type)
    text = render_transcript(t)
    if output_schema is None:
        model_input = family.build_request(prompt.render(text), prompt.system_prompt,
                                           prompt.max_tokens, prompt.temperature)
    else:
        # The default template asks for a prose summary; a user's own template is kept.
        template = INSIGHTS_TEMPLATE if prompt.template == DEFAULT_TEMPLATE else prompt.template
        user = template.replace(PLACEHOLDER, text) + "\n\n" + schema_instructions(output_schema)
        model_input = family.build_json_request(user, prompt.system_prompt, prompt.max_tokens,
                                                prompt.temperature)
    rid = record_id if record_id is not None else record_id_for(t.id)
    size = len(encode_jsonl_line(rid, model_input).encode("utf-8"))
    return BatchRecord(record_id=rid, transcript_id=t.id, model_input=model_input, size_bytes=size,
                       metadata=t.metadata, attempt=attempt)
