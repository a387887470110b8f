"""Sinks for Summary and Failure rows (schemas derive from ``transforms.core.model``).

Every sink returns a ``SinkResult``. The Kafka and BigQuery sinks live in
``transforms.sinks.kafka`` and ``transforms.sinks.bigquery`` (they need the ``kafka`` and
``bigquery`` extras) and are not imported here.
"""
from transforms.sinks.files import FORMATS, WriteFailures, WriteRows, WriteSummaries
from transforms.sinks.result import SinkResult

__all__ = ["FORMATS", "SinkResult", "WriteFailures", "WriteRows", "WriteSummaries"]
