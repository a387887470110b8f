"""The run report end to end: a CLI run on the embedded local backend writes report.json and
report.html, `report` rebuilds the page, and a real headless Chromium (Debian's, installed by
`make browser`) draws every chart with no console error."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.report import charts
from tests.pipelines import transcripts

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def rendered_charts(page_path: Path, screenshot: Path) -> tuple[list[str], dict[str, int]]:
    """Open the page in Chromium: (console and page errors, drawn traces per chart element)."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
            viewport={"width": 1200, "height": 900})
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            traces = {element.get_attribute("id"): element.locator("svg.main-svg .trace").count()
                      for element in page.locator("div.chart").all()}
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return errors, traces


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

    errors, traces = rendered_charts(out / "report.html", tmp_path / "report.png")
    assert errors == []
    drawn = [c.id for c in charts.charts(data) if c.figure is not None]
    assert sorted(traces) == sorted(drawn) and len(drawn) >= 4
    assert all(traces[chart_id] > 0 for chart_id in drawn), traces


def test_report_on_a_folder_without_report_json_is_a_usage_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "report.json does not exist: pass the folder of a run's report" in \
        capsys.readouterr().err
