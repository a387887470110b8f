"""Pure decoding and validation of transcripts: every format, every bad-record kind."""
from __future__ import annotations

import gzip
import io
import json
import os

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.data.sources.make_fixtures import CALLS
from transforms.core.model import Failure, Transcript, Turn
from transforms.sources.parsing import (detect_format, read_csv, read_file, read_jsonl,
                                        read_parquet, read_text)
from transforms.sources.transcribe_output import transcribe_to_transcript
from transforms.sources.validation import (FieldMapping, coerce_id, InvalidId, origin_sort_key,
                                           pick_unique, record_to_transcript, validate_transcript)

DATA = os.path.join(os.path.dirname(__file__), "data", "sources")
MAPPING = FieldMapping()


def expected_transcript(call: dict) -> Transcript:
    turns = tuple(Turn(t["speaker"], t["text"], t["start"], t["end"])
                  for t in call.get("turns", ()))
    text = call.get("text") or "\n".join(f"{t.speaker}: {t.text}" for t in turns)
    return Transcript(id=call["id"], text=text, turns=turns,
                      metadata={"queue": call["queue"], "agent": call["agent"]})


def read_path(path: str, fmt: str | None = None, mapping: FieldMapping = MAPPING,
              max_text_chars: int = 400_000) -> list:
    with open(path, "rb") as handle:
        return list(read_file(handle, path, fmt or detect_format(path), mapping,
                              max_text_chars))


def read_bytes(data: bytes, path: str, fmt: str, mapping: FieldMapping = MAPPING) -> list:
    return list(read_file(io.BytesIO(data), path, fmt, mapping, 400_000))


def content(items: list, with_metadata: bool = True) -> list[tuple]:
    assert all(isinstance(item, Transcript) for item in items), items
    return [(t.id, t.text, t.turns, dict(t.metadata) if with_metadata else None) for t in items]


@pytest.mark.parametrize("name", ["calls.jsonl", "calls_array.json", "calls_wrapped.json",
                                  "calls.csv", "calls.avro", "calls.parquet"])
def test_every_record_format_reads_the_same_transcripts(name):
    items = read_path(os.path.join(DATA, name))
    assert content(items) == content([expected_transcript(call) for call in CALLS])


def test_origins_name_the_file_and_line_or_record():
    jsonl = read_path(os.path.join(DATA, "calls.jsonl"))
    assert [t.origin for t in jsonl] == [os.path.join(DATA, f"calls.jsonl:{n}") for n in (1, 2, 3)]
    parquet = read_path(os.path.join(DATA, "calls.parquet"))
    assert [t.origin.rsplit("/", 1)[1] for t in parquet] == [
        "calls.parquet#1", "calls.parquet#2", "calls.parquet#3"]
    csv_origins = [t.origin.rsplit(":", 1)[1] for t in read_path(os.path.join(DATA, "calls.csv"))]
    # call-001's turns cell holds no newline, so rows are lines 2, 3, 4 after the header.
    assert csv_origins == ["2", "3", "4"]


def test_plain_text_file_is_one_transcript_named_after_the_file():
    path = os.path.join(DATA, "text", "call-002.txt")
    [transcript] = read_path(path)
    assert (transcript.id, transcript.text, transcript.origin) == (
        "call-002", CALLS[1]["text"], path)


@pytest.mark.parametrize("name,style", [("call-001.json", "speaker_labels + items"),
                                        ("call-003.json", "audio_segments")])
def test_transcribe_output_gives_the_same_turns_as_the_other_formats(name, style):
    path = os.path.join(DATA, "transcribe", name)
    [transcript] = read_path(path)  # auto: a .json file recognized as Transcribe by its shape
    expected = expected_transcript(next(c for c in CALLS if c["id"] == name[:-5]))
    assert content([transcript], with_metadata=False) == content([expected], with_metadata=False)
    assert read_path(path, "transcribe") == [transcript]


