"""Hostile input, unit level: the pure reading, validation and row-encoding functions.

Each test feeds one class of poison (damaged compressed files, JSON too deep, lone surrogates,
control characters, numbers no sink can hold, duplicate ids up to Unicode normalization) and
checks it becomes a failure row naming where it came from, and that the row itself encodes.
"""
from __future__ import annotations

import bz2
import dataclasses
import datetime as dt
import gzip
import io
import json
import lzma
import math

import fastavro
import pyarrow as pa
import pytest
import zstandard

from transforms.core.model import RAW_LIMIT, Failure, Summary, Transcript, Turn, truncate_raw
from transforms.sinks.kafka_encoding import RowEncoder
from transforms.sinks.schema import (arrow_schema, avro_schema, fields_for, json_line,
                                     normalize_row, row_problem)
from transforms.sources.decompression import StorageReadError
from transforms.sources.parsing import read_file
from transforms.sources.validation import (FieldMapping, MAX_ID_CHARS, dedup_key, metadata_problem,
                                           pick_unique, validate_transcript)

MAPPING = FieldMapping()


def lines(count: int, prefix: str = "r") -> bytes:
    return b"".join(json.dumps({"id": f"{prefix}{i}", "text": f"call {i}"}).encode() + b"\n"
                    for i in range(count))


def read(data: bytes, path: str, fmt: str = "jsonl") -> list:
    return list(read_file(io.BytesIO(data), path, fmt, MAPPING, 400_000))


def split(items: list) -> tuple[list[Transcript], list[Failure]]:
    return ([i for i in items if isinstance(i, Transcript)],
            [i for i in items if isinstance(i, Failure)])


# bz2 at level 1 uses 100 kB blocks, so half of a file of a few hundred kB holds complete blocks.
COMPRESSORS = {".gz": gzip.compress, ".bz2": lambda data: bz2.compress(data, 1),
               ".xz": lambda data: lzma.compress(data, preset=0),
               ".zst": zstandard.ZstdCompressor().compress}


