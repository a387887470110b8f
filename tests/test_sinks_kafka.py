"""WriteSummariesToKafka / WriteFailuresToKafka: DirectRunner pipelines produce to a real Kafka
broker (the session fixture ``kafka_bootstrap``); the messages are consumed back with
confluent-kafka and compared with what went in."""
import dataclasses
import datetime as dt
import io
import json
import os
import time
import uuid

import apache_beam as beam
import fastavro
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import window
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.jvm_services import free_port
from tests import rows as sample_rows
from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS, Summary
from transforms.sinks.kafka import (KafkaDeliveryError, WriteFailuresToKafka, WriteRowsToKafka,
                                    WriteSummariesToKafka, default_flush_timeout_s,
                                    producer_settings)
from transforms.sinks.kafka_encoding import (AVRO_SCHEMA_HEADER, ROW_ID_HEADER, RUN_ID_HEADER,
                                             RowEncoder, message_key)
from transforms.sinks.row_ids import row_id
from transforms.sinks.schema import avro_schema, normalize_row

T0 = sample_rows.T0
EPOCH_T0 = int(T0.timestamp())


def summaries(n=20):
    return sample_rows.summaries(n)


def failures(n=9):
    return sample_rows.failures(n)


def create_topic(bootstrap, partitions=2, config=None):
    topic = f"sink-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})  # must outlive the future
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1,
                                            config=config or {})])
    futures[topic].result(timeout=30)
    return topic


def consume_all(bootstrap, topic, expected, partitions=2, settle_s=0.5):
    """Every message of the topic, read from offset 0 of each partition with assign(): waits for
    ``expected`` messages, then ``settle_s`` longer so duplicates would show up too."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    messages, deadline, settled_at = [], time.monotonic() + 20, None
    try:
        while time.monotonic() < deadline:
            if len(messages) >= expected:
                settled_at = settled_at or time.monotonic() + settle_s
                if time.monotonic() >= settled_at:
                    break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    return messages


def run(build, args=()):
    """Run ``build(pipeline)`` on the DirectRunner; return the finished result (for metrics)."""
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner", *args]))
    build(pipeline)
    result = pipeline.run()
    result.wait_until_finish()
    return result


def counter(result, name):
    found = result.metrics().query(MetricsFilter().with_name(name))["counters"]
    return sum(c.committed for c in found)


def expected_rows(items, fields):
    return [normalize_row(fields, item.to_row()) for item in items]


def decoded(messages, encoder):
    return sorted(((m.key(), encoder.decode(m.value())) for m in messages),
                  key=lambda kv: (kv[0] or b"", kv[1].get("error_message") or "", kv[1]["created_at"]))


def keyed(rows):
    return sorted(((message_key(r, row_id(r)), r) for r in rows),
                  key=lambda kv: (kv[0] or b"", kv[1].get("error_message") or "", kv[1]["created_at"]))


def headers_of(message):
    """A consumed message's headers as a dict (each name once)."""
    headers = message.headers() or []
    assert len({name for name, _ in headers}) == len(headers), headers
    return dict(headers)


# --- pure encoding -------------------------------------------------------------------------------

def test_json_encoding_is_compact_utf8_with_iso_timestamps():
    summary = Summary(transcript_id="anruf-ü", record_id="r1", model_id="m", summary="Grüße ✓",
                      input_tokens=3, window_start=T0,
                      created_at=dt.datetime(2026, 1, 1, 1, 2, 3, 4, tzinfo=dt.timezone.utc))
    key, value = RowEncoder("summaries", "json").encode(summary)
    assert key == "anruf-ü".encode("utf-8")
    assert value.decode("utf-8") == (
        '{"transcript_id":"anruf-ü","record_id":"r1","model_id":"m","summary":"Grüße ✓",'
        '"stop_reason":null,"input_tokens":3,"output_tokens":null,"job_arn":null,'
        '"window_start":"2026-01-01T00:00:00+00:00","window_end":null,"attempt":1,"metadata":null,'
        '"created_at":"2026-01-01T01:02:03.000004+00:00"}')
    assert RowEncoder("summaries", "json").headers == []


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_encoding_round_trips_rows_and_dicts(fmt):
    for kind, items, fields in (("summaries", summaries(), SUMMARY_FIELDS),
                                ("failures", failures(), FAILURE_FIELDS)):
        encoder = RowEncoder(kind, fmt)
        for item in items:
            row = normalize_row(fields, item.to_row())
            for element in (item, item.to_row()):
                key, value = encoder.encode(element)
                assert key == message_key(row, row_id(row))
                assert encoder.decode(value) == row