def test_transcribe_without_speaker_labels_uses_plain_transcript_and_file_name():
    document = {"results": {"language_code": "en-US",
                            "transcripts": [{"transcript": "Hello there."}], "items": []}}
    transcript = transcribe_to_transcript(document, "s3://b/calls/job-7.json")
    assert (transcript.id, transcript.text, transcript.turns) == ("job-7", "Hello there.", ())
    assert transcript.metadata == {"language_code": "en-US"}


def test_transcribe_words_fall_in_speaker_segments_by_time_without_segment_items():
    def word(content, start, end):
        return {"type": "pronunciation", "start_time": start, "end_time": end,
                "alternatives": [{"content": content}]}
    results = {"transcripts": [{"transcript": "Hi. Hello there"}],
               "speaker_labels": {"segments": [
                   {"speaker_label": "spk_0", "start_time": "0.0", "end_time": "1.0"},
                   {"speaker_label": "spk_1", "start_time": "1.2", "end_time": "3.0"}]},
               "items": [word("Hi", "0.1", "0.5"),
                         {"type": "punctuation", "alternatives": [{"content": "."}]},
                         word("Hello", "1.3", "1.8"), word("there", "2.0", "2.9")]}
    transcript = transcribe_to_transcript({"jobName": "j", "results": results}, "j.json")
    assert transcript.turns == (Turn("spk_0", "Hi.", 0.1, 0.5),
                                Turn("spk_1", "Hello there", 1.3, 2.9))
    assert transcript.text == "spk_0: Hi.\nspk_1: Hello there"


def test_broken_transcribe_segments_are_a_failure():
    results = {"transcripts": [{"transcript": "x"}], "speaker_labels": {"segments": [{}]},
               "items": [{"type": "pronunciation", "start_time": "zero"}]}
    failure = transcribe_to_transcript({"jobName": "j", "results": results}, "j.json")
    assert (failure.stage, failure.error_code, failure.origin) == (
        "source", "InvalidTranscribeOutput", "j.json")


def test_transcribe_format_refuses_other_json():
    [failure] = read_bytes(b'{"id": "x", "text": "hi"}', "x.json", "transcribe")
    assert (failure.stage, failure.error_code) == ("source", "NotTranscribeOutput")


def test_gzipped_jsonl_and_compression_suffixes_are_detected():
    assert detect_format("s3://b/in/calls.jsonl.gz") == "jsonl"
    assert detect_format("calls.NDJSON") == "jsonl"
    assert detect_format("calls.xml") is None
    data = gzip.compress(b'{"id": "a", "text": "hi"}\n')
    with gzip.open(io.BytesIO(data)) as handle:
        [transcript] = list(read_jsonl(handle, "a.jsonl.gz", MAPPING))
    assert transcript.id == "a"


def test_field_mapping_and_chosen_metadata():
    mapping = FieldMapping.of(id_field="call_id", text_field="body", metadata_fields=["queue"])
    [transcript] = read_bytes(b'{"call_id": 42, "body": "hi", "queue": "q1", "agent": "x"}\n',
                              "f.jsonl", "jsonl", mapping)
    assert (transcript.id, transcript.text, dict(transcript.metadata)) == ("42", "hi",
                                                                           {"queue": "q1"})


def failures_by_origin(items: list) -> dict[str, tuple[str, str]]:
    return {f.origin: (f.stage, f.error_code) for f in items if isinstance(f, Failure)}


