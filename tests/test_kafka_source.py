"""ReadTranscriptsFromKafka against a real Kafka broker (tests/jvm_services.py), in streaming mode
on both local runners (FnApiRunner, Prism) and on Flink (portable), plus unit tests of the pure
message -> Transcript | Failure step and of a held read's ledger writes."""
from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from confluent_kafka import (TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Consumer, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from tests.jvm_services import flink_pipeline_args, free_port
from tests.pipelines import LOCAL_RUNNERS, pipeline_on
from transforms.core.model import Failure, Transcript
from transforms.sources.kafka import (DRAIN_SECONDS, UNBOUNDED_END, PartitionTracker,
                                      ReadTranscriptsFromKafka, _consumer_settings,
                                      _ListPartitionsFn, _ReadPartitionFn)
from transforms.sources.kafka_messages import (KafkaPartition, message_time, message_to_item,
                                               partition_entry)
from transforms.sources.source_ledger import LedgerEntry, SourceLedger, parse_entry
from transforms.sources.validation import FieldMapping

MAPPING = FieldMapping()
# Fixed past message times (ms) so the element timestamps can be checked exactly.
BASE_MS = 1_700_000_000_000


# --- pure: message value -> Transcript | Failure ---------------------------------------------

def test_valid_message_becomes_a_transcript_with_origin_and_metadata():
    value = json.dumps({"id": 7, "text": "Caller asks for a refund.", "agent": "a-1",
                        "metadata": {"queue": "billing"}}).encode()
    item = message_to_item(value, "kafka:calls/1@42", MAPPING)
    assert item == Transcript(id="7", text="Caller asks for a refund.",
                              metadata={"queue": "billing", "agent": "a-1"},
                              origin="kafka:calls/1@42")


def test_turns_and_custom_fields_are_mapped():
    mapping = FieldMapping.of(id_field="call_id", turns_field="utterances")
    value = json.dumps({"call_id": "c-9", "utterances": [
        {"speaker": "Agent", "text": "Hello."}, {"speaker": "Caller", "text": "Hi."}]}).encode()
    item = message_to_item(value, "kafka:t/0@0", mapping)
    assert isinstance(item, Transcript)
    assert (item.id, item.text, len(item.turns)) == ("c-9", "Agent: Hello.\nCaller: Hi.", 2)


@pytest.mark.parametrize("value, stage, code", [
    (None, "source", "EmptyMessage"),
    (b"\xff\xfe not utf-8", "source", "InvalidEncoding"),
    (b'{"id": "x", "text": ', "source", "InvalidJson"),
    (b'["id", "text"]', "source", "InvalidRecord"),
    (b'{"text": "no id here"}', "validate", "MissingId"),
    (b'{"id": "e", "text": "   "}', "validate", "EmptyText"),
    (b'{"id": "n", "text": 5}', "validate", "InvalidText"),
    (b'{"id": "long", "text": "abcdefghijk"}', "validate", "TextTooLong"),
])
def test_bad_messages_become_failures_naming_the_message(value, stage, code):
    item = message_to_item(value, "kafka:calls/0@3", MAPPING, max_text_chars=10)
    assert isinstance(item, Failure)
    assert (item.stage, item.error_code, item.origin) == (stage, code, "kafka:calls/0@3")
    assert "kafka:calls/0@3" in item.error_message
    if value is not None:
        assert item.raw  # the offending input is kept for the failures sink


def test_message_time_uses_the_kafka_timestamp_or_now():
    assert message_time(TIMESTAMP_CREATE_TIME, BASE_MS, now=5.0).micros == BASE_MS * 1000
    assert message_time(TIMESTAMP_NOT_AVAILABLE, -1, now=5.0).micros == 5_000_000


def test_bad_options_fail_at_construction_with_a_clear_message():
    with pytest.raises(ValueError, match="start_offset"):
        ReadTranscriptsFromKafka("127.0.0.1:9092", "calls", start_offset="beginning")
    with pytest.raises(ValueError, match="topic"):
        ReadTranscriptsFromKafka("127.0.0.1:9092", "")
    with pytest.raises(ValueError, match="stop_after_seconds"):
        ReadTranscriptsFromKafka("127.0.0.1:9092", "calls", stop_after_seconds=0)
    with pytest.raises(ValueError, match="id_field"):
        ReadTranscriptsFromKafka("127.0.0.1:9092", "calls", id_field="")


# --- real broker ------------------------------------------------------------------------------

def create_topic(bootstrap: str, partitions: int = 2) -> str:
    topic = f"transcripts-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)])
    futures[topic].result(timeout=30)
    return topic


class Sent:
    """Produces messages and remembers where each landed (origin) from the delivery reports."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        self.origins: dict[str, str] = {}  # label -> kafka origin
        self.times: dict[str, int] = {}  # label -> timestamp ms

    def send(self, label: str, value: bytes | None, partition: int, timestamp_ms: int) -> None:
        def delivered(err, msg):
            assert err is None, err
            self.origins[label] = f"kafka:{msg.topic()}/{msg.partition()}@{msg.offset()}"
        self.producer.produce(self.topic, value=value, partition=partition,
                              timestamp=timestamp_ms, on_delivery=delivered)
        self.times[label] = timestamp_ms

    def flush(self) -> None:
        assert self.producer.flush(30) == 0


class RecordFn(beam.DoFn):
    """Writes each element (with its timestamp) to its own JSON file under ``folder``."""

    def __init__(self, folder: str, kind: str) -> None:
        self._folder = folder
        self._kind = kind

    def process(self, item: Any, timestamp=beam.DoFn.TimestampParam) -> None:
        row = {"kind": self._kind, "ts_micros": timestamp.micros, "origin": item.origin}
        if isinstance(item, Transcript):
            row.update(id=item.id, text=item.text, metadata=dict(item.metadata))
        else:
            row.update(stage=item.stage, code=item.error_code, message=item.error_message)
        Path(self._folder, f"{uuid.uuid4().hex}.json").write_text(json.dumps(row))


def run_pipeline(bootstrap: str, topic: str, out: Path, stop_after: float,
                 pipeline: beam.Pipeline) -> list[dict]:
    """Runs the source on ``pipeline`` to ``stop_after`` and returns the recorded transcripts
    and failures."""
    out.mkdir()
    with pipeline as p:  # blocks until reading stops
        result = p | ReadTranscriptsFromKafka(bootstrap, topic, group_id=f"g-{topic}",
                                              poll_timeout_seconds=0.5,
                                              stop_after_seconds=stop_after)
        result["transcripts"] | "RecordTranscripts" >> beam.ParDo(RecordFn(str(out), "t"))
        result["failures"] | "RecordFailures" >> beam.ParDo(RecordFn(str(out), "f"))
    return [json.loads(path.read_text()) for path in out.iterdir()]


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_reads_every_message_once_and_reports_bad_ones(kafka_bootstrap, tmp_path, runner):
    topic = create_topic(kafka_bootstrap)
    sent = Sent(kafka_bootstrap, topic)
    for n in range(20):
        record = {"id": f"call-{n}", "text": f"Call {n}: customer asks about an order.",
                  "metadata": {"n": n}}
        sent.send(f"call-{n}", json.dumps(record).encode(), n % 2, BASE_MS + n)
    bad = {"bad-json": (b'{"id": "broken", ', "source", "InvalidJson"),
           "no-id": (b'{"text": "who am I"}', "validate", "MissingId"),
           "empty": (b'{"id": "blank", "text": ""}', "validate", "EmptyText"),
           "tombstone": (None, "source", "EmptyMessage")}
    for n, (label, (value, _, _)) in enumerate(bad.items()):
        sent.send(label, value, n % 2, BASE_MS + 100 + n)
    sent.flush()

    rows = run_pipeline(kafka_bootstrap, topic, tmp_path / "out", stop_after=8,
                        pipeline=pipeline_on(runner, ["--streaming"]))

    transcripts = [r for r in rows if r["kind"] == "t"]
    assert sorted(r["id"] for r in transcripts) == sorted(f"call-{n}" for n in range(20))
    for row in transcripts:
        n = row["metadata"]["n"]
        assert row["origin"] == sent.origins[row["id"]]
        assert row["ts_micros"] == (BASE_MS + n) * 1000
        assert row["text"] == f"Call {n}: customer asks about an order."
    failures = {r["origin"]: r for r in rows if r["kind"] == "f"}
    assert len(failures) == len(rows) - len(transcripts) == len(bad)
    for label, (_, stage, code) in bad.items():
        row = failures[sent.origins[label]]
        assert (row["stage"], row["code"]) == (stage, code)
        assert sent.origins[label] in row["message"]
        assert row["ts_micros"] == sent.times[label] * 1000
    # Offsets are committed as a courtesy, so lag monitoring sees the group caught up.
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}"})
    try:
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], 30)
    finally:
        consumer.close()
    assert [c.offset for c in committed] == [12, 12]


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_reads_messages_produced_while_the_pipeline_runs(kafka_bootstrap, tmp_path, runner):
    topic = create_topic(kafka_bootstrap)
    sent = Sent(kafka_bootstrap, topic)
    labels = [f"live-{batch}-{n}" for batch in range(4) for n in range(3)]

    def produce_in_batches() -> None:
        for batch in range(4):
            time.sleep(1)
            for n in range(3):
                label = f"live-{batch}-{n}"
                sent.send(label, json.dumps({"id": label, "text": "Hello."}).encode(), n % 2,
                          int(time.time() * 1000))
            sent.flush()

    producer = threading.Thread(target=produce_in_batches)
    producer.start()
    try:
        rows = run_pipeline(kafka_bootstrap, topic, tmp_path / "out", stop_after=9,
                            pipeline=pipeline_on(runner, ["--streaming"]))
    finally:
        producer.join()
    assert sorted(r["id"] for r in rows if r["kind"] == "t") == sorted(labels)
    assert all(r["origin"] == sent.origins[r["id"]] for r in rows)


def list_partitions(bootstrap: str, topic: str, start_offset: str) -> list[KafkaPartition]:
    fn = _ListPartitionsFn(_consumer_settings(bootstrap, f"g-{topic}", None), topic, start_offset,
                           stop_after_seconds=None)
    fn.setup()
    try:
        return list(fn.process(None))
    finally:
        fn.teardown()


def test_start_offset_chooses_earliest_or_latest(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap)
    sent = Sent(kafka_bootstrap, topic)
    for n in range(3):
        sent.send(f"m{n}", b'{"id": "x", "text": "y"}', 1, BASE_MS)
    sent.flush()
    assert list_partitions(kafka_bootstrap, topic, "earliest") == [
        KafkaPartition(topic, 0, 0), KafkaPartition(topic, 1, 0)]
    assert list_partitions(kafka_bootstrap, topic, "latest") == [
        KafkaPartition(topic, 0, 0), KafkaPartition(topic, 1, 3)]


def test_missing_topic_fails_with_a_message_naming_it(kafka_bootstrap):
    with pytest.raises(ValueError, match=r"'no-such-topic-\w+'.*create the topic"):
        list_partitions(kafka_bootstrap, f"no-such-topic-{uuid.uuid4().hex[:6]}", "earliest")


@pytest.mark.timeout(150)  # a job whose workers cannot start waits forever on the runner side
def test_reads_on_flink_portable_runner(kafka_bootstrap, flink_job_endpoint, tmp_path):
    topic = create_topic(kafka_bootstrap)
    sent = Sent(kafka_bootstrap, topic)
    for n in range(10):
        sent.send(f"f-{n}", json.dumps({"id": f"f-{n}", "text": "Hi."}).encode(), n % 2, BASE_MS)
    sent.send("bad", b"nope", 0, BASE_MS)
    sent.flush()
    rows = run_pipeline(kafka_bootstrap, topic, tmp_path / "out", stop_after=8,
                        pipeline=beam.Pipeline(options=PipelineOptions(
                            flink_pipeline_args(flink_job_endpoint, streaming=True))))
    assert sorted(r["id"] for r in rows if r["kind"] == "t") == sorted(f"f-{n}" for n in range(10))
    assert [r["origin"] for r in rows if r["kind"] == "f"] == [sent.origins["bad"]]


def test_a_bounded_read_ledgers_each_partition_s_offset_range(kafka_bootstrap, tmp_path):
    """The source ledger's Kafka entries: one per partition once its bounded read has ended,
    counting the messages of the offset range read, so a restarted attempt's report does not
    rest on its counters."""
    topic = create_topic(kafka_bootstrap)
    sent = Sent(kafka_bootstrap, topic)
    for n in range(7):
        sent.send(f"call-{n}", json.dumps({"id": f"call-{n}", "text": "hi"}).encode(),
                  0 if n < 5 else 1, BASE_MS + n)
    sent.flush()
    ledger = tmp_path / "ledger"
    with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
        read = p | ReadTranscriptsFromKafka(kafka_bootstrap, topic, group_id=f"g-{topic}",
                                            poll_timeout_seconds=0.5, stop_after_seconds=6,
                                            ledger=SourceLedger(str(ledger)))
        read["transcripts"] | beam.Map(lambda _: None)
    entries = sorted((parse_entry(path.read_text()) for path in ledger.iterdir()),
                     key=lambda entry: entry.path)
    assert entries == [LedgerEntry(f"kafka:{topic}/0", 5, 0), LedgerEntry(f"kafka:{topic}/1", 2, 0)]


def test_a_partition_entry_counts_the_offsets_read():
    part = KafkaPartition("t", 3, start_offset=40, stop_at=1.0)
    assert partition_entry(part, 52) == LedgerEntry("kafka:t/3", 12, 0)
    assert partition_entry(part, 40) == LedgerEntry("kafka:t/3", 0, 0)


def test_a_held_read_writes_its_ledger_entry_once_per_dofn_instance(tmp_path):
    """A held read (``hold_after_end``) resumes every HOLD_SECONDS for as long as the run is
    held; its ledger entry is written at the first resumption only, and again by a new DoFn
    instance (a restart after a failure). The DoFn is called directly with a local ledger: a
    read whose drain is long over never polls, so no broker is needed (the consumer points at
    a closed port and is only assigned). An entry deleted after the first write shows whether
    a later resumption wrote it again."""
    ledger = tmp_path / "ledger"
    part = KafkaPartition("t", 0, start_offset=40, stop_at=time.time() - DRAIN_SECONDS - 60)

    def resume(fn: _ReadPartitionFn) -> None:
        tracker = ThreadsafeRestrictionTracker(PartitionTracker(OffsetRange(40, UNBOUNDED_END)))
        assert list(fn.process(part, tracker=RestrictionTrackerView(tracker),
                               watermark=ManualWatermarkEstimator(None))) == []
        assert tracker.deferred_status() is not None, "held: the read defers, it does not end"

    def held_fn() -> _ReadPartitionFn:
        fn = _ReadPartitionFn(_consumer_settings(f"127.0.0.1:{free_port()}", "g", None),
                              MAPPING, max_text_chars=1000, poll_timeout_seconds=0.5,
                              ledger=SourceLedger(str(ledger)), hold_after_end=True)
        fn.setup()
        return fn

    fn = held_fn()
    try:
        resume(fn)
        [entry] = list(ledger.iterdir())
        assert parse_entry(entry.read_text()) == LedgerEntry("kafka:t/0", 0, 0)
        entry.unlink()
        resume(fn)
        assert list(ledger.iterdir()) == [], "a later resumption does not write it again"
    finally:
        fn.teardown()
    restarted = held_fn()
    try:
        resume(restarted)
        assert [parse_entry(e.read_text()) for e in ledger.iterdir()] == [
            LedgerEntry("kafka:t/0", 0, 0)], "a new DoFn instance writes it again"
    finally:
        restarted.teardown()
