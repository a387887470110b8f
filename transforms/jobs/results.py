"""Read Bedrock batch job output (``*.jsonl.out`` + ``manifest.json.out``) into Summary / Failure.

Pure: the harvest DoFn feeds it lines it read from storage. Output order is not guaranteed, so
everything joins on recordId against the index sidecar written with the shard.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Iterator, Mapping, Protocol

from transforms.core.model import (BatchRecord, Failure, Summary, encode_jsonl_line,
                                   jsonl_line_size, loads_json, metadata_json, truncate_raw, utcnow)
from transforms.insights.answers import AnswerError, read_answer
from transforms.insights.prompts import is_repair, repair_note
from transforms.prepare.families import ParsedOutput, UnparseableOutput, family_for, response_reader

OUTPUT_SUFFIX = ".out"
MANIFEST_NAME = "manifest.json.out"


@dataclass(frozen=True)
class IndexEntry:
    """One line of a shard's index sidecar: what joins an output line back to its transcript.

    Args:
        record_id: The Bedrock ``recordId``.
        transcript_id: The id of the transcript the record summarizes.
        metadata: The transcript's metadata, carried to the output row.
        attempt: 1 for the first submission, +1 per retry.
    """

    record_id: str
    transcript_id: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    attempt: int = 1


def index_line(record: BatchRecord) -> str:
    """The record's line of its shard's index sidecar (JSON with a newline).

    Args:
        record: The record written to the shard.
    """
    return json.dumps({"recordId": record.record_id, "transcriptId": record.transcript_id,
                       "metadata": dict(record.metadata), "attempt": record.attempt},
                      ensure_ascii=False, separators=(",", ":"), default=str) + "\n"


def parse_index_line(line: str) -> IndexEntry:
    """An index sidecar line (see ``index_line``) read back.

    Args:
        line: One line of an index sidecar.
    """
    data = loads_json(line)
    return IndexEntry(data["recordId"], data["transcriptId"], data.get("metadata") or {},
                      int(data.get("attempt", 1)))


@dataclass(frozen=True)
class Manifest:
    """A job's ``manifest.json.out``: Bedrock's own record and token counts.

    Args:
        total: ``totalRecordCount``.
        processed: ``processedRecordCount``.
        success: ``successRecordCount``.
        error: ``errorRecordCount``.
        input_tokens: ``inputTokenCount``.
        output_tokens: ``outputTokenCount``.
    """

    total: int = 0
    processed: int = 0
    success: int = 0
    error: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @classmethod
    def parse(cls, text: str) -> "Manifest":
        d = loads_json(text)
        return cls(d.get("totalRecordCount", 0), d.get("processedRecordCount", 0),
                   d.get("successRecordCount", 0), d.get("errorRecordCount", 0),
                   d.get("inputTokenCount", 0), d.get("outputTokenCount", 0))


@dataclass(frozen=True)
class JobContext:
    """What a result row needs to know about the job that produced it.

    Args:
        model_id: The job's model id; None when unknown.
        job_arn: The job's ARN; None when unknown.
        job_status: The job's final status (``NotCreated`` when its creation was refused).
        job_message: The job's status message, if any.
        invocation_type: ``InvokeModel`` or ``Converse``.
        window_start: Start of the window the job's records came from.
        window_end: End of that window.
        max_attempts: Attempts a record may have: 1 + ``--max-record-retries``.
        output_schema: With ``--task insights``, the JSON Schema answers must validate
            against; None for summaries.
    """

    model_id: str | None
    job_arn: str | None
    job_status: str = "Completed"
    job_message: str | None = None
    invocation_type: str = "InvokeModel"
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    max_attempts: int = 3  # 1 + --max-record-retries
    # --task insights: answers must validate against this JSON Schema (None: summaries).
    output_schema: Mapping[str, Any] | None = None


@dataclass
class Harvest:
    """Everything one output file turned into, plus counts for metrics and reconciliation.

    Args:
        summaries: The summary rows.
        failures: The failure rows.
        retries: The records to resubmit in the next round.
        model_errors: Output lines that carry an error instead of a model output.
        others_answered: Answered lines of records this harvest does not emit.
        others_errored: Errored lines of records this harvest does not emit.
        missing: Indexed records with no output line.
        unreadable: Lines that are no JSON record (their records count as unanswered).
        truncated: Answers that stopped at the max-tokens limit.
        input_tokens: Input tokens the answers report.
        output_tokens: Output tokens the answers report.
        repairs: Insights answers resubmitted for repair (also in ``retries``).
    """

    summaries: list[Summary] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    retries: list[BatchRecord] = field(default_factory=list)
    model_errors: int = 0
    # Lines of records the job holds that this harvest does not emit (a rerun's input lacks them):
    # answered / errored, counted only so the job's manifest still reconciles.
    others_answered: int = 0
    others_errored: int = 0
    missing: int = 0
    # Lines that are no JSON record (a torn line): their records count as unanswered.
    unreadable: int = 0
    truncated: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    # Answers that did not validate against the insights schema and were resubmitted (they are
    # in ``retries`` too; counted apart because the job answered them).
    repairs: int = 0

    def merge(self, other: "Harvest") -> None:
        """Add ``other``'s rows and counts to this harvest, in place.

        Args:
            other: Another harvest of the same job.
        """
        self.summaries += other.summaries
        self.failures += other.failures
        self.retries += other.retries
        for name in ("model_errors", "others_answered", "others_errored", "missing", "unreadable",
                     "truncated", "input_tokens", "output_tokens", "repairs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def retriable_record_error(code: str) -> bool:
    """Whether a record's errorCode may go away on another attempt. A 4xx other than timeout
    (408), model error (424) and throttling (429) says the request itself is wrong (400: the model
    input is invalid): sending it again would fail the same way.

    Args:
        code: The record's ``errorCode`` from the output line.
    """
    return not (code.isdigit() and 400 <= int(code) < 500 and int(code) not in (408, 424, 429))


def retry_or_fail(entry: IndexEntry, model_input: Mapping[str, Any] | None, ctx: JobContext,
                  code: str, message: str, stage: str = "model",
                  retriable: bool = True) -> BatchRecord | Failure:
    """A record that got no answer: resubmit while attempts are left, else a Failure row.

    Args:
        entry: The record's index entry.
        model_input: The record's request body; None when unknown (nothing to resubmit).
        ctx: The job, with its attempts.
        code: The failure row's error code.
        message: The failure row's error message.
        stage: The failure row's stage.
        retriable: Whether another attempt may succeed (see ``retriable_record_error``).
    """
    if retriable and model_input is not None and entry.attempt < ctx.max_attempts:
        return BatchRecord(entry.record_id, entry.transcript_id, model_input,
                           jsonl_line_size(entry.record_id, model_input), entry.metadata,
                           entry.attempt + 1)
    return Failure(stage=stage, error_code=code, error_message=message,
                   transcript_id=entry.transcript_id, record_id=entry.record_id,
                   attempt=entry.attempt, job_arn=ctx.job_arn,
                   raw=truncate_raw(model_input) if model_input is not None else None)


class RecordRef(Protocol):
    """What a result row needs of a record: an ``IndexEntry`` (batch) or a ``BatchRecord``
    (on-demand) alike.

    Args:
        record_id, transcript_id, metadata, attempt: As in ``IndexEntry``.
    """

    record_id: str
    transcript_id: str
    metadata: Mapping[str, Any]
    attempt: int


def repair_or_fail(record: RecordRef, model_input: Any, answer: str, error: str, *,
                   model_id: str | None, invocation_type: str, max_attempts: int,
                   job_arn: str | None) -> BatchRecord | Failure:
    """An answer that is not schema-valid insights: resubmitted ONCE, in the next round, with
    the error added to the conversation; a second invalid answer (or no round left) is a
    SchemaViolation failure row holding the raw answer.

    Args:
        record: the record that got the answer (its index entry, or the record itself).
        model_input: the request that got the answer.
        answer: the model's raw answer text.
        error: why it is not valid.
        model_id: the model that answered; None when unknown (nothing to repair with).
        invocation_type: ``InvokeModel`` or ``Converse``.
        max_attempts: attempts a record may have: 1 + ``max_record_retries``.
        job_arn: the batch job that answered; None on-demand.
    """
    repaired_before = isinstance(model_input, Mapping) and is_repair(model_input)
    if (isinstance(model_input, Mapping) and not repaired_before and model_id is not None
            and record.attempt < max_attempts):
        family = family_for(model_id, invocation_type)
        repair = family.build_repair_request(model_input, answer, repair_note(error))
        line = encode_jsonl_line(record.record_id, repair)
        return BatchRecord(record.record_id, record.transcript_id, repair,
                           len(line.encode("utf-8")), record.metadata, record.attempt + 1)
    after = " after one repair round" if repaired_before else ""
    return Failure(stage="parse", error_code="SchemaViolation",
                   error_message=f"the answer is no valid insights object{after}: {error}",
                   transcript_id=record.transcript_id, record_id=record.record_id,
                   attempt=record.attempt, job_arn=job_arn, raw=truncate_raw(answer))


def answer_problem(error: AnswerError, parsed: ParsedOutput) -> str:
    """Why an answer is no valid insights object, with the likely fix when it was cut short.

    Args:
        error: what reading the answer found.
        parsed: the parsed model output (its stop reason tells a cut answer).
    """
    if parsed.truncated:
        return (f"{error} (the answer stopped at the output token limit; raise --max-tokens "
                f"so the whole object fits)")
    return str(error)


def answer_text(parsed: ParsedOutput) -> str:
    """The model's raw answer: its text, or its tool-use input as JSON when it has no text.

    Args:
        parsed: the parsed model output.
    """
    if not parsed.text and parsed.tool_input is not None:
        return json.dumps(parsed.tool_input, ensure_ascii=False)
    return parsed.text


def _add(harvest: Harvest, outcome: BatchRecord | Failure) -> None:
    (harvest.retries if isinstance(outcome, BatchRecord) else harvest.failures).append(outcome)


def harvest_lines(output_lines: Iterable[str], index: Mapping[str, IndexEntry] | None,
                  ctx: JobContext, others: Collection[str] = ()) -> tuple[Harvest, set[str]]:
    """Turn output lines into rows. Returns the harvest and the recordIds seen.

    Without an index (a job this pipeline did not submit) the recordId stands in for the
    transcript id, nothing is retried, and a line that is no JSON record is a failure row of its
    own. With an index such a line is only counted (``unreadable``): the record it held is not
    seen, so ``unanswered`` retries or fails it, and it gets one row, not two.
    ``others``: recordIds the job holds that are not to be emitted (not in ``index``); their
    lines are only counted.

    Each line is parsed (``_parse_line``), routed to its index entry (``_route``), and then
    becomes a retry or failure (``_record_error``, ``_answer``) or a summary row
    (``_summary_row``).

    Args:
        output_lines: The lines of one ``.jsonl.out`` file.
        index: The job's index entries by recordId; None for a job this pipeline did not submit.
        ctx: The job that produced the lines.
        others: RecordIds the job holds that this harvest does not emit.
    """
    harvest, seen = Harvest(), set()
    if index is None:
        ctx = dataclasses.replace(ctx, max_attempts=1)
    # Looked up once here rather than on every line: this loop runs once per output record.
    read_response = response_reader(ctx.model_id, ctx.invocation_type)
    for number, line in enumerate(output_lines, 1):
        if not line or line.isspace():  # what strip() would empty, without copying the line
            continue
        data = _parse_line(line, number, index, ctx, harvest)
        if data is None:
            continue
        entry = _route(data, line, index, others, ctx, harvest)
        if entry is None:
            continue
        seen.add(entry.record_id)
        if data.get("error") is not None or "modelOutput" not in data:
            _add(harvest, _record_error(data, entry, ctx, harvest))
            continue
        try:
            parsed = read_response(data["modelOutput"])
        except UnparseableOutput as exc:
            harvest.failures.append(Failure(stage="parse", error_code="UnparseableOutput",
                                            error_message=str(exc), transcript_id=entry.transcript_id,
                                            record_id=entry.record_id, attempt=entry.attempt,
                                            job_arn=ctx.job_arn, raw=truncate_raw(data["modelOutput"])))
            continue
        harvest.truncated += parsed.truncated
        harvest.input_tokens += parsed.input_tokens or 0
        harvest.output_tokens += parsed.output_tokens or 0
        answer = _answer(parsed, data, entry, ctx, harvest)
        if answer is not None:
            harvest.summaries.append(_summary_row(parsed, entry, ctx, *answer))
    return harvest, seen


def _parse_line(line: str, number: int, index: Mapping[str, IndexEntry] | None,
                ctx: JobContext, harvest: Harvest) -> dict[str, Any] | None:
    """The line's JSON record (with a ``recordId``), or None when it has none: counted as
    ``unreadable`` with an index, else a MalformedOutputLine failure row."""
    try:
        data = loads_json(line)
        data["recordId"] = str(data["recordId"])
        return data
    except (ValueError, KeyError, TypeError) as exc:
        if index is not None:
            harvest.unreadable += 1
        else:
            harvest.failures.append(Failure(stage="parse", error_code="MalformedOutputLine",
                                            error_message=f"output line {number}: {exc}",
                                            job_arn=ctx.job_arn, raw=truncate_raw(line)))
        return None


def _route(data: dict[str, Any], line: str, index: Mapping[str, IndexEntry] | None,
           others: Collection[str], ctx: JobContext, harvest: Harvest) -> IndexEntry | None:
    """The record's index entry; None for a record of ``others`` (only counted) or one the
    index does not hold (an UnknownRecordId failure row)."""
    record_id = data["recordId"]
    if record_id in others:
        failed = data.get("error") is not None or "modelOutput" not in data
        harvest.others_errored += int(failed)
        harvest.others_answered += int(not failed)
        return None
    if index is None:  # a job from elsewhere: nothing to resubmit it with
        return IndexEntry(record_id, record_id, {}, 1)
    entry = index.get(record_id)
    if entry is None:
        harvest.failures.append(Failure(
            stage="parse", error_code="UnknownRecordId",
            error_message=f"recordId {record_id} is not in the job's index",
            record_id=record_id, job_arn=ctx.job_arn, raw=truncate_raw(line)))
    return entry


def _record_error(data: dict[str, Any], entry: IndexEntry, ctx: JobContext,
                  harvest: Harvest) -> BatchRecord | Failure:
    """A record the model answered with an error (or without output): a retry or a failure."""
    harvest.model_errors += 1
    error = data.get("error")
    error = error if isinstance(error, dict) else {"errorMessage": str(error or "no modelOutput")}
    code = str(error.get("errorCode", "ModelError"))
    return retry_or_fail(entry, data.get("modelInput"), ctx, code,
                         str(error.get("errorMessage", "record failed")),
                         retriable=retriable_record_error(code))


def _answer(parsed: ParsedOutput, data: dict[str, Any], entry: IndexEntry, ctx: JobContext,
            harvest: Harvest) -> tuple[str, Any] | None:
    """(summary text, insights or None) of a parsed answer; None when an insights answer is
    not schema-valid, after it went to ``harvest`` as a repair request or a failure row."""
    if ctx.output_schema is None:
        return parsed.text, None
    try:
        found = read_answer(parsed.text, ctx.output_schema, parsed.tool_input)
    except AnswerError as exc:
        outcome = repair_or_fail(entry, data.get("modelInput"), answer_text(parsed),
                                 answer_problem(exc, parsed), model_id=ctx.model_id,
                                 invocation_type=ctx.invocation_type,
                                 max_attempts=ctx.max_attempts, job_arn=ctx.job_arn)
        harvest.repairs += int(isinstance(outcome, BatchRecord))
        _add(harvest, outcome)
        return None
    return found.summary, found.value


def _summary_row(parsed: ParsedOutput, entry: IndexEntry, ctx: JobContext, text: str,
                 insights: Any) -> Summary:
    return Summary.from_fields(
        transcript_id=entry.transcript_id, record_id=entry.record_id,
        model_id=ctx.model_id or "unknown", summary=text, stop_reason=parsed.stop_reason,
        input_tokens=parsed.input_tokens, output_tokens=parsed.output_tokens, job_arn=ctx.job_arn,
        window_start=ctx.window_start, window_end=ctx.window_end, attempt=entry.attempt,
        metadata=metadata_json(entry.metadata), created_at=utcnow(), insights=insights)


def unanswered(index: Mapping[str, IndexEntry], seen: set[str],
               model_inputs: Mapping[str, Mapping[str, Any]], ctx: JobContext) -> Harvest:
    """Records of the index with no output line: retried, or failed with the job's status.

    Args:
        index: The job's index entries by recordId.
        seen: The recordIds that had an output line (from ``harvest_lines``).
        model_inputs: Request bodies by recordId, to resubmit with (see ``read_input_models``).
        ctx: The job.
    """
    harvest = Harvest()
    if ctx.job_status == "NotCreated":
        message = (f"CreateModelInvocationJob refused the job, so it was not sent again: "
                   f"{ctx.job_message}")
    else:
        message = (f"job ended {ctx.job_status} without processing the record"
                   + (f": {ctx.job_message}" if ctx.job_message else ""))
    for record_id, entry in index.items():
        if record_id in seen:
            continue
        harvest.missing += 1
        _add(harvest, retry_or_fail(entry, model_inputs.get(record_id), ctx,
                                    f"Job{ctx.job_status}", message,
                                    stage="submit" if ctx.job_status in ("Failed", "NotCreated")
                                    else "model"))
    return harvest


def read_input_models(lines: Iterable[str], wanted: set[str]) -> dict[str, Mapping[str, Any]]:
    """modelInput of the wanted recordIds from a shard file (only those, to bound memory).

    Args:
        lines: The lines of a shard (batch input) file.
        wanted: The recordIds whose request bodies are needed.
    """
    found: dict[str, Mapping[str, Any]] = {}
    for line in lines:
        if line and not line.isspace():
            data = loads_json(line)
            if data.get("recordId") in wanted:
                found[data["recordId"]] = data["modelInput"]
    return found


def iter_index(lines: Iterable[str]) -> Iterator[IndexEntry]:
    """The entries of an index sidecar; blank lines are skipped.

    Args:
        lines: The sidecar's lines.
    """
    return (parse_index_line(line) for line in lines if line and not line.isspace())
