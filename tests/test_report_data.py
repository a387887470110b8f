"""report.json's data, the chart specs and the page, built from plain data (no pipeline, no
browser). Every figure is also checked against plotly's own schema."""
from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
import pytest

from pipeline import exit_codes
from pipeline.options import BedrockBatchOptions
from pipeline.pricing import estimate_cost
from pipeline.report import charts
from pipeline.report.data import job_entry, report_data, window_counter, window_of, windows
from pipeline.report.page import render
from pipeline.running.outcome import Report, report_dir
from transforms.jobs.results import Manifest

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)


def summary(name: str, status: str = "Completed", minutes: float | None = 10,
            **extra) -> dict:
    """A ModelInvocationJobSummary as boto3 returns it (datetimes)."""
    job = {"jobName": name, "jobArn": f"arn:aws:bedrock:us-east-1:1:model-invocation-job/{name[-4:]}",
           "modelId": HAIKU, "status": status, "submitTime": T0,
           "lastModifiedTime": T0 + dt.timedelta(minutes=minutes or 1),
           "jobExpirationTime": T0 + dt.timedelta(hours=24)}
    if minutes is not None:
        job["endTime"] = T0 + dt.timedelta(minutes=minutes)
    return {**job, **extra}


@pytest.mark.parametrize("name, window", [
    ("bb-r1-g-a1-0000", "global"),
    ("bb-r1-g-a2-g1-0003", "global"),
    ("bb-r1-w1764234000-a1-0000", "2025-11-27T09:00:00+00:00"),
    ("bb-r1-w1764234000p2-a1-0001", "2025-11-27T09:00:00+00:00"),
    ("bb-r1-c-a1-0000", "carried"),
    ("bb-r1-5f2a9c0d1e", "unknown"),     # hashed to fit 63 characters
    ("bb-r10-g-a1-0000", "unknown"),     # another run's job
])
def test_the_window_comes_from_the_job_name(name, window):
    assert window_of(name, "r1") == window


def test_a_job_entry_has_the_service_times_and_the_manifest_tokens():
    manifest = Manifest(total=5, processed=5, success=4, error=1, input_tokens=1000,
                        output_tokens=200)
    job = job_entry(summary("bb-r1-g-a1-0000", totalRecordCount=5, successRecordCount=4,
                            errorRecordCount=1), manifest, "r1")
    assert job["submitted"] == "2026-11-27T09:00:00+00:00"
    assert job["ended"] == "2026-11-27T09:10:00+00:00"
    assert job["expires"] == "2026-11-28T09:00:00+00:00"
    assert (job["records"], job["records_succeeded"], job["records_failed"]) == (5, 4, 1)
    assert (job["input_tokens"], job["output_tokens"]) == (1000, 200)
    assert job["cost_usd"] == pytest.approx(estimate_cost(HAIKU, 1000, 200))


def test_a_job_without_manifest_has_no_tokens_and_no_cost():
    job = job_entry(summary("bb-r1-g-a1-0001", status="Failed", message="role denied"), None, "r1")
    assert (job["input_tokens"], job["output_tokens"], job["cost_usd"]) == (None, None, None)
    assert job["records"] is None and job["message"] == "role denied"


