"""Decode transcript files of every supported format into Transcript or Failure values.

Pure: no Beam import. Each reader takes a binary file object (a local file, Beam's S3 download
stream, a BytesIO) and yields ``Transcript`` or ``Failure`` items, so one bad record never stops
the file. JSONL and CSV are read line by line and Parquet by batches, so a large file is never
held in memory; JSON, plain text and Amazon Transcribe output are single documents.

Origins name where a record came from: ``path:LINE`` for JSONL and CSV (1-based line),
``path#N`` for the N-th record (1-based) of a JSON array, Avro or Parquet file, and the bare
``path`` for a file that holds one transcript.

Amazon Transcribe output is read by ``transforms.sources.transcribe_output``.

``read_file`` is the one entry point for a whole file: it decompresses by suffix
(``transforms.sources.decompression``, which detects cut streams that Beam's own decompression reads as
a silent end of file) and turns any exception
while decoding into a failure row naming the file and how many records were read before it.
Only errors of the storage read itself propagate; ``read_stored_file`` retries those, and turns
a file that storage still cannot read into a failure row too.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import time
from typing import IO, Any, Callable, Iterator, Mapping, Sequence

import fastavro
import pyarrow.parquet as pq

from transforms.core.model import Failure, Transcript
from transforms.core.rate_control import RetryPolicy
from transforms.sources.decompression import (StorageReadError, TruncatedStream, compression_suffix,
                                              file_stem, open_decoded)
from transforms.sources.transcribe_output import is_transcribe_output, transcribe_to_transcript
from transforms.sources.validation import (FieldMapping, record_to_transcript, source_failure,
                                           validation_failure)

FORMATS = ("jsonl", "json", "csv", "txt", "avro", "parquet", "transcribe")

_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
               ".txt": "txt", ".avro": "avro", ".parquet": "parquet"}

PARQUET_BATCH_ROWS = 1024
# Reads of one file that storage fails (an I/O error, a dropped S3 connection) before the file
# becomes a failure row; backoffs of up to 1, 2 and 4 s between them ride out a brief outage.
STORAGE_READ_RETRY = RetryPolicy(max_attempts=4, base_seconds=1.0, cap_seconds=4.0)

log = logging.getLogger(__name__)

Item = Transcript | Failure


def detect_format(path: str) -> str | None:
    """The format for ``path`` by its extension (a compression suffix is looked through).

    Args:
        path: A file path or URI.

    Returns:
        One of ``FORMATS``, or None for an extension no format has.
    """
    name = path.lower()
    suffix = compression_suffix(name)
    return _EXTENSIONS.get(os.path.splitext(name[: -len(suffix)] if suffix else name)[1])


def unknown_format_failure(path: str) -> Failure:
    """The failure row for a file whose format its extension does not tell.

    Args:
        path: The file's path.
    """
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
    try:
        return record_to_transcript(value, mapping, origin)
    except Exception as err:  # noqa: BLE001 - one odd record must not stop the file
        return source_failure("InvalidRecord", f"record at {origin} cannot be read: "
                              f"{type(err).__name__}: {err}", origin=origin, raw=value)


def parse_json(text: str, origin: str, what: str = "line") -> Any:
    """``text`` as a JSON value, or the Failure saying why it is not one (nesting too deep for
    the decoder is TooDeep, not a crash).

    Args:
        text: The JSON text.
        origin: Where it came from, for the message and the row.
        what: What ``text`` is (``line`` or ``file``), for the message.
    """
    try:
        # The standard library, not orjson: as fast on transcript lines, and it keeps integers
        # beyond 64 bits exact for validation to refuse (orjson reads them as floats).
        return json.loads(text)
    except json.JSONDecodeError as err:
        return source_failure("InvalidJson", f"{what} {origin} is not valid JSON: {err}",
                              origin=origin, raw=text)
    except RecursionError:
        return source_failure("TooDeep", f"{what} {origin} is JSON nested too deep to decode; "
                              f"flatten it", origin=origin, raw=text[:200])


def _lines(handle: IO[bytes]) -> Iterator[bytes]:
    # readline() rather than iteration: Beam's CompressedFile has no __iter__.
    return iter(handle.readline, b"")


def read_jsonl(handle: IO[bytes], path: str, mapping: FieldMapping) -> Iterator[Item]:
    """JSON Lines: one record per line; blank lines are skipped, a bad line is one failure row.

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        mapping: Which input fields hold the id, text, turns and metadata.
    """
    for number, raw in enumerate(_lines(handle), start=1):
        origin = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            yield source_failure("InvalidEncoding", f"line {origin} is not UTF-8 ({err.reason} at "
                                 f"byte {err.start}); re-encode the file as UTF-8",
                                 origin=origin, raw=raw)
            continue
        # A BOM on any line, not only the first: files joined with `cat` keep each one's BOM.
        line = line.lstrip("\ufeff")
        if not line.strip():
            continue
        value = parse_json(line, origin)
        yield value if isinstance(value, Failure) else _record_or_failure(value, mapping, origin)


def read_json(handle: IO[bytes], path: str, mapping: FieldMapping,
              transcribe_only: bool = False) -> Iterator[Item]:
    """A JSON document: an array of records, {"transcripts": [...]}, one record, or an Amazon
    Transcribe job output (recognized by its shape).

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        mapping: Which input fields hold the id, text, turns and metadata.
        transcribe_only: Accept only a Transcribe job output (``--input-format transcribe``).
    """
    try:
        text = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        yield source_failure("InvalidEncoding", f"{path} is not UTF-8 ({err.reason} at byte "
                             f"{err.start}); re-encode it as UTF-8", origin=path)
        return
    document = parse_json(text, path, what="file")
    if isinstance(document, Failure):
        yield document
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
    row instead of silently mangled text.

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        mapping: Which input fields hold the id, text, turns and metadata.
    """
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
    """One plain-text file is one transcript; its id is the file name without extension.

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        max_text_chars: The longest text accepted; a longer file is one failure row.
    """
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


