"""Beam transforms for reading transcripts, on the DirectRunner (and S3 on a real moto server)."""
from __future__ import annotations

import os
import re
import shutil
import typing

import apache_beam as beam
import boto3
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from moto.server import ThreadedMotoServer

from tests.data.sources.make_fixtures import CALLS
from transforms.core.metrics import NAMESPACE
from transforms.core.model import Transcript
from transforms.sources import DeduplicateTranscripts, ReadTranscripts, TranscriptsFromRows

DATA = os.path.join(os.path.dirname(__file__), "data", "sources")


def ids_and_files(result) -> beam.PCollection:
    return result["transcripts"] | "Ids" >> beam.Map(
        lambda t: (t.id, os.path.basename(t.origin or "")))


def failure_keys(result, label: str = "FailureKeys") -> beam.PCollection:
    return result["failures"] | label >> beam.Map(
        lambda f: (f.stage, f.error_code, os.path.basename(f.origin or "")))


def test_reads_every_format_in_one_pattern(tmp_path):
    for name in ("calls.jsonl", "calls.csv", "calls.avro", "calls.parquet", "calls_array.json"):
        shutil.copy(os.path.join(DATA, name), tmp_path / name)
    shutil.copy(os.path.join(DATA, "text", "call-002.txt"), tmp_path / "call-002.txt")
    shutil.copy(os.path.join(DATA, "transcribe", "call-001.json"), tmp_path / "job.json")
    (tmp_path / "notes.xml").write_text("<call/>")
    with TestPipeline() as p:
        result = p | ReadTranscripts(str(tmp_path / "*"))
        expected = []
        for n, call in enumerate(CALLS, start=1):
            expected += [(call["id"], origin) for origin in (
                f"calls.jsonl:{n}", f"calls.csv:{n + 1}", f"calls_array.json#{n}",
                f"calls.avro#{n}", f"calls.parquet#{n}")]
        expected += [("call-002", "call-002.txt"), ("call-001", "job.json")]
        assert_that(ids_and_files(result), equal_to(expected), label="Transcripts")
        assert_that(failure_keys(result), equal_to([("source", "UnknownFormat", "notes.xml")]),
                    label="Failures")


def test_unknown_extension_failure_names_the_input_format_flag(tmp_path):
    (tmp_path / "calls.log").write_text('{"id": "a", "text": "hi"}\n')
    with TestPipeline() as p:
        result = p | ReadTranscripts(str(tmp_path / "calls.log"))
        messages = result["failures"] | beam.Map(lambda f: "--input-format" in f.error_message
                                                 and "calls.log" in f.error_message)
        assert_that(messages, equal_to([True]), label="Named")
        assert_that(result["transcripts"] | beam.Map(lambda t: t.id), equal_to([]), label="None")


def test_explicit_format_overrides_the_extension(tmp_path):
    (tmp_path / "calls.log").write_text('{"id": "a", "text": "hi"}\n')
    with TestPipeline() as p:
        result = p | ReadTranscripts(str(tmp_path / "calls.log"), format="jsonl")
        assert_that(ids_and_files(result), equal_to([("a", "calls.log:1")]))