def test_bad_jsonl_records_become_failures_and_the_file_goes_on():
    lines = [
        b'{"id": "ok-1", "text": "fine"}',
        b'{"id": "bad-json", "text": ',
        b'["not", "an", "object"]',
        b'{"text": "no id"}',
        b'{"id": null, "text": "null id"}',
        b'{"id": ["a"], "text": "list id"}',
        b'{"id": {"a": 1}, "text": "dict id"}',
        b'{"id": 1.5, "text": "float id"}',
        b'{"id": "no-text", "queue": "q"}',
        b'{"id": "blank", "text": "  \\n "}',
        b'{"id": "long", "text": "' + b"x" * 60 + b'"}',
        b'{"id": "bytes", "text": "caf\xe9"}',
        b'{"id": "turns", "turns": [{"speaker": "a"}]}',
        b'{"id": "text-type", "text": 12}',
        b'',
        b'{"id": 7, "text": "int id is fine"}',
    ]
    data = b"\n".join(lines) + b"\n"
    items = read_bytes(data, "in.jsonl", "jsonl")
    checked = [validate_transcript(i, max_text_chars=50) or i if isinstance(i, Transcript) else i
               for i in items]
    assert failures_by_origin(checked) == {
        "in.jsonl:2": ("source", "InvalidJson"),
        "in.jsonl:3": ("source", "InvalidRecord"),
        "in.jsonl:4": ("validate", "MissingId"),
        "in.jsonl:5": ("validate", "MissingId"),
        "in.jsonl:6": ("validate", "InvalidId"),
        "in.jsonl:7": ("validate", "InvalidId"),
        "in.jsonl:8": ("validate", "InvalidId"),
        "in.jsonl:9": ("validate", "MissingText"),
        "in.jsonl:10": ("validate", "EmptyText"),
        "in.jsonl:11": ("validate", "TextTooLong"),
        "in.jsonl:12": ("source", "InvalidEncoding"),
        "in.jsonl:13": ("validate", "InvalidTurns"),
        "in.jsonl:14": ("validate", "InvalidText"),
    }
    assert [t.id for t in checked if isinstance(t, Transcript)] == ["ok-1", "7"]
    for failure in checked:
        if isinstance(failure, Failure):
            assert failure.error_message and failure.raw, failure
    too_long = next(f for f in checked if isinstance(f, Failure) and f.error_code == "TextTooLong")
    assert "--max-text-chars" in too_long.error_message and too_long.transcript_id == "long"


def test_bad_csv_rows_fail_alone():
    data = (b'id,text,queue\n'
            b'a,"multi\nline text",q\n'
            b'b,"caf\xe9",q\n'
            b'c,too,many,fields\n'
            b',no id,q\n'
            b'd,fine,q\n'
            b'e,"stray"quote,q\n'
            b'f,also fine,q\n'
            b'g,"never closed,q\n'
            b'h,swallowed by the open quote,q\n')
    items = list(read_csv(io.BytesIO(data), "in.csv", MAPPING))
    assert failures_by_origin(items) == {"in.csv:4": ("source", "InvalidEncoding"),
                                         "in.csv:5": ("source", "InvalidCsv"),
                                         "in.csv:6": ("validate", "InvalidId"),
                                         "in.csv:8": ("source", "InvalidCsv"),
                                         "in.csv:10": ("source", "InvalidCsv")}
    good = [(t.id, t.text, t.origin) for t in items if isinstance(t, Transcript)]
    assert good == [("a", "multi\nline text", "in.csv:2"), ("d", "fine", "in.csv:7"),
                    ("f", "also fine", "in.csv:9")]


def test_csv_header_without_the_id_column_is_one_clear_failure():
    [failure] = list(read_csv(io.BytesIO(b"call,body\n1,hi\n"), "in.csv", MAPPING))
    assert failure.error_code == "MissingColumn" and "--id-field" in failure.error_message


def test_csv_reads_cells_over_the_default_field_size_limit():
    text = "word " * 40_000  # 200 k characters: over csv's 128 KiB default field limit
    data = ("id,text\nbig," + text + "\n").encode()
    [transcript] = list(read_csv(io.BytesIO(data), "in.csv", MAPPING))
    assert transcript.text == text


def test_jsonl_and_csv_are_streamed_not_loaded_whole():
    jsonl = io.BytesIO(b"".join(b'{"id": "%d", "text": "t"}\n' % i for i in range(20_000)))
    assert next(read_jsonl(jsonl, "big.jsonl", MAPPING)).id == "0"
    assert jsonl.tell() < 100
    csv_file = io.BytesIO(b"id,text\n" + b"".join(b"%d,t\n" % i for i in range(20_000)))
    assert next(read_csv(csv_file, "big.csv", MAPPING)).id == "0"
    assert csv_file.tell() < 100