def read_avro(handle: IO[bytes], path: str, mapping: FieldMapping) -> Iterator[Item]:
    """An Avro container file: one record per Avro record.

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        mapping: Which input fields hold the id, text, turns and metadata.
    """
    for number, record in enumerate(fastavro.reader(handle), start=1):
        yield _record_or_failure(record, mapping, f"{path}#{number}")


def read_parquet(handle: IO[bytes], path: str, mapping: FieldMapping,
                 batch_rows: int = PARQUET_BATCH_ROWS) -> Iterator[Item]:
    """A Parquet file, read by record batches; when metadata fields are chosen only the needed
    columns.

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        mapping: Which input fields hold the id, text, turns and metadata.
        batch_rows: Rows per record batch read.
    """
    parquet = pq.ParquetFile(handle)
    columns = None
    if mapping.metadata_fields is not None:
        wanted = {mapping.id_field, mapping.text_field, mapping.turns_field,
                  *mapping.metadata_fields}
        columns = [name for name in parquet.schema_arrow.names if name in wanted]
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        for record in batch.to_pylist():
            number += 1
            yield _record_or_failure(record, mapping, f"{path}#{number}")


def read_transcripts(handle: IO[bytes], path: str, fmt: str, mapping: FieldMapping,
                     max_text_chars: int) -> Iterator[Item]:
    """Every Transcript or Failure in one file of format ``fmt`` (one of FORMATS).

    Args:
        handle: The file's (decompressed) bytes.
        path: The file's path, for ids, origins and messages.
        fmt: The file's format, one of ``FORMATS``.
        mapping: Which input fields hold the id, text, turns and metadata.
        max_text_chars: The longest text a ``txt`` file may hold.

    Raises:
        ValueError: ``fmt`` is not one of ``FORMATS``.
    """
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


def file_failure(path: str, fmt: str, err: Exception, records: int) -> Failure:
    """The failure row for a file that stopped decoding after ``records`` records.

    Args:
        path: The file's path.
        fmt: The format it was read as.
        err: What stopped the decoding.
        records: Items read from the file before it stopped.
    """
    read = f"{records} record{'' if records == 1 else 's'} read before it"
    if isinstance(err, TruncatedStream):
        return source_failure(
            "TruncatedFile", f"{path} is cut short: {err} ({read}; the rest of the file is "
            f"lost); copy or export the file again", origin=path)
    return source_failure(
        "UnreadableFile", f"{path} cannot be read as {fmt}"
        f"{f' ({compression_suffix(path)})' if compression_suffix(path) else ''}: "
        f"{type(err).__name__}: {err} ({read}); check the file is complete and of that format, "
        f"or pass the right --input-format", origin=path)


