"""Transcript -> BatchRecord: the prompt, the model family's request body and a stable recordId."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from transforms.core.errors import ConfigError
from transforms.core.model import BatchRecord, Transcript, jsonl_line_size
from transforms.insights.prompts import INSIGHTS_TEMPLATE, schema_instructions
from transforms.prepare.families import family_for
from transforms.sources.validation import render_turns

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
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_SHIFTS = tuple(range(5 * (RECORD_ID_HASH_CHARS - 1), -1, -5))


@dataclass(frozen=True)
class PromptConfig:
    """The user prompt template (with a ``{transcript}`` placeholder), system prompt and limits.

    Args:
        template: The user prompt; ``{transcript}`` marks where the transcript text goes.
        system_prompt: The system prompt; None for none.
        max_tokens: The most output tokens the model may produce per record (at least 1).
        temperature: The sampling temperature, between 0 and 1.

    Raises:
        ConfigError: the template lacks the placeholder, or a limit is out of range.
    """

    template: str = DEFAULT_TEMPLATE
    system_prompt: str | None = DEFAULT_SYSTEM
    max_tokens: int = 512
    temperature: float = 0.2

    def __post_init__(self) -> None:
        if PLACEHOLDER not in self.template:
            raise ConfigError(f"template has no {PLACEHOLDER} placeholder; add it where the "
                              f"transcript text goes", "template")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}", "max_tokens")
        if not 0.0 <= self.temperature <= 1.0:
            raise ConfigError(f"temperature must be between 0 and 1, got {self.temperature}",
                              "temperature")

    @classmethod
    def from_files(cls, template_path: str | Path | None = None,
                   system_path: str | Path | None = None, max_tokens: int = 512,
                   temperature: float = 0.2) -> "PromptConfig":
        """Read the user template and/or system prompt from files; missing paths keep the defaults."""
        template = DEFAULT_TEMPLATE if template_path is None else _read(template_path, "template")
        if PLACEHOLDER not in template:
            raise ConfigError(f"template {template_path} has no {PLACEHOLDER} placeholder; add "
                              f"it where the transcript text goes", "template")
        system = DEFAULT_SYSTEM if system_path is None else _read(system_path, "system_prompt")
        return cls(template=template, system_prompt=system.strip() or None,
                   max_tokens=max_tokens, temperature=temperature)

    def render(self, transcript_text: str) -> str:
        """The user prompt with the transcript text in place of the placeholder.

        Args:
            transcript_text: The transcript as prompt text (see ``render_transcript``).
        """
        # str.replace rather than str.format: templates may contain other braces (JSON examples).
        return self.template.replace(PLACEHOLDER, transcript_text)


def _read(path: str | Path, field: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{field} {path} cannot be read ({exc}); pass a readable UTF-8 text "
                          f"file", field) from None


def record_id_for(transcript_id: str, salt: int = 0) -> str:
    """Deterministic Bedrock recordId for a transcript id: "R" + 15 base32 chars of sha256.

    Args:
        transcript_id: The transcript's id.
        salt: 0 for the plain id; 1, 2, ... give other ids when the plain one collides (see
            ``assign_record_ids``).
    """
    key = transcript_id if salt == 0 else f"{transcript_id}\x00{salt}"
    # The first 75 bits of the digest in RFC 4648 base32, as base64.b32encode(digest)[:15]
    # spells them, without its (pure Python) work on the other 181 bits.
    bits = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:10], "big") >> 5
    return RECORD_ID_PREFIX + "".join([_BASE32[(bits >> shift) & 31] for shift in _SHIFTS])


def assign_record_ids(transcript_ids: Iterable[str]) -> dict[str, str]:
    """Unique record ids for distinct transcript ids, stable whatever order they arrive in.

    Ids are taken in sorted order; one whose record id is already taken gets salt 1, 2, ... until
    it finds a free one, so the first (in sort order) of a colliding group keeps its plain id.

    Args:
        transcript_ids: The transcript ids (repeats are ignored).

    Returns:
        The record id of each distinct transcript id.
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
    """The transcript as prompt text: "Speaker: text" lines when turns are known, else the text.

    Args:
        t: The transcript.
    """
    return render_turns(t.turns) if t.turns else t.text


def build_record(t: Transcript, model_id: str, prompt: PromptConfig,
                 invocation_type: str = "InvokeModel", record_id: str | None = None,
                 attempt: int = 1, output_schema: Mapping[str, Any] | None = None) -> BatchRecord:
    """The batch input record for one transcript.

    Args:
        t: The transcript.
        model_id: Bedrock model id; it picks the model family's request body.
        prompt: Template, system prompt and limits.
        invocation_type: ``InvokeModel`` or ``Converse``.
        record_id: The recordId to use (default: ``record_id_for(t.id)``).
        attempt: 1 for a first submission.
        output_schema: The insights JSON Schema (``--task insights``), or None for a summary.
    """
    rid = record_id if record_id is not None else record_id_for(t.id)
    text = render_transcript(t)
    if output_schema is None:
        return record_for_prompt(rid, t.id, prompt.render(text), model_id, prompt,
                                 invocation_type, t.metadata, attempt)
    # The default template asks for a prose summary; a user's own template is kept.
    template = INSIGHTS_TEMPLATE if prompt.template == DEFAULT_TEMPLATE else prompt.template
    user = template.replace(PLACEHOLDER, text) + "\n\n" + schema_instructions(output_schema)
    model_input = family_for(model_id, invocation_type).build_json_request(
        user, prompt.system_prompt, prompt.max_tokens, prompt.temperature)
    return BatchRecord(rid, t.id, model_input, jsonl_line_size(rid, model_input), t.metadata,
                       attempt)


def record_for_prompt(record_id: str, transcript_id: str, text: str, model_id: str,
                      prompt: PromptConfig, invocation_type: str = "InvokeModel",
                      metadata: Mapping[str, Any] | None = None, attempt: int = 1) -> BatchRecord:
    """The batch input record asking the model family of ``model_id`` about ``text``: the
    request body, built once, and the size of its encoded line, encoded once.

    Args:
        record_id: The record's Bedrock recordId.
        transcript_id: Id of the transcript it joins back to.
        text: The user prompt, transcript included (``prompt.render``'s result).
        model_id: Bedrock model id; it picks the model family's request body.
        prompt: System prompt and limits.
        invocation_type: ``InvokeModel`` or ``Converse``.
        metadata: The transcript's metadata, carried to its result row.
        attempt: 1 for a first submission.
    """
    model_input = family_for(model_id, invocation_type).build_request(
        text, prompt.system_prompt, prompt.max_tokens, prompt.temperature)
    return BatchRecord(record_id, transcript_id, model_input,
                       jsonl_line_size(record_id, model_input),
                       {} if metadata is None else metadata, attempt)
