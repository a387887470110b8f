"""Kafka sink for Summary / Failure rows, produced natively with confluent-kafka from a DoFn.

No JVM and no cross-language expansion, so it runs on every runner (DirectRunner, Flink
portable, ...). One message per row:

* key: the row's ``transcript_id`` as UTF-8; a row without one (a Failure from the source
  stage) is keyed by its ``record_id``, else its ``origin`` (file:line), else its row id
  (``kafka_encoding.message_key``). Every message has a key that is the same on every attempt,
  so a row written again lands on the partition of its first copy. The default partitioner is
  ``murmur2_random``, the Java client's hash, so a transcript lands on the partition a Java
  producer would pick.
* headers: ``row_id`` on every message, the row's id (``row_ids.row_id``: 32 hex digits over
  every column but ``created_at``, so the same when a replay produces the row again), and
  ``run_id``, the run id, when the sink was given one (the CLI gives its ``--run-id``).
* value, ``format="json"``: the row as one compact UTF-8 JSON object, timestamps as ISO 8601
  strings (``transforms.sinks.schema.json_line``, the JSONL sink's encoding).
* value, ``format="avro"``: the row as Avro binary *without* a container header or a schema
  registry prefix (fastavro ``schemaless_writer``). Every message carries the writer schema as
  compact JSON in the header ``avro.schema`` (``AVRO_SCHEMA_HEADER``), so any consumer can decode
  it without a registry; consumers that already hold ``transforms.sinks.schema.avro_schema`` can
  ignore the header. ``RowEncoder.decode`` is the inverse of the encoding for either format.

Delivery: every bundle ends with ``flush()`` and every delivery report is checked. While no
broker answers, librdkafka retries each message until ``message.timeout.ms`` (300 s unless
set), so a broker back within that time loses nothing. A delivery error (that timeout
included), a fatal producer error or a flush timeout raises ``KafkaDeliveryError`` (one line
naming the topic and the error) and fails the bundle. A runner that retries bundles produces it
again; the DirectRunner does not, so the run fails and a rerun produces the rows again.

Delivery is at-least-once: a retried bundle, a streaming runner that restores a checkpoint
(Flink after a lost TaskManager) and replays a window, or a rerun with the same run id writes
rows that are already in the topic again. The idempotent producer (default) removes only the
duplicates of its own retries within one producer session: a replay or a rerun is a new
producer, with a new producer id, whose messages the broker takes as new. Consumers that need
each row once de-duplicate on read: drop a message whose (``run_id``, ``row_id``) headers they
have already seen. Both copies have the same key, so while the topic keeps its partition count
they are on the same partition, and a consumer need only remember the ids of the partitions it
reads. This sink does not write transactionally.
"""
from __future__ import annotations

import logging
import re
from typing import Any, Iterator, Mapping, NoReturn

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue
from confluent_kafka import KafkaError, KafkaException, Producer

from transforms.core.metrics import counter
from transforms.sinks.kafka_encoding import RowEncoder
from transforms.sinks.result import SinkResult, no_failures, written_once

# acks=all + idempotence: a message counts as delivered only once every in-sync replica has it,
# and the producer's internal retries cannot duplicate or reorder it.
DEFAULT_PRODUCER_CONFIG: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
}
# librdkafka's default for message.timeout.ms (alias delivery.timeout.ms).
LIBRDKAFKA_MESSAGE_TIMEOUT_MS = 300_000
# The flush outlasts the producer's own delivery timeout by this much, so a message that cannot
# be delivered reports its real error instead of a bare flush timeout.
FLUSH_MARGIN_S = 30.0
# How long produce() waits for room when the local queue is full before retrying.
QUEUE_FULL_POLL_S = 0.5
TEARDOWN_FLUSH_S = 10.0
# Kafka's own rule for topic names.
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")

log = logging.getLogger(__name__)


class KafkaDeliveryError(RuntimeError):
    """Some rows of a bundle were not confirmed by the broker; the bundle fails (see the module
    docstring for what runners do then)."""


