"""Streaming source: transcripts from a Kafka topic, read natively with confluent-kafka.

No JVM on the worker, so it runs on every runner (DirectRunner ``--streaming``, Flink portable).
Each message value is one JSON transcript record (the JSONL record shape of
``transforms.sources.parsing``); an undecodable or invalid message becomes a Failure row whose
origin is ``kafka:<topic>/<partition>@<offset>``.

Shape: Impulse -> list the topic's partitions and resolve their start offsets -> Reshuffle (so
partitions spread over workers) -> a splittable DoFn per partition whose restriction is the
offset range still to read. The partition is ``assign()``-ed at the restriction's start (no
consumer-group rebalances): the restriction checkpointed by the runner IS the read position, so
Kafka's committed offsets are only a courtesy for lag monitoring. When the partition is idle the
DoFn self-checkpoints with ``defer_remainder`` (no processing-time timers: the DirectRunner drops
them). What a message or a partition becomes (a Transcript or Failure, its time, the ledger
entry, the idle watermark) is decided in ``transforms.sources.kafka_messages``.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.model import Transcript
from transforms.core.storage import Storage, join
from transforms.sources.common import (DEFAULT_INPUT_LATENESS_SECONDS, FAILURES, RECORDS_IN,
                                       TRANSCRIPTS, check_field_options, tagged)
from transforms.sources.kafka_messages import (KafkaPartition, idle_watermark, kafka_origin,
                                               late_message_failure, message_time,
                                               message_to_item, partition_entry)
from transforms.sources.source_ledger import SourceLedger, entry_name, entry_text
from transforms.sources.validation import DEFAULT_MAX_TEXT_CHARS, FieldMapping

log = logging.getLogger(__name__)

START_OFFSETS = ("earliest", "latest")
# Kafka offsets are int64: a restriction ending here never runs out while the source is unbounded.
UNBOUNDED_END = 2**63 - 1
# How long an idle poll waits for the broker's high watermark; no answer keeps the watermark.
BACKLOG_TIMEOUT_SECONDS = 5.0
# One process() call reads at most this long before checkpointing, so a busy partition still
# commits its output downstream regularly and the runner gets a chance to checkpoint.
MAX_READ_SECONDS = 5.0
METADATA_TIMEOUT_SECONDS = 30.0
# Past its stop time a partition still reads what it holds (the runner may start one partition's
# reader long after another's), but for at most this long, so a producer that outpaces the
# consumer cannot keep a bounded read going.
DRAIN_SECONDS = 120.0
# How often a bounded read that has ended and is held (``hold_after_end``) wakes to move its
# watermark on.
HOLD_SECONDS = 10.0


class PartitionTracker(OffsetRestrictionTracker):
    """Offsets of one partition. Only checkpoints split it (fraction 0): a partition is read in
    order by one consumer, and a fractional split of an endless range would leave a primary that
    never ends."""

    def try_split(self, fraction_of_remainder: float) -> tuple[OffsetRange, OffsetRange] | None:
        if fraction_of_remainder != 0:
            return None
        return super().try_split(0)

    def is_bounded(self) -> bool:
        return self.stop_position() != UNBOUNDED_END


class PartitionRestrictionProvider(RestrictionProvider):
    """Restrictions of the partition reader: the offsets from ``start_offset`` on, unbounded."""

    def initial_restriction(self, element: KafkaPartition) -> OffsetRange:
        return OffsetRange(element.start_offset, UNBOUNDED_END)

    def create_tracker(self, restriction: OffsetRange) -> PartitionTracker:
        return PartitionTracker(restriction)

    def restriction_size(self, element: KafkaPartition, restriction: OffsetRange) -> int:
        # The backlog is unknown without a broker round trip; equal sizes weigh partitions alike.
        return 1


def _consumer_settings(bootstrap_servers: str, group_id: str,
                       extra: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "group.id": group_id,
        "enable.auto.commit": False,
        # Only reached when the assigned offset was deleted by retention: resume at the oldest
        # message still kept instead of skipping to the end.
        "auto.offset.reset": "earliest",
        **(extra or {}),
    }


class _ListPartitionsFn(beam.DoFn):
    """Impulse -> a KafkaPartition per partition of the topic, starting at the earliest or latest
    offset the broker holds now."""

    def __init__(self, settings: dict[str, Any], topic: str, start_offset: str,
                 stop_after_seconds: float | None) -> None:
        self._settings = settings
        self._topic = topic
        self._start_offset = start_offset
        self._stop_after = stop_after_seconds

    def setup(self) -> None:
        self._consumer = Consumer(self._settings)

    def process(self, unused_impulse: Any) -> Iterator[KafkaPartition]:
        metadata = self._consumer.list_topics(self._topic, timeout=METADATA_TIMEOUT_SECONDS)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None or not topic.partitions:
            reason = topic.error.str() if topic is not None and topic.error else "no partitions"
            raise ValueError(f"Kafka topic {self._topic!r} on {self._settings['bootstrap.servers']}"
                             f" cannot be read ({reason}); create the topic or fix --kafka-topic")
        # The deadline starts when reading starts, not when the pipeline was constructed.
        stop_at = time.time() + self._stop_after if self._stop_after else None
        for partition in sorted(topic.partitions):
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=METADATA_TIMEOUT_SECONDS)
            start = low if self._start_offset == "earliest" else high
            yield KafkaPartition(self._topic, partition, start, stop_at)

    def teardown(self) -> None:
        self._consumer.close()


class _ReadPartitionFn(beam.DoFn):
    """KafkaPartition -> Transcript (main) / Failure (tagged), one per message, timestamped with
    the message time."""

    def __init__(self, settings: dict[str, Any], mapping: FieldMapping, max_text_chars: int,
                 poll_timeout_seconds: float, allowed_lateness_seconds: float | None = None,
                 ledger: SourceLedger | None = None, hold_after_end: bool = False) -> None:
        self._settings = settings
        self._ledger = ledger
        self._hold_after_end = hold_after_end
        self._allowed_lateness = (None if allowed_lateness_seconds is None
                                  else Duration(seconds=allowed_lateness_seconds))
        self._mapping = mapping
        self._max_text_chars = max_text_chars
        self._poll_timeout = poll_timeout_seconds
        self._messages = counter("messages_read")
        self._records_in = counter(RECORDS_IN)
        self._read = counter("transcripts_read")
        self._rejected = counter("records_rejected")

    def setup(self) -> None:
        self._consumer = Consumer(self._settings)
        if self._ledger is not None:
            aws = self._ledger.aws
            self._ledger_storage = Storage(aws.client("s3") if aws is not None else None)
        # (topic, partition, end offset) of the entries this instance has written: a held read
        # resumes every HOLD_SECONDS and would write the same entry again each time. Per
        # instance, so a new one (a restart after a failure) writes it once more.
        self._written: set[tuple[str, int, int]] = set()
        # (topic, partition, offset of the next message poll() returns), to skip a re-assign
        # (and the refetch it costs) when a resumed restriction continues where we stopped.
        self._position: tuple[str, int, int] | None = None

    def _seek(self, part: KafkaPartition, offset: int) -> None:
        if self._position != (part.topic, part.partition, offset):
            self._consumer.assign([TopicPartition(part.topic, part.partition, offset)])
            self._position = (part.topic, part.partition, offset)

    def _commit(self, part: KafkaPartition, next_offset: int) -> None:
        # Courtesy only, for lag monitoring: restarts resume from the runner's restriction. It
        # waits for the broker: an asynchronous commit in flight is lost when the consumer is
        # re-assigned to the next partition, once a process() call ends.
        try:
            self._consumer.commit(
                offsets=[TopicPartition(part.topic, part.partition, next_offset)],
                asynchronous=False)
        except KafkaException as err:
            log.warning("Kafka %s/%d: offset %d not committed (%s); lag monitoring will lag",
                        part.topic, part.partition, next_offset, err)

    @beam.DoFn.unbounded_per_element()
    def process(self, part: KafkaPartition,
                tracker=beam.DoFn.RestrictionParam(PartitionRestrictionProvider()),
                watermark=beam.DoFn.WatermarkEstimatorParam(
                    ManualWatermarkEstimator.default_provider())) -> Iterator[Any]:
        restriction: OffsetRange = tracker.current_restriction()
        self._seek(part, restriction.start)
        read_until = time.monotonic() + MAX_READ_SECONDS
        claimed = None
        try:
            while True:
                now = time.time()
                draining = part.stop_at is not None and now >= part.stop_at
                if draining and (now >= part.stop_at + DRAIN_SECONDS or not self._backlog(part)):
                    # Once per DoFn instance, though a held read comes back here at each resumption.
                    self._write_entry(part, restriction.start if claimed is None else claimed + 1)
                    if self._hold_after_end:  # read no more; the watermark follows the clock
                        current = watermark.current_watermark()
                        clock = Timestamp.now()
                        watermark.set_watermark(clock if current is None else max(current, clock))
                        tracker.defer_remainder(Duration(seconds=HOLD_SECONDS))
                        break
                    tracker.try_claim(restriction.stop)  # past the end: the restriction is done
                    break
                if time.monotonic() >= read_until:
                    tracker.defer_remainder(Duration(seconds=0))
                    break
                timeout = self._poll_timeout
                if part.stop_at is not None and not draining:
                    timeout = min(timeout, part.stop_at - now)
                message = self._consumer.poll(timeout)
                if message is None:
                    self._advance_idle(part, watermark)
                    tracker.defer_remainder(Duration(seconds=1))
                    break
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF or error.retriable():
                        # librdkafka retries by itself; the next poll may succeed.
                        log.warning("Kafka %s/%d: %s", part.topic, part.partition, error.str())
                        continue
                    # Fails the bundle; the runner retries it from the same restriction.
                    raise KafkaException(error)
                offset = message.offset()
                self._position = (part.topic, part.partition, offset + 1)
                if not tracker.try_claim(offset):
                    break
                claimed = offset
                yield from self._emit(part, message, watermark)
        finally:
            if claimed is not None:
                self._commit(part, claimed + 1)

    def _write_entry(self, part: KafkaPartition, end_offset: int) -> None:
        # Once the partition's bounded read has ended; a failed write fails the bundle, which
        # the runner retries from the same restriction. A replay writes the same entry.
        written = (part.topic, part.partition, end_offset)
        if self._ledger is not None and written not in self._written:
            entry = partition_entry(part, end_offset)
            self._ledger_storage.write_text(join(self._ledger.prefix, entry_name(entry.path)),
                                            entry_text(entry))
            self._written.add(written)

    def _emit(self, part: KafkaPartition, message: Any,
              watermark: ManualWatermarkEstimator) -> Iterator[Any]:
        self._messages.inc()
        self._records_in.inc()
        kind, millis = message.timestamp()
        timestamp = message_time(kind, millis, time.time())
        current = watermark.current_watermark()
        origin = kafka_origin(part.topic, part.partition, message.offset())
        late = late_message_failure(message.value(), origin, timestamp, current,
                                    self._allowed_lateness)
        if late is not None:
            self._rejected.inc()
            # Stamped at the watermark, not behind it, so the failure row itself is not dropped.
            yield TaggedOutput(FAILURES, TimestampedValue(late, current))
            return
        if current is None or timestamp > current:
            watermark.set_watermark(timestamp)
        item = message_to_item(message.value(), origin, self._mapping, self._max_text_chars)
        if isinstance(item, Transcript):
            self._read.inc()
            yield TimestampedValue(item, timestamp)
        else:
            self._rejected.inc()
            yield TaggedOutput(FAILURES, TimestampedValue(item, timestamp))

    def _advance_idle(self, part: KafkaPartition, watermark: ManualWatermarkEstimator) -> None:
        mark = idle_watermark(watermark.current_watermark(), Timestamp.now(), self._backlog(part))
        if mark is not None:
            watermark.set_watermark(mark)

    def _backlog(self, part: KafkaPartition) -> int | None:
        """Messages of the partition not read yet: the broker's high watermark minus the
        consumer's position; None when the broker does not answer."""
        partition = TopicPartition(part.topic, part.partition)
        try:
            _, high = self._consumer.get_watermark_offsets(
                partition, timeout=BACKLOG_TIMEOUT_SECONDS, cached=False)
        except KafkaException as err:
            log.warning("Kafka %s/%d: high watermark unknown (%s); watermark kept",
                        part.topic, part.partition, err)
            return None
        # The consumer's position also steps over transaction markers, which our own count of
        # returned messages does not see; before the first fetch it is unset (negative).
        [position] = self._consumer.position([partition])
        if position.offset >= 0:
            return max(0, high - position.offset)
        if self._position is None:
            return None
        return max(0, high - self._position[2])

    def teardown(self) -> None:
        self._consumer.close()


