"""WriteSummaries / WriteFailures on the DirectRunner: write files, read them back with
pyarrow / fastavro / json and compare with what went in."""
import dataclasses
import datetime as dt
import glob
import json
import os
import re
import uuid

import apache_beam as beam
import boto3
import fastavro
import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.test_stream import TestStream as BeamTestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import trigger, window

from transforms.core.errors import ConfigError
from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS, Failure, Summary
from transforms.sinks import WriteFailures, WriteRows, WriteSummaries, files
from transforms.sinks.schema import normalize_row, row_from_json

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
EPOCH_T0 = int(T0.timestamp())
FORMATS = ["parquet", "jsonl", "avro"]


def summaries(n=25):
    return [
        Summary(
            transcript_id=f"call-{i:05d}", record_id=f"rec{i:05d}", model_id="anthropic.claude-3-haiku",
            summary=f"Kunde #{i} fragt nach Rückerstattung — 退款 ✓ \"quoted\"\nsecond line",
            stop_reason=None if i % 3 else "end_turn",
            input_tokens=None if i % 4 == 0 else 100 + i, output_tokens=40 + i,
            job_arn=None if i % 2 else f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/j{i}",
            window_start=None if i % 5 == 0 else T0,
            window_end=None if i % 5 == 0 else T0 + dt.timedelta(minutes=5),
            attempt=1 + i % 2, metadata=None if i % 2 else json.dumps({"queue": "billing", "n": i}),
            created_at=T0 + dt.timedelta(seconds=i, microseconds=i),
        )
        for i in range(n)
    ]


def failures(n=12):
    return [
        Failure(stage=("parse", "model", "validate")[i % 3], error_code="ModelError",
                error_message=f"record {i}: ütf-8 ✗ failure", transcript_id=None if i % 4 == 0 else f"t{i}",
                record_id=None if i % 2 else f"r{i}", attempt=i % 3 + 1, raw=None if i % 3 else "{\"bad\": ",
                origin=f"input.jsonl:{i}", created_at=T0 + dt.timedelta(milliseconds=i))
        for i in range(n)
    ]


def read_rows(directory, file_format, fields):
    """Every row of every data file under ``directory`` (hidden files excluded), normalized."""
    return read_files(sorted(glob.glob(os.path.join(directory, "*"))), file_format, fields)


def read_files(paths, file_format, fields):
    rows = []
    for path in paths:
        if file_format == "parquet":
            table = pq.read_table(path)
            assert table.schema.names == [f.name for f in fields]
            rows += table.to_pylist()
        elif file_format == "avro":
            with open(path, "rb") as fh:
                rows += list(fastavro.reader(fh))
        else:
            with open(path, encoding="utf-8") as fh:
                rows += [row_from_json(fields, json.loads(line)) for line in fh]
    return [normalize_row(fields, r) for r in rows]


def by_id(rows):
    return sorted(rows, key=lambda r: (r.get("transcript_id") or "", r.get("error_message")))


@pytest.mark.parametrize("file_format", FORMATS)
def test_summaries_round_trip(tmp_path, file_format):
    elements = summaries()
    out = str(tmp_path / "out")
    with BeamTestPipeline() as p:
        written = (p | beam.Create(elements) | WriteSummaries(out, format=file_format)).written
        assert_that(written | beam.Map(os.path.basename),
                    equal_to([f"part-00000-of-00001.{file_format}"]))
    expected = [normalize_row(SUMMARY_FIELDS, s.to_row()) for s in elements]
    assert by_id(read_rows(out, file_format, SUMMARY_FIELDS)) == by_id(expected)
    assert os.listdir(out) == [f"part-00000-of-00001.{file_format}"]  # temp dir removed


@pytest.mark.parametrize("file_format", FORMATS)
def test_failures_round_trip(tmp_path, file_format):
    elements = failures()
    out = str(tmp_path / "failures")
    with BeamTestPipeline() as p:
        p | beam.Create(elements) | WriteFailures(out, format=file_format)
    expected = [normalize_row(FAILURE_FIELDS, f.to_row()) for f in elements]
    assert by_id(read_rows(out, file_format, FAILURE_FIELDS)) == by_id(expected)


