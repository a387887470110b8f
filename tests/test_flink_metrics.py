"""The project's ``bedrock_batch`` counters, scraped from the Flink session cluster's Prometheus
reporter (config.yaml's ``metrics.reporter.prom``) while a run goes on, and the Grafana dashboard
(docs/grafana-bedrock-batch.json) that charts them.

Beam's Flink runner reports each user counter ``<namespace>.<name>`` as a metric of the operator
that counted it; Flink's Prometheus reporter names it
``flink_taskmanager_job_task_operator_<namespace>_<name>`` (every character Prometheus does not
allow, the dot among them, turned into ``_``), a gauge labelled with the job, task, operator and
subtask. A task's metrics go away when the task ends, so a batch job's short stages are rarely
seen by a scrape; a streaming run keeps every stage's task running until the run ends, which is
why the scrape test runs one.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from tests.flink_cluster import FlinkCluster
from tests.jvm_services import flink_cluster_args
from tests.pipelines import transcripts
from transforms.core.metrics import NAMESPACE

REPO_ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = REPO_ROOT / "docs" / "grafana-bedrock-batch.json"
PREFIX = "flink_taskmanager_job_task_operator_"

# The counters the dashboard charts, each seen by the scrape test below: the one list both tests
# check against.
DASHBOARD_COUNTERS = (
    "records_in", "transcripts_read", "files_read", "records_sharded", "jobs_planned",
    "jobs_submitted", "jobs_finished", "records_succeeded", "records_rejected",
    "summaries_written", "failures_written", "input_tokens", "output_tokens",
)
# Generous: on 2 shared cores, with other Flink jobs beside it, the first counters came more
# than 3 minutes after the CLI started.
SCRAPE_TIMEOUT_S = 900.0
WATCH_SECONDS = 1800  # never reached: the test cancels the job once it has seen everything
RECORDS = 20  # good transcripts; one more line has no text and becomes a failure row


def prometheus_name(counter: str) -> str:
    """What Flink's Prometheus reporter calls the Beam counter ``counter`` of this project."""
    return PREFIX + re.sub(r"[^a-zA-Z0-9_]", "_", f"{NAMESPACE}.{counter}")


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def bedrock_batch_totals(exposition: str) -> dict[str, dict[str, float]]:
    """{Flink job id: {metric name: value summed over its operators and subtasks}} for the
    ``bedrock_batch`` metrics in a Prometheus text exposition."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in exposition.splitlines():
        match = SAMPLE.match(line)
        if match and match["name"].startswith(PREFIX + NAMESPACE + "_"):
            labels = dict(LABEL.findall(match["labels"]))
            totals[labels["job_id"]][match["name"]] += float(match["value"])
    return totals


def test_totals_sum_a_counter_over_operators_and_keep_jobs_apart():
    """The parser the scrape test relies on, on the reporter's format as scraped here."""
    name = prometheus_name("records_rejected")
    text = "\n".join([
        f"# TYPE {name} gauge",
        f'{name}{{job_id="a",operator_name="Read",subtask_index="0",}} 2.0',
        f'{name}{{job_id="a",operator_name="Harvest",subtask_index="1",}} 3.0',
        f'{name}{{job_id="b",operator_name="Read",subtask_index="0",}} 7.0',
        'flink_taskmanager_Status_JVM_CPU_Load{host="127_0_0_1",} 0.5',
    ])
    assert bedrock_batch_totals(text) == {"a": {name: 5.0}, "b": {name: 7.0}}
    assert prometheus_name("failures.validate.MissingText") == \
        "flink_taskmanager_job_task_operator_bedrock_batch_failures_validate_MissingText"


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return ""  # a TaskManager busy or starting: the next round asks again


def _cancel(cluster: FlinkCluster, job: str) -> None:
    """Cancel a Flink job through the REST API and wait until it has ended, so the next test
    finds every slot free."""
    request = urllib.request.Request(f"http://{cluster.address}/jobs/{job}?mode=cancel",
                                     method="PATCH")
    try:
        urllib.request.urlopen(request, timeout=30).close()
    except urllib.error.HTTPError:
        pass  # it ended meanwhile
    cluster.wait_until(f"the end of job {job}", lambda: (cluster.rest(f"/jobs/{job}") or {})
                       .get("state") in {"CANCELED", "FAILED", "FINISHED"})