def read_file(handle: IO[bytes], path: str, fmt: str, mapping: FieldMapping,
              max_text_chars: int) -> Iterator[Item]:
    """Every Transcript or Failure in one file, ``handle`` being its raw bytes from storage.

    Whatever goes wrong while decompressing or decoding ends the file with one failure row that
    names it; the items read before stay. StorageReadError propagates: ``read_stored_file``
    retries it.

    Args:
        handle: The file's raw (undecompressed) bytes from storage.
        path: The file's path; its suffix picks the decompressor.
        fmt: The file's format, one of ``FORMATS``.
        mapping: Which input fields hold the id, text, turns and metadata.
        max_text_chars: The longest text a ``txt`` file may hold.
    """
    read = 0
    try:
        for item in read_transcripts(open_decoded(handle, path), path, fmt, mapping,
                                     max_text_chars):
            read += 1
            yield item
    except StorageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - any bad byte stops this file only
        yield file_failure(path, fmt, err, read)


def storage_failure(path: str, err: Exception, attempts: int, records: int) -> Failure:
    """The failure row for a file that storage failed to read ``attempts`` times.

    Args:
        path: The file's path.
        err: The last storage error.
        attempts: How many times the file was read.
        records: Items read from the file before the error.
    """
    read = f"{records} record{'' if records == 1 else 's'} read before it"
    cause = err.__cause__ or err  # a StorageReadError wraps the storage's own error
    return source_failure(
        "UnreadableFile", f"{path} could not be read from storage ({attempts} attempts): "
        f"{type(cause).__name__}: {cause} ({read}; the rest of the file is not read); check "
        f"that the file can be read, then run again", origin=path)


def read_stored_file(handle: IO[bytes], reopen: Callable[[], IO[bytes]], path: str, fmt: str,
                     mapping: FieldMapping, max_text_chars: int,
                     retry: RetryPolicy = STORAGE_READ_RETRY,
                     sleep: Callable[[float], None] = time.sleep) -> Iterator[Item]:
    """``read_file`` with storage errors retried: after a backoff the file is opened again and
    read from its start, the items already yielded skipped (the same bytes decode to the same
    items). A file still unreadable after ``retry.max_attempts`` reads ends with one
    ``storage_failure`` row, after the items read before the error. Closes the handles.

    Args:
        handle: The file's raw (undecompressed) bytes from storage, opened for the first read.
        reopen: Opens them again for a retry; an error doing so is a failed attempt too.
        path: The file's path; its suffix picks the decompressor.
        fmt: The file's format, one of ``FORMATS``.
        mapping: Which input fields hold the id, text, turns and metadata.
        max_text_chars: The longest text a ``txt`` file may hold.
        retry: How many reads, and the backoff bounds between them.
        sleep: Waits out the backoff.
    """
    read, attempt = 0, 1
    while True:
        try:
            with handle:
                for index, item in enumerate(read_file(handle, path, fmt, mapping,
                                                       max_text_chars)):
                    if index >= read:
                        read += 1
                        yield item
            return
        except StorageReadError as err:
            failed: Exception = err
        while True:
            if attempt >= retry.max_attempts:
                log.warning("read %s: storage failed %d times, last with %s", path, attempt,
                            failed)
                yield storage_failure(path, failed, attempt, read)
                return
            delay = retry.backoff(attempt)
            log.warning("read %s: %s; attempt %d of %d in %.1f s", path, failed, attempt + 1,
                        retry.max_attempts, delay)
            sleep(delay)
            attempt += 1
            try:
                handle = reopen()
                break
            except Exception as err:  # noqa: BLE001 - each storage fails its own way
                failed = err


def row_to_record(row: Any) -> Mapping[str, Any] | None:
    """A dict, beam.Row, NamedTuple or dataclass row as a field mapping (None if it is none).

    Args:
        row: A row read by a Beam source.
    """
    if isinstance(row, Mapping):
        return row
    if hasattr(row, "as_dict"):  # beam.Row
        return row.as_dict()
    if hasattr(row, "_asdict"):  # typing.NamedTuple / collections.namedtuple
        return row._asdict()
    if hasattr(row, "__dataclass_fields__"):
        return {name: getattr(row, name) for name in row.__dataclass_fields__}
    return None