def test_every_message_is_keyed_and_carries_its_row_id_and_the_run_id():
    """A row without a transcript id is keyed by its record id, else its origin, else its row
    id; the headers hold the run id and the row id, which ignores created_at."""
    encoder = RowEncoder("failures", "json", run_id="run-7")
    base = failures(1)[0]
    assert base.transcript_id is None and base.record_id is not None
    cases = [(base, base.record_id),
             (dataclasses.replace(base, record_id=None), base.origin),
             (dataclasses.replace(base, record_id=None, origin=None), None)]
    for item, key_text in cases:
        key, value, headers = encoder.message(item)
        row = encoder.decode(value)
        assert key == (key_text or row_id(row)).encode()
        assert headers == [(RUN_ID_HEADER, b"run-7"), (ROW_ID_HEADER, row_id(row).encode())]
        later = dataclasses.replace(item, created_at=item.created_at + dt.timedelta(hours=1))
        assert encoder.message(later)[0] == key and encoder.message(later)[2] == headers


def test_avro_value_is_schemaless_and_the_header_carries_the_writer_schema():
    encoder = RowEncoder("failures", "avro")
    [(name, schema_json)] = encoder.headers
    assert name == AVRO_SCHEMA_HEADER
    schema = json.loads(schema_json)
    assert schema == avro_schema("Failure", FAILURE_FIELDS)
    item = failures()[1]
    _, value = encoder.encode(item)
    # A consumer with nothing but the header decodes the value (no container, no registry prefix).
    read = fastavro.schemaless_reader(io.BytesIO(value), fastavro.parse_schema(schema))
    assert read == normalize_row(FAILURE_FIELDS, item.to_row())


def test_bad_rows_fail_with_the_column_named():
    with pytest.raises(ValueError, match="column 'attempt' needs an int"):
        RowEncoder("summaries", "avro").encode({**summaries(1)[0].to_row(), "attempt": "1"})


def test_construction_rejects_bad_arguments_with_clear_errors():
    with pytest.raises(ValueError, match="not a valid Kafka topic name"):
        WriteSummariesToKafka("127.0.0.1:9092", "bad/topic")
    with pytest.raises(ValueError, match="format 'xml' is not supported"):
        WriteSummariesToKafka("127.0.0.1:9092", "t", format="xml")
    with pytest.raises(ValueError, match="row kind 'rows' is unknown"):
        WriteRowsToKafka("127.0.0.1:9092", "t", kind="rows")
    with pytest.raises(ValueError, match="needs bootstrap_servers"):
        WriteFailuresToKafka("", "t")
    with pytest.raises(ValueError, match="pass the brokers as bootstrap_servers"):
        WriteSummariesToKafka("127.0.0.1:9092", "t", producer_config={"bootstrap.servers": "x:1"})
    with pytest.raises(ValueError, match="producer_config is invalid: .*acks"):
        WriteSummariesToKafka("127.0.0.1:9092", "t", producer_config={"acks": "sometimes"})
    with pytest.raises(ValueError, match="producer_config is invalid: No such configuration property"):
        WriteSummariesToKafka("127.0.0.1:9092", "t", producer_config={"no.such.setting": 1})
    with pytest.raises(ValueError, match="flush_timeout_s must be positive"):
        WriteSummariesToKafka("127.0.0.1:9092", "t", flush_timeout_s=0)


