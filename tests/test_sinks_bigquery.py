"""WriteSummariesToBigQuery / WriteFailuresToBigQuery: DirectRunner pipelines stream rows into a
local BigQuery emulator (session fixture ``bq_emulator``, PyPI bqemulator) and the rows are read
back through its REST API with google-cloud-bigquery. The retry paths of real BigQuery that the
emulator never takes (transient errors) use a recording fake, said so where used."""
import contextlib
import dataclasses
import datetime as dt
import http.server
import json
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from google.cloud import bigquery

from tests import rows as sample_rows
from transforms.core.model import FAILURE_FIELDS, RAW_LIMIT, SUMMARY_FIELDS
from transforms.sinks.bigquery import (WriteFailuresToBigQuery, WriteRowsToBigQuery,
                                       WriteSummariesToBigQuery)
from transforms.sinks.bigquery_rows import (REJECTED_CODE, REJECTED_STAGE, InsertRows,
                                            describe_errors, parse_table, rejected_failure)
from transforms.sinks.row_ids import insert_id
from transforms.sinks.schema import bigquery_schema, normalize_row

T0 = sample_rows.T0


def summaries(n=12):
    return sample_rows.summaries(n)


def failures(n=7):
    return sample_rows.failures(n)


def run(build, args=()):
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner", *args]))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def counter(result, name):
    return sum(c.committed for c in result.metrics().query(MetricsFilter().with_name(name))["counters"])


def new_table(client, fields, overrides=None):
    """Create a fresh table with the sink's schema (``overrides`` changes column types);
    return its ``project:dataset.table`` name."""
    dataset = f"ds_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    schema = [bigquery.SchemaField.from_api_repr({**f, "type": (overrides or {}).get(f["name"], f["type"])})
              for f in bigquery_schema(fields)["fields"]]
    client.create_table(bigquery.Table(f"{client.project}.{dataset}.rows", schema=schema))
    return f"{client.project}:{dataset}.rows"


def read_back(client, table, fields):
    project, rest = table.split(":")
    return sorted((normalize_row(fields, dict(r)) for r in client.list_rows(f"{project}.{rest}")),
                  key=lambda r: (r["transcript_id"] or "", r["created_at"]))


def expected(items, fields):
    return sorted((normalize_row(fields, i.to_row()) for i in items),
                  key=lambda r: (r["transcript_id"] or "", r["created_at"]))


# -- pure logic ---------------------------------------------------------------------------------

def test_parse_table_accepts_project_dataset_table_and_names_the_fix():
    assert parse_table("my-project:calls.summaries") == ("my-project", "calls", "summaries")
    assert parse_table("example.com:my-proj:calls_2.t$20260101") == ("example.com:my-proj", "calls_2",
                                                                    "t$20260101")
    for bad in ("calls.summaries", "my-project.calls.summaries", "my-project:calls", "", "P:ds.t"):
        with pytest.raises(ValueError, match="is not 'project:dataset.table'"):
            parse_table(bad)


def test_insert_rows_are_json_rows_with_iso_utc_timestamps():
    row = InsertRows("summaries")(summaries(2)[1])
    assert row["window_start"] == "2026-01-01T00:00:00+00:00"
    assert row["created_at"] == "2026-01-01T00:00:01.000001+00:00"
    assert list(row) == [f.name for f in SUMMARY_FIELDS]
    with pytest.raises(ValueError, match="column 'attempt' needs an int"):
        InsertRows("summaries")({**summaries(1)[0].to_row(), "attempt": "1"})


