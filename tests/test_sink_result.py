"""Every sink returns a SinkResult: one DirectRunner pipeline writes the same summaries through
the file, Kafka (real broker, session fixture ``kafka_bootstrap``) and BigQuery (local emulator,
``bq_env``) sinks with one loop and no case per sink."""
import uuid

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from tests import rows as sample_rows
from tests.test_sinks_bigquery import new_table, read_back
from tests.test_sinks_kafka import consume_all, create_topic
from transforms.core.model import SUMMARY_FIELDS
from transforms.sinks.bigquery import WriteSummariesToBigQuery
from transforms.sinks.bigquery_rows import REJECTED_CODE
from transforms.sinks.files import WriteSummaries
from transforms.sinks.kafka import WriteSummariesToKafka
from transforms.sinks.result import SinkResult


def test_one_pipeline_handles_every_sink_alike(tmp_path, kafka_bootstrap, bq_env, bq_client):
    items = sample_rows.summaries(6)
    # An older table whose stop_reason column is INT64 rejects the rows that have a stop reason:
    # the BigQuery sink's failures are then not empty.
    table = new_table(bq_client, SUMMARY_FIELDS, overrides={"stop_reason": "INT64"})
    rejected = sorted(s.transcript_id for s in items if s.stop_reason is not None)
    assert 0 < len(rejected) < len(items)
    topic = create_topic(kafka_bootstrap)
    files = str(tmp_path / f"summaries-{uuid.uuid4().hex[:6]}")
    sinks = [WriteSummaries(files, format="jsonl"),
             WriteSummariesToKafka(kafka_bootstrap, topic),
             WriteSummariesToBigQuery(table, create_disposition="CREATE_NEVER")]
    expected_counts = {files: len(items), f"kafka:{topic}": len(items),
                       f"bigquery:{table}": len(items) - len(rejected)}

    with beam.Pipeline(options=PipelineOptions(["--runner", "DirectRunner"])) as p:
        summaries = p | beam.Create(items)
        results = [summaries | f"Sink{i}" >> sink for i, sink in enumerate(sinks)]
        assert all(isinstance(r, SinkResult) for r in results)
        refused = [r.failures for r in results] | "AllRefused" >> beam.Flatten()
        counts = ([r.counts | f"Key{i}" >> beam.Map(lambda n, d=r.destination: (d, n))
                   for i, r in enumerate(results)]
                  | "AllCounts" >> beam.Flatten() | "SumPerSink" >> beam.CombinePerKey(sum))
        written = ([r.written | f"Where{i}" >> beam.Map(lambda w, d=r.destination: (d, w.startswith(d)))
                    for i, r in enumerate(results)]
                   | "AllWritten" >> beam.Flatten() | "Distinct" >> beam.Distinct())
        assert_that(refused | beam.Map(lambda f: (f.stage, f.error_code, f.transcript_id)),
                    equal_to([("sink", REJECTED_CODE, t) for t in rejected]), label="Refused")
        assert_that(counts, equal_to(list(expected_counts.items())), label="Counts")
        assert_that(written, equal_to([(d, True) for d in expected_counts]), label="Written")

    assert len(consume_all(kafka_bootstrap, topic, len(items))) == len(items)
    assert len(read_back(bq_client, table, SUMMARY_FIELDS)) == len(items) - len(rejected)