def test_jsonl_lines_keep_unicode_and_iso_timestamps(tmp_path):
    out = str(tmp_path / "j")
    with BeamTestPipeline() as p:
        p | beam.Create(summaries(1)) | WriteSummaries(out, format="jsonl")
    [path] = glob.glob(os.path.join(out, "*.jsonl"))
    with open(path, encoding="utf-8") as fh:
        [line] = fh.read().splitlines()
    assert "退款 ✓" in line
    assert json.loads(line)["created_at"] == "2026-01-01T00:00:00+00:00"


def test_many_rows_write_several_parquet_row_groups(tmp_path, monkeypatch):
    """More rows than one buffered row group: the sink writes them in groups, none lost.
    The row-group bound is lowered (in this process, where the DirectRunner runs) to keep it fast."""
    monkeypatch.setattr(files, "PARQUET_ROW_GROUP_ROWS", 7)
    elements = summaries(25)
    out = str(tmp_path / "big")
    with BeamTestPipeline() as p:
        p | beam.Create(elements, reshuffle=False) | WriteSummaries(out)
    [path] = glob.glob(os.path.join(out, "*.parquet"))
    assert pq.ParquetFile(path).metadata.num_row_groups == 4  # 7 + 7 + 7 + 4
    assert by_id(read_rows(out, "parquet", SUMMARY_FIELDS)) == by_id(
        [normalize_row(SUMMARY_FIELDS, s.to_row()) for s in elements])


@pytest.mark.parametrize("file_format", ["parquet", "avro"])
def test_empty_input_writes_a_readable_schema_only_file(tmp_path, file_format):
    out = str(tmp_path / "empty")
    with BeamTestPipeline() as p:
        written = (p | beam.Create([]).with_output_types(Failure) | WriteFailures(out, format=file_format)).written
        assert_that(written, equal_to([os.path.join(out, f"part-00000-of-00001.{file_format}")]))
    assert os.listdir(out) == [f"part-00000-of-00001.{file_format}"]
    assert read_rows(out, file_format, FAILURE_FIELDS) == []
    path = os.path.join(out, f"part-00000-of-00001.{file_format}")
    if file_format == "parquet":
        assert pq.read_schema(path).names == [f.name for f in FAILURE_FIELDS]
    else:
        with open(path, "rb") as fh:
            assert [f["name"] for f in fastavro.reader(fh).writer_schema["fields"]] == [
                f.name for f in FAILURE_FIELDS]


def test_empty_input_writes_no_jsonl_file(tmp_path):
    """An empty JSONL file carries no schema (and cannot be uploaded to S3), so none is written."""
    out = str(tmp_path / "empty")
    with BeamTestPipeline() as p:
        written = (p | beam.Create([]).with_output_types(Summary) | WriteSummaries(out, format="jsonl")).written
        assert_that(written, equal_to([]))
    assert not os.path.exists(out) or os.listdir(out) == []


WINDOW_NAME = re.compile(r"^part-(\d{8}T\d{6}Z)-(\d{8}T\d{6}Z)-\d{5}-of-\d{5}\.(parquet|jsonl|avro)$")


def window_of(name):
    match = WINDOW_NAME.match(name)
    assert match, name
    parse = lambda text: dt.datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)  # noqa: E731
    return parse(match.group(1)), parse(match.group(2))


@pytest.mark.parametrize("file_format", FORMATS)
def test_fixed_windows_write_one_file_per_window_named_by_its_bounds(tmp_path, file_format):
    elements = summaries(12)
    out = str(tmp_path / "windowed")
    with BeamTestPipeline() as p:
        (p
         | beam.Create([(s, EPOCH_T0 + 25 * i) for i, s in enumerate(elements)], reshuffle=False)
         | beam.MapTuple(window.TimestampedValue)
         | beam.WindowInto(window.FixedWindows(60))
         | WriteSummaries(out, format=file_format))
    names = sorted(os.listdir(out))
    # 12 elements 25 s apart span 300 s: five one-minute windows, one file each.
    assert [window_of(n) for n in names] == [
        (T0 + dt.timedelta(minutes=m), T0 + dt.timedelta(minutes=m + 1)) for m in range(5)]
    for name in names:
        start, end = window_of(name)
        rows = read_files([os.path.join(out, name)], file_format, SUMMARY_FIELDS)
        assert rows, name
        for row in rows:
            i = int(row["transcript_id"].split("-")[1])
            assert start <= T0 + dt.timedelta(seconds=25 * i) < end
    assert len(read_rows(out, file_format, SUMMARY_FIELDS)) == len(elements)


