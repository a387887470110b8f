"""Schemas derived from transforms.core.model's one definition, and the row converters."""
import datetime as dt
import io
import json

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS, Failure, Field, Summary
from transforms.sinks.schema import (arrow_schema, avro_schema, bigquery_schema, fields_for,
                                     json_line, json_row, normalize_row, row_from_json)

ALL = pytest.mark.parametrize("fields", [SUMMARY_FIELDS, FAILURE_FIELDS], ids=["summary", "failure"])
T0 = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.timezone.utc)


@ALL
def test_arrow_schema_has_every_field_with_type_and_nullability(fields):
    schema = arrow_schema(fields)
    assert schema.names == [f.name for f in fields]
    expected = {"string": pa.string(), "int64": pa.int64(), "timestamp": pa.timestamp("us", tz="UTC")}
    for f in fields:
        assert schema.field(f.name).type == expected[f.type]
        assert schema.field(f.name).nullable is f.nullable
        assert schema.field(f.name).metadata[b"description"] == f.description.encode()


@ALL
def test_avro_schema_has_every_field_with_type_and_nullability(fields):
    schema = avro_schema("Row", fields)
    fastavro.parse_schema(schema)  # raises on an invalid schema
    by_name = {entry["name"]: entry for entry in schema["fields"]}
    assert list(by_name) == [f.name for f in fields]
    expected = {"string": "string", "int64": "long",
                "timestamp": {"type": "long", "logicalType": "timestamp-micros"}}
    for f in fields:
        entry = by_name[f.name]
        if f.nullable:
            assert entry["type"] == ["null", expected[f.type]]
            assert entry["default"] is None
        else:
            assert entry["type"] == expected[f.type]
            assert "default" not in entry
        assert entry["doc"] == f.description


@ALL
def test_bigquery_schema_has_every_field_with_type_and_mode(fields):
    schema = bigquery_schema(fields)
    assert [c["name"] for c in schema["fields"]] == [f.name for f in fields]
    expected = {"string": "STRING", "int64": "INT64", "timestamp": "TIMESTAMP"}
    for f, column in zip(fields, schema["fields"]):
        assert column == {"name": f.name, "type": expected[f.type],
                          "mode": "NULLABLE" if f.nullable else "REQUIRED",
                          "description": f.description}
    json.dumps(schema)  # Beam accepts the schema as a JSON-able dict


def test_unknown_type_is_a_clear_error():
    with pytest.raises(ValueError, match="field 'x' has type 'float'"):
        arrow_schema([Field("x", "float")])


def test_fields_for_kind():
    assert fields_for("summaries") is SUMMARY_FIELDS
    assert fields_for("failures") is FAILURE_FIELDS
    with pytest.raises(ValueError, match="row kind 'sumaries' is unknown"):
        fields_for("sumaries")


def summary_row(**overrides):
    row = Summary("t-1", "r1", "anthropic.claude", "Kundin möchte Rückerstattung ✓", input_tokens=120,
                  window_start=T0, created_at=T0).to_row()
    row.update(overrides)
    return row


def test_normalize_row_orders_fields_and_makes_timestamps_utc():
    naive = dt.datetime(2026, 1, 1, 12, 0)
    plus_two = dt.datetime(2026, 1, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    row = normalize_row(SUMMARY_FIELDS, dict(reversed(list(summary_row(window_start=naive,
                                                                       created_at=plus_two).items()))))
    assert list(row) == [f.name for f in SUMMARY_FIELDS]
    assert row["window_start"] == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert row["created_at"] == dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert row["created_at"].utcoffset() == dt.timedelta(0)


def test_normalize_row_fills_missing_nullable_columns():
    row = summary_row()
    del row["job_arn"]
    assert normalize_row(SUMMARY_FIELDS, row)["job_arn"] is None


@pytest.mark.parametrize("change, message", [
    ({"summary": None}, "column 'summary' is required but the row has None"),
    ({"attempt": "1"}, "column 'attempt' needs an int, got str"),
    ({"attempt": True}, "column 'attempt' needs an int, got bool"),
    ({"model_id": 3}, "column 'model_id' needs a string, got int"),
    ({"created_at": "2026-01-01"}, "column 'created_at' needs a datetime, got str"),
    ({"colour": "red"}, r"row has unknown columns \['colour'\]"),
])
def test_normalize_row_rejects_bad_rows_naming_the_column(change, message):
    with pytest.raises(ValueError, match=message):
        normalize_row(SUMMARY_FIELDS, summary_row(**change))


def test_normalize_row_rejects_missing_required_column():
    row = summary_row()
    del row["record_id"]
    with pytest.raises(ValueError, match="missing required column 'record_id'"):
        normalize_row(SUMMARY_FIELDS, row)


def test_json_row_renders_timestamps_as_iso_8601_and_round_trips():
    row = summary_row()
    out = json_row(SUMMARY_FIELDS, row)
    assert out["created_at"] == "2026-03-04T05:06:07.123456+00:00"
    assert out["window_end"] is None
    line = json_line(SUMMARY_FIELDS, row)
    assert "Rückerstattung ✓" in line and "\n" not in line
    assert row_from_json(SUMMARY_FIELDS, json.loads(line)) == normalize_row(SUMMARY_FIELDS, row)


def test_row_from_json_accepts_z_suffix_and_rejects_garbage():
    obj = json_row(FAILURE_FIELDS, Failure("parse", "bad_json", "x", created_at=T0).to_row())
    obj["created_at"] = "2026-03-04T05:06:07.123456Z"
    assert row_from_json(FAILURE_FIELDS, obj)["created_at"] == T0
    obj["created_at"] = "yesterday"
    with pytest.raises(ValueError, match="column 'created_at' holds 'yesterday'"):
        row_from_json(FAILURE_FIELDS, obj)


@ALL
def test_schemas_accept_rows_from_the_dataclasses(fields):
    """A normalized dataclass row writes and reads back through pyarrow and fastavro unchanged."""
    if fields is SUMMARY_FIELDS:
        row = normalize_row(fields, summary_row())
    else:
        row = normalize_row(fields, Failure("model", "ModelError", "boom", raw="{}", created_at=T0).to_row())
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([row], schema=arrow_schema(fields)), buf)
    assert pq.read_table(io.BytesIO(buf.getvalue())).to_pylist() == [row]
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(avro_schema("Row", fields)), [row])
    buf.seek(0)
    assert list(fastavro.reader(buf)) == [row]