def test_producer_settings_defaults_and_flush_timeout():
    settings = producer_settings("h:1", {"acks": "1", "security.protocol": "SASL_SSL"})
    assert settings == {"enable.idempotence": True, "acks": "1", "partitioner": "murmur2_random",
                        "security.protocol": "SASL_SSL", "bootstrap.servers": "h:1"}
    assert default_flush_timeout_s(settings) == 330.0
    assert default_flush_timeout_s(producer_settings("h:1", {"delivery.timeout.ms": "5000"})) == 35.0


# --- real broker ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_rows_reach_the_topic_keyed_by_transcript_id(kafka_bootstrap, fmt):
    summary_topic, failure_topic = create_topic(kafka_bootstrap), create_topic(kafka_bootstrap)
    items, bad = summaries(), failures()
    def build(p):
        summary_total = (p | "S" >> beam.Create(items)
                         | WriteSummariesToKafka(kafka_bootstrap, summary_topic, format=fmt)).counts
        summary_total = (summary_total
                         | "SumS" >> beam.CombineGlobally(sum))
        # Row dicts work as well as Failure objects.
        failure_total = (p | "F" >> beam.Create([f.to_row() for f in bad])
                         | WriteFailuresToKafka(kafka_bootstrap, failure_topic, format=fmt)).counts
        failure_total = (failure_total
                         | "SumF" >> beam.CombineGlobally(sum))
        assert_that(summary_total, equal_to([len(items)]), label="CheckS")
        assert_that(failure_total, equal_to([len(bad)]), label="CheckF")

    result = run(build)
    assert counter(result, "summaries_messages_delivered") == len(items)
    assert counter(result, "failures_messages_delivered") == len(bad)

    for topic, kind, rows, fields in ((summary_topic, "summaries", items, SUMMARY_FIELDS),
                                      (failure_topic, "failures", bad, FAILURE_FIELDS)):
        encoder = RowEncoder(kind, fmt)
        messages = consume_all(kafka_bootstrap, topic, len(rows))
        assert decoded(messages, encoder) == keyed(expected_rows(rows, fields))
        for m in messages:  # the row id, and the avro.schema header with Avro
            headers = headers_of(m)
            assert headers.pop(ROW_ID_HEADER) == row_id(encoder.decode(m.value())).encode()
            assert list(headers.items()) == encoder.headers
        # One key, one partition: the producer hashes keys, so retries and reruns stay ordered.
        partitions = {}
        for m in messages:
            assert partitions.setdefault(m.key(), m.partition()) == m.partition()
        assert len({m.partition() for m in messages}) == 2  # keys spread over both partitions


def test_delivery_counts_stay_in_the_input_windows(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap)
    items = summaries(12)

    def build(p):
        counts = (p | beam.Create(items)
                  | beam.Map(lambda s: window.TimestampedValue(s, EPOCH_T0 + s.created_at.second))
                  | "Fixed5s" >> beam.WindowInto(window.FixedWindows(5))
                  | WriteSummariesToKafka(kafka_bootstrap, topic)).counts
        per_window = (counts
                      | beam.ParDo(lambda n, w=beam.DoFn.WindowParam: [(int(w.start) - EPOCH_T0, n)])
                      | "Global" >> beam.WindowInto(window.GlobalWindows())
                      | beam.CombinePerKey(sum))
        assert_that(per_window, equal_to([(0, 5), (5, 5), (10, 2)]))

    run(build)
    assert len(consume_all(kafka_bootstrap, topic, len(items))) == len(items)