def test_windows_add_up_their_jobs_and_leave_unknowns_unknown():
    manifest = Manifest(input_tokens=10, output_tokens=5, success=2)
    jobs = [job_entry(summary("bb-r1-w1764234000-a1-0000", successRecordCount=2,
                              errorRecordCount=0), manifest, "r1"),
            job_entry(summary("bb-r1-w1764234000p1-a1-0000", successRecordCount=3,
                              errorRecordCount=1), manifest, "r1"),
            job_entry(summary("bb-r1-w1764237600-a1-0000", status="Failed"), None, "r1")]
    nine, ten = (dt.datetime(2025, 11, 27, hour, tzinfo=dt.timezone.utc) for hour in (9, 10))
    counters = {window_counter(nine, "summaries"): 6, window_counter(nine, "failures"): 2,
                window_counter(nine, "summaries_rejected"): 1,
                window_counter(ten, "failures"): 4,
                window_counter(ten + dt.timedelta(hours=1), "summaries"): 3}
    first, second, third = windows(jobs, counters)
    assert (first["jobs"], first["records_succeeded"], first["records_failed"],
            first["input_tokens"]) == (2, 5, 1, 20)
    assert (first["summaries"], first["failures"]) == (5, 2)  # less the one rejected
    assert second["window"] == "2025-11-27T10:00:00+00:00"
    assert (second["summaries"], second["failures"]) == (0, 4)
    assert (second["input_tokens"], second["cost_usd"]) == (None, None)
    # Rows of a window without jobs (e.g. all failed validation) still show.
    assert (third["window"], third["jobs"], third["summaries"]) == (
        "2025-11-27T11:00:00+00:00", 0, 3)


def test_a_batch_run_has_no_rows_per_window():
    job = job_entry(summary("bb-r1-g-a1-0000"), None, "r1")
    [only] = windows([job], {"summaries_written": 3})
    assert (only["window"], only["summaries"], only["failures"]) == ("global", None, None)
    assert charts.window_records([only]).figure is None


def run_report(**counters: int) -> Report:
    return Report("r1", dict(counters), ("out/summaries", "out/failures"))


def test_report_data_holds_the_counted_records_causes_and_verdict():
    report = run_report(records_in=10, summaries_written=7, failures_written=3,
                        input_tokens=900, output_tokens=100,
                        **{"failures.validate.TextTooLong": 1, "failures.model.ModelError": 2})
    data = report_data(report, HAIKU, [], generated_at=T0)
    assert data["records"] == {"in": 10, "summaries": 7, "failures": 3, "unaccounted": 0,
                               "cut_at_max_tokens": 0}
    assert data["failures_by_cause"] == [{"stage": "model", "code": "ModelError", "count": 2},
                                         {"stage": "validate", "code": "TextTooLong", "count": 1}]
    assert data["exit_code"] == exit_codes.FAILURES_ABOVE_THRESHOLD
    assert data["verdict"].startswith("exit code 3: failures are 30.0% of rows")
    assert data["cost_usd"]["batch"] == pytest.approx(estimate_cost(HAIKU, 900, 100))
    assert "insights_aggregate" not in data
    with_insights = report_data(report, HAIKU, [], insights_aggregate={"rows": 7})
    assert with_insights["insights_aggregate"] == {"rows": 7}


def check_figure(chart: charts.Chart) -> go.Figure:
    assert chart.figure is not None, chart.note
    return go.Figure(chart.figure)  # raises on any property plotly does not know


def test_the_timeline_has_one_trace_per_status_with_real_durations():
    jobs = [job_entry(summary("bb-r1-g-a1-0000", minutes=10), None, "r1"),
            job_entry(summary("bb-r1-g-a1-0001", status="Failed", minutes=2), None, "r1"),
            job_entry(summary("bb-r1-g-a1-0002", status="InProgress", minutes=None), None, "r1")]
    figure = check_figure(charts.timeline(jobs))
    by_status = {trace.name: trace for trace in figure.data}
    assert set(by_status) == {"Completed", "Failed", "InProgress"}
    assert by_status["Completed"].x == (600_000,)  # ms from submitted to ended
    assert by_status["InProgress"].x == (60_000,)  # to its last change: it has not ended
    assert by_status["Failed"].marker.color == charts.STATUS_COLORS["Failed"]
    assert charts.timeline([]).figure is None


