"""The Kafka source's watermark never passes unread backlog, and a message too far behind it
becomes a LateRecord failure row (pure policy, then against the real broker of
tests/jvm_services.py)."""
from __future__ import annotations

import json
import time

import pytest
from apache_beam.io.restriction_trackers import OffsetRange
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from tests.pipelines import LOCAL_RUNNERS
from tests.test_kafka_source import BASE_MS, Sent, create_topic
from transforms.sources.kafka import (UNBOUNDED_END, PartitionTracker, _consumer_settings,
                                      _ReadPartitionFn)
from transforms.sources.kafka_messages import (IDLE_WATERMARK_LAG, KafkaPartition, idle_watermark,
                                               late_message_failure)
from transforms.sources.validation import FieldMapping

NOW = Timestamp(seconds=1_800_000_000)


def test_idle_watermark_moves_to_now_only_without_backlog():
    assert idle_watermark(None, NOW, backlog=0) == NOW - IDLE_WATERMARK_LAG
    assert idle_watermark(Timestamp(seconds=5), NOW, backlog=0) == NOW - IDLE_WATERMARK_LAG
    assert idle_watermark(Timestamp(seconds=5), NOW, backlog=1) is None
    assert idle_watermark(None, NOW, backlog=None) is None, "unknown backlog keeps the watermark"
    assert idle_watermark(NOW, NOW, backlog=0) is None, "never moves backwards"


def test_an_idle_partition_with_unread_messages_keeps_its_watermark(kafka_bootstrap):
    """A poll that returned nothing while messages wait (a slow fetch) must not move the
    watermark to now: those messages' old timestamps would then be late. The DoFn's idle step
    is called directly on a consumer assigned before / after the backlog."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    sent = Sent(kafka_bootstrap, topic)
    for n in range(3):
        sent.send(f"m{n}", json.dumps({"id": f"m{n}", "text": "Hi."}).encode(), 0, BASE_MS + n)
    sent.flush()
    part = KafkaPartition(topic, 0, 0)
    fn = _ReadPartitionFn(_consumer_settings(kafka_bootstrap, f"g-{topic}", None), FieldMapping(),
                          max_text_chars=1000, poll_timeout_seconds=0.5)
    fn.setup()
    try:
        fn._seek(part, 0)
        estimator = ManualWatermarkEstimator(None)
        fn._advance_idle(part, estimator)
        assert estimator.current_watermark() is None, "3 unread messages hold the watermark"
        assert fn._backlog(part) == 3

        read = [fn._consumer.poll(10) for _ in range(3)]
        assert [m.offset() for m in read] == [0, 1, 2]
        before = Timestamp.now()
        fn._advance_idle(part, estimator)
        assert fn._backlog(part) == 0
        assert estimator.current_watermark() >= before - IDLE_WATERMARK_LAG, \
            "caught up: the watermark follows the clock"
    finally:
        fn.teardown()


def test_late_message_failure_only_beyond_the_allowed_lateness():
    wm = Timestamp(seconds=1000)
    allowed = Duration(seconds=60)
    assert late_message_failure(b"{}", "kafka:t/0@1", Timestamp(seconds=940), wm, allowed) is None
    assert late_message_failure(b"{}", "kafka:t/0@1", Timestamp(seconds=10), None, allowed) is None
    assert late_message_failure(b"{}", "kafka:t/0@1", Timestamp(seconds=10), wm, None) is None
    failure = late_message_failure(b'{"id": "x"}', "kafka:t/0@1", Timestamp(seconds=939), wm,
                                   allowed)
    assert (failure.stage, failure.error_code, failure.origin) == ("source", "LateRecord",
                                                                   "kafka:t/0@1")
    assert "61 s behind" in failure.error_message
    assert "--allowed-lateness-seconds" in failure.error_message
    assert failure.raw  # kept, so it can be replayed


def test_a_message_behind_the_allowed_lateness_becomes_a_late_record_failure(kafka_bootstrap):
    """Messages with out-of-order producer timestamps on one partition, read by the DoFn itself
    (called directly, to see each output's timestamp and the watermark it leaves)."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    sent = Sent(kafka_bootstrap, topic)
    times = {"new": BASE_MS + 600_000, "slightly-old": BASE_MS + 590_000, "too-old": BASE_MS}
    for label, millis in times.items():
        sent.send(label, json.dumps({"id": label, "text": "Hi."}).encode(), 0, millis)
    sent.flush()
    fn = _ReadPartitionFn(_consumer_settings(kafka_bootstrap, f"g-{topic}", None), FieldMapping(),
                          max_text_chars=1000, poll_timeout_seconds=2,
                          allowed_lateness_seconds=60)
    fn.setup()
    estimator = ManualWatermarkEstimator(None)
    outputs = []
    try:
        part = KafkaPartition(topic, 0, 0, stop_at=time.time() + 60)
        tracker = PartitionTracker(OffsetRange(0, UNBOUNDED_END))
        for output in fn.process(part, tracker=tracker, watermark=estimator):
            outputs.append(output)
            if len(outputs) == len(times):
                break
    finally:
        fn.teardown()
    transcripts = {o.value.id: o.timestamp for o in outputs if isinstance(o, TimestampedValue)}
    assert transcripts == {"new": Timestamp(micros=times["new"] * 1000),
                           "slightly-old": Timestamp(micros=times["slightly-old"] * 1000)}, \
        "10 s out of order is within the allowed 60 s: kept with its own time"
    [late] = [o for o in outputs if isinstance(o, TaggedOutput)]
    assert late.tag == "failures"
    failure, stamped = late.value.value, late.value.timestamp
    assert (failure.error_code, failure.origin) == ("LateRecord", sent.origins["too-old"])
    assert stamped == Timestamp(micros=times["new"] * 1000), "stamped at the watermark, not dropped"


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_cli_writes_a_late_record_row_and_summarizes_the_rest(kafka_bootstrap, tmp_path, runner):
    """Through the CLI: a message two days behind its partition's watermark (beyond the default
    allowed lateness of one day) is a LateRecord failure row; one an hour behind is summarized.
    On both local runners: the watermark is the source's own, whichever runner holds it."""
    from pipeline.__main__ import main
    from tests.pipelines import read_rows

    topic = create_topic(kafka_bootstrap, partitions=1)
    sent = Sent(kafka_bootstrap, topic)
    now_ms = int(time.time() * 1000)
    times = {"new": now_ms, "hour-old": now_ms - 3_600_000, "two-days-old": now_ms - 172_800_000}
    for label, millis in times.items():
        text = f"Customer {label} asks about a refund. Agent confirms the refund today."
        sent.send(label, json.dumps({"id": label, "text": text}).encode(), 0, millis)
    sent.flush()
    assert main(["run", "--streaming", "--kafka-bootstrap-servers", kafka_bootstrap,
                 "--kafka-topic", topic, "--output", str(tmp_path / "out"), "--sink", "jsonl",
                 "--window-seconds", "60", "--watch-seconds", "6", "--min-records-per-job", "1",
                 "--max-failure-rate", "0.5", "--debug", "--runner", runner]) == 0
    summaries = read_rows(tmp_path / "out" / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == ["hour-old", "new"]
    [failure] = read_rows(tmp_path / "out" / "failures")
    assert (failure["stage"], failure["error_code"], failure["origin"]) == (
        "source", "LateRecord", sent.origins["two-days-old"])
