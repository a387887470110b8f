"""Beam transforms that read transcripts from files or from any PCollection of rows.

Thin glue over ``transforms.parsing`` (decoding each format) and ``transforms.validation``
(mapping and checking records). Every transform here returns a dict with two PCollections:
``"transcripts"`` (Transcript) and ``"failures"`` (Failure), so bad input is reported as rows and
the pipeline goes on.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.fileio import EmptyMatchTreatment
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import MAX_TIMESTAMP

from transforms.model import Failure, Transcript
from transforms.parsing import (FORMATS, detect_format, read_file, row_to_record,
                                source_failure, unknown_format_failure)
from transforms.validation import (DEFAULT_MAX_TEXT_CHARS, FieldMapping, dedup_key, pick_unique,
                                   record_to_transcript, validate_transcript)

TRANSCRIPTS = "transcripts"
FAILURES = "failures"
# Counted once per input unit (a record, or a file that could only become one failure row), at
# the source and independently of any output, so the run report can prove nothing was lost.
RECORDS_IN = "records_in"
_NAMESPACE = "transcripts.sources"
log = logging.getLogger(__name__)


def checked(item: Transcript | Failure, max_text_chars: int) -> Transcript | Failure:
    """The item itself, or the Failure that rejects it; a check that raises rejects it too."""
    if not isinstance(item, Transcript):
        return item
    try:
        return validate_transcript(item, max_text_chars) or item
    except Exception as err:  # noqa: BLE001 - one odd transcript must not stop the run
        return source_failure("InvalidRecord", f"transcript at {item.origin or 'an input row'} "
                              f"cannot be checked: {type(err).__name__}: {err}",
                              origin=item.origin, raw=item.text)


class _EmitFn(beam.DoFn):
    """Validates what the readers produce and routes it to the transcripts or failures output."""

    def __init__(self, max_text_chars: int) -> None:
        self._max_text_chars = max_text_chars
        self._records_in = Metrics.counter(_NAMESPACE, RECORDS_IN)
        self._read = Metrics.counter(_NAMESPACE, "transcripts_read")
        self._failed = Metrics.counter(_NAMESPACE, "records_failed")

    def _emit(self, item: Transcript | Failure) -> Iterator[Any]:
        self._records_in.inc()
        item = checked(item, self._max_text_chars)
        if isinstance(item, Transcript):
            self._read.inc()
            yield item
            return
        self._failed.inc()
        yield TaggedOutput(FAILURES, item)


class _ReadFileFn(_EmitFn):
    def __init__(self, fmt: str, mapping: FieldMapping, max_text_chars: int) -> None:
        super().__init__(max_text_chars)
        self._format = fmt
        self._mapping = mapping
        self._files = Metrics.counter(_NAMESPACE, "files_read")

    def process(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        fmt = detect_format(path) if self._format == "auto" else self._format
        if fmt is None:
            log.info("read %s: unknown format, 1 failure", path)
            yield from self._emit(unknown_format_failure(path))
        else:
            yield from self._records_of(readable, path, fmt)

    def _records_of(self, readable: fileio.ReadableFile, path: str, fmt: str) -> Iterator[Any]:
        self._files.inc()
        records = failures = 0
        # Raw bytes: read_file decompresses itself, so a cut or corrupt file is reported as one.
        with readable.open(mime_type="application/octet-stream",
                           compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            for item in read_file(handle, path, fmt, self._mapping, self._max_text_chars):
                for output in self._emit(item):
                    records += 1
                    failures += isinstance(output, TaggedOutput)
                    yield output
        log.info("read %s: %d records, %d failures", path, records, failures)


def _tagged(result: beam.pvalue.DoOutputsTuple) -> dict[str, beam.PCollection]:
    return {TRANSCRIPTS: result[TRANSCRIPTS], FAILURES: result[FAILURES]}


def check_field_options(max_text_chars: int, **fields: str) -> None:
    if max_text_chars <= 0:
        raise ValueError(f"max_text_chars must be positive, got {max_text_chars}")
    for flag, value in fields.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{flag} must be a non-empty field name, got {value!r}")


class ReadTranscripts(beam.PTransform):
    """Reads transcripts from files matching ``file_pattern`` (local paths, s3://, any Beam
    filesystem; compressed files by suffix).

    ``format`` is one of ``auto`` (by extension), jsonl, json, csv, txt, avro, parquet,
    transcribe. Returns {"transcripts": PCollection[Transcript], "failures":
    PCollection[Failure]}. A pattern that matches no file fails the pipeline with an error naming
    it. A file that cannot be decompressed or decoded ends as one failure row naming it (after
    the records read before the damage). Ids are not deduplicated here: SummarizeTranscripts
    does it.
    """

    def __init__(self, file_pattern: str, format: str = "auto", id_field: str = "id",
                 text_field: str = "text", turns_field: str = "turns",
                 metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> None:
        super().__init__()
        if format != "auto" and format not in FORMATS:
            raise ValueError(f"--input-format {format!r} is not supported; use auto or one of "
                             f"{', '.join(FORMATS)}")
        check_field_options(max_text_chars, id_field=id_field, text_field=text_field,
                       turns_field=turns_field)
        self._pattern = file_pattern
        self._format = format
        self._mapping = FieldMapping.of(id_field, text_field, turns_field, metadata_fields)
        self._max_text_chars = max_text_chars

    def _match(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (pbegin
                # DISALLOW: a pattern matching nothing is a mistake worth stopping for (and
                # Beam's default, ALLOW_IF_WILDCARD, fails with a bare "ValueError:
                # ALLOW_IF_WILDCARD" on a plain path that does not exist).
                | "MatchFiles" >> fileio.MatchFiles(self._pattern, EmptyMatchTreatment.DISALLOW)
                # Spread the matched files over workers before each is read whole by one call.
                | "SpreadFiles" >> beam.Reshuffle())

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        parsed = (
            self._match(pbegin)
            | "ReadMatches" >> fileio.ReadMatches()
            | "ParseFiles" >> beam.ParDo(
                _ReadFileFn(self._format, self._mapping, self._max_text_chars)
            ).with_outputs(FAILURES, main=TRANSCRIPTS))
        return _tagged(parsed)


class WatchTranscripts(ReadTranscripts):
    """Streaming: read every new file that appears under ``file_pattern`` (a local folder or an
    s3:// prefix glob), checking every ``interval_seconds``. Each transcript is timestamped with
    the time its file was found, so windows group transcripts by arrival.

    ``stop_after_seconds`` ends the watch (and, once in-flight work is done, the pipeline);
    None watches until the pipeline is cancelled. Files are read once even if rewritten.
    """

    def __init__(self, file_pattern: str, interval_seconds: float = 10.0,
                 stop_after_seconds: float | None = None, **kwargs: Any) -> None:
        super().__init__(file_pattern, **kwargs)
        if interval_seconds <= 0:
            raise ValueError("--watch-interval-seconds must be > 0")
        self._interval = interval_seconds
        self._stop_after = stop_after_seconds

    def _match(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        start = time.time()
        stop = start + self._stop_after if self._stop_after else MAX_TIMESTAMP
        return pbegin | "MatchContinuously" >> fileio.MatchContinuously(
            self._pattern, interval=self._interval, start_timestamp=start, stop_timestamp=stop)


class _RowsFn(_EmitFn):
    def __init__(self, mapping: FieldMapping, max_text_chars: int) -> None:
        super().__init__(max_text_chars)
        self._mapping = mapping

    def process(self, row: Any) -> Iterator[Any]:
        yield from self._emit(self._item(row))

    def _item(self, row: Any) -> Transcript | Failure:
        if isinstance(row, Transcript):
            return row
        try:
            record = row_to_record(row)
            if record is not None:
                return record_to_transcript(record, self._mapping, None)
        except Exception as err:  # noqa: BLE001 - one odd row must not stop the run
            return source_failure("InvalidRecord", f"input row cannot be read: "
                                  f"{type(err).__name__}: {err}", origin=None, raw=row)
        return source_failure(
            "InvalidRecord", f"input row of type {type(row).__name__} is not a dict, beam.Row, "
            f"NamedTuple or dataclass; map it to one of those first", origin=None, raw=row)


class TranscriptsFromRows(beam.PTransform):
    """Turns an existing PCollection of dicts / beam.Row / NamedTuple / dataclass rows (or
    Transcripts, which are only validated) into the same tagged output as ReadTranscripts."""

    def __init__(self, id_field: str = "id", text_field: str = "text", turns_field: str = "turns",
                 metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> None:
        super().__init__()
        check_field_options(max_text_chars, id_field=id_field, text_field=text_field,
                       turns_field=turns_field)
        self._mapping = FieldMapping.of(id_field, text_field, turns_field, metadata_fields)
        self._max_text_chars = max_text_chars

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        return _tagged(rows | "ToTranscripts" >> beam.ParDo(
            _RowsFn(self._mapping, self._max_text_chars)).with_outputs(FAILURES, main=TRANSCRIPTS))


class _PickUniqueFn(beam.DoFn):
    def __init__(self) -> None:
        self._duplicates = Metrics.counter(_NAMESPACE, "duplicate_ids")

    def process(self, keyed: tuple[str, Any]) -> Iterator[Any]:
        group = list(keyed[1])  # one transcript unless ids repeat
        # An empty group is an empty pane: with allowed lateness, Flink fires a window's on-time
        # pane for a key even when its data came in another pane. Nothing to keep, nothing lost.
        if group:
            kept, failures = pick_unique(group)
            yield kept
            for failure in failures:
                self._duplicates.inc()
                yield TaggedOutput(FAILURES, failure)


class DeduplicateTranscripts(beam.PTransform):
    """Keeps one transcript per id (the first by origin, so the choice is deterministic); the
    others become ``DuplicateTranscriptId`` failures naming both origins. Ids equal up to
    Unicode normalization count as one id. SummarizeTranscripts applies it to its input.

    Groups by id, so on an unbounded input apply it after windowing: duplicates are found within
    a window.
    """

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        return _tagged(
            transcripts
            | "KeyById" >> beam.Map(lambda transcript: (dedup_key(transcript.id), transcript))
            | "GroupById" >> beam.GroupByKey()
            | "PickOne" >> beam.ParDo(_PickUniqueFn()).with_outputs(FAILURES, main=TRANSCRIPTS))
