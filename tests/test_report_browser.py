"""The run report end to end: a CLI run on the embedded local backend writes report.json and
report.html, `report` rebuilds the page, and a real headless Chromium (Debian's, installed by
`make browser`) draws every chart with no console error, also those of a streaming report with
insights."""
from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path

import pytest
from plotly.offline import get_plotlyjs

from pipeline.__main__ import main
from pipeline.report import charts
from pipeline.report.data import job_entry, report_data, window_counter
from pipeline.report.page import render
from pipeline.running.outcome import Report
from tests.pipelines import transcripts
from transforms.jobs.results import Manifest

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def rendered_charts(pages: list[Path], screenshot: Path) -> list[tuple[list[str], dict[str, int]]]:
    """Open each page in one Chromium: per page, (console and page errors, drawn traces per
    chart element). The first page's screenshot goes to ``screenshot``."""
    from playwright.sync_api import sync_playwright

    found = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1200, "height": 900})
        try:
            for page_path in pages:
                errors: list[str] = []
                page = browser.new_page()
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(page_path.as_uri())
                page.wait_for_load_state("load")
                traces = {element.get_attribute("id"):
                          element.locator("svg.main-svg .trace").count()
                          for element in page.locator("div.chart").all()}
                if not found:
                    page.screenshot(path=str(screenshot), full_page=True)
                found.append((errors, traces))
                page.close()
        finally:
            browser.close()
    return found


def streaming_page(folder: Path) -> tuple[Path, dict]:
    """A report of a streaming run over three windows with an insights aggregate. Its jobs are
    made up here (a streaming run on the DirectRunner takes over a minute), as the service
    would list them; the charts are what the page draws from any report.json."""
    start = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)
    jobs = [job_entry({"jobName": f"bb-s1-w{int(start.timestamp()) + 600 * i}-a1-0000",
                       "jobArn": f"arn:aws:bedrock:us-east-1:1:model-invocation-job/j{i}",
                       "modelId": HAIKU, "status": status, "submitTime": start,
                       "endTime": start + dt.timedelta(minutes=20 + 10 * i),
                       "successRecordCount": 90 + i, "errorRecordCount": i},
                      Manifest(input_tokens=40_000 + 1000 * i, output_tokens=9_000), "s1")
            for i, status in enumerate(("Completed", "PartiallyCompleted", "Completed"))]
    per_window = {window_counter(start + dt.timedelta(minutes=10 * i), kind): count
                  for i in range(3) for kind, count in (("summaries", 91), ("failures", 1))}
    counts = Report("s1", {"records_in": 276, "summaries_written": 273, "failures_written": 3,
                           "failures.model.ModelError": 3, **per_window})
    data = report_data(counts, HAIKU, jobs, streaming=True, insights_aggregate={
        "sentiment": {"positive": 150, "neutral": 80, "negative": 43}, "rows": 273})
    return write_page(folder, data), data


def write_page(folder: Path, data: dict) -> Path:
    folder.mkdir()
    path = folder / "report.html"
    path.write_text(render(data, get_plotlyjs()), encoding="utf-8")
    return path


@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"no {CHROMIUM}: run `make browser` (make test does)")
def test_a_run_writes_a_report_that_chromium_draws(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(16)) + '{"id": "no-text"}\n')
    out = tmp_path / "out"
    # 16 records in jobs of at most 10: two jobs on the timeline; one record fails validation.
    assert main(["run", "--input", str(path), "--output", str(out), "--sink", "jsonl",
                 "--max-records-per-job", "10", "--min-records-per-job", "1",
                 "--run-id", "report-e2e"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] == f"report          {out / 'report.html'}"

    data = json.loads((out / "report.json").read_text())
    assert data["records"] == {"in": 17, "summaries": 16, "failures": 1, "unaccounted": 0,
                               "cut_at_max_tokens": 0}
    assert data["failures_by_cause"] == [{"stage": "validate", "code": "MissingText",
                                          "count": 1}]
    jobs = data["jobs"]
    assert [job["records"] for job in jobs] == [8, 8]  # as `plan` splits them
    assert all(job["status"] == "Completed" and job["window"] == "global" for job in jobs)
    assert all(job["submitted"] <= job["ended"] for job in jobs)
    # The per-job tokens come from the manifests and add up to the run's counters.
    assert sum(job["input_tokens"] for job in jobs) == data["tokens"]["input_tokens"] > 0
    assert sum(job["output_tokens"] for job in jobs) == data["tokens"]["output_tokens"] > 0

    (out / "report.html").unlink()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")

    streaming, streaming_data = streaming_page(tmp_path / "streaming")
    pages = rendered_charts([out / "report.html", streaming], tmp_path / "report.png")
    for (errors, traces), shown in zip(pages, (data, streaming_data)):
        assert errors == []
        drawn = [c.id for c in charts.charts(shown) if c.figure is not None]
        assert sorted(traces) == sorted(drawn)
        assert all(traces[chart_id] > 0 for chart_id in drawn), traces
    assert len(pages[0][1]) == 4  # timeline, outcomes, failures, tokens
    assert {"window-records", "window-tokens", "insights-0"} <= set(pages[1][1])


def test_report_on_a_folder_without_report_json_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json does not exist: pass the folder of a run's report" in \
        capsys.readouterr().err
