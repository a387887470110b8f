"""On Flink, a watched folder's windows become jobs while the watch goes on: each file is dropped
only once the previous file's job exists at the local Bedrock service, so the run can only
finish with every transcript summarized if windows are submitted before the watch ends (the
DirectRunner cannot do this, see pipeline/cli/run_flags.py check_streaming)."""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from tests.jvm_services import flink_pipeline_args
from tests.pipelines import local_config, read_rows, transcripts
from transforms.core.quotas import Quotas
from transforms.sinks.files import WriteFailures, WriteSummaries
from transforms.sources import WatchTranscripts
from transforms.summarize import SummarizeTranscripts, fixed_windows_with_lateness

FILES, PER_FILE = 3, 4
WATCH_SECONDS = 150  # generous: Flink starts slowly on shared cores
# A window's first job must come at least this long before the watch ends (it comes seconds
# after the window closes; only the DirectRunner would leave it to the end).
MARGIN_SECONDS = 20


def _drop_after_each_job(inbox: Path, jobs_of_run, stop: threading.Event,
                         dropped_at: list[float]) -> None:
    items = transcripts(FILES * PER_FILE, prefix="live")
    for n in range(FILES):
        chunk = items[n * PER_FILE:(n + 1) * PER_FILE]
        tmp = inbox / f".f{n}.tmp"
        tmp.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in chunk))
        os.rename(tmp, inbox / f"f{n}.jsonl")  # appears whole
        dropped_at.append(time.time())
        while len(jobs_of_run()) <= n:  # this file's window must become a job first
            if stop.wait(1):
                return


@pytest.mark.timing
@pytest.mark.timeout(500)
def test_windows_are_submitted_while_the_watch_goes_on(tmp_path, local_backend_factory,
                                                         flink_job_endpoint):
    backend = local_backend_factory(quotas=Quotas(min_records_per_job=1))
    config = local_config(backend)
    bedrock = backend.boto3_client("bedrock")

    def jobs_of_run() -> list[dict]:
        return bedrock.list_model_invocation_jobs(
            nameContains=config.run_id)["invocationJobSummaries"]

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    stop, dropped_at = threading.Event(), []
    dropper = threading.Thread(target=_drop_after_each_job,
                               args=(inbox, jobs_of_run, stop, dropped_at))
    options = PipelineOptions(flink_pipeline_args(flink_job_endpoint, streaming=True))
    try:
        with beam.Pipeline(options=options) as p:
            read = p | WatchTranscripts(str(inbox / "*.jsonl"), interval_seconds=1,
                                        stop_after_seconds=WATCH_SECONDS)
            # The watch ends later still: its clock starts when the pipeline starts reading.
            watch_end = time.time() + WATCH_SECONDS
            result = (read["transcripts"] | fixed_windows_with_lateness(3)
                      | SummarizeTranscripts(config))
            result["summaries"] | "S" >> WriteSummaries(str(tmp_path / "s"), format="jsonl")
            result["failures"] | "F" >> WriteFailures(str(tmp_path / "f"), format="jsonl")
            dropper.start()
    finally:
        stop.set()
        if dropper.is_alive():
            dropper.join()
    assert len(dropped_at) == FILES, "a file's job never came while the watch was on"
    summaries = read_rows(tmp_path / "s")
    assert sorted(r["transcript_id"] for r in summaries) == \
        sorted(t.id for t in transcripts(FILES * PER_FILE, prefix="live"))
    assert read_rows(tmp_path / "f") == []

    submitted = {job["jobArn"]: job["submitTime"].timestamp() for job in jobs_of_run()}
    first_job_of_window: dict[str, float] = {}
    for row in summaries:
        at = submitted[row["job_arn"]]
        first_job_of_window[row["window_start"]] = min(
            at, first_job_of_window.get(row["window_start"], at))
    assert len(first_job_of_window) == FILES, "each file waited for the last job: own window"
    for window_start, at in sorted(first_job_of_window.items()):
        assert at < watch_end - MARGIN_SECONDS, (
            f"window {window_start}: first job only {watch_end - at:.0f} s before the watch "
            f"ended; expected while the watch goes on")