def test_streaming_windows_reach_the_file_names(tmp_path):
    """Unbounded input (TestStream, streaming DirectRunner): each fired window gets its files."""
    elements = summaries(6)
    stream = BeamTestStream()
    for i, s in enumerate(elements):
        stream = stream.add_elements([window.TimestampedValue(s, EPOCH_T0 + 20 * i)])
        stream = stream.advance_watermark_to(EPOCH_T0 + 20 * i + 1)
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    out = str(tmp_path / "stream")
    with beam.Pipeline(options=options) as p:
        (p | stream | beam.WindowInto(window.FixedWindows(60))
         | WriteSummaries(out, format="jsonl"))
    data = [n for n in os.listdir(out) if not n.startswith(".")]
    assert {window_of(n) for n in data} == {
        (T0, T0 + dt.timedelta(minutes=1)), (T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=2))}
    assert by_id(read_rows(out, "jsonl", SUMMARY_FIELDS)) == by_id(
        [normalize_row(SUMMARY_FIELDS, s.to_row()) for s in elements])


def test_row_dicts_are_accepted_and_bad_rows_fail_with_the_column_named(tmp_path):
    good = summaries(1)[0].to_row()
    with BeamTestPipeline() as p:
        p | beam.Create([good]) | WriteSummaries(str(tmp_path / "dicts"), format="jsonl")
    assert read_rows(str(tmp_path / "dicts"), "jsonl", SUMMARY_FIELDS) == [normalize_row(SUMMARY_FIELDS, good)]
    bad = dict(good, summary=None)
    with pytest.raises(Exception, match="column 'summary' is required"):
        with BeamTestPipeline() as p:
            p | beam.Create([bad]) | WriteSummaries(str(tmp_path / "bad"), format="jsonl")


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ConfigError, match="format 'csv' is not a file format"):
        WriteSummaries("/tmp/x", format="csv")
    with pytest.raises(ValueError, match="row kind 'rows' is unknown"):
        WriteRows("/tmp/x", kind="rows")
    with pytest.raises(ValueError, match="needs an output directory"):
        WriteFailures("")


def test_repeated_trigger_is_refused(tmp_path):
    """Files are named per window, so a second firing would overwrite the first."""
    p = BeamTestPipeline()
    pcoll = (p | beam.Create(summaries(2))
             | beam.WindowInto(window.FixedWindows(60), trigger=trigger.Repeatedly(trigger.AfterCount(1)),
                               accumulation_mode=trigger.AccumulationMode.DISCARDING))
    with pytest.raises(ValueError, match="each window must fire once"):
        pcoll | WriteSummaries(str(tmp_path / "t"))


def test_unbounded_global_window_is_refused(tmp_path):
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    pcoll = p | BeamTestStream().add_elements([summaries(1)[0]]).advance_watermark_to_infinity()
    with pytest.raises(ValueError, match=r"apply beam.WindowInto\(window.FixedWindows"):
        pcoll | WriteSummaries(str(tmp_path / "g"))


@pytest.fixture(scope="module")
def s3():
    from pipeline.local.s3 import LocalS3
    with LocalS3() as server:
        client = boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1",
                              **server.credentials.boto3_kwargs())
        client.create_bucket(Bucket="sinks-test")
        yield server, client


@pytest.mark.parametrize("file_format", FORMATS)
def test_writes_to_s3_through_beams_s3_filesystem(s3, tmp_path, file_format):
    """Real S3 protocol (moto server): the sinks write through Beam's S3 file handles."""
    server, client = s3
    key = server.credentials
    options = PipelineOptions([f"--s3_endpoint_url={server.endpoint_url}", "--s3_region_name=us-east-1",
                               f"--s3_access_key_id={key.access_key_id}",
                               f"--s3_secret_access_key={key.secret_access_key}"])
    elements = summaries(8)
    with BeamTestPipeline(options=options) as p:
        written = (p | beam.Create(elements)
                   | WriteSummaries(f"s3://sinks-test/{file_format}", format=file_format)).written
        assert_that(written, equal_to([f"s3://sinks-test/{file_format}/part-00000-of-00001.{file_format}"]))
        p | "Empty" >> beam.Create([]).with_output_types(Summary) | "WriteEmpty" >> WriteSummaries(
            f"s3://sinks-test/empty-{file_format}", format=file_format)
    listing = client.list_objects_v2(Bucket="sinks-test", Prefix=file_format + "/")["Contents"]
    assert [o["Key"] for o in listing] == [f"{file_format}/part-00000-of-00001.{file_format}"]
    local = tmp_path / "copy"
    local.mkdir()
    client.download_file("sinks-test", listing[0]["Key"], str(local / f"part.{file_format}"))
    assert by_id(read_rows(str(local), file_format, SUMMARY_FIELDS)) == by_id(
        [normalize_row(SUMMARY_FIELDS, s.to_row()) for s in elements])
    empty = client.list_objects_v2(Bucket="sinks-test", Prefix=f"empty-{file_format}/").get("Contents", [])
    assert [o["Key"] for o in empty] == (
        [] if file_format == "jsonl" else [f"empty-{file_format}/part-00000-of-00001.{file_format}"])


