"""Decode transcript files of every supported format into Transcript or Failure values.

Pure: no Beam import. Each reader takes a binary file object (a local file, Beam's S3 download
stream, a BytesIO) and yields ``Transcript`` or ``Failure`` items, so one bad record never stops
the file. JSONL and CSV are read line by line and Parquet by batches, so a large file is never
held in memory; JSON, plain text and Amazon Transcribe output are single documents.

Origins name where a record came from: ``path:LINE`` for JSONL and CSV (1-based line),
``path#N`` for the N-th record (1-based) of a JSON array, Avro or Parquet file, and the bare
``path`` for a file that holds one transcript.
"""
from __future__ import annotations

import csv
import json
import os
import zlib
from typing import IO, Any, Iterable, Iterator, Mapping, Sequence

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from transforms.model import Failure, Transcript, Turn, truncate_raw
from transforms.validation import (FieldMapping, record_to_transcript, render_turns,
                                   validation_failure)

FORMATS = ("jsonl", "json", "csv", "txt", "avro", "parquet", "transcribe")

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
               ".txt": "txt", ".avro": "avro", ".parquet": "parquet"}
# Suffixes Beam's filesystems decompress transparently (CompressionTypes.detect_compression_type).
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".zstd", ".xz", ".lzma")

# What a corrupt Avro or Parquet file raises while being decoded; pyarrow reports corrupt pages
# as plain OSError. Other errors (e.g. a failing S3 read) propagate so the runner retries.
_AVRO_ERRORS = (ValueError, EOFError, zlib.error, KeyError, IndexError, TypeError, OverflowError)
_PARQUET_ERRORS = (pa.ArrowException, ValueError, OSError)

PARQUET_BATCH_ROWS = 1024

Item = Transcript | Failure


def source_failure(code: str, message: str, *, origin: str | None, raw: Any = None) -> Failure:
    return Failure(stage="source", error_code=code, error_message=message,
                   raw=truncate_raw(raw), origin=origin)


def file_stem(path: str) -> str:
    """File name without directories, compression suffix and format extension."""
    name = os.path.basename(path.rstrip("/"))
    for suffix in _COMPRESSION_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return os.path.splitext(name)[0]


def detect_format(path: str) -> str | None:
    """The format for ``path`` by its extension (a compression suffix is looked through)."""
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return _EXTENSIONS.get(os.path.splitext(name)[1])


def unknown_format_failure(path: str) -> Failure:
    return source_failure(
        "UnknownFormat",
        f"cannot tell the format of {path} from its extension; rename it to one of "
        f"{', '.join(sorted(_EXTENSIONS))} or pass --input-format {{{','.join(FORMATS)}}}",
        origin=path)


def _record_or_failure(value: Any, mapping: FieldMapping, origin: str) -> Item:
    if not isinstance(value, Mapping):
        return source_failure(
            "InvalidRecord", f"record at {origin} is a JSON {type(value).__name__}, not an object",
            origin=origin, raw=value)
    return record_to_transcript(value, mapping, origin)


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    # readline() rather than iteration: Beam's CompressedFile has no __iter__.
    return iter(handle.readline, b"")


def read_jsonl(handle: IO[bytes], path: str, mapping: FieldMapping) -> Iterator[Item]:
    for number, raw in enumerate(_lines(handle), start=1):
        origin = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield source_failure("InvalidEncoding", f"line {origin} is not UTF-8 ({err.reason} at "
                                 f"byte {err.start}); re-encode the file as UTF-8",
                                 origin=origin, raw=raw)
            continue
        line = line.lstrip("\ufeff") if number == 1 else line
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            yield source_failure("InvalidJson", f"line {origin} is not valid JSON: {err}",
                                 origin=origin, raw=line)
            continue
        yield _record_or_failure(value, mapping, origin)


# Amazon Transcribe job output: {"jobName", "results": {"transcripts": [{"transcript"}],
# "audio_segments" | "speaker_labels" + "items", ...}}.

def is_transcribe_output(document: Any) -> bool:
    results = document.get("results") if isinstance(document, Mapping) else None
    return isinstance(results, Mapping) and isinstance(results.get("transcripts"), list)