def test_rejected_failure_keeps_ids_and_bounds_raw():
    row = {**InsertRows("summaries")(summaries(1)[0]), "summary": "x" * (RAW_LIMIT + 10)}
    errors = [{"reason": "invalid", "location": "stop_reason", "message": "bad int"},
              {"reason": "stopped", "message": ""}]
    failure = rejected_failure("p-123456:ds.t", row, errors)
    assert (failure.stage, failure.error_code) == (REJECTED_STAGE, REJECTED_CODE)
    assert (failure.transcript_id, failure.record_id, failure.attempt) == ("anruf-ü-000", "rec000", 1)
    assert failure.error_message == ("BigQuery rejected the row for p-123456:ds.t: "
                                     "invalid at stop_reason: bad int; stopped")
    assert failure.raw.endswith("...[truncated]") and len(failure.raw) < RAW_LIMIT + 20
    assert describe_errors([]) == "no error detail returned"


def test_bad_options_fail_with_one_line_errors():
    with pytest.raises(ValueError, match="is not 'project:dataset.table'"):
        WriteSummariesToBigQuery("calls.summaries")
    with pytest.raises(ValueError, match="write_disposition 'WRITE_TRUNCATE' is not supported"):
        WriteSummariesToBigQuery("p-123456:ds.t", write_disposition="WRITE_TRUNCATE")
    with pytest.raises(ValueError, match="row kind 'calls' is unknown"):
        WriteRowsToBigQuery("p-123456:ds.t", kind="calls")
    with pytest.raises(ValueError, match="insert_client needs create_disposition=CREATE_NEVER"):
        WriteSummariesToBigQuery("p-123456:ds.t", insert_client=RecordingInsertClient(Path("x")))


# -- against the emulator -----------------------------------------------------------------------

def test_summaries_stream_into_an_existing_table(bq_env, bq_client):
    table = new_table(bq_client, SUMMARY_FIELDS)
    items = summaries()

    def build(p):
        out = p | beam.Create(items) | WriteSummariesToBigQuery(table, create_disposition="CREATE_NEVER")
        assert_that(out.failures, equal_to([]))

    result = run(build)
    assert read_back(bq_client, table, SUMMARY_FIELDS) == expected(items, SUMMARY_FIELDS)
    assert counter(result, "summaries_rows_sent") == len(items)
    assert counter(result, "summaries_rows_rejected") == 0


def test_failures_stream_into_an_existing_table(bq_env, bq_client):
    table = new_table(bq_client, FAILURE_FIELDS)
    items = failures()
    run(lambda p: p | beam.Create(items) | WriteFailuresToBigQuery(table, create_disposition="CREATE_NEVER"))
    assert read_back(bq_client, table, FAILURE_FIELDS) == expected(items, FAILURE_FIELDS)


def test_rows_the_table_rejects_become_failures(bq_env, bq_client):
    """An older table whose stop_reason column is INT64: rows with a stop reason are rejected
    (reason 'invalid', not retried) and come back as Failures; the other rows land."""
    table = new_table(bq_client, SUMMARY_FIELDS, overrides={"stop_reason": "INT64"})
    items = summaries()
    bad = [s for s in items if s.stop_reason is not None]

    def build(p):
        out = p | beam.Create(items) | WriteSummariesToBigQuery(table, create_disposition="CREATE_NEVER")
        assert_that(out.failures | beam.Map(lambda f: (f.stage, f.error_code, f.transcript_id,
                                                           f.record_id, f.attempt, json.loads(f.raw))),
                    equal_to([(REJECTED_STAGE, REJECTED_CODE, s.transcript_id, s.record_id, s.attempt,
                               InsertRows("summaries")(s)) for s in bad]))
        assert_that(out.failures | beam.Map(lambda f: f.error_message.startswith(
            f"BigQuery rejected the row for {table}: invalid")), equal_to([True] * len(bad)))

    result = run(build)
    landed = [r["transcript_id"] for r in read_back(bq_client, table, SUMMARY_FIELDS)]
    assert sorted(landed) == sorted(s.transcript_id for s in items if s.stop_reason is None)
    assert counter(result, "summaries_rows_rejected") == len(bad)


