"""Unbounded local streaming, as the README's first streaming command runs it: `run --streaming
--window-seconds N` over a watched folder (or a Kafka topic) with no --watch-seconds and no
--runner, which runs on Prism. Files (or messages) arrive at different times; each window's jobs
and summaries come while the watch goes on, as the source's watermark passes each window's end,
and Ctrl-C (a real SIGINT) then ends the run with the one interrupted line and exit 130.

The CLI is a real subprocess; the local backend belongs to the test, so the test sees the jobs in
it. A batch is dropped only once the previous batch's rows are written, so the batches fall into
different windows however slow the machine is, and every wait is on a condition (rows in the
output, jobs in the backend), never on a fixed time.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from pipeline import exit_codes
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.local.jobs_store import Timing
from tests.pipelines import read_rows, transcripts
from transforms.core.quotas import Quotas

ROOT = Path(__file__).resolve().parent.parent
PER_BATCH = 8
QUICK = Timing(submitted=0.5, validating=0.5, scheduled=0.5, per_record=0.01, speed=10.0)
WAIT_SECONDS = 300
WINDOW_SECONDS = 2


def _all_jobs(backend) -> list[dict]:
    pages = backend.boto3_client("bedrock").get_paginator(
        "list_model_invocation_jobs").paginate()
    return [j for page in pages for j in page["invocationJobSummaries"]]


class _Topic:
    """A Kafka topic on the test broker that batches are produced to, each message stamped with
    the time it was produced (the source's event time)."""

    def __init__(self, bootstrap: str) -> None:
        from confluent_kafka import Producer

        from tests.test_kafka_source import create_topic

        self.name = create_topic(bootstrap, partitions=1)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})

    def drop(self, batch: int) -> list[str]:
        """Produce batch ``batch`` and wait until the broker has it; its ids."""
        items = transcripts(PER_BATCH, prefix=f"b{batch}")
        for t in items:
            self.producer.produce(self.name, json.dumps({"id": t.id, "text": t.text}).encode())
        assert self.producer.flush(30) == 0
        return [t.id for t in items]


def _drop(folder: Path, batch: int) -> list[str]:
    """Write batch ``batch`` into the watched folder (whole, as an S3 PUT appears); its ids."""
    items = transcripts(PER_BATCH, prefix=f"b{batch}")
    tmp = folder / f".batch-{batch}.tmp"
    tmp.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    os.rename(tmp, folder / f"batch-{batch}.jsonl")
    return [t.id for t in items]


class _Watching:
    """The CLI reading ``source`` (its --input or --kafka-* flags) in a subprocess of its own
    session; its stderr is collected as it comes (-v: the source's "read FILE" lines show)."""

    def __init__(self, backend, source: list[str], output: Path, *flags: str) -> None:
        self.output = output
        argv = ["run", "--streaming", "--window-seconds", str(WINDOW_SECONDS), *source,
                "--output", str(output), "--sink", "jsonl", "--poll-interval-seconds", "1", "-v",
                "--backend", "aws", "--aws-region", backend.region,
                "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
                "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
                *flags]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *argv], cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stderr))
        self._reader.start()

    def _wait(self, what: str, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while not done():
            assert self.process.poll() is None, f"the run ended: {''.join(self.lines[-30:])}"
            assert time.monotonic() < deadline, f"{what} while the watch goes on"
            time.sleep(0.2)

    def wait_for_rows(self, ids: list[str]) -> list[dict]:
        """Every row so far, once the rows of ``ids`` are all written."""
        def written() -> bool:
            return set(ids) <= {r["transcript_id"] for r in _rows(self.output)}
        self._wait(f"no rows for {ids[0]}..", written)
        return _rows(self.output)

    def wait_until_read(self, path: Path) -> None:
        """Until the source logged that it read ``path``."""
        self._wait(f"{path.name} never read",
                   lambda: any(f"read {path}:" in line for line in list(self.lines)))

    def interrupt(self) -> tuple[int, str]:
        """Ctrl-C: (exit code, stderr)."""
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=WAIT_SECONDS)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            self._reader.join()
        return self.process.returncode, "".join(self.lines)