@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_truncated_compressed_file_keeps_records_before_the_cut_and_says_so(suffix):
    # Incompressible ids so the cut lands mid-file whatever the codec.
    data = b"".join(json.dumps({"id": f"r{i}-{i * 7919 % 100003:x}", "text": f"t{i}"}).encode()
                    + b"\n" for i in range(10_000))
    packed = COMPRESSORS[suffix](data)
    transcripts, failures = split(read(packed[: len(packed) // 2], f"calls.jsonl{suffix}"))
    assert 0 < len(transcripts) < 10_000
    [cut] = failures
    assert (cut.stage, cut.error_code, cut.origin) == ("source", "TruncatedFile",
                                                       f"calls.jsonl{suffix}")
    assert f"calls.jsonl{suffix} is cut short" in cut.error_message
    # A line the cut runs through is not read at all: only whole lines come before the failure.
    assert f"{len(transcripts)} records read before it" in cut.error_message


def test_gz_that_is_not_gzip_is_one_failure_naming_the_file():
    [failure] = read(lines(3), "calls.jsonl.gz")
    assert (failure.error_code, failure.origin) == ("UnreadableFile", "calls.jsonl.gz")
    assert "calls.jsonl.gz" in failure.error_message and "(.gz)" in failure.error_message
    assert "0 records read before it" in failure.error_message


def test_complete_compressed_files_read_whole_including_multi_member_gzip():
    assert len(read(gzip.compress(lines(2)) + gzip.compress(lines(3, "s")), "a.jsonl.gz")) == 5
    for suffix, compress in COMPRESSORS.items():
        transcripts, failures = split(read(compress(lines(50)), f"a.jsonl{suffix}"))
        assert (len(transcripts), failures) == (50, []), suffix


class _BrokenStorage(io.RawIOBase):
    """A storage handle whose read fails, like a dropped S3 connection: a fake, because a real
    S3 server cannot be made to drop one read on demand."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise ConnectionError("connection reset")


def test_a_failing_storage_read_propagates_so_the_runner_retries():
    with pytest.raises(StorageReadError, match="calls.jsonl"):
        list(read_file(_BrokenStorage(), "calls.jsonl", "jsonl", MAPPING, 400_000))


def test_json_nested_too_deep_fails_its_line_only():
    data = b"[" * 100_000 + b"]" * 100_000 + b"\n" + lines(1)
    deep, ok = read(data, "in.jsonl")
    assert (deep.error_code, deep.origin) == ("TooDeep", "in.jsonl:1")
    assert ok.id == "r0"
    [document] = read(b"[" * 100_000 + b"]" * 100_000, "in.json", "json")
    assert (document.error_code, document.origin) == ("TooDeep", "in.json")


def test_bom_on_any_line_and_crlf_line_ends_are_read():
    data = b"\xef\xbb\xbf" + lines(1) + b"\xef\xbb\xbf" + lines(1, "s").replace(b"\n", b"\r\n")
    assert [t.id for t in read(data, "in.jsonl")] == ["r0", "s0"]


def transcript(id="t1", text="hello", metadata=None, turns=()) -> Transcript:
    return Transcript(id=id, text=text, metadata=metadata or {}, turns=turns, origin="in.jsonl:4")


@pytest.mark.parametrize("bad,code", [
    (transcript(id="a\ud800"), "InvalidUnicode"),
    (transcript(text="hi \udcff there"), "InvalidUnicode"),
    (transcript(turns=(Turn("Agent\ud800", "hi"),)), "InvalidUnicode"),
    (transcript(metadata={"k": ["x", "\ud800"]}), "InvalidUnicode"),
    (transcript(metadata={"\ud800": 1}), "InvalidUnicode"),
    (transcript(id="a\x00b"), "InvalidId"),
    (transcript(id="a\nb"), "InvalidId"),
    (transcript(id="x" * (MAX_ID_CHARS + 1)), "IdTooLong"),
    (transcript(metadata={"n": 2**63}), "InvalidMetadata"),
    (transcript(metadata={"n": -(2**63) - 1}), "InvalidMetadata"),
    (transcript(metadata={"f": math.nan}), "InvalidMetadata"),
    (transcript(metadata={"f": [math.inf]}), "InvalidMetadata"),
    (transcript(metadata={1: "int key"}), "InvalidMetadata"),
    (transcript(metadata={"deep": json.loads("[" * 40 + "]" * 40)}), "TooDeep"),
])
def test_what_no_sink_can_encode_is_refused_at_validation(bad, code):
    failure = validate_transcript(bad)
    assert failure is not None and (failure.stage, failure.error_code) == ("validate", code)
    assert failure.origin == "in.jsonl:4"
    assert_encodable(failure)


def test_what_every_sink_encodes_passes_validation():
    fine = transcript(id="café-1", text="NUL \x00 and emoji 🎧 pass",
                      metadata={"n": 2**63 - 1, "f": 1.5, "b": b"\x00", "nested": {"a": [1]}})
    assert validate_transcript(fine) is None
    assert metadata_problem({"deep": json.loads("[" * 30 + "]" * 30)}) is None


def assert_encodable(failure: Failure) -> None:
    fields = fields_for("failures")
    row = normalize_row(fields, failure.to_row())
    json_line(fields, row).encode("utf-8")
    pa.Table.from_pylist([row], schema=arrow_schema(fields))
    fastavro.writer(io.BytesIO(), fastavro.parse_schema(avro_schema("Failure", fields)), [row])
    for fmt in ("json", "avro"):
        RowEncoder("failures", fmt).encode(failure)


def test_failure_rows_escape_lone_surrogates_in_every_text_column():
    failure = Failure(stage="validate", error_code="X", error_message="id 'a\ud800'",
                      transcript_id="a\ud800", raw="b\udcff", origin="f\ud800.jsonl:1")
    assert (failure.transcript_id, failure.raw) == ("a\\ud800", "b\\udcff")
    assert_encodable(failure)


def test_truncate_raw_never_raises():
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    assert truncate_raw(deep).startswith("<list that cannot be shown")
    assert truncate_raw(b"\xff" * (RAW_LIMIT * 5)).endswith("...[truncated]")
    assert truncate_raw({"k": "\ud800"}) == '{"k": "\\ud800"}'


def test_summary_text_with_a_lone_surrogate_is_written_escaped():
    fields = fields_for("summaries")
    row = {"transcript_id": "t", "record_id": "R1", "model_id": "m", "summary": "ok \ud800",
           "attempt": 1, "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
    assert normalize_row(fields, row)["summary"] == "ok \\ud800"
    with pytest.raises(ValueError, match="input_tokens.*int64"):
        normalize_row(fields, {**row, "input_tokens": 2**64})


def test_ids_equal_up_to_unicode_normalization_are_duplicates():
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert dedup_key(composed) == dedup_key(decomposed)
    kept, [duplicate] = pick_unique([
        Transcript(id=decomposed, text="b", origin="b.jsonl:1"),
        Transcript(id=composed, text="a", origin="a.jsonl:1")])
    assert kept.id == composed and duplicate.transcript_id == decomposed
    assert "a.jsonl:1" in duplicate.error_message and "b.jsonl:1" in duplicate.error_message
    assert "Unicode normalization" in duplicate.error_message


def test_row_problem_names_what_no_sink_can_write():
    summary = Summary(transcript_id="t", record_id="R1", model_id="m", summary="ok")
    assert row_problem("summaries", summary.to_row()) is None
    bad = dataclasses.replace(summary, output_tokens=2**64)
    assert "output_tokens" in row_problem("summaries", bad.to_row())


@pytest.mark.parametrize("start", [10**400, "inf", [1], {"s": 1}])
def test_turn_times_no_float_holds_fail_the_record_as_invalid_turns(start):
    line = json.dumps({"id": "t", "turns": [{"speaker": "A", "text": "hi", "start": start}]})
    [failure] = read(line.encode() + b"\n", "in.jsonl")
    assert (failure.error_code, failure.origin) == ("InvalidTurns", "in.jsonl:1")