class ReadTranscriptsFromKafka(beam.PTransform):
    """Reads transcripts from every partition of a Kafka topic, one JSON record per message.

    Returns {"transcripts": PCollection[Transcript], "failures": PCollection[Failure]}, both
    unbounded and timestamped with the message time. ``stop_after_seconds`` ends reading that
    long after the partitions were listed, once each partition has read the messages it already
    held (for at most DRAIN_SECONDS more), and then, once in-flight work is done, the pipeline; None
    reads until the pipeline is cancelled. ``start_offset`` chooses where a new pipeline starts;
    a restarted one resumes from the runner's checkpointed offsets. ``consumer_config`` adds
    librdkafka settings (e.g. security.protocol, sasl.*). Partitions added to the topic after
    the pipeline started are not read. Ids are not deduplicated here (SummarizeTranscripts
    does it, per window).

    ``allowed_lateness_seconds`` should be the allowed lateness of the windowing applied
    downstream (see ``transforms.summarize.fixed_windows_with_lateness``): a message further
    behind its partition's watermark than that becomes a ``LateRecord`` failure row instead of
    being dropped by the window. None turns the check off.

    Args:
        bootstrap_servers: The brokers, ``host:port[,host:port]``.
        topic: The topic to read.
        group_id: The consumer group (offsets are committed for lag monitoring only).
        id_field: The record field that holds the transcript id.
        text_field: The record field that holds the transcript text.
        turns_field: The record field that holds speaker turns.
        metadata_fields: Record fields kept as metadata; None keeps the others.
        max_text_chars: The longest text accepted.
        poll_timeout_seconds: How long one consumer poll waits for messages.
        stop_after_seconds: See above; None reads until cancelled.
        start_offset: ``earliest`` or ``latest``, for a pipeline with no checkpoint.
        consumer_config: Extra librdkafka consumer settings.
        allowed_lateness_seconds: See above; None turns the check off.
        ledger: Where to keep the source ledger (``transforms.sources.source_ledger``): with
            ``stop_after_seconds``, each partition's entry
            (``transforms.sources.kafka_messages.partition_entry``) once its read has ended.
            None keeps no ledger.
        hold_after_end: Once a partition's bounded read has ended, read no more but stay, the
            watermark following the clock, until the pipeline is cancelled: see
            ``transforms.sources.watch.WatchTranscripts`` (Flink with checkpointing).
    """

    def __init__(self, bootstrap_servers: str, topic: str, group_id: str = "bedrock-batch-beam",
                 id_field: str = "id", text_field: str = "text", turns_field: str = "turns",
                 metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, poll_timeout_seconds: float = 1.0,
                 stop_after_seconds: float | None = None, start_offset: str = "earliest",
                 consumer_config: Mapping[str, Any] | None = None,
                 allowed_lateness_seconds: float | None = DEFAULT_INPUT_LATENESS_SECONDS,
                 ledger: SourceLedger | None = None, hold_after_end: bool = False) -> None:
        super().__init__()
        check_field_options(max_text_chars, id_field=id_field, text_field=text_field,
                       turns_field=turns_field)
        for field, value in (("bootstrap_servers", bootstrap_servers), ("topic", topic),
                             ("group_id", group_id)):
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"Kafka {field} must be a non-empty string, got {value!r}",
                                  field)
        if start_offset not in START_OFFSETS:
            raise ConfigError(f"Kafka start_offset must be one of {', '.join(START_OFFSETS)}, "
                              f"got {start_offset!r}", "start_offset")
        if poll_timeout_seconds <= 0:
            raise ConfigError(f"poll_timeout_seconds must be > 0, got {poll_timeout_seconds}",
                              "poll_timeout_seconds")
        if allowed_lateness_seconds is not None and allowed_lateness_seconds < 0:
            raise ConfigError(f"allowed_lateness_seconds must be >= 0 or None (no check), got "
                              f"{allowed_lateness_seconds}", "allowed_lateness_seconds")
        if stop_after_seconds is not None and stop_after_seconds <= 0:
            raise ConfigError(f"stop_after_seconds must be > 0 or None (read forever), got "
                              f"{stop_after_seconds}", "stop_after_seconds")
        self._settings = _consumer_settings(bootstrap_servers, group_id, consumer_config)
        self._topic = topic
        self._mapping = FieldMapping.of(id_field, text_field, turns_field, metadata_fields)
        self._max_text_chars = max_text_chars
        self._poll_timeout = poll_timeout_seconds
        self._stop_after = stop_after_seconds
        self._start_offset = start_offset
        self._allowed_lateness = allowed_lateness_seconds
        self._ledger = ledger
        self._hold_after_end = hold_after_end

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        read = (
            pbegin
            | "Impulse" >> beam.Impulse()
            | "ListPartitions" >> beam.ParDo(_ListPartitionsFn(
                self._settings, self._topic, self._start_offset, self._stop_after))
            | "SpreadPartitions" >> beam.Reshuffle()
            | "ReadPartitions" >> beam.ParDo(_ReadPartitionFn(
                self._settings, self._mapping, self._max_text_chars, self._poll_timeout,
                self._allowed_lateness, self._ledger, self._hold_after_end)
            ).with_output_types(Transcript).with_outputs(FAILURES, main=TRANSCRIPTS))
        return tagged(read)