def test_unbounded_windowed_summaries_stream_in(bq_env, bq_client):
    table = new_table(bq_client, SUMMARY_FIELDS)
    items = summaries(6)
    stream = TestStream()
    for offset in (0, 3):
        stream = stream.advance_watermark_to(offset * 60).add_elements(
            [window.TimestampedValue(s, offset * 60 + i) for i, s in enumerate(items[offset:offset + 3])])
    stream = stream.advance_watermark_to_infinity()

    def build(p):
        out = (p | stream | beam.WindowInto(window.FixedWindows(60))
               | WriteSummariesToBigQuery(table, create_disposition="CREATE_NEVER"))
        assert_that(out.failures, equal_to([]))

    run(build, ["--streaming"])
    assert read_back(bq_client, table, SUMMARY_FIELDS) == expected(items, SUMMARY_FIELDS)


@contextlib.contextmanager
def recording_proxy(target: str):
    """An HTTP proxy in front of the emulator that records the body of every insertAll request;
    yields (its URL, the list of recorded bodies)."""
    recorded: list[dict] = []

    class Forward(http.server.BaseHTTPRequestHandler):
        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command == "POST" and self.path.split("?")[0].endswith("/insertAll"):
                recorded.append(json.loads(body))
            skip = {"host", "content-length", "accept-encoding", "connection"}
            request = urllib.request.Request(
                target + self.path, data=body, method=self.command,
                headers={k: v for k, v in self.headers.items() if k.lower() not in skip})
            try:
                with urllib.request.urlopen(request, timeout=120) as answer:
                    status, headers, data = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as err:
                status, headers, data = err.code, err.headers, err.read()
            self.send_response(status)
            for key, value in headers.items():
                if key.lower() not in {"transfer-encoding", "connection", "content-length",
                                       "content-encoding", "date", "server"}:
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", recorded
    finally:
        server.shutdown()
        server.server_close()


def test_a_replayed_window_is_inserted_with_the_insert_ids_of_the_first(bq_env, bq_client,
                                                                         monkeypatch):
    """A streaming runner that restores a checkpoint inserts a window's rows again, produced
    anew (new created_at). Each row goes out with the same insertId both times (run id + row
    id), so real BigQuery's best-effort de-duplication can drop the second copy.

    The emulator (bqemulator 1.4) ignores insertId and stores both copies, so this test checks
    what is sent: a proxy in front of the emulator records the insertAll requests."""
    table = new_table(bq_client, FAILURE_FIELDS)
    items = failures(9)
    with recording_proxy(bq_env.rest_url) as (url, recorded):
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)
        sent = []
        for created_at in (T0, T0 + dt.timedelta(minutes=5)):
            rows = [dataclasses.replace(f, created_at=created_at) for f in items]
            run(lambda p: (p | beam.Create([(f, i) for i, f in enumerate(rows)])
                           | beam.MapTuple(window.TimestampedValue)
                           | beam.WindowInto(window.FixedWindows(60))
                           | WriteFailuresToBigQuery(table, create_disposition="CREATE_NEVER",
                                                     run_id="run-1")))
            sent.append({row["insertId"]: row["json"] for body in recorded for row in body["rows"]})
            recorded.clear()
    first, second = sent
    assert len(first) == len(items) and set(second) == set(first)
    for key, row in first.items():
        assert key == insert_id(row, "run-1") and key.startswith("run-1-")
        assert second[key]["created_at"] != row["created_at"]
    # The emulator kept both copies (it does not de-duplicate); each row is there.
    stored = read_back(bq_client, table, FAILURE_FIELDS)
    assert len(stored) == 2 * len(items)
    assert sorted({r["origin"] for r in stored}) == sorted(f.origin for f in items)


def test_a_callers_insert_client_gets_the_rows_insert_ids(tmp_path):
    """Recording fake (see RecordingInsertClient): the ids reach a caller's client too."""
    items = summaries(3)
    log = tmp_path / "ids.jsonl"

    class IdsClient(RecordingInsertClient):
        def insert_rows_json(self, table, json_rows, row_ids=None, **kwargs):
            with log.open("a") as out:
                out.write(json.dumps(row_ids) + "\n")
            return super().insert_rows_json(table, json_rows, row_ids=row_ids, **kwargs)

    fake = IdsClient(tmp_path / "calls.jsonl")
    run(lambda p: p | beam.Create(items) | WriteSummariesToBigQuery(
        "p-123456:ds.t", create_disposition="CREATE_NEVER", insert_client=fake))
    [ids] = [json.loads(line) for line in log.read_text().splitlines()]
    [call] = fake.calls()
    assert ids == [insert_id(row) for row in call["rows"]]


