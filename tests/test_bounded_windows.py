"""Windows on bounded input: --timestamp-field gives each record its event time, so a backfill
with --window-seconds gets jobs and output files per window; without it, --window-seconds on a
bounded --input is a usage error. And the defer policy's leftovers stay in their own window."""
from __future__ import annotations

import datetime as dt
import json
import math
import re
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms import window
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from tests.pipelines import cli_with_counters, local_config, read_rows
from transforms.core.quotas import Quotas
from transforms.sinks.files import WriteFailures, WriteSummaries
from transforms.sources import ReadTranscripts, TranscriptsFromRows, WatchTranscripts
from transforms.summarize import SummarizeTranscripts

UTC = dt.timezone.utc
DAY = 86400
FIRST_DAY = dt.datetime(2026, 1, 1, tzinfo=UTC)
TEXT = ("Customer: my order {i} arrived damaged. Agent: I have shipped a replacement today. "
        "Customer: Thank you.")


def _calls(count: int, days: int) -> list[dict[str, Any]]:
    """Calls spread over ``days`` days, each with its start time in a different notation."""
    calls = []
    for i in range(count):
        start = FIRST_DAY + dt.timedelta(days=i % days, hours=i % 24, minutes=7)
        notation = i % 3
        value = (start.isoformat().replace("+00:00", "Z") if notation == 0
                 else int(start.timestamp()) if notation == 1 else int(start.timestamp() * 1000))
        calls.append({"id": f"call-{i:03d}", "text": TEXT.format(i=i), "started": value})
    return calls


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cli_against(backend: LocalBackend, *args: str) -> list[str]:
    """`run` flags pointing the CLI at ``backend``, so its jobs can be listed after the run."""
    return ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bedrock-runtime-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--s3_endpoint_url", backend.s3_endpoint_url,
            "--run-id", f"r{uuid.uuid4().hex[:10]}", "--poll-interval-seconds", "1",
            "--sink", "jsonl", *args]


def _job_names(backend: LocalBackend) -> dict[str, str]:
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate()
    return {j["jobArn"]: j["jobName"] for page in pages for j in page["invocationJobSummaries"]}


def _start(row: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(row["window_start"])


def test_a_backfill_gets_jobs_and_files_per_day(local_backend_factory, tmp_path, monkeypatch):
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=1))
    days = 5
    calls = _calls(40, days)
    broken = [{"id": "no-start", "text": TEXT.format(i=0)},
              {"id": "bad-start", "text": TEXT.format(i=0), "started": "last tuesday"}]
    source = _write_jsonl(tmp_path / "calls.jsonl", calls + broken)
    out = tmp_path / "out"
    code, counters = cli_with_counters(_cli_against(
        backend, "--input", str(source), "--output", str(out), "--window-seconds", str(DAY),
        "--timestamp-field", "started", "--min-records-per-job", "1"), monkeypatch)
    assert code == 0
    summaries, failures = read_rows(out / "summaries"), read_rows(out / "failures")
    ids = [r["transcript_id"] for r in summaries + failures]
    assert sorted(ids) == sorted(c["id"] for c in calls + broken), "every input exactly once"
    assert counters["records_in"] == len(calls) + len(broken)
    assert {(r["transcript_id"], r["error_code"], r["stage"]) for r in failures} == {
        ("no-start", "InvalidTimestamp", "validate"), ("bad-start", "InvalidTimestamp", "validate")}
    assert "'last tuesday'" in next(r for r in failures if r["transcript_id"] == "bad-start")[
        "error_message"]
    names = _job_names(backend)
    by_id = {c["id"]: c for c in calls}
    for row in summaries:
        day = FIRST_DAY + dt.timedelta(days=int(row["transcript_id"].split("-")[1]) % days)
        assert _start(row) == day, f"{row['transcript_id']} summarized in its own day's window"
        assert row["window_end"] == (day + dt.timedelta(days=1)).isoformat()
        # The job's name carries the window it was made for.
        assert f"-w{int(day.timestamp())}-" in names[row["job_arn"]]
        assert json.loads(row["metadata"])["started"] == by_id[row["transcript_id"]]["started"]
    assert len({names[r["job_arn"]] for r in summaries}) == days, "one job per day"
    files = sorted(p.name for p in (out / "summaries").glob("*.jsonl"))
    assert files == [f"part-{(FIRST_DAY + dt.timedelta(days=d)):%Y%m%d}T000000Z-"
                     f"{(FIRST_DAY + dt.timedelta(days=d + 1)):%Y%m%d}T000000Z-00000-of-00001.jsonl"
                     for d in range(days)], "one summaries file per day"


