"""What the Kafka source knows about one message and one partition, without Beam's pipeline API.

A message's origin (``kafka:<topic>/<partition>@<offset>``), its value as a Transcript or the
Failure saying what is wrong with it, its element time, and whether it is too late for its
window; a partition's path and entry in the source ledger, and where its watermark may move when
it is idle. ``transforms.sources.kafka`` reads the messages and applies these. Times are Beam's
``Timestamp`` / ``Duration`` values, what the reader's watermark estimator takes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from apache_beam.utils.timestamp import Duration, Timestamp
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

from transforms.core.model import Failure, Transcript
from transforms.sources.common import checked
from transforms.sources.parsing import parse_json
from transforms.sources.source_ledger import LedgerEntry
from transforms.sources.validation import (DEFAULT_MAX_TEXT_CHARS, FieldMapping,
                                           record_to_transcript, source_failure)

# A caught-up partition (nothing left to read) moves its watermark to "now minus this", like
# Beam Java KafkaIO's LogAppendTimePolicy when its backlog is 0, so one quiet partition does not
# hold back every window.
IDLE_WATERMARK_LAG = Duration(seconds=2)


@dataclass(frozen=True)
class KafkaPartition:
    """One partition to read, from ``start_offset``, until ``stop_at`` (epoch seconds; None reads
    until the pipeline is cancelled).

    Args:
        topic: The topic.
        partition: The partition number.
        start_offset: The first offset to read.
        stop_at: When to stop reading (epoch seconds), or None.
    """

    topic: str
    partition: int
    start_offset: int
    stop_at: float | None = None


def kafka_origin(topic: str, partition: int, offset: int) -> str:
    """The origin of a message in failure rows: ``kafka:<topic>/<partition>@<offset>``.

    Args:
        topic: The topic.
        partition: The partition number.
        offset: The message offset.
    """
    return f"kafka:{topic}/{partition}@{offset}"


def partition_origin(topic: str, partition: int) -> str:
    """A partition's path in the source ledger: ``kafka:<topic>/<partition>``.

    Args:
        topic: The topic.
        partition: The partition number.
    """
    return f"kafka:{topic}/{partition}"


def partition_entry(part: KafkaPartition, end_offset: int) -> LedgerEntry:
    """The source ledger's entry of a bounded read of a partition that has ended: the messages
    of the offset range it read, ``[start_offset, end_offset)``. Counted from the offsets, which
    a restored read keeps (its restriction), not from the messages a restarted attempt saw; so
    exact for a topic without transactions or compaction (a transaction's commit marker, or a
    compacted message, takes an offset too). Failure rows at the source are counted where they
    land (0 here).

    Args:
        part: The partition read.
        end_offset: The offset after the last message read.
    """
    return LedgerEntry(partition_origin(part.topic, part.partition),
                       max(0, end_offset - part.start_offset), 0)


def message_to_item(value: bytes | None, origin: str, mapping: FieldMapping,
                    max_text_chars: int = DEFAULT_MAX_TEXT_CHARS) -> Transcript | Failure:
    """One Kafka message value (a JSON transcript record) as a valid Transcript, or the source /
    validate Failure saying what is wrong with it.

    Args:
        value: The message value (None for a tombstone).
        origin: The message's origin (``kafka_origin``).
        mapping: Which record fields hold the id, text and turns.
        max_text_chars: The longest text accepted.
    """
    if value is None:
        return source_failure("EmptyMessage", f"message {origin} has no value (a tombstone?); "
                              f"produce one JSON transcript object per message", origin=origin)
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as err:
        return source_failure("InvalidEncoding", f"message {origin} is not UTF-8 ({err.reason} at "
                              f"byte {err.start}); produce UTF-8 JSON", origin=origin, raw=value)
    record = parse_json(text, origin, what="message")
    if isinstance(record, Failure):
        return record
    if not isinstance(record, Mapping):
        return source_failure(
            "InvalidRecord", f"message {origin} is a JSON {type(record).__name__}, not an object; "
            f"produce one JSON transcript object per message", origin=origin, raw=record)
    try:
        item = record_to_transcript(record, mapping, origin)
    except Exception as err:  # noqa: BLE001 - one odd message must not stop the partition
        return source_failure("InvalidRecord", f"message {origin} cannot be read: "
                              f"{type(err).__name__}: {err}", origin=origin, raw=record)
    return checked(item, max_text_chars)


def message_time(kind: int, millis: int, now: float) -> Timestamp:
    """The element timestamp for a message: its Kafka timestamp (create or log-append time), or
    ``now`` when the message carries none.

    Args:
        kind: The message's timestamp type (confluent_kafka ``TIMESTAMP_*``).
        millis: Its timestamp in epoch milliseconds.
        now: The current time in epoch seconds.
    """
    if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0:
        return Timestamp.of(now)
    return Timestamp(micros=millis * 1000)


def idle_watermark(current: Timestamp | None, now: Timestamp, backlog: int | None
                   ) -> Timestamp | None:
    """The watermark a partition moves to after a poll that returned nothing, or None to keep it.

    Only a partition with no backlog (every message up to the broker's high watermark read) may
    jump to ``now - IDLE_WATERMARK_LAG``: an empty poll with messages still unread (a slow fetch)
    or an unknown backlog (None) says nothing about their times, and jumping would make them
    late.

    Args:
        current: The partition's watermark now, or None before the first.
        now: The current time.
        backlog: Messages left up to the broker's high watermark; None when unknown.
    """
    if backlog is None or backlog > 0:
        return None
    mark = now - IDLE_WATERMARK_LAG
    return mark if current is None or mark > current else None


def late_message_failure(value: bytes | None, origin: str, timestamp: Timestamp,
                         watermark: Timestamp | None, allowed_lateness: Duration | None
                         ) -> Failure | None:
    """The LateRecord failure for a message further behind its partition's watermark than the
    windowing's allowed lateness (its window has closed: Beam would drop it silently), else None.
    Checked against the partition's own watermark, which is never behind the pipeline's, so a
    message that passes is never dropped as late.

    Args:
        value: The message value, kept as the failure's raw.
        origin: The message's origin.
        timestamp: The message's element timestamp.
        watermark: The partition's watermark, or None before the first.
        allowed_lateness: The downstream windowing's allowed lateness; None turns the check off.
    """
    if allowed_lateness is None or watermark is None or timestamp + allowed_lateness >= watermark:
        return None
    behind = (watermark - timestamp).micros / 1e6
    return source_failure(
        "LateRecord", f"message {origin} has time {timestamp.to_rfc3339()}, {behind:.0f} s behind "
        f"its partition's watermark {watermark.to_rfc3339()}, more than the allowed lateness of "
        f"{allowed_lateness.micros / 1e6:g} s, so its window has closed; raise "
        f"--allowed-lateness-seconds or fix the producer's timestamps", origin=origin, raw=value)

