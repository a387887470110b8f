"""Sinks for Summary and Failure rows (schemas derive from ``transforms.core.model``): files
(``files``), Kafka and BigQuery.

Every sink returns a ``SinkResult`` (``result``); ``row_ids`` gives rows stable ids, so a
replayed write is recognized. The Kafka and BigQuery sinks live in
``transforms.sinks.kafka`` and ``transforms.sinks.bigquery`` (they need the ``kafka`` and
``bigquery`` extras) and are not imported here.

Beside the Beam sinks sit the sink schemas and row converters (``schema``), each destination's
pure encoding (``kafka_encoding``, ``bigquery_rows``), and one run per output folder
(``commit``, with its lock: ``lease`` the rules, ``lock`` the I/O), which a pipeline of one's own
uses as the CLI does. Imports ``core`` and ``insights`` only.
"""
from transforms.sinks.files import FORMATS, WriteFailures, WriteRows, WriteSummaries
from transforms.sinks.result import SinkResult

__all__ = ["FORMATS", "SinkResult", "WriteFailures", "WriteRows", "WriteSummaries"]