def test_a_full_local_queue_waits_for_room_instead_of_failing(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap)
    items = summaries(60)
    # A 3-message local queue: produce() raises BufferError again and again during the bundle.
    run(lambda p: p | beam.Create(items) | WriteSummariesToKafka(
        kafka_bootstrap, topic, producer_config={"queue.buffering.max.messages": 3}))
    messages = consume_all(kafka_bootstrap, topic, len(items))
    assert decoded(messages, RowEncoder("summaries", "json")) == keyed(expected_rows(items, SUMMARY_FIELDS))


def test_a_message_the_broker_rejects_fails_the_bundle(kafka_bootstrap):
    # The topic accepts at most 1 KiB per record batch; the producer's own limit (1 MB) lets the
    # big row through, so the rejection comes from the broker in the delivery report.
    topic = create_topic(kafka_bootstrap, config={"max.message.bytes": "1024"})
    big = Summary(transcript_id="big", record_id="r", model_id="m",
                  summary=os.urandom(2048).hex(), created_at=T0)
    with pytest.raises(KafkaDeliveryError, match=rf"messages to topic '{topic}' failed delivery: MSG_SIZE_TOO_LARGE"):
        run(lambda p: p | beam.Create([big] + summaries(3)) | WriteSummariesToKafka(kafka_bootstrap, topic))


def test_unreachable_brokers_fail_the_bundle_at_the_flush_timeout():
    # Nothing listens on the port, so no delivery report arrives before the 1 s flush timeout.
    bootstrap = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(KafkaDeliveryError, match=r"2 of 2 messages to topic 'nowhere' not confirmed within 1s"):
        run(lambda p: p | beam.Create(summaries(2)) | WriteSummariesToKafka(
            bootstrap, "nowhere", flush_timeout_s=1, producer_config={"log_level": 0}))
    assert time.monotonic() - started < 15


def test_a_message_over_the_producer_limit_fails_at_produce():
    # librdkafka refuses it locally (no broker involved): the error names the topic and the cause.
    bootstrap = f"127.0.0.1:{free_port()}"
    big = Summary(transcript_id="big", record_id="r", model_id="m", summary="x" * 5000, created_at=T0)
    with pytest.raises(KafkaDeliveryError,
                       match=r"could not produce to topic 'small': .*(too large|size)"):
        run(lambda p: p | beam.Create([big]) | WriteSummariesToKafka(
            bootstrap, "small", producer_config={"message.max.bytes": 2000, "log_level": 0}))