@pytest.mark.parametrize("args", [
    ["--window-seconds", "86400"],
    ["--window-seconds", "86400", "--undersized-policy", "defer"],
])
def test_windows_on_a_bounded_input_without_event_times_are_a_usage_error(tmp_path, capsys, args):
    source = _write_jsonl(tmp_path / "calls.jsonl", _calls(3, 1))
    out = tmp_path / "out"
    code = main(["run", "--input", str(source), "--output", str(out), *args])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    [line] = [line for line in err if "--window-seconds" in line]
    assert "--timestamp-field" in line and "--streaming" in line
    assert not out.exists(), "refused before the output folder is claimed"


@pytest.mark.parametrize("args, message", [
    (["--window-seconds", "-10", "--timestamp-field", "started"], "whole seconds from 1"),
    (["--timestamp-field", "started", "--kafka-topic", "calls",
      "--kafka-bootstrap-servers", "127.0.0.1:1"], "does not apply to --kafka-topic"),
])
def test_other_window_flag_mistakes_are_usage_errors(tmp_path, capsys, args, message):
    source = _write_jsonl(tmp_path / "calls.jsonl", _calls(3, 1))
    code = main(["run", "--input", str(source), "--output", str(tmp_path / "out"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_summarize_transcripts_windows_a_users_sources_by_event_time(local_backend_factory,
                                                                     tmp_path):
    """A user's pipeline: files and rows, each with timestamp_field, in daily windows."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=1))
    files_calls, row_calls = _calls(12, 3), [dict(c, id=f"row-{i:03d}") for i, c in
                                             enumerate(_calls(9, 3))]
    source = _write_jsonl(tmp_path / "calls.jsonl", files_calls + [
        {"id": "nan-start", "text": TEXT.format(i=1), "started": float("nan")}])
    config = local_config(backend)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        from_files = p | "Files" >> ReadTranscripts(str(source), timestamp_field="started",
                                                    metadata_fields=["team"])
        from_rows = (p | "Rows" >> beam.Create(row_calls)
                     | "ToTranscripts" >> TranscriptsFromRows(timestamp_field="started"))
        daily = [(out[tag] | f"Daily{name}{tag}" >> beam.WindowInto(window.FixedWindows(DAY)))
                 for name, out in (("Files", from_files), ("Rows", from_rows))
                 for tag in ("transcripts", "failures")]
        transcripts = (daily[0], daily[2]) | "AllTranscripts" >> beam.Flatten()
        result = transcripts | SummarizeTranscripts(config)
        failures = (daily[1], daily[3], result["failures"]) | "AllFailures" >> beam.Flatten()
        result["summaries"] | "S" >> WriteSummaries(str(tmp_path / "s"), format="jsonl")
        failures | "F" >> WriteFailures(str(tmp_path / "f"), format="jsonl")
    summaries, failures = read_rows(tmp_path / "s"), read_rows(tmp_path / "f")
    expected = [c["id"] for c in files_calls + row_calls] + ["nan-start"]
    assert sorted(r["transcript_id"] for r in summaries + failures) == sorted(expected)
    [failure] = failures
    assert failure["error_code"] == "InvalidTimestamp" and "nan" in failure["error_message"]
    for row in summaries:
        number = int(row["transcript_id"].split("-")[1])
        assert _start(row) == FIRST_DAY + dt.timedelta(days=number % 3)
    assert len({r["job_arn"] for r in summaries}) == 3, "one job per day"


# Hostile and valid event times: (value, the day it falls on or None when it must be refused).
_MISSING = object()
_VALID = st.builds(
    lambda day, second, notation: (
        [(FIRST_DAY + dt.timedelta(days=day, seconds=second)).isoformat(),
         int((FIRST_DAY + dt.timedelta(days=day, seconds=second)).timestamp()),
         int((FIRST_DAY + dt.timedelta(days=day, seconds=second)).timestamp()) * 1000][notation],
        day),
    st.integers(0, 2), st.integers(0, DAY - 1), st.integers(0, 2))
_HOSTILE = st.one_of(
    st.just(_MISSING), st.none(), st.booleans(), st.text(alphabet="abcxyz !?-:T", max_size=12),
    st.integers(min_value=10**14), st.integers(max_value=-1), st.floats(allow_nan=True).filter(
        lambda f: not math.isfinite(f)), st.lists(st.integers(), max_size=2),
    st.just("2026-01-02T10:00:00")).map(lambda value: (value, None))


# Every kind of hostile value at least once, whatever hypothesis draws.
_EVERY_KIND = [("2026-01-01T08:00:00Z", 0), (1767254400, 0), (1767344400000, 1),
               ("2026-01-03T23:59:59+00:00", 2), ("2026-01-02T10:00:00+02:00", 1),
               (_MISSING, None), (None, None), (True, None), ("not a time", None),
               (10**30, None), (-5, None), (float("nan"), None), (float("inf"), None),
               ([1], None), ("2026-01-02T10:00:00", None), (1767225600.25, 0)]


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(_VALID, _HOSTILE), min_size=1, max_size=14))
@example(_EVERY_KIND)
def test_defer_on_a_backfill_with_generated_event_times(local_backend_factory, monkeypatch, times):
    """--undersized-policy defer with daily windows: tails wait across days, the tail left at the
    end becomes UndersizedJob rows in their own day, bad event times InvalidTimestamp rows."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=4, min_records_per_job=3))
    calls, expected_day = [], {}
    for i, (value, day) in enumerate(times):
        call = {"id": f"call-{i:03d}", "text": TEXT.format(i=i)}
        if value is not _MISSING:
            call["started"] = value
        calls.append(call)
        expected_day[call["id"]] = day
    with tempfile.TemporaryDirectory() as tmp:
        source = _write_jsonl(Path(tmp) / "calls.jsonl", calls)
        out = Path(tmp) / "out"
        code, counters = cli_with_counters(_cli_against(
            backend, "--input", str(source), "--output", str(out), "--window-seconds", str(DAY),
            "--timestamp-field", "started", "--undersized-policy", "defer",
            "--min-records-per-job", "3", "--max-records-per-job", "4",
            "--max-failure-rate", "1"), monkeypatch)
        summaries, failures = read_rows(out / "summaries"), read_rows(out / "failures")
        files = [p.name for p in out.glob("*/*.jsonl")]
    assert code in (0, 3), "a documented outcome, never a crash"
    assert sorted(r["transcript_id"] for r in summaries + failures) == sorted(expected_day)
    assert counters["records_in"] == len(calls)
    days = {FIRST_DAY + dt.timedelta(days=d) for d in range(3)}
    for row in summaries:
        assert expected_day[row["transcript_id"]] is not None
        assert _start(row) in days
    for row in failures:
        if expected_day[row["transcript_id"]] is None:
            assert row["error_code"] == "InvalidTimestamp"
        else:
            assert row["error_code"] == "UndersizedJob"
    # Every file is named after a real window: a day of the backfill, or 1970-01-01 for the
    # rows that have no event time.
    for name in files:
        stamp = re.match(r"part-(\d{8})T", name)
        assert stamp and stamp.group(1) in {f"{d:%Y%m%d}" for d in days} | {"19700101"}, name


def test_defer_on_a_backfill_is_refused_on_prism(local_backend_factory, tmp_path, capsys):
    """On Prism, three days with a job of 3 on the first day and a tail of 2 + 1 carried into a
    job on the third: the first day's 3 summaries were dropped as late data (exit 4, "records
    were lost"). The CLI refuses that run on Prism before anything is claimed or submitted; left
    to choose, it runs it on the FnApiRunner (tests above)."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=4, min_records_per_job=3))
    days = ["2026-01-01T08:00:00Z", "2026-01-01T09:00:00Z", "2026-01-01T10:00:00Z",
            "2026-01-02T09:00:00Z", "2026-01-02T10:00:00Z", "2026-01-03T23:59:59Z"]
    source = _write_jsonl(tmp_path / "calls.jsonl", [
        {"id": f"call-{i}", "text": TEXT.format(i=i), "started": day} for i, day in enumerate(days)])
    code = main(_cli_against(backend, "--input", str(source), "--output", str(tmp_path / "out"),
                             "--window-seconds", str(DAY), "--timestamp-field", "started",
                             "--undersized-policy", "defer", "--min-records-per-job", "3",
                             "--max-records-per-job", "4", "--runner", "PrismRunner"))
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--runner PrismRunner" in line and "defer" in line and "drop --runner" in line
    assert not _job_names(backend) and not (tmp_path / "out").exists()


def test_defer_in_streaming_keeps_the_tail_left_at_the_end_in_its_window(tmp_path):
    """The documented combination --streaming --window-seconds --undersized-policy defer with a
    tail too small for a job at the end of the watch: UndersizedJob rows, exit 3 or 0, never
    the OverflowError of a window at the end of time."""
    from tests.test_streaming import BATCHES, PER_BATCH, files_arriving, transcripts

    started = dt.datetime.now(UTC)
    with files_arriving(tmp_path / "inbox") as inbox:
        code = main(["run", "--streaming", "--input", str(inbox / "*.jsonl"),
                     "--output", str(tmp_path / "out"), "--sink", "jsonl",
                     "--window-seconds", "3", "--watch-interval-seconds", "1",
                     "--watch-seconds", "60", "--undersized-policy", "defer",
                     "--min-records-per-job", "5", "--max-records-per-job", "5",
                     "--max-failure-rate", "1"])
    assert code in (0, 3)
    summaries = read_rows(tmp_path / "out" / "summaries")
    failures = read_rows(tmp_path / "out" / "failures")
    expected = sorted(t.id for t in transcripts(BATCHES * PER_BATCH, prefix="live"))
    assert sorted(r["transcript_id"] for r in summaries + failures) == expected
    assert failures, "3 batches of 8 in jobs of 5: a tail is left at the end"
    assert {r["error_code"] for r in failures} == {"UndersizedJob"}
    for path in (tmp_path / "out" / "failures").glob("*.jsonl"):
        start = dt.datetime.strptime(path.name.split("-")[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        assert started - dt.timedelta(minutes=1) <= start <= dt.datetime.now(UTC), path.name


def test_the_watch_starts_its_clock_when_reading_starts(tmp_path):
    """A runner that takes longer to start than the watch lasts still gets the whole watch: a
    file that appears after the pipeline started is found, not missed by a watch that ended
    before it. Its records are timestamped with the file's modification time, the same on a
    replay."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    watch_seconds = 3
    p = beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(["--streaming"]))
    found = (p | WatchTranscripts(str(inbox / "*.jsonl"), interval_seconds=1,
                                  stop_after_seconds=watch_seconds))["transcripts"]
    found | beam.Map(lambda t, ts=beam.DoFn.TimestampParam: (tmp_path / f"{t.id}.time").write_text(
        str(float(ts))))
    time.sleep(watch_seconds + 2)  # the runner's slow start: longer than the whole watch
    # Within the watch's first seconds, however late its first listing comes.
    def arrive() -> None:  # whole, as an S3 PUT appears
        _write_jsonl(tmp_path / "calls.tmp", _calls(3, 1)).rename(inbox / "calls.jsonl")

    writer = threading.Timer(watch_seconds - 1, arrive)
    writer.start()
    try:
        p.run().wait_until_finish()
    finally:
        writer.join()
    times = [float(f.read_text()) for f in tmp_path.glob("*.time")]
    assert len(times) == 3
    mtime = (inbox / "calls.jsonl").stat().st_mtime
    assert all(abs(t - mtime) < 1e-5 for t in times), (times, mtime)  # Beam keeps microseconds


def test_a_watched_folder_windows_by_event_time_and_reports_what_is_too_late(tmp_path):
    """--streaming with --timestamp-field: a record's own time places it; one older than the
    allowed lateness before its file was found is a LateRecord row, not dropped by its window."""
    now = dt.datetime.now(UTC)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _write_jsonl(inbox / "calls.jsonl", [
        {"id": "recent", "text": TEXT.format(i=1),
         "started": (now - dt.timedelta(minutes=10)).isoformat()},
        {"id": "ancient", "text": TEXT.format(i=2), "started": "2020-01-01T00:00:00Z"},
        {"id": "unknown", "text": TEXT.format(i=3)}])
    out = tmp_path / "out"
    code = main(["run", "--streaming", "--input", str(inbox / "*.jsonl"), "--output", str(out),
                 "--sink", "jsonl", "--window-seconds", "3600", "--allowed-lateness-seconds",
                 "3600", "--timestamp-field", "started", "--watch-interval-seconds", "1",
                 "--watch-seconds", "5", "--min-records-per-job", "1", "--max-failure-rate", "1"])
    assert code == 0
    [summary] = read_rows(out / "summaries")
    assert summary["transcript_id"] == "recent"
    hour = (now - dt.timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    assert _start(summary) == hour, "windowed by its own time, not by when its file was found"
    failures = {r["transcript_id"]: r for r in read_rows(out / "failures")}
    assert {k: r["error_code"] for k, r in failures.items()} == {
        "ancient": "LateRecord", "unknown": "InvalidTimestamp"}
    assert "--allowed-lateness-seconds" in failures["ancient"]["error_message"]


def test_windows_of_records_without_event_times_fail_with_a_message_naming_the_fix(
        local_backend_factory, tmp_path):
    """A user's pipeline that windows a bounded read without timestamp_field stops with an
    error naming timestamp_field, not an OverflowError from a window before the year 1."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=1))
    source = _write_jsonl(tmp_path / "calls.jsonl", _calls(3, 1))
    with pytest.raises(Exception, match="has no date: its records have no event time.*"
                                        "timestamp_field"):
        with beam.Pipeline(runner=FnApiRunner()) as p:
            read = p | ReadTranscripts(str(source))
            (read["transcripts"] | beam.WindowInto(window.FixedWindows(DAY))
             | SummarizeTranscripts(local_config(backend)))
