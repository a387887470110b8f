"""Sink schemas (Arrow/Parquet, Avro, BigQuery) and row converters, all derived from the one
definition in ``transforms.core.model`` (``SUMMARY_FIELDS`` / ``FAILURE_FIELDS``).

With ``--task insights`` the summaries gain one more column, ``insights``, typed from the task's
JSON Schema (``transforms.insights.columns``): every function here takes it as ``insights``
(None: no such column, the summary task's output).

No Beam import: the Beam sinks call these functions.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Mapping, Sequence

import pyarrow as pa

from transforms.core.errors import ConfigError
from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS, Field, encodable
from transforms.insights.columns import (Column, arrow_field, avro_type, bigquery_field, json_value,
                                         typed_value)

TYPES = ("string", "int64", "timestamp")

_ARROW_TYPES = {
    "string": pa.string(),
    "int64": pa.int64(),
    # Microseconds in UTC: what Python datetimes, Avro timestamp-micros and BigQuery TIMESTAMP hold.
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_AVRO_TYPES: dict[str, Any] = {
    "string": "string",
    "int64": "long",
    "timestamp": {"type": "long", "logicalType": "timestamp-micros"},
}
_BIGQUERY_TYPES = {"string": "STRING", "int64": "INT64", "timestamp": "TIMESTAMP"}

# The row kinds the sinks know, by the name used in options and file paths.
KINDS: dict[str, tuple[Field, ...]] = {"summaries": SUMMARY_FIELDS, "failures": FAILURE_FIELDS}
# Avro record names per kind (Avro names must be identifiers).
AVRO_RECORD_NAMES = {"summaries": "Summary", "failures": "Failure"}


def fields_for(kind: str) -> tuple[Field, ...]:
    """The field definition for a row kind ("summaries" or "failures").

    Args:
        kind: ``summaries`` or ``failures``.

    Raises:
        ConfigError: ``kind`` is neither.
    """
    try:
        return KINDS[kind]
    except KeyError:
        raise ConfigError(f"row kind {kind!r} is unknown: use one of {sorted(KINDS)}",
                          "kind") from None


def _check_type(f: Field) -> str:
    if f.type not in TYPES:
        raise ValueError(f"field {f.name!r} has type {f.type!r}: use one of {TYPES}")
    return f.type


def arrow_schema(fields: Sequence[Field], insights: Column | None = None) -> pa.Schema:
    """pyarrow schema (Parquet) with nullability and descriptions as field metadata.

    Args:
        fields: The row kind's fields.
        insights: The typed insights column, appended last; None for none.
    """
    columns = [
        pa.field(f.name, _ARROW_TYPES[_check_type(f)], nullable=f.nullable,
                 metadata={"description": f.description} if f.description else None)
        for f in fields
    ]
    return pa.schema(columns + ([arrow_field(insights)] if insights else []))


def avro_schema(name: str, fields: Sequence[Field], namespace: str = "bedrock_batch_beam",
                insights: Column | None = None) -> dict:
    """Avro record schema for fastavro; nullable fields are ``["null", T]`` with default null.

    Args:
        name: The record name.
        fields: The row kind's fields.
        namespace: The Avro namespace.
        insights: The typed insights column, appended last; None for none.
    """
    avro_fields = []
    for f in fields:
        base = _AVRO_TYPES[_check_type(f)]
        entry: dict[str, Any] = {"name": f.name, "type": ["null", base] if f.nullable else base}
        if f.nullable:
            entry["default"] = None
        if f.description:
            entry["doc"] = f.description
        avro_fields.append(entry)
    if insights:
        avro_fields.append({"name": insights.name, "type": avro_type(insights, "Insights"),
                            "default": None})
    return {"type": "record", "name": name, "namespace": namespace, "fields": avro_fields}


def bigquery_schema(fields: Sequence[Field], insights: Column | None = None) -> dict:
    """The TableSchema dict that Beam's ``WriteToBigQuery(schema=...)`` accepts.

    Args:
        fields: The row kind's fields.
        insights: The typed insights column (a RECORD), appended last; None for none.
    """
    columns = [
        {"name": f.name, "type": _BIGQUERY_TYPES[_check_type(f)],
         "mode": "NULLABLE" if f.nullable else "REQUIRED", "description": f.description}
        for f in fields
    ]
    return {"fields": columns + ([bigquery_field(insights)] if insights else [])}


def _as_utc(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise ValueError(f"column {name!r} needs a datetime, got {type(value).__name__}: {value!r}")
    # Naive datetimes are taken as UTC: every timestamp this project produces is UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def normalize_row(fields: Sequence[Field], row: Mapping[str, Any],
                  insights: Column | None = None) -> dict[str, Any]:
    """Check a row against the fields and return it in field order with UTC-aware timestamps.

    Raises ValueError naming the column for a missing/unknown column, a null in a required
    column or a value of the wrong type, so a bad row fails with a clear message instead of a
    pyarrow/fastavro error deep inside a writer.

    Args:
        fields: The row kind's fields.
        row: The row (``Summary.to_row()`` holds ``insights``, None for the summary task).
        insights: The typed insights column; None when the sink writes none, and then a row
            holding insights is refused rather than written without them.
    """
    row = dict(row)
    insights_value = row.pop("insights", None)
    if insights is None and insights_value is not None:
        raise ValueError("row holds insights but this sink has no insights column: give the "
                         "sink the task's JSON Schema (insights_schema=...)")
    names = [f.name for f in fields]
    unknown = sorted(set(row) - set(names))
    if unknown:
        raise ValueError(f"row has unknown columns {unknown}: the schema has {names}")
    out: dict[str, Any] = {}
    for f in fields:
        if f.name not in row:
            if not f.nullable:
                raise ValueError(f"row is missing required column {f.name!r}")
            out[f.name] = None
            continue
        value = row[f.name]
        if value is None:
            if not f.nullable:
                raise ValueError(f"column {f.name!r} is required but the row has None")
        elif f.type == "string":
            if not isinstance(value, str):
                raise ValueError(f"column {f.name!r} needs a string, got {type(value).__name__}")
            # Model output can decode to a lone surrogate ("\\ud800" in its JSON), which no
            # UTF-8 writer accepts: escaped, the row stays writable in every format.
            value = encodable(value)
        elif f.type == "int64":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"column {f.name!r} needs an int, got {type(value).__name__}")
            if not -(2**63) <= value < 2**63:
                raise ValueError(f"column {f.name!r} holds {value}, outside the int64 range")
        else:
            value = _as_utc(f.name, value)
        out[f.name] = value
    if insights is not None:
        out[insights.name] = typed_value(insights, insights_value)
    return out


def row_problem(kind: str, row: Mapping[str, Any]) -> str | None:
    """Why ``row`` of ``kind`` cannot be written by the sinks, or None when it can.

    Args:
        kind: ``summaries`` or ``failures``.
        row: The sink row.
    """
    try:
        normalize_row(fields_for(kind), row)
    except ValueError as err:
        return str(err)
    return None


def json_row(fields: Sequence[Field], row: Mapping[str, Any], insights: Column | None = None,
             null_arrays: bool = True) -> dict[str, Any]:
    """A normalized row with timestamps as ISO 8601 strings (JSONL, Kafka JSON, BigQuery inserts).

    Args:
        fields: The row kind's fields.
        row: The row.
        insights: The typed insights column (written as a nested object); None for none.
        null_arrays: False writes null insights arrays as [] (BigQuery has no null array).
    """
    out = normalize_row(fields, row, insights)
    for f in fields:
        if f.type == "timestamp" and out[f.name] is not None:
            out[f.name] = out[f.name].isoformat()
    if insights is not None:
        out[insights.name] = json_value(insights, out[insights.name], null_arrays)
    return out


def json_line(fields: Sequence[Field], row: Mapping[str, Any],
              insights: Column | None = None) -> str:
    """One compact JSON object (no newline), UTF-8 text kept as is rather than \\u-escaped.

    Args:
        fields: The row kind's fields.
        row: The row.
        insights: The typed insights column (a nested object); None for none.
    """
    return json.dumps(json_row(fields, row, insights), ensure_ascii=False, separators=(",", ":"))


def row_from_json(fields: Sequence[Field], obj: Mapping[str, Any],
                  insights: Column | None = None) -> dict[str, Any]:
    """Inverse of ``json_row``: parse ISO 8601 timestamp strings back into UTC datetimes.

    Args:
        fields: The row kind's fields.
        obj: A row as ``json_row`` wrote it.
        insights: The typed insights column; None for none.
    """
    parsed = dict(obj)
    for f in fields:
        value = parsed.get(f.name)
        if f.type == "timestamp" and isinstance(value, str):
            try:
                parsed[f.name] = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"column {f.name!r} holds {value!r}, not an ISO 8601 timestamp") from None
    return normalize_row(fields, parsed, insights)