@pytest.mark.parametrize("file_format", FORMATS)
def test_rows_written_counts_the_rows_the_files_hold(tmp_path, file_format):
    """The <kind>_rows_written counter is incremented by the file sink once its rows are in the
    file (at flush), so it equals what the files hold."""
    from apache_beam.metrics.metric import MetricsFilter

    out = str(tmp_path / "out")
    p = beam.Pipeline()
    p | beam.Create(summaries(30)) | WriteSummaries(out, format=file_format)
    result = p.run()
    result.wait_until_finish()
    query = result.metrics().query(MetricsFilter().with_name("summaries_rows_written"))
    assert sum(c.committed for c in query["counters"]) == 30 == files.rows_in(out, file_format)


def write_window_replay(out, file_format, shards, workers, created_at):
    """One attempt at writing 12 summaries in one-minute windows on ``workers`` FnApiRunner
    workers (3 split a window's rows into 3 bundles, 1 into one), every row produced anew at
    ``created_at``."""
    elements = [dataclasses.replace(s, created_at=created_at) for s in summaries(12)]
    options = PipelineOptions([f"--direct_num_workers={workers}",
                               "--direct_running_mode=multi_threading"])
    with beam.Pipeline(options=options) as p:
        (p | beam.Create([(s, EPOCH_T0 + 10 * i) for i, s in enumerate(elements)])
         | beam.MapTuple(window.TimestampedValue)
         | beam.WindowInto(window.FixedWindows(60))
         | WriteSummaries(out, format=file_format, shards=shards))
    return sorted(n for n in os.listdir(out) if not n.startswith("."))


@pytest.mark.parametrize("file_format,shards", [("parquet", None), ("jsonl", None), ("avro", 3)])
def test_a_replayed_window_replaces_its_files(tmp_path, file_format, shards):
    """A runner that restores a checkpoint writes a window's rows again, in bundles of its own
    and with a new created_at. The second attempt writes files of the same names over the
    first ones: the folder (and rows_in, which the run report reconciles with) holds each row
    once. (When the bundles chose the files, 3 bundles then 1 left 4 files per window.)"""
    out = str(tmp_path / "replayed")
    first = write_window_replay(out, file_format, shards, 3, T0)
    second = write_window_replay(out, file_format, shards, 1, T0 + dt.timedelta(hours=1))
    assert second == first
    assert files.rows_in(out, file_format) == 12
    rows = read_rows(out, file_format, SUMMARY_FIELDS)
    assert sorted(r["transcript_id"] for r in rows) == sorted(s.transcript_id for s in summaries(12))
    assert {r["created_at"] for r in rows} == {T0 + dt.timedelta(hours=1)}
    # Two one-minute windows; with shards=3 each row sits in the file its content picks.
    assert {window_of(n) for n in second} == {
        (T0, T0 + dt.timedelta(minutes=1)), (T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=2))}
    assert all(n.endswith(f"-of-{shards or 1:05d}.{file_format}") for n in second), second