def _rows(output: Path) -> list[dict]:
    return read_rows(output / "summaries") + read_rows(output / "failures")


def _assert_interrupted(code: int, err: str) -> None:
    """Exit 130 with the one interrupted line, and no trace."""
    assert code == exit_codes.INTERRUPTED, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and lines[0].startswith("interrupted (SIGINT): run id "), err[-3000:]


def _watched_folder(folder: Path) -> list[str]:
    return ["--input", str(folder / "*.jsonl"), "--watch-interval-seconds", "1"]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("source", ["folder", "kafka"])
def test_each_window_is_summarized_while_the_watch_goes_on(local_backend_factory, tmp_path,
                                                           request, source):
    """Over Kafka the windows close on the source's own watermark: a caught-up partition's
    watermark follows the clock, so a window closes while the read goes on."""
    backend = local_backend_factory(timing=QUICK, quotas=Quotas(min_records_per_job=1))
    if source == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
        topic = _Topic(bootstrap)
        args = ["--kafka-bootstrap-servers", bootstrap, "--kafka-topic", topic.name]
        drop = topic.drop
    else:
        folder = tmp_path / "inbox"
        folder.mkdir()
        args, drop = _watched_folder(folder), lambda batch: _drop(folder, batch)
    run = _Watching(backend, args, tmp_path / "out", "--min-records-per-job", "1")
    try:
        first = drop(0)
        rows = run.wait_for_rows(first)
        assert {r["transcript_id"] for r in rows} == set(first)
        second = drop(1)  # the first window has closed: this one is in a later window
        rows = run.wait_for_rows(second)
        jobs = _all_jobs(backend)
    finally:
        code, err = run.interrupt()
    _assert_interrupted(code, err)
    assert sorted(r["transcript_id"] for r in rows) == sorted(first + second)
    assert not read_rows(tmp_path / "out" / "failures")
    windows = {r["window_start"] for r in rows}
    assert len(windows) == 2, "each batch in a window of its own"
    assert len({j["jobName"].split("-a1-")[0] for j in jobs}) == 2, "a job per window"
    files = list((tmp_path / "out" / "summaries").glob("part-*.jsonl"))
    assert len(files) == 2, f"each window's own file, written as it closed: {files}"


@pytest.mark.timeout(900)
def test_defer_carries_a_small_window_into_the_next(local_backend_factory, tmp_path):
    """--undersized-policy defer, minimum 12 records a job, 8 a window: the first window's
    records wait for the second's, and a job of 12 is made of them while the watch goes on; the
    4 records left wait for more."""
    backend = local_backend_factory(timing=QUICK, quotas=Quotas(min_records_per_job=1))
    folder = tmp_path / "inbox"
    folder.mkdir()
    run = _Watching(backend, _watched_folder(folder), tmp_path / "out",
                    "--undersized-policy", "defer", "--min-records-per-job", "12")
    try:
        first = _drop(folder, 0)
        run.wait_until_read(folder / "batch-0.jsonl")
        # The batch was stamped when found, at the latest now: dropped after this window's end,
        # the next batch is found in a later window.
        next_window = (time.time() // WINDOW_SECONDS + 1) * WINDOW_SECONDS
        while time.time() < next_window:
            time.sleep(0.1)
        second = _drop(folder, 1)
        rows = run.wait_for_rows(first)
        jobs = _all_jobs(backend)
    finally:
        code, err = run.interrupt()
    _assert_interrupted(code, err)
    ids = [r["transcript_id"] for r in rows]
    assert len(ids) == 12 and set(first) < set(ids) < set(first + second)
    assert len(jobs) == 1 and jobs[0]["totalRecordCount"] == 12
    assert "-c1-" in jobs[0]["jobName"], "a job of carried tails"
    assert not read_rows(tmp_path / "out" / "failures"), "the 4 left still wait, unreported"