def _seconds(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _merge_turns(pieces: Iterable[Turn]) -> tuple[Turn, ...]:
    """Joins consecutive pieces by one speaker: Transcribe splits a speaker's turn at pauses."""
    turns: list[Turn] = []
    for piece in pieces:
        if turns and turns[-1].speaker == piece.speaker:
            last = turns[-1]
            turns[-1] = Turn(last.speaker, f"{last.text} {piece.text}", last.start, piece.end)
        else:
            turns.append(piece)
    return tuple(turns)


def _audio_segment_turns(segments: Sequence[Mapping[str, Any]]) -> Iterator[Turn]:
    for segment in segments:
        text = str(segment.get("transcript") or "").strip()
        if text:
            yield Turn(str(segment.get("speaker_label") or "Unknown"), text,
                       _seconds(segment.get("start_time")), _seconds(segment.get("end_time")))


def _speaker_at(segments: Sequence[Mapping[str, Any]], start_time: Any) -> str | None:
    """The speaker segment a word starts in: by the segment's item list, else by time range."""
    for segment in segments:
        if any(item.get("start_time") == start_time for item in segment.get("items") or []):
            return segment.get("speaker_label")
    start = _seconds(start_time)
    for segment in segments:
        if start is not None and (_seconds(segment.get("start_time")) or 0.0) <= start \
                <= (_seconds(segment.get("end_time")) or 0.0):
            return segment.get("speaker_label")
    return None


def _speaker_label_turns(results: Mapping[str, Any]) -> Iterator[Turn]:
    """Words of results.items grouped by speaker segment; punctuation joins the word before it."""
    segments = results["speaker_labels"]["segments"]
    speaker, words, start, end = None, [], None, None
    for item in results.get("items") or []:
        content = item["alternatives"][0]["content"]
        if item.get("type") == "punctuation":
            if words:
                words[-1] += content
            continue
        label = (item.get("speaker_label") or _speaker_at(segments, item.get("start_time"))
                 or speaker or "Unknown")
        if words and label != speaker:
            yield Turn(speaker, " ".join(words), start, end)
            words = []
        if not words:
            start = _seconds(item.get("start_time"))
        speaker, end = label, _seconds(item.get("end_time"))
        words.append(content)
    if words:
        yield Turn(speaker, " ".join(words), start, end)


def transcribe_to_transcript(document: Mapping[str, Any], path: str) -> Item:
    """A Transcribe job output as one Transcript with speaker turns when diarization was on.

    The id is the jobName (the file name when it is missing); the text is the "Speaker: text"
    rendering of the turns, or the plain transcript when there are no speaker labels.
    """
    results = document["results"]
    transcript_id = str(document.get("jobName") or file_stem(path))
    try:
        segments = results.get("audio_segments") or []
        if any(segment.get("speaker_label") for segment in segments):
            turns = _merge_turns(_audio_segment_turns(segments))
        elif (results.get("speaker_labels") or {}).get("segments"):
            turns = _merge_turns(_speaker_label_turns(results))
        else:
            turns = ()
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as err:
        return source_failure(
            "InvalidTranscribeOutput", f"{path} looks like Amazon Transcribe output but its "
            f"speaker segments cannot be read ({type(err).__name__}: {err})", origin=path,
            raw=document)
    transcripts = results["transcripts"]
    plain = transcripts[0].get("transcript") if transcripts and isinstance(
        transcripts[0], Mapping) else None
    if not turns and not isinstance(plain, str):
        return validation_failure(
            "MissingText", f"{path} (Transcribe job {transcript_id!r}) has no "
            f"results.transcripts[0].transcript", origin=path, raw=document,
            transcript_id=transcript_id)
    metadata = {"language_code": results["language_code"]} if results.get("language_code") else {}
    return Transcript(id=transcript_id, text=render_turns(turns) if turns else plain,
                      metadata=metadata, turns=turns, origin=path)


def read_json(handle: IO[bytes], path: str, mapping: FieldMapping,
              transcribe_only: bool = False) -> Iterator[Item]:
    """A JSON document: an array of records, {"transcripts": [...]}, one record, or an Amazon
    Transcribe job output (recognized by its shape)."""
    try:
        document = json.loads(handle.read().decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        yield source_failure("InvalidEncoding", f"{path} is not UTF-8 ({err.reason} at byte "
                             f"{err.start}); re-encode it as UTF-8", origin=path)
        return
    except json.JSONDecodeError as err:
        yield source_failure("InvalidJson", f"{path} is not valid JSON: {err}", origin=path)
        return
    if is_transcribe_output(document):
        yield transcribe_to_transcript(document, path)
        return
    if transcribe_only:
        yield source_failure(
            "NotTranscribeOutput", f"{path} is not an Amazon Transcribe job output (no "
            f"results.transcripts); use --input-format json", origin=path, raw=document)
        return
    if (isinstance(document, Mapping) and mapping.id_field not in document
            and isinstance(document.get("transcripts"), list)):
        document = document["transcripts"]
    if isinstance(document, list):
        for number, value in enumerate(document, start=1):
            yield _record_or_failure(value, mapping, f"{path}#{number}")
    else:
        yield _record_or_failure(document, mapping, path)


def _has_bad_bytes(cells: Sequence[str]) -> bool:
    """True when a cell holds a surrogate left by surrogateescape, i.e. bytes that are not UTF-8."""
    try:
        for cell in cells:
            cell.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_csv(handle: IO[bytes], path: str, mapping: FieldMapping) -> Iterator[Item]:
    """CSV with a header row. Bad bytes are decoded with surrogateescape so only the rows that
    hold them fail, not the rest of the file; strict quoting turns a stray quote into a failed
    row instead of silently mangled text."""
    # Transcripts exceed csv's 128 KiB default field limit; oversize text is reported by
    # validation with the real limit instead of a csv.Error.
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    lines = (raw.decode("utf-8", errors="surrogateescape") for raw in _lines(handle))
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        return
    except csv.Error as err:
        yield source_failure("InvalidCsv", f"{path}:1 header cannot be read: {err}",
                             origin=f"{path}:1")
        return
    header = [header[0].lstrip("\ufeff"), *header[1:]] if header else header
    if mapping.id_field not in header or (mapping.text_field not in header
                                          and mapping.turns_field not in header):
        yield source_failure(
            "MissingColumn", f"{path} header {header} lacks {mapping.id_field!r} or "
            f"{mapping.text_field!r}/{mapping.turns_field!r}; set --id-field and --text-field to "
            f"its column names", origin=f"{path}:1", raw=",".join(header))
        return
    while True:
        start = reader.line_num + 1
        origin = f"{path}:{start}"
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            yield source_failure("InvalidCsv", f"row at {origin} cannot be parsed: {err}",
                                 origin=origin)
            continue
        if not cells:
            continue
        if _has_bad_bytes(cells):
            yield source_failure("InvalidEncoding", f"row at {origin} is not UTF-8; re-encode "
                                 f"the file as UTF-8", origin=origin,
                                 raw=",".join(cells).encode("utf-8", "surrogateescape"))
        elif len(cells) != len(header):
            yield source_failure(
                "InvalidCsv", f"row at {origin} has {len(cells)} fields, the header has "
                f"{len(header)}; quote fields that contain commas", origin=origin,
                raw=",".join(cells))
        else:
            yield record_to_transcript(dict(zip(header, cells)), mapping, origin)


def read_text(handle: IO[bytes], path: str, max_text_chars: int) -> Iterator[Item]:
    """One plain-text file is one transcript; its id is the file name without extension."""
    # A character is at most 4 UTF-8 bytes: reading one byte past that bound proves the text is
    # too long without reading a huge file whole.
    limit = max_text_chars * 4
    data = handle.read(limit + 1)
    transcript_id = file_stem(path)
    if len(data) > limit:
        yield validation_failure(
            "TextTooLong", f"{path} holds over {limit} bytes, over the limit of {max_text_chars} "
            f"characters; split the call or raise --max-text-chars", origin=path, raw=data,
            transcript_id=transcript_id)
        return
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        yield source_failure("InvalidEncoding", f"{path} is not UTF-8 ({err.reason} at byte "
                             f"{err.start}); re-encode it as UTF-8", origin=path, raw=data)
        return
    yield Transcript(id=transcript_id, text=text, origin=path)


def _unreadable(path: str, fmt: str, err: Exception, emitted: int) -> Failure:
    return source_failure(
        "UnreadableFile", f"{path} cannot be read as {fmt} after {emitted} records: "
        f"{type(err).__name__}: {err}; check the file is a complete {fmt} file or pass the right "
        f"--input-format", origin=path)


def read_avro(handle: IO[bytes], path: str, mapping: FieldMapping) -> Iterator[Item]:
    emitted = 0
    try:
        for number, record in enumerate(fastavro.reader(handle), start=1):
            emitted = number
            yield _record_or_failure(record, mapping, f"{path}#{number}")
    except _AVRO_ERRORS as err:
        yield _unreadable(path, "avro", err, emitted)


def read_parquet(handle: IO[bytes], path: str, mapping: FieldMapping,
                 batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[Item]:
    """Reads by record batches; when metadata fields are chosen only the needed columns."""
    emitted = 0
    try:
        parquet = pq.ParquetFile(handle)
        columns = None
        if mapping.metadata_fields is not None:
            wanted = {mapping.id_field, mapping.text_field, mapping.turns_field,
                      *mapping.metadata_fields}
            columns = [name for name in parquet.schema_arrow.names if name in wanted]
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            for record in batch.to_pylist():
                emitted += 1
                yield _record_or_failure(record, mapping, f"{path}#{emitted}")
    except _PARQUET_ERRORS as err:
        yield _unreadable(path, "parquet", err, emitted)


def read_transcripts(handle: IO[bytes], path: str, fmt: str, mapping: FieldMapping,
                     max_text_chars: int) -> Iterator[Item]:
    """Every Transcript or Failure in one file of format ``fmt`` (one of FORMATS)."""
    if fmt == "jsonl":
        return read_jsonl(handle, path, mapping)
    if fmt in ("json", "transcribe"):
        return read_json(handle, path, mapping, transcribe_only=fmt == "transcribe")
    if fmt == "csv":
        return read_csv(handle, path, mapping)
    if fmt == "txt":
        return read_text(handle, path, max_text_chars)
    if fmt == "avro":
        return read_avro(handle, path, mapping)
    if fmt == "parquet":
        return read_parquet(handle, path, mapping)
    raise ValueError(f"unknown input format {fmt!r}; use one of {', '.join(FORMATS)}")


def row_to_record(row: Any) -> Mapping[str, Any] | None:
    """A dict, beam.Row, NamedTuple or dataclass row as a field mapping (None if it is none)."""
    if isinstance(row, Mapping):
        return row
    if hasattr(row, "as_dict"):  # beam.Row
        return row.as_dict()
    if hasattr(row, "_asdict"):  # typing.NamedTuple / collections.namedtuple
        return row._asdict()
    if hasattr(row, "__dataclass_fields__"):
        return {name: getattr(row, name) for name in row.__dataclass_fields__}
    return None
