"""Turn input records into valid Transcripts (pure: no Beam import).

A record (a dict from any format) is mapped to a Transcript by the field options, then checked:
id present and usable, text or turns present, text not empty and not over the size limit, id
unique. Every rejection is a ``Failure`` with stage ``validate``, the record's origin and the
offending input, so a bad record is reported and the pipeline goes on.
"""
from __future__ import annotations

import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Tuple

from transforms.core.model import Failure, Transcript, Turn, truncate_raw

DEFAULT_MAX_TEXT_CHARS = 400_000
METADATA_FIELD = "metadata"
# Ids are Kafka keys, log words and BigQuery join keys: a longer one is a mapping mistake (the
# text field given as --id-field), not an id.
MAX_ID_CHARS = 1024
# Deeper metadata is refused before any JSON encoder (the S3 index, the metadata column) meets it.
MAX_METADATA_DEPTH = 32
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_ORIGIN_NUMBER = re.compile(r"^(.*?)(?:[:#](\d+))?$", re.DOTALL)


class InvalidId(ValueError):
    """A transcript id that cannot be used as a string key (null, list, dict, float, bool)."""


def coerce_id(value: Any) -> str:
    """The transcript id as a string: strings as they are, integers rendered, anything else refused.

    Booleans and floats are refused because their rendering ("True", "1.0") is never the id the
    data owner meant; an empty id is refused because it cannot be joined back.

    Args:
        value: The id field's value as read.

    Raises:
        InvalidId: the value is empty, or neither a string nor an integer.
    """
    if isinstance(value, str):
        if not value.strip():
            raise InvalidId("id is empty")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidId(f"id must be a string or an integer, got {type(value).__name__} {value!r:.80}")


def source_failure(code: str, message: str, *, origin: str | None, raw: Any = None) -> Failure:
    """A Failure of stage ``source``: input that could not be read as a record.

    Args:
        code: The machine-readable reason (``error_code``).
        message: The human-readable reason, naming the input and the fix.
        origin: Where the input came from (file, file:line or file#record), when known.
        raw: The offending input; kept cut to ``RAW_LIMIT`` characters.
    """
    return Failure(stage="source", error_code=code, error_message=message,
                   raw=truncate_raw(raw), origin=origin)


def validation_failure(code: str, message: str, *, origin: str | None, raw: Any,
                       transcript_id: str | None = None) -> Failure:
    """A Failure of stage ``validate``: a record that was read but cannot be summarized.

    Args:
        code: The machine-readable reason (``error_code``).
        message: The human-readable reason, naming the input and the fix.
        origin: Where the input came from, when known.
        raw: The offending input; kept cut to ``RAW_LIMIT`` characters.
        transcript_id: The transcript's id, when it has a usable one.
    """
    return Failure(stage="validate", error_code=code, error_message=message,
                   transcript_id=transcript_id, raw=truncate_raw(raw), origin=origin)


def _where(origin: str | None) -> str:
    return f" at {origin}" if origin else ""


@dataclass(frozen=True)
class FieldMapping:
    """Which input fields hold the id, the text and the turns; which ones become metadata.

    ``metadata_fields`` None keeps every other field as metadata.

    Args:
        id_field: The field holding the transcript id.
        text_field: The field holding the transcript text.
        turns_field: The field holding the speaker turns.
        metadata_fields: The fields kept as metadata; None keeps every other field.
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
    """Turns as the "Speaker: text" lines the model sees.

    Args:
        turns: The speaker turns.
    """
    return "\n".join(f"{turn.speaker}: {turn.text}" for turn in turns)


def _seconds(value: Any, index: int, which: str) -> float | None:
    """A turn's start or end as seconds; None when not given. ValueError names the turn."""
    if value is None or value == "":
        return None
    what = f"turn {index} {which}"
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (OverflowError, TypeError):
        raise ValueError(f"{what} must be a number of seconds, got {value!r:.40}") from None
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be a finite number of seconds, got {value!r:.40}")
    return seconds


def parse_turns(value: Any) -> tuple[Turn, ...]:
    """A ``turns`` value (list of {speaker, text, start?, end?}, or that list as a JSON string,
    as CSV cells hold it) as Turn tuples. Raises ValueError naming the bad turn.

    Args:
        value: The turns field's value as read.
    """
    if isinstance(value, str):
        value = json.loads(value) if value.strip() else []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"turns must be a list of {{speaker, text}} objects, got "
                         f"{type(value).__name__}")
    turns = []
    # Every input record runs this once per turn: plain dicts skip the slow generic Mapping
    # check, and absent times skip _seconds.
    for index, entry in enumerate(value):
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise ValueError(f"turn {index} must be an object with a string 'text'")
        text = entry.get("text")
        if not isinstance(text, str):
            raise ValueError(f"turn {index} must be an object with a string 'text'")
        speaker, start, end = entry.get("speaker"), entry.get("start"), entry.get("end")
        turns.append(Turn(str(speaker) if speaker not in (None, "") else "Unknown", text,
                          None if start is None else _seconds(start, index, "start"),
                          None if end is None else _seconds(end, index, "end")))
    return tuple(turns)