def test_a_replayed_late_pane_replaces_its_file(tmp_path):
    """Streaming with allowed lateness, written twice as a replay would: the on-time file and
    the late pane's -p1 file are written again under the same names, each row once."""
    on_time, late = summaries(2)
    out = str(tmp_path / "late")
    for _attempt in range(2):
        stream = (BeamTestStream()
                  .add_elements([window.TimestampedValue(on_time, EPOCH_T0 + 1)])
                  .advance_watermark_to(EPOCH_T0 + 90)
                  .add_elements([window.TimestampedValue(late, EPOCH_T0 + 2)])
                  .advance_watermark_to_infinity())
        with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
            (p | stream
             | beam.WindowInto(window.FixedWindows(60),
                               trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                               accumulation_mode=trigger.AccumulationMode.DISCARDING,
                               allowed_lateness=3600)
             | WriteSummaries(out, format="jsonl"))
    names = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert names == ["part-20260101T000000Z-20260101T000100Z-00000-of-00001.jsonl",
                     "part-20260101T000000Z-20260101T000100Z-p1-00000-of-00001.jsonl"]
    assert files.rows_in(out, "jsonl") == 2
    assert sorted(r["transcript_id"] for r in read_rows(out, "jsonl", SUMMARY_FIELDS)) == sorted(
        [on_time.transcript_id, late.transcript_id])


@pytest.mark.parametrize("runner", ["DirectRunner", "PrismRunner"])
def test_a_row_behind_a_closed_window_is_written_as_a_late_pane(tmp_path, runner):
    """The sink's input has no allowed lateness (as the CLI's --allowed-lateness-seconds 0 gives
    the summaries): a summary arriving after its window closed (here TestStream puts it behind
    the watermark; on Prism a job finishing late did) is written to the window's -p1 file and
    counted, not dropped at the sink's grouping."""
    from tests.pipelines import prism_args

    on_time, late = summaries(2)
    out = str(tmp_path / "late")
    stream = (BeamTestStream()
              .add_elements([window.TimestampedValue(on_time, EPOCH_T0 + 1)])
              .advance_watermark_to(EPOCH_T0 + 90)
              .add_elements([window.TimestampedValue(late, EPOCH_T0 + 2)])
              .advance_watermark_to_infinity())
    args = ["--streaming"] + (prism_args() if runner == "PrismRunner" else [])
    p = beam.Pipeline(options=PipelineOptions(args))
    result = (p | stream | beam.WindowInto(window.FixedWindows(60))
              | WriteSummaries(out, format="jsonl"))
    counted = tmp_path / "counted"
    counted.mkdir()
    # One file per count (the DoFn may run in a worker process of the runner's own).
    result.counts | beam.Map(lambda n: (counted / uuid.uuid4().hex).write_text(str(n)))
    p.run().wait_until_finish()
    names = sorted(n for n in os.listdir(out) if not n.startswith("."))
    assert names == ["part-20260101T000000Z-20260101T000100Z-00000-of-00001.jsonl",
                     "part-20260101T000000Z-20260101T000100Z-p1-00000-of-00001.jsonl"]
    assert sorted(r["transcript_id"] for r in read_rows(out, "jsonl", SUMMARY_FIELDS)) == sorted(
        [on_time.transcript_id, late.transcript_id])
    assert sum(int(f.read_text()) for f in counted.iterdir()) == 2


def test_shards_must_be_a_whole_number_of_files():
    with pytest.raises(ConfigError, match="shards 0 is not a number of files"):
        WriteSummaries("/tmp/x", shards=0)


def test_a_rerun_bounded_write_leaves_only_its_own_files(tmp_path):
    """In the global window the runner's bundles choose the files: 3 on three workers, then 1
    when the bounded pipeline runs again (as Flink restarting a batch job would). The second
    write removes the first one's files, so each row is in the folder once; a file of another
    naming is left alone."""
    out = tmp_path / "batch"
    out.mkdir()
    (out / "notes.jsonl").write_text("{}\n")
    elements = summaries(12)
    for workers in (3, 1):
        options = PipelineOptions([f"--direct_num_workers={workers}",
                                   "--direct_running_mode=multi_threading"])
        with beam.Pipeline(options=options) as p:
            p | beam.Create(elements) | WriteSummaries(str(out), format="jsonl")
        if workers == 3:
            assert len(list(out.glob("part-*.jsonl"))) == 3
    assert sorted(p.name for p in out.glob("*.jsonl")) == ["notes.jsonl", "part-00000-of-00001.jsonl"]
    rows = read_files([str(out / "part-00000-of-00001.jsonl")], "jsonl", SUMMARY_FIELDS)
    assert sorted(r["transcript_id"] for r in rows) == sorted(s.transcript_id for s in elements)
