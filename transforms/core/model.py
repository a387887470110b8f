"""The records that flow through the pipeline, and the one schema definition of the sink rows.

Parquet, Avro and BigQuery schemas are all derived from ``SUMMARY_FIELDS`` and ``FAILURE_FIELDS``
(see ``transforms/sinks/schema.py``), so a column added here reaches every sink.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from json.encoder import c_make_encoder, encode_basestring
from typing import Any, Mapping

import orjson

# Stages a Failure can come from, in pipeline order ("sink": a row the destination rejected).
STAGES = ("source", "validate", "submit", "model", "parse", "sink")

# Raw input kept on a Failure row is cut to this many characters so one bad 50 MB record
# cannot blow up the failures sink.
RAW_LIMIT = 4096


@dataclass(frozen=True)
class Field:
    """One column of a sink row: name, logical type and whether it may be null.

    Args:
        name: The column name.
        type: The logical type: ``string``, ``int64`` or ``timestamp``.
        nullable: Whether the column may hold null.
        description: What the column holds (carried into the sinks' schemas).
    """

    name: str
    type: str  # "string" | "int64" | "timestamp"
    nullable: bool = True
    description: str = ""


SUMMARY_FIELDS: tuple[Field, ...] = (
    Field("transcript_id", "string", False, "Id of the input transcript"),
    Field("record_id", "string", False, "Bedrock batch recordId"),
    Field("model_id", "string", False, "Bedrock model id that produced the summary"),
    Field("summary", "string", False, "Generated summary text"),
    Field("stop_reason", "string", True, "Model stop reason (end_turn, max_tokens, ...)"),
    Field("input_tokens", "int64", True, "Input tokens billed"),
    Field("output_tokens", "int64", True, "Output tokens billed"),
    Field("job_arn", "string", True, "Batch job that produced the record"),
    Field("window_start", "timestamp", True, "Start of the window the record was submitted in"),
    Field("window_end", "timestamp", True, "End of the window the record was submitted in"),
    Field("attempt", "int64", False, "1 for the first submission, +1 per retry"),
    Field("metadata", "string", True, "Transcript metadata as a JSON object string"),
    Field("created_at", "timestamp", False, "When the row was produced"),
)

FAILURE_FIELDS: tuple[Field, ...] = (
    Field("transcript_id", "string", True, "Id of the input transcript, when known"),
    Field("record_id", "string", True, "Bedrock batch recordId, when assigned"),
    Field("stage", "string", False, "source | validate | submit | model | parse | sink"),
    Field("error_code", "string", False, "Machine-readable reason"),
    Field("error_message", "string", False, "Human-readable reason"),
    Field("attempt", "int64", False, "Attempts made before giving up"),
    Field("job_arn", "string", True, "Batch job involved, if any"),
    Field("raw", "string", True, f"Offending input, cut to {RAW_LIMIT} characters"),
    Field("origin", "string", True, "Where the input came from (file:line), when known"),
    Field("created_at", "timestamp", False, "When the row was produced"),
)


def utcnow() -> dt.datetime:
    """The current time as a timezone-aware UTC datetime (the default ``created_at``)."""
    return dt.datetime.now(dt.timezone.utc)


def encodable(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 encoder accepts) written as ``\\ud800``-style
    escapes, so a Failure row can always be written, whatever input it describes.

    Args:
        text: The text to make encodable.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def truncate_raw(value: Any) -> str | None:
    """Render offending input as text, bounded by RAW_LIMIT. Never raises: raw input may be
    anything a reader produced (undecodable bytes, lone surrogates, nesting too deep to render).

    Args:
        value: The offending input: bytes, text or any JSON-like value; None gives None.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        text = value[: RAW_LIMIT * 4].decode("utf-8", errors="backslashreplace")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except Exception as err:  # noqa: BLE001 - rendering must never fail the failure row
            text = f"<{type(value).__name__} that cannot be shown: {type(err).__name__}>"
    text = text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "...[truncated]"
    return encodable(text)


@dataclass(frozen=True)
class Turn:
    """One speaker turn of a transcript.

    Args:
        speaker: Who spoke (a label such as ``agent`` or ``spk_0``).
        text: What was said.
        start: Start time of the turn in seconds, when known.
        end: End time of the turn in seconds, when known.
    """

    speaker: str
    text: str
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Transcript:
    """A call transcript. ``text`` is always set; ``turns`` keeps speaker structure when known.

    Args:
        id: The transcript's id.
        text: The whole transcript as text.
        metadata: Input fields carried through to the output rows.
        turns: The speaker turns, when the input has them.
        origin: Where it was read from (file:line), for Failure rows.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    turns: tuple[Turn, ...] = ()
    origin: str | None = None  # file:line it was read from, for Failure rows


@dataclass(frozen=True)
class BatchRecord:
    """One line of a Bedrock batch input file, plus what is needed to join the output back.

    Args:
        record_id: The Bedrock ``recordId`` of the line.
        transcript_id: The id of the transcript the record summarizes.
        model_input: The request body of the model family.
        size_bytes: Length of the encoded JSONL line, newline included.
        metadata: The transcript's metadata, carried to the output row.
        attempt: 1 for the first submission, +1 per retry.
    """

    record_id: str
    transcript_id: str
    model_input: Mapping[str, Any]
    size_bytes: int  # length of the encoded JSONL line including the newline
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1

    def jsonl_line(self) -> str:
        """The record's line of a batch input file (see ``encode_jsonl_line``)."""
        return encode_jsonl_line(self.record_id, self.model_input)


def encode_jsonl_bytes(record_id: str, model_input: Mapping[str, Any]) -> bytes:
    """The exact line written to a batch input file, as UTF-8 bytes with its newline.

    Compact JSON with non-ASCII characters written as themselves: the same bytes as
    ``json.dumps(..., ensure_ascii=False, separators=(",", ":"))`` but for floats under 1e-4,
    which orjson writes without an exponent's leading zero (``1e-5``, not ``1e-05``). orjson
    encodes several times faster than the standard library, and this runs once per record.

    Args:
        record_id: The record's Bedrock ``recordId``.
        model_input: The request body of the record's model family.

    Raises:
        TypeError: a value JSON cannot hold, or a string with a lone surrogate (validation
            refuses those before a record is built).
    """
    return orjson.dumps({"recordId": record_id, "modelInput": model_input},
                        default=_plain, option=orjson.OPT_APPEND_NEWLINE)


def _plain(value: Any) -> Any:
    # orjson writes dict subclasses only; another mapping (a read-only one from a coder) is
    # written as the dict it holds. Anything else is refused, as json.dumps refuses it.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def encode_jsonl_line(record_id: str, model_input: Mapping[str, Any]) -> str:
    """The line of ``encode_jsonl_bytes`` as text, for writers of text files.

    Args:
        record_id: The record's Bedrock ``recordId``.
        model_input: The request body of the record's model family.
    """
    return encode_jsonl_bytes(record_id, model_input).decode("utf-8")


def jsonl_line_size(record_id: str, model_input: Mapping[str, Any]) -> int:
    """Bytes of the record's batch input line, newline included (what the quotas count).

    Args:
        record_id: The record's Bedrock ``recordId``.
        model_input: The request body of the record's model family.
    """
    return len(encode_jsonl_bytes(record_id, model_input))


def loads_json(text: str | bytes) -> Any:
    """Parse one JSON document with orjson, falling back to the standard library for what
    orjson refuses but Python's ``json`` reads (a lone surrogate escape such as ``"\\ud800"``,
    ``NaN``, ``1e400``), so such a line reads as it always did.

    For lines the pipeline or Bedrock wrote (output lines, index sidecars): orjson reads an
    integer beyond 64 bits as a float, and input metadata never holds one (validation refuses
    it), while input records go through the standard library, which keeps any integer exact.

    Args:
        text: One JSON document.

    Raises:
        ValueError: ``text`` is no JSON (``json.JSONDecodeError``).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


@dataclass(frozen=True)
class Summary:
    """One summarized transcript: a row of the summaries sink (see ``SUMMARY_FIELDS``).

    Args:
        transcript_id: Id of the input transcript.
        record_id: The Bedrock batch ``recordId``.
        model_id: The Bedrock model id that produced the summary.
        summary: The generated summary text.
        stop_reason: The model's stop reason (``end_turn``, ``max_tokens``, ...).
        input_tokens: Input tokens billed.
        output_tokens: Output tokens billed.
        job_arn: The batch job that produced the record.
        window_start: Start of the window the record was submitted in.
        window_end: End of the window the record was submitted in.
        attempt: 1 for the first submission, +1 per retry.
        metadata: The transcript metadata as a JSON object string.
        created_at: When the row was produced.
        insights: The schema-valid JSON object with ``--task insights``; None for
            ``--task summary``.
    """

    transcript_id: str
    record_id: str
    model_id: str
    summary: str
    stop_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    job_arn: str | None = None
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    attempt: int = 1
    metadata: str | None = None  # JSON object string
    created_at: dt.datetime = field(default_factory=utcnow)
    # The schema-valid JSON object with --task insights (``summary`` holds its "summary"); None
    # for --task summary.
    insights: Mapping[str, Any] | None = None

    @classmethod
    def from_fields(cls, **values: Any) -> "Summary":
        """The row ``Summary(**values)`` builds, at about a third of the cost, for building one
        row per output line; ``values`` names every field, ``created_at`` and ``insights`` too.

        Args:
            values: Each field of the row, by name.

        Raises:
            TypeError: ``values`` leaves out a field or names one that does not exist.
        """
        if values.keys() != _SUMMARY_FIELD_NAMES:
            raise TypeError(f"Summary.from_fields needs exactly the fields "
                            f"{sorted(_SUMMARY_FIELD_NAMES)}, got {sorted(values)}")
        # The frozen dataclass __init__ sets each field with its own object.__setattr__ call;
        # filling the new instance's attribute dict at once makes the same row.
        row = object.__new__(cls)
        row.__dict__.update(values)
        return row

    def to_row(self) -> dict[str, Any]:
        """The sink row: the SUMMARY_FIELDS columns, plus ``insights`` for an insights row (the
        sinks type that column from the task's JSON Schema). A summary row has no such key,
        so it is the row it always was."""
        row = dataclasses.asdict(self)
        if row["insights"] is None:
            del row["insights"]
        return row


_SUMMARY_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Summary))


@dataclass(frozen=True)
class Failure:
    """A record or input that produced no summary, and why: a row of the failures sink.

    Args:
        stage: Where it failed: one of ``STAGES``.
        error_code: Machine-readable reason.
        error_message: Human-readable reason.
        transcript_id: Id of the input transcript, when known.
        record_id: The Bedrock batch ``recordId``, when assigned.
        attempt: Attempts made before giving up.
        job_arn: The batch job involved, if any.
        raw: The offending input, cut to ``RAW_LIMIT`` characters (see ``truncate_raw``).
        origin: Where the input came from (file:line), when known.
        created_at: When the row was produced.

    Raises:
        ValueError: ``stage`` is not one of ``STAGES``.
    """

    stage: str
    error_code: str
    error_message: str
    transcript_id: str | None = None
    record_id: str | None = None
    attempt: int = 1
    job_arn: str | None = None
    raw: str | None = None
    origin: str | None = None
    created_at: dt.datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"Failure stage {self.stage!r} is not one of {STAGES}")
        # A failure often describes input no encoder accepts (an id with a lone surrogate): its
        # text columns are escaped here, once, so every sink can write every failure row.
        for name in ("transcript_id", "record_id", "error_message", "job_arn", "raw", "origin"):
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, encodable(value))

    def to_row(self) -> dict[str, Any]:
        """The sink row: the FAILURE_FIELDS columns as a dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class JobSpec:
    """A batch job to submit: names are deterministic so a retried submission is idempotent.

    Args:
        job_name: The Bedrock job name.
        client_request_token: The idempotency token of the job's creation.
        model_id: The Bedrock model id the job runs.
        input_s3_uri: The prefix holding this job's .jsonl files (and nothing else).
        output_s3_uri: Where Bedrock writes the job's output.
        record_count: Records in the job's input.
        input_bytes: Bytes of the job's input.
        window_start: Start of the window the job's records came from.
        window_end: End of that window.
        attempt: 1 for the first submission, +1 per retry.
        record_ids: The only recordIds to harvest from the job, when an earlier run created it
            with records this input lacks; None: all of its records.
    """

    job_name: str
    client_request_token: str
    model_id: str
    input_s3_uri: str  # prefix holding this job's .jsonl files (and nothing else)
    output_s3_uri: str
    record_count: int
    input_bytes: int
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    attempt: int = 1
    # Set when an earlier run created the job with records this input lacks: only these recordIds
    # are harvested from it (None: all of its records).
    record_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class JobBatch:
    """The jobs one window produced for one model: submitted and awaited together.

    Args:
        model_id: The Bedrock model id of the jobs.
        specs: The jobs.
        poll_interval_seconds: Seconds between status checks while awaiting them.
    """

    model_id: str
    specs: tuple[JobSpec, ...]
    poll_interval_seconds: int


def metadata_json(metadata: Mapping[str, Any] | None) -> str | None:
    """Metadata as the JSON string stored in the ``metadata`` column (sorted keys: stable output).

    Args:
        metadata: The transcript's metadata; empty or None gives None.
    """
    if not metadata:
        return None
    if c_make_encoder is None:  # an interpreter without the C accelerator of json
        return _METADATA_ENCODER.encode(metadata)
    # The C encoder that _METADATA_ENCODER.encode builds on every call, with the same settings
    # and a fresh circular-reference memo, without the Python set-up around it (this runs once
    # per summary row, and for small metadata that set-up is most of the time).
    return "".join(c_make_encoder({}, str, encode_basestring, None, ": ", ", ", True, False,
                                  True)(metadata, 0))


# What json.dumps(sort_keys=True, default=str, ensure_ascii=False) would build on every call.
_METADATA_ENCODER = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False)