def record_to_transcript(record: Mapping[str, Any], mapping: FieldMapping,
                         origin: str | None) -> Transcript | Failure:
    """One input record (a dict) as a Transcript, or the validate Failure saying what is wrong.

    Args:
        record: The input record.
        mapping: Which fields hold the id, text, turns and metadata.
        origin: Where the record came from (file:line or file#record), when known.
    """
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


def has_lone_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate (e.g. from a JSON ``"\\ud800"`` escape), which
    no UTF-8 encoder (JSONL, Parquet, Avro, Kafka, BigQuery) accepts.

    Args:
        text: The text to check.
    """
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _control_character(text: str) -> str | None:
    for char in text:
        if unicodedata.category(char) == "Cc":
            return char
    return None


def metadata_problem(value: Any, path: str = METADATA_FIELD, depth: int = 0
                     ) -> tuple[str, str] | None:
    """(error code, what is wrong) for metadata some sink could not encode faithfully, or None.

    Refused: nesting deeper than MAX_METADATA_DEPTH (TooDeep), lone surrogates (InvalidUnicode),
    non-string keys, integers outside int64 and NaN/Infinity (InvalidMetadata: JSON has no NaN,
    and BigQuery or Spark readers of the metadata JSON would round big integers silently).
    Other scalars (datetimes, decimals, bytes) are written as their str() and pass.

    Args:
        value: The metadata value (checked recursively).
        path: Where ``value`` sits in the metadata, for the message.
        depth: How deep ``value`` is nested (0 at the top).
    """
    if depth > MAX_METADATA_DEPTH:
        return "TooDeep", f"{path} is nested over {MAX_METADATA_DEPTH} levels deep"
    if isinstance(value, str):
        return ("InvalidUnicode", f"{path} holds a lone surrogate (invalid Unicode)") \
            if has_lone_surrogate(value) else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return "InvalidMetadata", (f"{path} is an integer outside the 64-bit range, which "
                                       f"JSON readers round; send it as a string")
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (
            "InvalidMetadata", f"{path} is {value}, which JSON cannot hold; send null or a string")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return "InvalidMetadata", (f"{path} has a {type(key).__name__} key {key!r:.40}; "
                                           f"metadata keys must be strings")
            if has_lone_surrogate(key):
                return "InvalidUnicode", f"a key of {path} holds a lone surrogate (invalid Unicode)"
            problem = metadata_problem(item, f"{path}.{key[:40]}", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = metadata_problem(item, f"{path}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    return metadata_problem(str(value), path, depth)


def _id_problem(transcript_id: str) -> tuple[str, str] | None:
    if has_lone_surrogate(transcript_id):
        return "InvalidUnicode", "holds a lone surrogate (invalid Unicode)"
    if len(transcript_id) > MAX_ID_CHARS:
        return "IdTooLong", (f"is {len(transcript_id)} characters long, over {MAX_ID_CHARS}; "
                             f"check --id-field names the id")
    control = _control_character(transcript_id)
    if control is not None:
        return "InvalidId", f"holds the control character {control!r}; ids must be printable"
    return None


def _text_problem(transcript: Transcript) -> str | None:
    if has_lone_surrogate(transcript.text):
        return "its text"
    for index, turn in enumerate(transcript.turns):
        if has_lone_surrogate(turn.speaker) or has_lone_surrogate(turn.text):
            return f"turn {index}"
    return None


def validate_transcript(transcript: Transcript, max_text_chars: int = DEFAULT_MAX_TEXT_CHARS
                        ) -> Failure | None:
    """The reason ``transcript`` cannot be summarized, or None when it is fine.

    Besides the content checks, anything no sink could encode (see ``metadata_problem``,
    ``_id_problem``) is refused here, so no encoder downstream ever meets it.

    Args:
        transcript: The transcript to check.
        max_text_chars: The longest text accepted.
    """
    where = _where(transcript.origin)
    if not isinstance(transcript.id, str) or not transcript.id.strip():
        return validation_failure(
            "MissingId", f"transcript{where} has an empty id; every transcript needs a unique id",
            origin=transcript.origin, raw=transcript.text)
    id_problem = _id_problem(transcript.id)
    if id_problem:
        code, what = id_problem
        return validation_failure(
            code, f"transcript id {transcript.id[:80]!r}{where} {what}", origin=transcript.origin,
            raw=transcript.text, transcript_id=transcript.id[:MAX_ID_CHARS])
    if isinstance(transcript.text, str):
        bad_text = _text_problem(transcript)
        if bad_text:
            return validation_failure(
                "InvalidUnicode", f"transcript {transcript.id!r}{where}: {bad_text} holds a lone "
                f"surrogate (invalid Unicode); fix the escape in the source",
                origin=transcript.origin, raw=transcript.text, transcript_id=transcript.id)
    meta_problem = metadata_problem(transcript.metadata)
    if meta_problem:
        code, what = meta_problem
        return validation_failure(
            code, f"transcript {transcript.id!r}{where}: {what}", origin=transcript.origin,
            raw=transcript.text, transcript_id=transcript.id)
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

    Args:
        origin: A transcript's origin (``file``, ``file:line`` or ``file#record``), or None.
    """
    if origin is None:
        return (1, "", 0)
    match = _ORIGIN_NUMBER.match(origin)
    assert match is not None  # the pattern matches every string
    path, number = match.group(1), match.group(2)
    return (0, path, int(number) if number is not None else -1)


