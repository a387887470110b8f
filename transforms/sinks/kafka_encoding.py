"""Kafka message encoding of Summary / Failure rows (no Beam, no Kafka client): key, value, headers.

See ``transforms/sinks/kafka.py`` for the conventions (JSON values, or Avro values with the
writer schema in the ``avro.schema`` header; every message keyed, with the run id and the row id
in headers so that a consumer can drop a replayed message).
"""
from __future__ import annotations

import io
import json
from typing import Any, Mapping

import fastavro

from transforms.core.model import encodable
from transforms.insights.columns import insights_column
from transforms.sinks.row_ids import row_id
from transforms.sinks.schema import (AVRO_RECORD_NAMES, avro_schema, fields_for, json_row,
                                     normalize_row, row_from_json)

KAFKA_FORMATS = ("json", "avro")
AVRO_SCHEMA_HEADER = "avro.schema"
# The run that wrote the message (absent when the sink was given no run id).
RUN_ID_HEADER = "run_id"
# The row's id (``row_ids.row_id``): the same when a replay writes the row again.
ROW_ID_HEADER = "row_id"
# The columns a message key is taken from, first present first; the row id when none is.
KEY_COLUMNS = ("transcript_id", "record_id", "origin")


def message_key(row: Mapping[str, Any], key_of_row: str) -> bytes:
    """The message key: the row's transcript id, else its record id, else its origin
    (file:line of a source failure), else its row id; UTF-8. Never absent, so a replayed row
    lands on the partition of its first copy.

    Args:
        row: A normalized row.
        key_of_row: Its ``row_id``.
    """
    for column in KEY_COLUMNS:
        if row.get(column) is not None:
            return encodable(row[column]).encode("utf-8")
    return key_of_row.encode("utf-8")


class RowEncoder:
    """Row (Summary / Failure, or a row dict of that kind) -> Kafka key, value and headers.

    Args:
        kind: "summaries" or "failures".
        format: "json" or "avro".
        insights_schema: Summaries with ``--task insights``: the JSON Schema of the ``insights``
            value, a nested JSON object or Avro record typed as in the file sinks. None: none.
        run_id: The run id every message carries in its ``run_id`` header; None for no
            such header.
    """

    def __init__(self, kind: str, format: str = "json",
                 insights_schema: Mapping[str, Any] | None = None,
                 run_id: str | None = None) -> None:
        self.fields = fields_for(kind)
        if insights_schema is not None and kind != "summaries":
            raise ValueError(f"only summaries carry insights; {kind} take no insights_schema")
        self.insights = insights_column(insights_schema) if insights_schema is not None else None
        if format not in KAFKA_FORMATS:
            raise ValueError(f"Kafka value format {format!r} is not supported: "
                             f"use one of {list(KAFKA_FORMATS)}")
        self.kind = kind
        self.format = format
        self.run_id = run_id
        # The headers every message carries; each adds its own row id.
        self.headers: list[tuple[str, bytes]] = []
        if run_id is not None:
            self.headers.append((RUN_ID_HEADER, run_id.encode("utf-8")))
        if format == "avro":
            schema = avro_schema(AVRO_RECORD_NAMES[kind], self.fields, insights=self.insights)
            self._parsed = fastavro.parse_schema(schema)
            self.headers.append((AVRO_SCHEMA_HEADER,
                                 json.dumps(schema, separators=(",", ":")).encode("utf-8")))

    def encode(self, element: Any) -> tuple[bytes, bytes]:
        """The message key (see ``message_key``) and value for one row.

        Args:
            element: A Summary / Failure, or a row dict of that kind.
        """
        key, value, _headers = self.message(element)
        return key, value

    def message(self, element: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """The message key (see ``message_key``), value and headers for one row: ``headers``
        and the row's ``row_id`` header.

        Args:
            element: A Summary / Failure, or a row dict of that kind.
        """
        row = element.to_row() if hasattr(element, "to_row") else element
        if self.format == "json":
            normalized = json_row(self.fields, row, self.insights)
            value = json.dumps(normalized, ensure_ascii=False,
                               separators=(",", ":")).encode("utf-8")
        else:
            normalized = normalize_row(self.fields, row, self.insights)
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, self._parsed, normalized)
            value = buf.getvalue()
        key_of_row = row_id(normalized)
        return (message_key(normalized, key_of_row), value,
                [*self.headers, (ROW_ID_HEADER, key_of_row.encode("ascii"))])

    def decode(self, value: bytes) -> dict[str, Any]:
        """A message value written with this encoding back into a row (UTC datetimes)."""
        if self.format == "json":
            return row_from_json(self.fields, json.loads(value.decode("utf-8")), self.insights)
        return normalize_row(self.fields, fastavro.schemaless_reader(io.BytesIO(value), self._parsed),
                             self.insights)