def test_bad_records_become_failures_and_good_ones_flow(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(
        b'{"call": "a", "body": "fine", "queue": "q", "agent": "x"}\n'
        b'{"call": "b", "body": \n'
        b'{"body": "no id"}\n'
        b'{"call": "c", "body": "   "}\n'
        b'{"call": "d", "body": "' + b"x" * 30 + b'"}\n'
        b'{"call": "e", "body": "\xff\xfe"}\n')
    (tmp_path / "in.txt").write_text("z" * 30)
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 but nothing else")
    p = TestPipeline()
    result = p | ReadTranscripts(str(tmp_path / "*"), id_field="call", text_field="body",
                                 metadata_fields=["queue"], max_text_chars=20)
    assert_that(result["transcripts"] | beam.Map(lambda t: (t.id, t.text, dict(t.metadata))),
                equal_to([("a", "fine", {"queue": "q"})]), label="Transcripts")
    assert_that(failure_keys(result), equal_to([
        ("source", "InvalidJson", "in.jsonl:2"),
        ("validate", "MissingId", "in.jsonl:3"),
        ("validate", "EmptyText", "in.jsonl:4"),
        ("validate", "TextTooLong", "in.jsonl:5"),
        ("source", "InvalidEncoding", "in.jsonl:6"),
        ("validate", "TextTooLong", "in.txt"),
        ("source", "UnreadableFile", "broken.parquet"),
    ]), label="Failures")
    run = p.run()
    run.wait_until_finish()
    counters = {c.key.metric.name: c.committed
                for c in run.metrics().query(MetricsFilter().with_namespace(
                    NAMESPACE))["counters"]}
    assert counters == {"files_read": 3, "transcripts_read": 1, "records_rejected": 7,
                        "records_in": 8}


def test_gzipped_jsonl_is_read(tmp_path):
    import gzip
    with gzip.open(tmp_path / "calls.jsonl.gz", "wb") as f:
        f.write(b'{"id": "g1", "text": "zipped"}\n{"id": "g2", "text": "too"}\n')
    with TestPipeline() as p:
        result = p | ReadTranscripts(str(tmp_path / "*.gz"))
        assert_that(ids_and_files(result), equal_to([("g1", "calls.jsonl.gz:1"),
                                                     ("g2", "calls.jsonl.gz:2")]))


class CallRow(typing.NamedTuple):
    call_id: int
    transcript: str
    queue: str


def test_transcripts_from_rows_accepts_dicts_rows_namedtuples_and_transcripts():
    rows = [
        {"call_id": "d1", "transcript": "from a dict", "queue": "q"},
        beam.Row(call_id="r1", transcript="from a beam.Row", queue="q"),
        CallRow(7, "from a NamedTuple", "q"),
        Transcript(id="t1", text="already a transcript"),
        {"call_id": "empty", "transcript": ""},
        12345,
    ]
    with TestPipeline() as p:
        result = (p | beam.Create(rows, reshuffle=False)
                  | TranscriptsFromRows(id_field="call_id", text_field="transcript"))
        assert_that(result["transcripts"] | beam.Map(lambda t: (t.id, t.text, dict(t.metadata))),
                    equal_to([("d1", "from a dict", {"queue": "q"}),
                              ("r1", "from a beam.Row", {"queue": "q"}),
                              ("7", "from a NamedTuple", {"queue": "q"}),
                              ("t1", "already a transcript", {})]), label="Transcripts")
        assert_that(failure_keys(result), equal_to([("validate", "EmptyText", ""),
                                                    ("source", "InvalidRecord", "")]),
                    label="Failures")


def test_deduplicate_keeps_the_first_origin_and_reports_the_rest(tmp_path):
    (tmp_path / "a.jsonl").write_text("\n".join(
        f'{{"id": "{i}", "text": "a line {n}"}}' for n, i in enumerate(
            ["x", "y", "x", "z", "x", "x", "x", "x", "x", "x", "x"], start=1)) + "\n")
    (tmp_path / "b.jsonl").write_text('{"id": "y", "text": "b line 1"}\n')
    with TestPipeline() as p:
        read = p | ReadTranscripts(str(tmp_path / "*.jsonl"))
        result = read["transcripts"] | DeduplicateTranscripts()
        assert_that(result["transcripts"] | beam.Map(lambda t: (t.id, t.text)),
                    equal_to([("x", "a line 1"), ("y", "a line 2"), ("z", "a line 4")]),
                    label="Kept")
        dup_origins = [f"a.jsonl:{n}" for n in (3, 5, 6, 7, 8, 9, 10, 11)] + ["b.jsonl:1"]
        assert_that(failure_keys(result),
                    equal_to([("validate", "DuplicateTranscriptId", o) for o in dup_origins]),
                    label="Duplicates")
        # a.jsonl:10 sorts after a.jsonl:9 numerically, and every message names the kept origin.
        named = result["failures"] | "Named" >> beam.Map(
            lambda f: f.error_message.split(" duplicates the one kept from ")[1].split(";")[0])
        assert_that(named | beam.Map(os.path.basename),
                    equal_to(["a.jsonl:1"] * 8 + ["a.jsonl:2"]), label="KeptOrigin")


def test_bad_options_fail_at_construction_with_a_clear_message():
    with pytest.raises(ValueError, match="format 'xml' is not supported"):
        ReadTranscripts("x", format="xml")
    with pytest.raises(ValueError, match="max_text_chars"):
        TranscriptsFromRows(max_text_chars=0)


def test_a_pattern_matching_nothing_stops_the_pipeline_naming_it(tmp_path):
    for pattern in (str(tmp_path / "missing.jsonl"), str(tmp_path / "*.jsonl")):
        with pytest.raises(Exception, match="Empty match for pattern " + re.escape(pattern)):
            with TestPipeline() as p:
                p | ReadTranscripts(pattern)


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.get_host_and_port()[1]}"
    finally:
        server.stop()


def test_reads_from_s3_through_beams_s3_filesystem(s3_endpoint):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="sources-test")
    with open(os.path.join(DATA, "calls.jsonl"), "rb") as f:
        s3.put_object(Bucket="sources-test", Key="in/calls.jsonl", Body=f.read())
    with open(os.path.join(DATA, "calls.parquet"), "rb") as f:
        s3.put_object(Bucket="sources-test", Key="in/calls.parquet", Body=f.read())
    options = PipelineOptions([f"--s3_endpoint_url={s3_endpoint}", "--s3_region_name=us-east-1",
                               "--s3_access_key_id=test", "--s3_secret_access_key=test"])
    with TestPipeline(options=options) as p:
        result = p | ReadTranscripts("s3://sources-test/in/*")
        assert_that(result["transcripts"] | beam.Map(lambda t: (t.id, t.origin)), equal_to(
            [(c["id"], f"s3://sources-test/in/calls.jsonl:{n}") for n, c in enumerate(CALLS, 1)]
            + [(c["id"], f"s3://sources-test/in/calls.parquet#{n}")
               for n, c in enumerate(CALLS, 1)]))