def dedup_key(transcript_id: str) -> str:
    """The key ids are deduplicated by: NFC, so ids that differ only by Unicode normalization
    (e.g. "café" typed precomposed or as e + combining accent) count as one id.

    Args:
        transcript_id: The transcript's id.
    """
    return unicodedata.normalize("NFC", transcript_id)


def pick_unique(transcripts: Iterable[Transcript]) -> tuple[Transcript, list[Failure]]:
    """Keeps the first of transcripts sharing one id (by origin order) and rejects the others.

    Ties (same origin, e.g. rows without one) fall back to the id and text so the choice is the
    same on every run and every runner, whatever order the GroupByKey delivered them in.

    Args:
        transcripts: Transcripts sharing one id (at least one).

    Returns:
        The kept transcript, and a DuplicateTranscriptId failure for each other one.
    """
    ordered = sorted(transcripts, key=lambda t: (origin_sort_key(t.origin), t.id, t.text))
    if not ordered:
        raise ValueError("pick_unique needs at least one transcript")
    kept, duplicates = ordered[0], ordered[1:]
    return kept, [duplicate_failure(dup, kept.origin, kept.id) for dup in duplicates]


def duplicate_failure(dup: Transcript, kept_origin: str | None, kept_id: str) -> Failure:
    """The DuplicateTranscriptId failure of ``dup``, whose id a transcript kept from
    ``kept_origin`` has (``kept_id``: its id, equal to ``dup``'s up to Unicode normalization).

    Args:
        dup: The transcript rejected.
        kept_origin: The origin of the transcript kept.
        kept_id: The id of the transcript kept.
    """
    return validation_failure(
        "DuplicateTranscriptId",
        f"transcript id {dup.id!r} at {dup.origin or 'an input row'} duplicates the one "
        f"kept from {kept_origin or 'an input row'}"
        f"{'' if dup.id == kept_id else f' ({kept_id!r}, equal up to Unicode normalization)'}"
        f"; ids must be unique per run: fix the source or choose another --id-field",
        origin=dup.origin, raw=dup.text, transcript_id=dup.id)


# What the plan of a file input keeps of a transcript (transforms/sighting_plan.py):
# (origin, transcript id, recordId or None when its record cannot be built, JSONL line size).
Sighting = Tuple[str, str, Optional[str], int]


def first_sighting(sightings: Iterable[Sighting]) -> tuple[Sighting, list[Sighting]]:
    """``pick_unique`` for transcripts known by their sightings: the first by origin is kept.

    A file read gives each record its own origin, so ties cannot decide; two sightings of one
    origin mean the files gave one record twice.

    Args:
        sightings: Sightings of transcripts sharing one id (at least one).

    Raises:
        ValueError: two sightings share an origin.
    """
    ordered = sorted(sightings, key=lambda s: (origin_sort_key(s[0]), s[1]))
    if not ordered:
        raise ValueError("first_sighting needs at least one sighting")
    for before, after in zip(ordered, ordered[1:]):
        if before[0] == after[0]:
            raise ValueError(f"two records were read from {before[0]}: each record of a file "
                             f"input must have an origin of its own")
    return ordered[0], ordered[1:]