def producer_settings(bootstrap_servers: str, producer_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The librdkafka settings the sink's producer uses: defaults, then the caller's settings.

    Args:
        bootstrap_servers: The brokers, ``host:port[,host:port]``.
        producer_config: The caller's librdkafka settings, or None.
    """
    extra = dict(producer_config or {})
    if "bootstrap.servers" in extra:
        raise ValueError("producer_config sets 'bootstrap.servers': pass the brokers as "
                         "bootstrap_servers instead")
    for key in ("on_delivery", "delivery.report.only.error"):
        if key in extra:
            raise ValueError(f"producer_config sets {key!r}: the sink needs every delivery report "
                             "to confirm a bundle; remove it")
    return {**DEFAULT_PRODUCER_CONFIG, **extra, "bootstrap.servers": bootstrap_servers}


def default_flush_timeout_s(settings: Mapping[str, Any]) -> float:
    """The producer's message timeout plus a margin (librdkafka's 300 s when not set).

    Args:
        settings: The producer's librdkafka settings.
    """
    return message_timeout_s(settings) + FLUSH_MARGIN_S


def message_timeout_s(settings: Mapping[str, Any]) -> float:
    """How long librdkafka keeps retrying one message before it reports it failed.

    Args:
        settings: The producer's librdkafka settings.
    """
    return float(settings.get("message.timeout.ms", settings.get(
        "delivery.timeout.ms", LIBRDKAFKA_MESSAGE_TIMEOUT_MS))) / 1000.0


class _ProduceToKafka(beam.DoFn):
    """Produces each row, then confirms the whole bundle in finish_bundle (see module docstring).

    Emits, per bundle and window, the number of messages delivered (in that window, timestamped
    at its end), only after the flush confirmed all of them.
    """

    def __init__(self, topic: str, encoder: RowEncoder, settings: Mapping[str, Any],
                 flush_timeout_s: float) -> None:
        self.topic = topic
        self.encoder = encoder
        self.settings = dict(settings)
        self.flush_timeout_s = flush_timeout_s
        self.delivered = counter(f"{encoder.kind}_messages_delivered")
        self._producer: Producer | None = None

    def _new_producer(self) -> Producer:
        return Producer({**self.settings, "error_cb": self._on_error})

    def setup(self) -> None:
        self._producer = self._new_producer()

    def start_bundle(self) -> None:
        if self._producer is None:  # the previous bundle failed and dropped its producer
            self._producer = self._new_producer()
        self._per_window: dict[Any, int] = {}
        self._sent = 0
        self._confirmed = 0
        self._failed = 0
        self._first_error: KafkaError | None = None
        self._fatal: KafkaError | None = None
        self._warned = False

    def _on_error(self, err: KafkaError) -> None:
        # Non-fatal errors (a broker briefly down) are retried by librdkafka and surface, if they
        # persist, as delivery errors; a fatal one leaves the producer unusable.
        if err.fatal() and self._fatal is None:
            self._fatal = err
        elif not err.fatal() and not self._warned:
            # Once per bundle: a down broker reports every reconnect attempt.
            self._warned = True
            log.warning("Kafka sink, topic %r: %s; retrying each message for up to %gs "
                        "(message.timeout.ms)", self.topic, err.str(),
                        message_timeout_s(self.settings))

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._confirmed += 1
            return
        self._failed += 1
        if self._first_error is None:
            self._first_error = err

    def process(self, element: Any, window=beam.DoFn.WindowParam) -> None:
        key, value, headers = self.encoder.message(element)
        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                # Local queue full (queue.buffering.max.*): wait for deliveries to make room.
                self._producer.poll(QUEUE_FULL_POLL_S)
            except KafkaException as err:
                self._fail(f"Kafka sink could not produce to topic {self.topic!r}: "
                           f"{err.args[0].str()}")
        self._sent += 1
        self._per_window[window] = self._per_window.get(window, 0) + 1
        self._producer.poll(0)  # serve delivery reports as they arrive

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if not self._sent:
            return
        remaining = self._producer.flush(self.flush_timeout_s)
        if self._fatal is not None:
            self._fail(f"Kafka producer for topic {self.topic!r} hit a fatal error: {self._fatal.str()}")
        if remaining:
            self._fail(f"Kafka sink: {remaining} of {self._sent} messages to topic {self.topic!r} "
                       f"not confirmed within {self.flush_timeout_s:g}s (brokers "
                       f"{self.settings['bootstrap.servers']} unreachable or slow?)")
        if self._failed:
            hint = ""
            if self._first_error.code() == KafkaError._MSG_TIMED_OUT:
                hint = (f" (no broker took them within message.timeout.ms = "
                        f"{message_timeout_s(self.settings):g}s; rerun once the brokers are back, "
                        f"or raise it: --kafka-delivery-timeout-seconds in the CLI)")
            self._fail(f"Kafka sink: {self._failed} of {self._sent} messages to topic {self.topic!r} "
                       f"failed delivery: {self._first_error.name()}: {self._first_error.str()}{hint}")
        self.delivered.inc(self._confirmed)
        for win, count in self._per_window.items():
            yield WindowedValue(count, win.max_timestamp(), [win])

    def _fail(self, message: str) -> NoReturn:
        """Drop what is still queued (the retried bundle sends it again), replace the producer on
        the next bundle, and fail this bundle."""
        producer, self._producer = self._producer, None
        producer.purge()
        producer.poll(0)
        producer.close()
        raise KafkaDeliveryError(message)

    def teardown(self) -> None:
        if self._producer is not None:
            self._producer.flush(TEARDOWN_FLUSH_S)
            self._producer.purge()
            self._producer.close()
            self._producer = None


class WriteRowsToKafka(beam.PTransform):
    """Write Summary or Failure rows to the Kafka topic ``topic``, one message per row.

    Input: elements with ``to_row()`` (Summary / Failure) or row dicts of that kind, bounded or
    unbounded, any windowing. ``producer_config`` adds librdkafka settings (SASL/SSL, linger,
    compression, ...) over ``DEFAULT_PRODUCER_CONFIG``. ``flush_timeout_s`` bounds the wait for
    delivery reports at the end of each bundle (default: the producer's message timeout + 30 s).
    Output: a ``SinkResult`` whose ``counts`` are the messages delivered per bundle and window,
    emitted only after the brokers confirmed them; ``written`` names ``kafka:<topic>`` for each
    such bundle; ``failures`` is empty (an undelivered message fails the bundle).
    Delivery is at-least-once; every message carries the ``row_id`` header (and ``run_id``
    with a ``run_id``) a consumer de-duplicates by (see the module docstring).

    Args:
        bootstrap_servers: The brokers, ``host:port[,host:port]``.
        topic: The topic every row goes to.
        kind: ``summaries`` or ``failures``: which row schema the messages carry.
        format: The message value encoding, ``json`` or ``avro``.
        producer_config: librdkafka settings added over ``DEFAULT_PRODUCER_CONFIG``.
        flush_timeout_s: The longest wait for a bundle's delivery reports, in seconds.
        insights_schema: Summaries with ``--task insights``: the JSON Schema the ``insights``
            value is typed from (see ``RowEncoder``); None for none.
        run_id: The run id every message carries in its ``run_id`` header; None for none.
    """

    def __init__(self, bootstrap_servers: str, topic: str, kind: str = "summaries",
                 format: str = "json", producer_config: Mapping[str, Any] | None = None,
                 flush_timeout_s: float | None = None,
                 insights_schema: Mapping[str, Any] | None = None,
                 run_id: str | None = None) -> None:
        super().__init__()
        name = type(self).__name__
        if not bootstrap_servers:
            raise ValueError(f"{name} needs bootstrap_servers (host:port[,host:port])")
        if not _TOPIC_NAME.fullmatch(topic or "") or topic in (".", ".."):
            raise ValueError(f"{name} topic {topic!r} is not a valid Kafka topic name: use 1-249 "
                             "characters from letters, digits, '.', '_' and '-'")
        self.topic = topic
        self.encoder = RowEncoder(kind, format, insights_schema, run_id)
        self.settings = producer_settings(bootstrap_servers, producer_config)
        try:
            # Validate every setting now, not on a worker. Without bootstrap.servers the
            # throwaway producer opens no connection (log_level 0: nor warns about that).
            check = {k: v for k, v in self.settings.items() if k != "bootstrap.servers"}
            Producer({**check, "log_level": 0}).close()
        except KafkaException as err:
            raise ValueError(f"{name} producer_config is invalid: {err.args[0].str()}") from None
        self.flush_timeout_s = (default_flush_timeout_s(self.settings) if flush_timeout_s is None
                                else float(flush_timeout_s))
        if self.flush_timeout_s <= 0:
            raise ValueError(f"{name} flush_timeout_s must be positive, got {flush_timeout_s!r}")

    def expand(self, pcoll: beam.PCollection) -> SinkResult:
        counts = pcoll | "Produce" >> beam.ParDo(
            _ProduceToKafka(self.topic, self.encoder, self.settings, self.flush_timeout_s)
        ).with_output_types(int)
        destination = f"kafka:{self.topic}"
        return SinkResult(destination, written_once(counts, destination), no_failures(pcoll), counts)


class WriteSummariesToKafka(WriteRowsToKafka):
    """Write Summary rows to a Kafka topic as JSON (default) or Avro.

    Args:
        bootstrap_servers: The brokers, ``host:port[,host:port]``.
        topic: The topic every row goes to.
        format: The message value encoding, ``json`` or ``avro``.
        producer_config: librdkafka settings added over ``DEFAULT_PRODUCER_CONFIG``.
        flush_timeout_s: The longest wait for a bundle's delivery reports, in seconds.
        insights_schema: The insights JSON Schema (``--task insights``); None for none.
        run_id: The run id for the ``run_id`` header; None for none.
    """

    def __init__(self, bootstrap_servers: str, topic: str, format: str = "json",
                 producer_config: Mapping[str, Any] | None = None,
                 flush_timeout_s: float | None = None,
                 insights_schema: Mapping[str, Any] | None = None,
                 run_id: str | None = None) -> None:
        super().__init__(bootstrap_servers, topic, "summaries", format, producer_config,
                         flush_timeout_s, insights_schema, run_id)


class WriteFailuresToKafka(WriteRowsToKafka):
    """Write Failure rows to a Kafka topic as JSON (default) or Avro.

    Args:
        bootstrap_servers: The brokers, ``host:port[,host:port]``.
        topic: The topic every row goes to.
        format: The message value encoding, ``json`` or ``avro``.
        producer_config: librdkafka settings added over ``DEFAULT_PRODUCER_CONFIG``.
        flush_timeout_s: The longest wait for a bundle's delivery reports, in seconds.
        run_id: The run id for the ``run_id`` header; None for none.
    """

    def __init__(self, bootstrap_servers: str, topic: str, format: str = "json",
                 producer_config: Mapping[str, Any] | None = None,
                 flush_timeout_s: float | None = None, run_id: str | None = None) -> None:
        super().__init__(bootstrap_servers, topic, "failures", format, producer_config,
                         flush_timeout_s, run_id=run_id)