def test_oversized_text_file_fails_without_reading_it_whole():
    handle = io.BytesIO(b"y" * 10_000)
    [failure] = list(read_text(handle, "big.txt", max_text_chars=100))
    assert (failure.error_code, failure.transcript_id) == ("TextTooLong", "big")
    assert handle.tell() == 401


def test_invalid_json_document_and_unknown_non_object_elements():
    [failure] = read_bytes(b"[{", "x.json", "json")
    assert (failure.stage, failure.error_code, failure.origin) == ("source", "InvalidJson", "x.json")
    items = read_bytes(b'[{"id": "a", "text": "t"}, 3]', "x.json", "json")
    assert failures_by_origin(items) == {"x.json#2": ("source", "InvalidRecord")}


def _avro_bytes(count: int) -> bytes:
    schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"},
                                                        {"name": "text", "type": "string"}]}
    buf = io.BytesIO()
    fastavro.writer(buf, schema, [{"id": f"r{i}", "text": "t" * 40} for i in range(count)],
                    codec="deflate", sync_interval=500)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,data", [
    ("avro", b"definitely not avro"),
    ("avro", _avro_bytes(400)[:1500]),
    ("parquet", b"definitely not parquet"),
])
def test_unreadable_binary_file_is_one_failure_naming_the_file(fmt, data):
    items = read_bytes(data, f"bad.{fmt}", fmt)
    failures = [i for i in items if isinstance(i, Failure)]
    assert len(failures) == 1
    assert (failures[0].stage, failures[0].error_code, failures[0].origin) == (
        "source", "UnreadableFile", f"bad.{fmt}")
    assert "bad." + fmt in failures[0].error_message


def test_parquet_is_read_in_batches_with_only_needed_columns():
    table = pa.table({"id": [str(i) for i in range(2500)], "text": ["t"] * 2500,
                      "queue": ["q"] * 2500, "blob": [b"x" * 10] * 2500})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=1000)
    mapping = FieldMapping.of(metadata_fields=["queue"])
    items = list(read_parquet(io.BytesIO(buf.getvalue()), "p.parquet", mapping, batch_rows=300))
    assert len(items) == 2500 and items[-1].origin == "p.parquet#2500"
    assert dict(items[0].metadata) == {"queue": "q"}


def test_turns_render_as_speaker_lines_and_keep_times():
    record = {"id": "t", "turns": json.dumps([{"speaker": "Agent", "text": "Hello", "start": "1.5"},
                                              {"text": "Hi"}])}
    transcript = record_to_transcript(record, MAPPING, None)
    assert transcript.text == "Agent: Hello\nUnknown: Hi"
    assert transcript.turns == (Turn("Agent", "Hello", 1.5, None), Turn("Unknown", "Hi"))


def test_coerce_id():
    assert coerce_id("a") == "a" and coerce_id(12) == "12"
    for bad in (None, True, 1.0, [], {}, "  "):
        with pytest.raises(InvalidId):
            coerce_id(bad)


def test_pick_unique_keeps_the_first_origin_numerically_and_names_both():
    def transcript(origin):
        return Transcript(id="dup", text=f"from {origin}", origin=origin)

    kept, failures = pick_unique([transcript("a.jsonl:10"), transcript("b.jsonl:1"),
                                  transcript("a.jsonl:9")])
    assert kept.origin == "a.jsonl:9"
    assert [f.origin for f in failures] == ["a.jsonl:10", "b.jsonl:1"]
    assert all(f.error_code == "DuplicateTranscriptId" and "a.jsonl:9" in f.error_message
               for f in failures)
    assert origin_sort_key(None) > origin_sort_key("z.csv:1")


def test_metadata_object_is_the_metadata_and_other_fields_join_it():
    from transforms.sources.validation import FieldMapping, record_to_transcript

    record = {"id": "c1", "text": "hello", "metadata": {"queue": "billing"}, "agent": "dana"}
    transcript = record_to_transcript(record, FieldMapping(), "f.jsonl:1")
    assert transcript.metadata == {"queue": "billing", "agent": "dana"}
