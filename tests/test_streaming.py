"""Streaming on the local backend: files dropped into a watched folder over time become jobs per
window and a summary per transcript; the watch ends after a set time so the pipeline stops cleanly
(on the FnApiRunner, which cannot cancel a streaming pipeline; tests/test_streaming_prism.py runs
Prism, the default for --streaming, with no end and cancels it). The Kafka topic's run goes on
both local runners."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from pipeline.__main__ import main
from tests.pipelines import LOCAL_RUNNERS, read_rows, transcripts

BATCHES = 3
PER_BATCH = 8


# A batch is dropped this long after the previous one was read, so the two are found in
# different fixed windows of --window-seconds 3 (files are timestamped when found).
GAP_SECONDS = 3.5
# How long to wait for the pipeline to read a batch before dropping the next one anyway.
READ_WAIT_SECONDS = 90


class _FilesRead(logging.Handler):
    """Notes the files the source reports it has read (its "read FILE: ..." log line)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.read: set[str] = set()
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("read "):
            with self.changed:
                self.read.add(message[len("read "):].split(":", 1)[0])
                self.changed.notify_all()

    def wait_for(self, path: Path, stop: threading.Event) -> None:
        deadline = time.monotonic() + READ_WAIT_SECONDS
        with self.changed:
            while str(path) not in self.read and not stop.is_set():
                if time.monotonic() > deadline:
                    return
                self.changed.wait(0.2)


def _drop_files(folder: Path, stop: threading.Event, reads: _FilesRead) -> None:
    items = transcripts(BATCHES * PER_BATCH, prefix="live")
    for batch in range(BATCHES):
        if batch and (reads.wait_for(folder / f"batch-{batch - 1}.jsonl", stop)
                      or stop.wait(GAP_SECONDS)):
            return
        chunk = items[batch * PER_BATCH:(batch + 1) * PER_BATCH]
        tmp = folder / f".batch-{batch}.tmp"
        tmp.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in chunk))
        os.rename(tmp, folder / f"batch-{batch}.jsonl")  # appear whole, as an S3 PUT does


@contextlib.contextmanager
def files_arriving(folder: Path) -> Iterator[Path]:
    """A folder that receives a batch of transcripts, then another each time the pipeline has
    read the previous one and GAP_SECONDS have passed: the batches fall into different windows
    however slowly the pipeline starts on a busy machine (the pipeline must run in this process,
    as the DirectRunner and LOOPBACK workers do, for its log lines to be seen)."""
    folder.mkdir()
    stop = threading.Event()
    reads = _FilesRead()
    source_log = logging.getLogger("transforms.sources")
    source_log.addHandler(reads)
    dropper = threading.Thread(target=_drop_files, args=(folder, stop, reads))
    dropper.start()
    try:
        yield folder
    finally:
        stop.set()
        dropper.join()
        source_log.removeHandler(reads)


