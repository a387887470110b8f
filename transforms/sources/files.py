"""Transcripts from files: match a pattern, or take the paths / ReadableFiles a pipeline has.

Thin glue over ``transforms.sources.parsing`` (decoding each format) and
``transforms.sources.validation`` (mapping and checking records).
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Iterator, Sequence, Union

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.fileio import EmptyMatchTreatment
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.pvalue import TaggedOutput
from apache_beam.utils.timestamp import Timestamp

from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.model import Transcript
from transforms.core.storage import Storage, join
from transforms.sources.common import (DEFAULT_INPUT_LATENESS_SECONDS, FAILURES, TRANSCRIPTS,
                                       EventTime, _EmitFn, check_field_options, event_time_setting,
                                       tagged)
from transforms.sources.parsing import (FORMATS, detect_format, read_stored_file,
                                        unknown_format_failure)
from transforms.sources.source_ledger import (LedgerEntry, SourceLedger, entry_name, entry_text,
                                              file_identity)
from transforms.sources.validation import DEFAULT_MAX_TEXT_CHARS, FieldMapping, source_failure

log = logging.getLogger(__name__)


class _AsReadableFn(beam.DoFn):
    """A path, FileMetadata or ReadableFile -> a ReadableFile (what ``fileio.ReadMatches`` does
    for paths, without refusing directories: opening one becomes a failure row)."""

    def process(self, file: str | FileMetadata | fileio.ReadableFile) -> Iterator[fileio.ReadableFile]:
        if isinstance(file, fileio.ReadableFile):
            yield file
        elif isinstance(file, FileMetadata):
            yield fileio.ReadableFile(file)
        else:
            yield fileio.ReadableFile(FileMetadata(file, 0))


class _ReadFileFn(_EmitFn):
    """Parses one whole file into transcripts and failure rows."""

    def __init__(self, fmt: str, mapping: FieldMapping, max_text_chars: int,
                 event_time: EventTime | None, ledger: SourceLedger | None = None) -> None:
        super().__init__(max_text_chars, event_time)
        self._format = fmt
        self._mapping = mapping
        self._files = counter("files_read")
        self._ledger = ledger

    def setup(self) -> None:
        if self._ledger is not None:
            aws = self._ledger.aws
            self._ledger_storage = Storage(aws.client("s3") if aws is not None else None)

    def process(self, readable: fileio.ReadableFile,
                timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[Any]:
        self._input_time = timestamp
        records = failures = 0
        for output in self._parse(readable):
            records += 1
            failures += isinstance(output, TaggedOutput)
            yield output
        if self._ledger is not None:
            # After the whole file: an entry always holds a file's full counts. A failed write
            # fails the bundle, whose outputs the runner then discards and reads again.
            path = file_identity(readable.metadata.path)
            self._ledger_storage.write_text(join(self._ledger.prefix, entry_name(path)),
                                            entry_text(LedgerEntry(path, records, failures)))

    def _parse(self, readable: fileio.ReadableFile) -> Iterator[Any]:
        path = readable.metadata.path
        fmt = detect_format(path) if self._format == "auto" else self._format
        if fmt is None:
            log.info("read %s: unknown format, 1 failure", path)
            yield from self._emit(unknown_format_failure(path))
            return
        # Raw bytes: read_file decompresses itself, so a cut or corrupt file is reported as one.
        open_raw = functools.partial(readable.open, mime_type="application/octet-stream",
                                     compression_type=CompressionTypes.UNCOMPRESSED)
        try:
            handle = open_raw()
        except OSError as err:  # a path given to ReadTranscriptFiles that is gone or a folder
            log.info("read %s: cannot be opened, 1 failure", path)
            yield from self._emit(source_failure(
                "UnreadableFile", f"file {path} cannot be opened ({type(err).__name__}: {err}); "
                f"pass paths of files that exist", origin=path))
            return
        self._files.inc()
        records = failures = 0
        # A storage error is retried here, not by failing the bundle: a file that storage cannot
        # read becomes a failure row and the bundle's other files go on.
        for item in read_stored_file(handle, open_raw, path, fmt, self._mapping,
                                     self._max_text_chars):
            for output in self._emit(item):
                records += 1
                failures += isinstance(output, TaggedOutput)
                yield output
        log.info("read %s: %d records, %d failures", path, records, failures)


@beam.typehints.with_input_types(Union[str, FileMetadata, fileio.ReadableFile])
class ReadTranscriptFiles(beam.PTransform):
    """Reads transcripts from each file of a PCollection of paths, ``FileMetadata`` (what
    ``fileio.MatchFiles`` emits) or ``fileio.ReadableFile`` (what ``fileio.ReadMatches`` emits).

    Each file is read whole by one worker call, in the format its name says (or ``format``).
    Returns {"transcripts": PCollection[Transcript], "failures": PCollection[Failure]}. A file
    that cannot be opened, decompressed or decoded, or that storage still fails to read after a
    few attempts with backoff, ends as one failure row naming it (after the records read before
    the damage). Ids are not deduplicated here: SummarizeTranscripts does it.

    Args:
        format: ``auto`` (by file name), or one of jsonl, json, csv, txt, avro, parquet,
            transcribe for every file.
        id_field: The record field that holds the transcript id.
        text_field: The record field that holds the transcript text.
        turns_field: The record field that holds speaker turns (used when there is no text).
        metadata_fields: Record fields kept as the transcript's metadata; None keeps the others.
        max_text_chars: The longest text accepted; a longer one becomes a failure row.
        timestamp_field: The record field that holds each record's event time (ISO 8601 with
            an offset or Z, or epoch seconds or milliseconds): each transcript is timestamped
            with it, so windows group records by when the call happened. A record without a
            valid one becomes an ``InvalidTimestamp`` failure row. None keeps the element's
            timestamp.
        allowed_lateness_seconds: With ``timestamp_field``, on timestamped (streaming) input: a
            record whose event time is further behind the file's timestamp than this becomes
            a ``LateRecord`` failure row, as its window may already have closed.
        ledger: Where to keep the source ledger (``transforms.sources.source_ledger``): once a file
            is read whole, an entry named by its identity (its absolute path for a local
            file), with its counts, is written under its prefix. None keeps no ledger.
    """

    def __init__(self, format: str = "auto", id_field: str = "id", text_field: str = "text",
                 turns_field: str = "turns", metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, timestamp_field: str | None = None,
                 allowed_lateness_seconds: float = DEFAULT_INPUT_LATENESS_SECONDS,
                 ledger: SourceLedger | None = None) -> None:
        super().__init__()
        self._ledger = ledger
        if format != "auto" and format not in FORMATS:
            raise ConfigError(f"format {format!r} is not supported; use auto or one of "
                              f"{', '.join(FORMATS)}", "format")
        check_field_options(max_text_chars, id_field=id_field, text_field=text_field,
                            turns_field=turns_field)
        self._event_time, metadata_fields = event_time_setting(
            timestamp_field, metadata_fields, allowed_lateness_seconds, id_field=id_field,
            text_field=text_field, turns_field=turns_field)
        self._format = format
        self._mapping = FieldMapping.of(id_field, text_field, turns_field, metadata_fields)
        self._max_text_chars = max_text_chars

    def expand(self, files: beam.PCollection) -> dict[str, beam.PCollection]:
        parsed = (
            files
            | "AsReadable" >> beam.ParDo(_AsReadableFn()).with_output_types(fileio.ReadableFile)
            | "ParseFiles" >> beam.ParDo(
                _ReadFileFn(self._format, self._mapping, self._max_text_chars, self._event_time,
                            self._ledger)
            ).with_output_types(Transcript).with_outputs(FAILURES, main=TRANSCRIPTS))
        return tagged(parsed)


class ReadTranscripts(beam.PTransform):
    """Reads transcripts from files matching ``file_pattern`` (local paths, s3://, any Beam
    filesystem; compressed files by suffix): ``fileio.MatchFiles``, then ``ReadTranscriptFiles``.

    Returns {"transcripts": PCollection[Transcript], "failures": PCollection[Failure]}. A pattern
    that matches no file fails the pipeline with an error naming it.

    Args:
        file_pattern: A path or glob, e.g. ``s3://bucket/calls/*.jsonl``.
        format: ``auto`` (by file name), or one of jsonl, json, csv, txt, avro, parquet,
            transcribe for every file.
        id_field: The record field that holds the transcript id.
        text_field: The record field that holds the transcript text.
        turns_field: The record field that holds speaker turns (used when there is no text).
        metadata_fields: Record fields kept as the transcript's metadata; None keeps the others.
        max_text_chars: The longest text accepted; a longer one becomes a failure row.
        timestamp_field: The record field that holds each record's event time (ISO 8601 with
            an offset or Z, or epoch seconds or milliseconds), so windows applied downstream
            group records by when the call happened; a record without a valid one becomes an
            ``InvalidTimestamp`` failure row. None: every record has Beam's minimum timestamp,
            for which a time window means nothing.
        ledger: Where to keep the source ledger (see ``ReadTranscriptFiles``); None keeps
            none.
    """

    def __init__(self, file_pattern: str, format: str = "auto", id_field: str = "id",
                 text_field: str = "text", turns_field: str = "turns",
                 metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS,
                 timestamp_field: str | None = None, ledger: SourceLedger | None = None) -> None:
        super().__init__()
        self._pattern = file_pattern
        self._read = ReadTranscriptFiles(format, id_field, text_field, turns_field,
                                         metadata_fields, max_text_chars, timestamp_field,
                                         ledger=ledger)

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        return (pbegin
                # DISALLOW: a pattern matching nothing is a mistake worth stopping for (and
                # Beam's default, ALLOW_IF_WILDCARD, fails with a bare "ValueError:
                # ALLOW_IF_WILDCARD" on a plain path that does not exist).
                | "MatchFiles" >> fileio.MatchFiles(self._pattern, EmptyMatchTreatment.DISALLOW)
                # Spread the matched files over workers before each is read whole by one call.
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadFiles" >> self._read)