def test_failures_stack_codes_by_stage_and_say_when_there_are_none():
    figure = check_figure(charts.failures([
        {"stage": "model", "code": "ModelError", "count": 2},
        {"stage": "validate", "code": "TextTooLong", "count": 1},
        {"stage": "model", "code": "Unparseable", "count": 1}]))
    assert [(t.name, t.x, t.y) for t in figure.data] == [
        ("model", ("ModelError", "Unparseable"), (2, 1)), ("validate", ("TextTooLong",), (1,))]
    assert charts.failures([]).note == "No failure rows."


def test_outcomes_show_unaccounted_records_only_when_there_are_some():
    records = {"in": 5, "summaries": 3, "failures": 1, "unaccounted": 1}
    assert check_figure(charts.outcomes(records)).data[0].x[-1] == "not accounted for"
    assert len(check_figure(charts.outcomes({**records, "unaccounted": 0})).data[0].x) == 3
    twice = check_figure(charts.outcomes({**records, "summaries": 5, "unaccounted": -1})).data[0]
    assert (twice.x[-1], twice.y[-1]) == ("rows out beyond records in", 1)


def test_every_chart_of_a_streaming_report_with_insights_is_valid_plotly():
    jobs = [job_entry(summary(f"bb-r1-w{1764234000 + 60 * i}-a1-0000", successRecordCount=3,
                              errorRecordCount=0),
                      Manifest(input_tokens=100 * (i + 1), output_tokens=10), "r1")
            for i in range(3)]
    per_window = {window_counter(dt.datetime.fromtimestamp(1764234000 + 60 * i, dt.timezone.utc),
                                 "summaries"): 3 for i in range(3)}
    data = report_data(run_report(records_in=9, summaries_written=9, **per_window), HAIKU, jobs,
                       streaming=True, insights_aggregate={
                           "sentiment": {"positive": 5, "negative": 4}, "rows": 9,
                           "topics": {"billing": "many"}})
    made = charts.charts(data)
    assert [c.id for c in made] == ["timeline", "outcomes", "failures", "tokens",
                                    "window-records", "window-tokens", "insights-0"]
    for chart in made:
        if chart.figure is not None:
            check_figure(chart)
    tokens = check_figure(made[5])
    assert tokens.data[0].y == (100, 200, 300)
    assert tokens.data[2].yaxis == "y2"


def test_the_page_has_a_div_per_figure_and_escapes_what_it_shows():
    job = job_entry(summary("bb-r1-g-a1-0000", status="Failed",
                            message="</script><b>denied</b>"), None, "r1")
    data = report_data(run_report(records_in=1, failures_written=1,
                                  **{"failures.submit.JobFailed": 1}), HAIKU, [job],
                       jobs_note="note <i>here</i>")
    page = render(data, "/* plotly.js */")
    for chart in charts.charts(data):
        assert (f'id="{chart.id}"' in page) == (chart.figure is not None)
    assert "Failed: &lt;/script&gt;&lt;b&gt;denied&lt;/b&gt;" in page  # the jobs table
    assert "<b>denied</b>" not in page and "<i>here</i>" not in page
    assert "note &lt;i&gt;here&lt;/i&gt;" in page
    assert page.count("</script>") == 2  # the inlined library's and the figures'
    with_insights = render({**data, "insights_aggregate": {
        "calls": 7, "scope": "overall", "window_start": None, "resolution_rate": 2 / 3,
        "by_resolution": {"resolved": 7}}}, "")
    assert "insights: calls: 7, scope: overall, resolution rate: 0.667</p>" in with_insights
    assert "<h2>Insights: by resolution</h2>" in with_insights


@pytest.mark.parametrize("flags, folder", [
    (["--output", "out/run"], "out/run"),
    (["--output", "out/run", "--report-dir", "reports/x"], "reports/x"),
    (["--sink", "kafka"], "reports/r1"),
    (["--sink", "bigquery", "--report_dir", "s3://bucket/reports"], "s3://bucket/reports"),
])
def test_the_report_goes_beside_file_output_or_to_a_folder_of_its_own(flags, folder):
    assert report_dir(BedrockBatchOptions(flags), "r1") == folder