@pytest.mark.timeout(1200)
def test_taskmanagers_serve_bedrock_batch_counters_during_a_run(tmp_path, flink_cluster: FlinkCluster,
                                                                 sdk_worker_pool: str):
    """While a streaming run goes on, the TaskManagers' /metrics hold every counter the
    dashboard charts, with the values its input makes. The watch is far longer than the run
    needs (Flink submits each window's jobs while the watch goes on): once every counter has
    its value the test cancels the Flink job and stops the CLI, so a busy machine only makes
    the test slower."""
    before = {job["jid"] for job in flink_cluster.rest("/jobs/overview")["jobs"]}
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "calls.jsonl").write_text(
        "".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in transcripts(RECORDS))
        + json.dumps({"id": "no-text"}) + "\n")
    argv = [sys.executable, "-m", "pipeline", "run", "--input", str(inbox / "*.jsonl"),
            "--output", str(tmp_path / "out"), "--sink", "jsonl", "--window-seconds", "3",
            "--watch-interval-seconds", "1", "--watch-seconds", str(WATCH_SECONDS),
            "--max-records-per-job", "10", "--min-records-per-job", "5"]
    argv += flink_cluster_args(flink_cluster, streaming=True, worker_pool=sdk_worker_pool)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    log = tmp_path / "cli.log"
    with open(log, "wb") as output:
        # Its own session: stopping it stops the job server it started too.
        run = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT, env=env,
                               cwd=REPO_ROOT, start_new_session=True)
    expected = {prometheus_name(name) for name in DASHBOARD_COUNTERS}
    seen: dict[str, float] = {}
    jobs: set[str] = set()

    def complete() -> bool:
        return (expected <= seen.keys()
                and seen[prometheus_name("summaries_written")] >= RECORDS
                and seen[prometheus_name("failures_written")] >= 1)

    try:
        deadline = time.monotonic() + SCRAPE_TIMEOUT_S
        while not complete() and time.monotonic() < deadline and run.poll() is None:
            for tm in flink_cluster.taskmanagers:
                if not tm.alive():
                    continue
                for job, totals in bedrock_batch_totals(_scrape(tm.metrics_url)).items():
                    if job not in before:
                        jobs.add(job)
                        for name, value in totals.items():
                            seen[name] = max(seen.get(name, 0.0), value)
            time.sleep(1)
        assert complete(), (f"scraped {sorted(seen)} in {SCRAPE_TIMEOUT_S:.0f} s (run exit "
                            f"{run.poll()}); CLI log:\n{log.read_text(errors='replace')[-3000:]}")
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        for job in jobs:  # the job runs on in the cluster without the CLI
            _cancel(flink_cluster, job)
    assert len(jobs) == 1
    value = {name: seen[prometheus_name(name)] for name in DASHBOARD_COUNTERS}
    assert value["records_in"] == RECORDS + 1 and value["transcripts_read"] == RECORDS
    assert value["files_read"] == 1 and value["records_sharded"] == RECORDS
    assert value["summaries_written"] == value["records_succeeded"] == RECORDS
    assert value["failures_written"] == value["records_rejected"] == 1
    assert value["jobs_planned"] == value["jobs_submitted"] == value["jobs_finished"] == 2
    assert value["input_tokens"] > 0 and value["output_tokens"] > 0
    assert seen[prometheus_name("failures.validate.MissingText")] == 1


def _panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def test_dashboard_queries_name_only_scraped_counters():
    """Every query of docs/grafana-bedrock-batch.json names a metric the scrape test saw, and
    every counter the scrape test checks is on the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    scraped = {prometheus_name(name) for name in DASHBOARD_COUNTERS}
    queries = [target["expr"] for panel in _panels(dashboard)
               for target in panel.get("targets", [])]
    queries += [variable["query"]["query"] if isinstance(variable["query"], dict)
                else variable["query"] for variable in dashboard["templating"]["list"]
                if variable["type"] == "query"]
    assert queries
    named = set()
    for query in queries:
        names = set(re.findall(r"\bflink_\w+", query))
        assert names, f"a query names no metric: {query}"
        assert names <= scraped, f"{sorted(names - scraped)} in {query!r} never scraped"
        named |= names
    assert named == scraped, f"on no panel: {sorted(scraped - named)}"
    for panel in _panels(dashboard):
        if panel["type"] != "row":
            assert panel.get("title") and panel.get("targets"), panel