def test_watched_folder_streams_into_windowed_jobs(tmp_path, capsys):
    # The watch's 60 s count from when the pipeline starts reading: the three batches need a few
    # seconds each, more on a busy machine. A pipeline that never stops is caught by pytest's
    # timeout.
    with files_arriving(tmp_path / "inbox") as inbox:
        code = main(["run", "--streaming", "--input", str(inbox / "*.jsonl"),
                     "--output", str(tmp_path / "out"), "--sink", "jsonl",
                     "--window-seconds", "3", "--watch-interval-seconds", "1",
                     "--watch-seconds", "60", "--min-records-per-job", "1", "--debug",
                     "--runner", "FnApiRunner"])
    assert code == 0
    summaries = read_rows(tmp_path / "out" / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == \
        sorted(t.id for t in transcripts(BATCHES * PER_BATCH, prefix="live"))
    assert read_rows(tmp_path / "out" / "failures") == []
    windows = {r["window_start"] for r in summaries}
    assert len(windows) >= 2, "files that arrived seconds apart fall into different windows"
    assert all(r["window_end"] > r["window_start"] for r in summaries)
    jobs = {r["job_arn"] for r in summaries}
    assert len(jobs) >= len(windows), "each window is submitted as its own job(s)"
    files = sorted(p.name for p in (tmp_path / "out" / "summaries").glob("*.jsonl"))
    assert len(files) == len(windows), f"one file per window: {files}"


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_kafka_topic_streams_into_summaries(tmp_path, kafka_bootstrap, runner):
    from confluent_kafka import Producer

    from tests.test_kafka_source import create_topic

    topic = create_topic(kafka_bootstrap)
    items = transcripts(12, prefix="kafka")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for t in items:
        producer.produce(topic, value=json.dumps({"id": t.id, "text": t.text}).encode())
    producer.produce(topic, value=b"{not json")
    producer.flush(10)
    assert main(["run", "--streaming", "--kafka-bootstrap-servers", kafka_bootstrap,
                 "--kafka-topic", topic, "--output", str(tmp_path / "out"), "--sink", "jsonl",
                 "--window-seconds", "5", "--watch-seconds", "6", "--min-records-per-job", "1",
                 "--debug", "--runner", runner]) == 0
    summaries = read_rows(tmp_path / "out" / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in items)
    [failure] = read_rows(tmp_path / "out" / "failures")
    assert failure["error_code"] == "InvalidJson" and failure["origin"].startswith(f"kafka:{topic}/")


def test_streaming_resubmits_failed_records_in_later_panes(local_backend_factory, tmp_path):
    """Record errors in a streaming window are resubmitted after the window closed (late panes)
    and still reach the sinks: nothing is dropped as late data."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms import window

    from pipeline.local.faults import Faults
    from tests.pipelines import local_config
    from transforms.core.quotas import Quotas
    from transforms.sinks.files import WriteFailures, WriteSummaries
    from transforms.sources import WatchTranscripts
    from transforms.summarize import SummarizeTranscripts

    backend = local_backend_factory(quotas=Quotas(min_records_per_job=1),
                                    faults=Faults(seed=11, record_error_rate=0.3))
    items = transcripts(20, prefix="retry")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "calls.jsonl").write_text(
        "".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items))
    with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
        read = p | WatchTranscripts(str(tmp_path / "in" / "*.jsonl"), interval_seconds=1,
                                    stop_after_seconds=3)
        result = (read["transcripts"] | beam.WindowInto(window.FixedWindows(2))
                  | SummarizeTranscripts(local_config(backend, max_record_retries=3)))
        result["summaries"] | "S" >> WriteSummaries(str(tmp_path / "s"), format="jsonl")
        result["failures"] | "F" >> WriteFailures(str(tmp_path / "f"), format="jsonl")
    summaries, failures = read_rows(tmp_path / "s"), read_rows(tmp_path / "f")
    out = sorted([r["transcript_id"] for r in summaries] + [r["transcript_id"] for r in failures])
    assert out == sorted(t.id for t in items)
    assert max(r["attempt"] for r in summaries) >= 2


def test_summaries_and_failures_to_kafka_topics(tmp_path, kafka_bootstrap, capsys):
    """`--sink kafka`: every summary and failure lands on its topic, keyed by transcript id."""
    from confluent_kafka import Consumer, TopicPartition

    from tests.test_kafka_source import create_topic

    summaries_topic, failures_topic = create_topic(kafka_bootstrap, 1), create_topic(kafka_bootstrap, 1)
    path = tmp_path / "in.jsonl"
    items = transcripts(8, prefix="tok")
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items)
                    + '{"id": "broken"}\n')
    assert main(["run", "--input", str(path), "--sink", "kafka",
                 "--kafka-bootstrap-servers", kafka_bootstrap,
                 "--kafka-summaries-topic", summaries_topic,
                 "--kafka-failures-topic", failures_topic, "--min-records-per-job", "1"]) == 0
    assert f"written to      kafka:{summaries_topic}" in capsys.readouterr().out

    def consume(topic: str) -> list[tuple[str, dict]]:
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": "t",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        messages = consumer.consume(num_messages=100, timeout=5)
        consumer.close()
        return [(m.key().decode(), json.loads(m.value())) for m in messages if m.error() is None]

    got = consume(summaries_topic)
    assert sorted(key for key, _ in got) == sorted(t.id for t in items)
    assert all(value["summary"].startswith("[local extractive summary]") for _, value in got)
    [(key, failure)] = consume(failures_topic)
    assert key == "broken" and failure["error_code"] == "MissingText"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("hold", [False, True], ids=["finishes", "holds"])
def test_a_bounded_watch_records_its_end_and_finishes_or_holds_on(tmp_path, hold):
    """``hold_after_end`` (what the CLI sets on Flink with checkpointing, where a finished watch
    would move the watermark to the end of time at once): after its end the watch lists no more
    (a file moved in later is not read) and records what it had listed, and the pipeline runs on
    until cancelled; without it the pipeline finishes by itself. On Prism, which can cancel a
    running pipeline."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.runner import PipelineState

    from tests.pipelines import prism_args
    from transforms.sources import WatchTranscripts
    from transforms.sources.source_ledger import (WATCH_END_NAME, SourceLedger, entry_name,
                                                  file_identity, parse_watch_end)

    inbox, ledger = tmp_path / "in", tmp_path / "ledger"
    inbox.mkdir()
    first = inbox / "a.jsonl"
    first.write_text(json.dumps({"id": "a", "text": "hello"}) + "\n")
    p = beam.Pipeline(options=PipelineOptions([*prism_args(), "--streaming"]))
    _ = p | WatchTranscripts(str(inbox / "*.jsonl"), interval_seconds=1, stop_after_seconds=2,
                             hold_after_end=hold, ledger=SourceLedger(str(ledger)))
    result = p.run()
    try:
        end = ledger / WATCH_END_NAME
        deadline = time.monotonic() + 240
        while not end.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert parse_watch_end(end.read_text()).paths == {file_identity(str(first))}
        if not hold:
            assert result.wait_until_finish() == PipelineState.DONE
            return
        later = inbox / "b.jsonl"
        later.write_text(json.dumps({"id": "b", "text": "late"}) + "\n")
        time.sleep(5)  # five intervals: a watch still listing would have read it
        assert result.state == PipelineState.RUNNING
        assert (ledger / entry_name(file_identity(str(first)))).exists()
        assert not (ledger / entry_name(file_identity(str(later)))).exists()
    finally:
        if result.state == PipelineState.RUNNING:
            result.cancel()