def test_create_if_needed_creates_the_table_with_the_summary_schema(bq_env, bq_client, monkeypatch):
    """Beam creates missing tables through its apitools client, whose base URL has no setting:
    this test alone repoints that class constant at the emulator."""
    monkeypatch.setattr(bigquery_v2_client.BigqueryV2, "BASE_URL", f"{bq_env.rest_url}/bigquery/v2/")
    dataset = f"ds_{uuid.uuid4().hex[:8]}"
    bq_client.create_dataset(dataset)
    table = f"{bq_client.project}:{dataset}.created"
    items = summaries(3)
    run(lambda p: p | beam.Create(items) | WriteSummariesToBigQuery(table))
    created = bq_client.get_table(f"{bq_client.project}.{dataset}.created")
    assert [(f.name, f.field_type, f.mode, f.description) for f in created.schema] == [
        (f["name"], f["type"], f["mode"], f["description"]) for f in bigquery_schema(SUMMARY_FIELDS)["fields"]]
    assert read_back(bq_client, table, SUMMARY_FIELDS) == expected(items, SUMMARY_FIELDS)


# -- recording fake for the retry paths ---------------------------------------------------------

class RecordingInsertClient:
    """FAKE google-cloud-bigquery client: only ``insert_rows_json``, used because the emulator
    never returns transient errors. Like BigQuery with skipInvalidRows, it stores the valid rows
    of a request and returns per-row errors for the rest: 'invalid' for every row whose
    transcript_id is in ``invalid``, and 'backendError' (transient) the first time it sees a row
    whose transcript_id is in ``transient_once``. Every request is appended to ``log`` (a JSONL
    file, since Beam pickles the client into its DoFn)."""

    def __init__(self, log: Path, invalid=(), transient_once=()) -> None:
        self.log = log
        self.invalid = set(invalid)
        self.transient_once = set(transient_once)

    def calls(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def insert_rows_json(self, table, json_rows, row_ids=None, skip_invalid_rows=False, **_):
        assert skip_invalid_rows, "Beam's streaming inserts always skip invalid rows"
        seen = {r["transcript_id"] for call in self.calls() for r in call["rows"]}
        errors = []
        for index, row in enumerate(json_rows):
            tid = row["transcript_id"]
            if tid in self.invalid:
                errors.append({"index": index, "errors": [{"reason": "invalid", "location": "summary",
                                                           "message": "value too long"}]})
            elif tid in self.transient_once and tid not in seen:
                errors.append({"index": index, "errors": [{"reason": "backendError", "message": "retry"}]})
        failed = {e["index"] for e in errors}
        with self.log.open("a") as out:
            out.write(json.dumps({"table": table, "rows": json_rows,
                                  "stored": [i for i in range(len(json_rows)) if i not in failed]}) + "\n")
        return errors


def stored_ids(fake):
    return sorted(call["rows"][i]["transcript_id"] for call in fake.calls() for i in call["stored"])


def test_transient_errors_are_retried_and_invalid_rows_become_failures(tmp_path):
    """Recording fake (see RecordingInsertClient): a transient error is retried until the row is
    stored; an invalid row sent in the same retry ends as a Failure, stored never."""
    items = summaries(4)
    ids = [s.transcript_id for s in items]
    fake = RecordingInsertClient(tmp_path / "calls.jsonl", invalid=[ids[1]], transient_once=[ids[2]])

    def build(p):
        out = p | beam.Create(items) | WriteSummariesToBigQuery(
            "p-123456:ds.t", create_disposition="CREATE_NEVER", insert_client=fake)
        assert_that(out.failures | beam.Map(lambda f: (f.transcript_id, f.error_message)),
                    equal_to([(ids[1], "BigQuery rejected the row for p-123456:ds.t: "
                                       "invalid at summary: value too long")]))

    run(build)
    assert stored_ids(fake) == sorted([ids[0], ids[2], ids[3]])
    assert len(fake.calls()) == 2
    assert {c["table"] for c in fake.calls()} == {"p-123456.ds.t"}


def test_retry_never_turns_a_transient_error_into_a_failure(tmp_path):
    """Recording fake (see RecordingInsertClient): with RETRY_NEVER a transient error is final."""
    items = summaries(2)
    fake = RecordingInsertClient(tmp_path / "calls.jsonl", transient_once=[items[0].transcript_id])

    def build(p):
        out = p | beam.Create(items) | WriteSummariesToBigQuery(
            "p-123456:ds.t", create_disposition="CREATE_NEVER", retry_strategy="RETRY_NEVER",
            insert_client=fake)
        assert_that(out.failures | beam.Map(lambda f: (f.transcript_id, f.error_code)),
                    equal_to([(items[0].transcript_id, REJECTED_CODE)]))

    run(build)
    assert stored_ids(fake) == [items[1].transcript_id]


def run_cli_into_tables(tmp_path, lines: str, summaries_table: str, failures_table: str,
                        exit_code: int = 0) -> None:
    """`run --sink bigquery` on the local backend over JSONL ``lines``, into existing tables."""
    from pipeline.__main__ import main

    path = tmp_path / "in.jsonl"
    path.write_text(lines)
    assert main(["run", "--input", str(path), "--sink", "bigquery", "--min-records-per-job", "1",
                 "--bigquery-summaries-table", summaries_table,
                 "--bigquery-failures-table", failures_table,
                 "--bigquery-create-disposition", "CREATE_NEVER"]) == exit_code


def jsonl(items) -> str:
    return "".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items)