def test_streaming_windows_are_confirmed_per_window(kafka_bootstrap):
    topic = create_topic(kafka_bootstrap)
    items = summaries(6)
    stream = (TestStream()
              .add_elements([window.TimestampedValue(s, EPOCH_T0 + i) for i, s in enumerate(items[:3])])
              .advance_watermark_to(EPOCH_T0 + 10)
              .add_elements([window.TimestampedValue(s, EPOCH_T0 + 10 + i) for i, s in enumerate(items[3:])])
              .advance_watermark_to_infinity())

    def build(p):
        counts = (p | stream
                  | "Fixed10s" >> beam.WindowInto(window.FixedWindows(10))
                  | WriteSummariesToKafka(kafka_bootstrap, topic, format="avro")).counts
        per_window = (counts
                      | beam.ParDo(lambda n, w=beam.DoFn.WindowParam: [(int(w.start) - EPOCH_T0, n)])
                      | beam.CombinePerKey(sum))
        assert_that(per_window, equal_to([(0, 3), (10, 3)]))

    run(build, ["--streaming"])
    messages = consume_all(kafka_bootstrap, topic, len(items))
    assert decoded(messages, RowEncoder("summaries", "avro")) == keyed(expected_rows(items, SUMMARY_FIELDS))


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_a_replayed_window_is_dropped_on_read_by_run_and_row_id(kafka_bootstrap, fmt):
    """A runner restoring a checkpoint writes a window's rows again, produced anew (new
    created_at) by a new producer. Kafka keeps both copies: the idempotent producer dedups only
    within one producer session. Both copies carry the same key (same partition), run id and
    row id, so a consumer that drops a (run_id, row_id) it has seen reads each row once."""
    topic = create_topic(kafka_bootstrap)
    items = failures(9)  # some without a transcript id: keyed by record id or origin
    assert any(f.transcript_id is None for f in items)

    def attempt(created_at):
        rows = [dataclasses.replace(f, created_at=created_at) for f in items]
        run(lambda p: (p | beam.Create([(f, EPOCH_T0 + i) for i, f in enumerate(rows)])
                       | beam.MapTuple(window.TimestampedValue)
                       | beam.WindowInto(window.FixedWindows(60))
                       | WriteFailuresToKafka(kafka_bootstrap, topic, format=fmt, run_id="run-1")))

    attempt(T0)
    attempt(T0 + dt.timedelta(minutes=5))
    messages = consume_all(kafka_bootstrap, topic, 2 * len(items))
    assert len(messages) == 2 * len(items)
    encoder = RowEncoder("failures", fmt)
    copies = {}
    for m in messages:
        headers = headers_of(m)
        assert headers[RUN_ID_HEADER] == b"run-1"
        copies.setdefault(headers[ROW_ID_HEADER], []).append(m)
    assert len(copies) == len(items) and all(len(c) == 2 for c in copies.values())
    for first, second in copies.values():
        assert (first.key(), first.partition()) == (second.key(), second.partition())
        assert first.key() is not None
    # Dedup on read: the first message of each (run_id, row_id).
    seen, read = set(), []
    for m in sorted(messages, key=lambda m: (m.partition(), m.offset())):
        ids = (headers_of(m)[RUN_ID_HEADER], headers_of(m)[ROW_ID_HEADER])
        if ids not in seen:
            seen.add(ids)
            read.append(encoder.decode(m.value()))
    assert sorted((r["origin"], r["created_at"]) for r in read) == sorted(
        (f.origin, T0) for f in items)


def test_cli_rerun_with_the_same_run_id_is_read_once_by_run_and_row_id(
        kafka_bootstrap, local_backend_factory, tmp_path):
    """`run --sink kafka` twice with the same --run-id, against one backend that outlives the
    runs (--backend aws): the rerun adopts the jobs, so it produces the same rows (but
    created_at) again, and the topics hold them twice. Every message carries the run id and
    its row id, so reading each (run_id, row_id) once gives each input exactly once."""
    from pipeline.__main__ import main
    from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
    from tests.pipelines import transcripts
    from transforms.core.quotas import Quotas

    backend = local_backend_factory(quotas=Quotas(max_records_per_job=100, min_records_per_job=1))
    topics = create_topic(kafka_bootstrap), create_topic(kafka_bootstrap)
    items = transcripts(8, prefix="again")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items)
                      + '{"id": "no-text"}\n')
    argv = ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bedrock-runtime-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--s3_endpoint_url", backend.s3_endpoint_url,
            "--run-id", "kafka-again", "--poll-interval-seconds", "1", "--min-records-per-job", "1",
            "--input", str(source), "--report-dir", str(tmp_path / "report"),
            "--sink", "kafka", "--kafka-bootstrap-servers", kafka_bootstrap,
            "--kafka-summaries-topic", topics[0], "--kafka-failures-topic", topics[1]]
    assert main(argv) == 0
    assert main(argv) == 0
    for topic, kind, ids in ((topics[0], "summaries", [t.id for t in items]),
                             (topics[1], "failures", ["no-text"])):
        messages = consume_all(kafka_bootstrap, topic, 2 * len(ids))
        assert len(messages) == 2 * len(ids), kind
        once = {}
        for m in messages:
            headers = headers_of(m)
            assert headers[RUN_ID_HEADER] == b"kafka-again"
            once.setdefault(headers[ROW_ID_HEADER], RowEncoder(kind).decode(m.value()))
        assert sorted(r["transcript_id"] for r in once.values()) == sorted(ids), kind
