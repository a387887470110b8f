"""The Kafka source's watermark never passes unread backlog (pure policy, then against the real
broker of tests/jvm_services.py)."""
from __future__ import annotations

import json

from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.utils.timestamp import Timestamp

from tests.test_kafka_source import BASE_MS, Sent, create_topic
from transforms.kafka_source import (IDLE_WATERMARK_LAG, KafkaPartition, _consumer_settings,
                                     _ReadPartitionFn, idle_watermark)
from transforms.validation import FieldMapping

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
