"""Turn input records into valid Transcripts (pure: no Beam import).

A record (a dict from any format) is mapped to a Transcript by the field options, then checked:
id present and usable, text or turns present, text not empty and not over the size limit, id
unique. Every rejection is a ``Failure`` with stage ``validate``, the record's origin and the
offending input, so a bad record is reported and the pipeline goes on.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from transforms.model import Failure, Transcript, Turn, truncate_raw

DEFAULT_MAX_TEXT_CHARS = 400_000
METADATA_FIELD = "metadata"

_ORIGIN_NUMBER = re.compile(r"^(.*?)(?:[:#](\d+))?$", re.DOTALL)


class InvalidId(ValueError):
    """A transcript id that cannot be used as a string key (null, list, dict, float, bool)."""


def coerce_id(value: Any) -> str:
    """The transcript id as a string: strings as they are, integers rendered, anything else refused.

    Booleans and floats are refused because their rendering ("True", "1.0") is never the id the
    data owner meant; an empty id is refused because it cannot be joined back.
    """
    if isinstance(value, str):
        if not value.strip():
            raise InvalidId("id is empty")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidId(f"id must be a string or an integer, got {type(value).__name__} {value!r:.80}")


def validation_failure(code: str, message: str, *, origin: str | None, raw: Any,
                       transcript_id: str | None = None) -> Failure:
    return Failure(stage="validate", error_code=code, error_message=message,
                   transcript_id=transcript_id, raw=truncate_raw(raw), origin=origin)


def _where(origin: str | None) -> str:
    return f" at {origin}" if origin else ""


@dataclass(frozen=True)
class FieldMapping:
    """Which input fields hold the id, the text and the turns; which ones become metadata.

    ``metadata_fields`` None keeps every other field as metadata.
    """

    id_field: str = "id"
    text_field: str = "text"
    turns_field: str = "turns"
    metadata_fields: tuple[str, ...] | None = None

    @classmethod
    def of(cls, id_field: str = "id", text_field: str = "text", turns_field: str = "turns",
           metadata_fields: Sequence[str] | None = None) -> "FieldMapping":
        return cls(id_field, text_field, turns_field,
                   None if metadata_fields is None else tuple(metadata_fields))



def render_turns(turns: Sequence[Turn]) -> str:
    """Turns as the "Speaker: text" lines the model sees."""
    return "\n".join(f"{turn.speaker}: {turn.text}" for turn in turns)


def _number(value: Any, what: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    return float(value)


def parse_turns(value: Any) -> tuple[Turn, ...]:
    """A ``turns`` value (list of {speaker, text, start?, end?}, or that list as a JSON string,
    as CSV cells hold it) as Turn tuples. Raises ValueError naming the bad turn."""
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"turns must be a list of {{speaker, text}} objects, got "
                         f"{type(value).__name__}")
    turns = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("text"), str):
            raise ValueError(f"turn {index} must be an object with a string 'text'")
        speaker = entry.get("speaker")
        turns.append(Turn(speaker=str(speaker) if speaker not in (None, "") else "Unknown",
                          text=entry["text"],
                          start=_number(entry.get("start"), f"turn {index} start"),
                          end=_number(entry.get("end"), f"turn {index} end")))
    return tuple(turns)


def record_to_transcript(record: Mapping[str, Any], mapping: FieldMapping,
                         origin: str | None) -> Transcript | Failure:
    """One input record (a dict) as a Transcript, or the validate Failure saying what is wrong."""
    where = _where(origin)
    if mapping.id_field not in record or record[mapping.id_field] is None:
        return validation_failure(
            "MissingId", f"record{where} has no {mapping.id_field!r} field; set --id-field to the "
            f"field that holds the transcript id", origin=origin, raw=record)
    try:
        transcript_id = coerce_id(record[mapping.id_field])
    except InvalidId as err:
        return validation_failure("InvalidId", f"record{where}: {err}; use string or integer ids",
                                  origin=origin, raw=record)
    try:
        turns = parse_turns(record.get(mapping.turns_field) or [])
    except ValueError as err:
        return validation_failure(
            "InvalidTurns", f"transcript {transcript_id!r}{where}: {err}", origin=origin,
            raw=record, transcript_id=transcript_id)
    text = record.get(mapping.text_field)
    if text is not None and not isinstance(text, str):
        return validation_failure(
            "InvalidText", f"transcript {transcript_id!r}{where}: {mapping.text_field!r} must be a "
            f"string, got {type(text).__name__}", origin=origin, raw=record,
            transcript_id=transcript_id)
    if text is None and not turns:
        return validation_failure(
            "MissingText", f"transcript {transcript_id!r}{where} has neither {mapping.text_field!r}"
            f" nor {mapping.turns_field!r}; set --text-field to the field that holds the text",
            origin=origin, raw=record, transcript_id=transcript_id)
    own = (mapping.id_field, mapping.text_field, mapping.turns_field)
    if mapping.metadata_fields is None:
        # A "metadata" object is the documented place for pass-through fields; any other
        # top-level field rides along beside its entries.
        nested = record.get(METADATA_FIELD)
        metadata = dict(nested) if isinstance(nested, Mapping) else {}
        metadata.update((k, v) for k, v in record.items()
                        if k not in own and not (k == METADATA_FIELD and isinstance(v, Mapping)))
    else:
        metadata = {k: record[k] for k in mapping.metadata_fields if k in record}
    # Formats without nulls (CSV) leave the text cell empty when the call is given as turns.
    if turns and (text is None or not text.strip()):
        text = render_turns(turns)
    return Transcript(id=transcript_id, text=text,
                      metadata=metadata, turns=turns, origin=origin)


def validate_transcript(transcript: Transcript, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
                        ) -> Failure | None:
    """The reason ``transcript`` cannot be summarized, or None when it is fine."""
    where = _where(transcript.origin)
    if not isinstance(transcript.id, str) or not transcript.id.strip():
        return validation_failure(
            "MissingId", f"transcript{where} has an empty id; every transcript needs a unique id",
            origin=transcript.origin, raw=transcript.text)
    if not isinstance(transcript.text, str) or not transcript.text.strip():
        return validation_failure(
            "EmptyText",
            f"transcript {transcript.id!r}{where} has empty text; nothing to summarize",
            origin=transcript.origin, raw=transcript.text, transcript_id=transcript.id)
    if len(transcript.text) > max_text_chars:
        return validation_failure(
            "TextTooLong",
            f"transcript {transcript.id!r}{where} has {len(transcript.text)} characters, over the "
            f"limit of {max_text_chars}; split the call or raise --max-text-chars",
            origin=transcript.origin, raw=transcript.text, transcript_id=transcript.id)
    return None


def origin_sort_key(origin: str | None) -> tuple[int, str, int]:
    """Orders origins by file, then numerically by line/record ("f:9" before "f:10").

    Transcripts without an origin (rows fed in from another PCollection) sort last.
    """
    if origin is None:
        return (1, "", 0)
    match = _ORIGIN_NUMBER.match(origin)
    assert match is not None  # the pattern matches every string
    path, number = match.group(1), match.group(2)
    return (0, path, int(number) if number is not None else -1)


def pick_unique(transcripts: Iterable[Transcript]) -> tuple[Transcript, list[Failure]]:
    """Keeps the first of transcripts sharing one id (by origin order) and rejects the others.

    Ties (same origin, e.g. rows without one) fall back to the text so the choice is the same on
    every run and every runner, whatever order the GroupByKey delivered them in.
    """
    ordered = sorted(transcripts, key=lambda t: (origin_sort_key(t.origin), t.text))
    if not ordered:
        raise ValueError("pick_unique needs at least one transcript")
    kept, duplicates = ordered[0], ordered[1:]
    failures = [
        validation_failure(
            "DuplicateTranscriptId",
            f"transcript id {dup.id!r} at {dup.origin or 'an input row'} duplicates the one kept "
            f"from {kept.origin or 'an input row'}; ids must be unique per run: fix the source or "
            f"choose another --id-field",
            origin=dup.origin, raw=dup.text, transcript_id=dup.id)
        for dup in duplicates
    ]
    return kept, failures
