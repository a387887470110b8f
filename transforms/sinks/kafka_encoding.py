"""Kafka message encoding of Summary / Failure rows (no Beam, no Kafka client): key, value, headers.

See ``transforms/sinks/kafka.py`` for the conventions (JSON values, or Avro values with the
writer schema in the ``avro.schema`` header).
"""
from __future__ import annotations

import io
import json
from typing import Any, Mapping

import fastavro

from transforms.core.model import encodable
from transforms.insights.columns import insights_column
from transforms.sinks.schema import (AVRO_RECORD_NAMES, avro_schema, fields_for, json_line,
                                     normalize_row, row_from_json)

KAFKA_FORMATS = ("json", "avro")
AVRO_SCHEMA_HEADER = "avro.schema"


class RowEncoder:
    """Row (Summary / Failure, or a row dict of that kind) -> Kafka key, value and headers.

    Args:
        kind: "summaries" or "failures".
        format: "json" or "avro".
        insights_schema: Summaries with ``--task insights``: the JSON Schema of the ``insights``
            value, a nested JSON object or Avro record typed as in the file sinks. None: none.
    """

    def __init__(self, kind: str, format: str = "json",
                 insights_schema: Mapping[str, Any] | None = None) -> None:
        self.fields = fields_for(kind)
        if insights_schema is not None and kind != "summaries":
            raise ValueError(f"only summaries carry insights; {kind} take no insights_schema")
        self.insights = insights_column(insights_schema) if insights_schema is not None else None
        if format not in KAFKA_FORMATS:
            raise ValueError(f"Kafka value format {format!r} is not supported: "
                             f"use one of {list(KAFKA_FORMATS)}")
        self.kind = kind
        self.format = format
        self.headers: list[tuple[str, bytes]] = []
        if format == "avro":
            schema = avro_schema(AVRO_RECORD_NAMES[kind], self.fields, insights=self.insights)
            self._parsed = fastavro.parse_schema(schema)
            self.headers = [(AVRO_SCHEMA_HEADER,
                             json.dumps(schema, separators=(",", ":")).encode("utf-8"))]

    def encode(self, element: Any) -> tuple[bytes | None, bytes]:
        """The message key (the transcript id, UTF-8) and value for one row.

        Args:
            element: A Summary / Failure, or a row dict of that kind.
        """
        row = element.to_row() if hasattr(element, "to_row") else element
        transcript_id = row.get("transcript_id")
        key = encodable(transcript_id).encode("utf-8") if transcript_id is not None else None
        if self.format == "json":
            return key, json_line(self.fields, row, self.insights).encode("utf-8")
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self._parsed, normalize_row(self.fields, row, self.insights))
        return key, buf.getvalue()

    def decode(self, value: bytes) -> dict[str, Any]:
        """A message value written with this encoding back into a row (UTC datetimes)."""
        if self.format == "json":
            return row_from_json(self.fields, json.loads(value.decode("utf-8")), self.insights)
        return normalize_row(self.fields, fastavro.schemaless_reader(io.BytesIO(value), self._parsed),
                             self.insights)