def test_cli_sink_bigquery(bq_env, bq_client, tmp_path, capsys):
    """`run --sink bigquery` on the local backend: summaries and failures land in their tables."""
    from tests.pipelines import transcripts

    summaries_table = new_table(bq_client, SUMMARY_FIELDS)
    failures_table = new_table(bq_client, FAILURE_FIELDS)
    items = transcripts(6, prefix="bq")
    run_cli_into_tables(tmp_path, jsonl(items) + '{"id": "no-text"}\n', summaries_table,
                        failures_table)
    report = capsys.readouterr().out
    assert "summaries       6" in report and "failures        1" in report
    rows = read_back(bq_client, summaries_table, SUMMARY_FIELDS)
    assert sorted(r["transcript_id"] for r in rows) == sorted(t.id for t in items)
    [failure] = read_back(bq_client, failures_table, FAILURE_FIELDS)
    assert failure["transcript_id"] == "no-text" and failure["error_code"] == "MissingText"


def test_cli_rows_the_summaries_table_rejects_become_failure_rows(bq_env, bq_client, tmp_path, capsys):
    from tests.pipelines import transcripts

    # A summaries table whose stop_reason column is INT64 rejects every summary row.
    summaries_table = new_table(bq_client, SUMMARY_FIELDS, overrides={"stop_reason": "INT64"})
    failures_table = new_table(bq_client, FAILURE_FIELDS)
    items = transcripts(4, prefix="rej")
    # Every record ended as a failure row, so the run exits 3.
    run_cli_into_tables(tmp_path, jsonl(items), summaries_table, failures_table, exit_code=3)
    report = capsys.readouterr().out
    assert "records in      4" in report and "summaries       0" in report
    failures = read_back(bq_client, failures_table, FAILURE_FIELDS)
    assert sorted(f["transcript_id"] for f in failures) == sorted(t.id for t in items)
    assert {(f["stage"], f["error_code"]) for f in failures} == {("sink", "BigQueryInsertFailed")}
