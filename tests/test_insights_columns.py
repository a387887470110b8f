"""Typed insights columns from a JSON Schema: a user schema given by file round-trips through
WriteSummaries to typed Parquet and Avro columns (read back with pyarrow / fastavro), JSONL and
Kafka values carry the same nested structure, BigQuery gets the matching RECORD schema, and a
schema no column can hold is refused with the field path."""
import datetime as dt
import glob
import json
from pathlib import Path

import apache_beam as beam
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from transforms.core.model import SUMMARY_FIELDS, Summary
from transforms.insights.columns import SchemaMappingError, bigquery_field, insights_column
from transforms.sinks.files import WriteSummaries
from transforms.sinks.kafka_encoding import RowEncoder
from transforms.sinks.schema import bigquery_schema, json_row, normalize_row, row_from_json

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
DEFAULT_SCHEMA = Path(__file__).with_name("data") / "insights_schema.json"

# A user's own schema: $defs, dates, date-times, integers, an enum with no type, a nullable
# anyOf, optional fields and an array of records.
USER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["intent", "callback", "products", "score", "urgent"],
    "properties": {
        "intent": {"enum": ["upgrade", "refund", "other"], "description": "Why they called"},
        "callback": {"anyOf": [{"$ref": "#/$defs/callback"}, {"type": "null"}]},
        "products": {"type": "array", "items": {"$ref": "#/$defs/product"}},
        "score": {"type": "integer"},
        "urgent": {"type": "boolean"},
        "confidence": {"type": "number"},
        "tags": {"type": ["array", "null"], "items": {"type": "string"}},
    },
    "$defs": {
        "callback": {"type": "object", "required": ["on"],
                     "properties": {"on": {"type": "string", "format": "date"},
                                    "booked_at": {"type": "string", "format": "date-time"}}},
        "product": {"type": "object", "required": ["sku", "quantity"],
                    "properties": {"sku": {"type": "string"}, "quantity": {"type": "integer"}}},
    },
}


def user_insights(i):
    return {
        "intent": ("upgrade", "refund", "other")[i % 3],
        "callback": None if i % 2 else {"on": f"2026-02-{i + 1:02d}",
                                         "booked_at": "2026-01-05T10:30:00Z"},
        "products": [{"sku": f"SKU-{k}", "quantity": k + 1} for k in range(i % 3)],
        "score": 10 * i,
        "urgent": i % 2 == 0,
        "confidence": 0.5 + i / 10 if i % 4 else None,
        "tags": None if i == 3 else ["ümlaut ✓"] * (i % 2),
        "not_in_schema": "has no column",
    }


def summary(i, insights):
    return Summary(transcript_id=f"call-{i}", record_id=f"rec{i}", model_id="m", summary=f"s{i}",
                   attempt=1, created_at=T0 + dt.timedelta(seconds=i), insights=insights)


def expected(i):
    """What a typed column holds for user_insights(i): dates and date-times parsed, numbers as
    float, undeclared keys left out."""
    value = user_insights(i)
    del value["not_in_schema"]
    if value["callback"]:
        value["callback"] = {"on": dt.date(2026, 2, i + 1),
                             "booked_at": dt.datetime(2026, 1, 5, 10, 30, tzinfo=dt.timezone.utc)}
    return value


def test_user_schema_file_round_trips_to_typed_parquet_and_avro(tmp_path):
    schema_file = tmp_path / "my_schema.json"
    schema_file.write_text(json.dumps(USER_SCHEMA))
    schema = json.loads(schema_file.read_text())
    rows = [summary(i, user_insights(i)) for i in range(5)]
    with beam.Pipeline() as p:
        pcoll = p | beam.Create(rows)
        pcoll | "Parquet" >> WriteSummaries(str(tmp_path / "pq"), insights_schema=schema)
        pcoll | "Avro" >> WriteSummaries(str(tmp_path / "avro"), format="avro",
                                         insights_schema=schema)

    table = pq.read_table(glob.glob(str(tmp_path / "pq" / "*.parquet")))
    insights_type = table.schema.field("insights").type
    assert insights_type.field("intent").type == pa.string()
    assert insights_type.field("score").type == pa.int64()
    assert insights_type.field("urgent").type == pa.bool_()
    assert insights_type.field("confidence").type == pa.float64()
    callback = insights_type.field("callback")
    assert callback.nullable and callback.type.field("on").type == pa.date32()
    assert callback.type.field("booked_at").type == pa.timestamp("us", tz="UTC")
    products = insights_type.field("products")
    assert not products.nullable and pa.types.is_list(products.type)
    assert products.type.value_type.field("quantity").type == pa.int64()
    assert insights_type.field("tags").type == pa.list_(pa.field("item", pa.string(), False))
    assert table.schema.field("summary").type == pa.string()  # the summary columns stay
    by_id = {row["transcript_id"]: row["insights"] for row in table.to_pylist()}
    assert by_id == {f"call-{i}": expected(i) for i in range(5)}

    avro_rows = []
    for path in glob.glob(str(tmp_path / "avro" / "*.avro")):
        with open(path, "rb") as fh:
            reader = fastavro.reader(fh)
            avro_rows += list(reader)
            written_schema = reader.writer_schema
    insights_field = next(f for f in written_schema["fields"] if f["name"] == "insights")
    record = insights_field["type"][1]
    types = {f["name"]: f["type"] for f in record["fields"]}
    assert types["score"] == "long" and types["urgent"] == "boolean"
    assert types["confidence"] == ["null", "double"] and types["intent"] == "string"
    assert types["products"]["type"] == "array"
    assert types["callback"][1]["fields"][0]["type"] == {"type": "int", "logicalType": "date"}
    assert {r["transcript_id"]: r["insights"] for r in avro_rows} == {
        f"call-{i}": expected(i) for i in range(5)}


def test_default_schema_jsonl_and_kafka_values_keep_the_nesting():
    schema = json.loads(DEFAULT_SCHEMA.read_text())
    insights = {"summary": "Refund agreed.",
                "reason_for_call": {"category": "billing", "detail": "double charge"},
                "resolution": "resolved", "customer_sentiment": {"start": -0.5, "end": 1},
                "action_items": [{"what": "refund", "owner": "agent", "due_date": None}],
                "topics": ["refund", "billing"], "agent_verified_identity": True,
                "language": "en"}
    row = summary(1, insights).to_row()
    column = insights_column(schema)
    line = json_row(SUMMARY_FIELDS, row, column)
    assert line["insights"]["customer_sentiment"] == {"start": -0.5, "end": 1.0}
    assert line["insights"]["action_items"][0] == insights["action_items"][0]
    assert row_from_json(SUMMARY_FIELDS, line, column)["insights"] == {
        **insights, "customer_sentiment": {"start": -0.5, "end": 1.0}}
    for fmt in ("json", "avro"):
        encoder = RowEncoder("summaries", fmt, schema)
        key, value = encoder.encode(summary(1, insights))
        assert key == b"call-1"
        assert encoder.decode(value)["insights"]["reason_for_call"] == insights["reason_for_call"]
        assert encoder.decode(value)["insights"]["topics"] == ["refund", "billing"]
    # A JSON value holds a nested object, not a JSON string inside the row.
    _, value = RowEncoder("summaries", "json", schema).encode(summary(1, insights))
    assert json.loads(value)["insights"]["reason_for_call"]["category"] == "billing"


def test_bigquery_schema_is_nested_records_and_repeated_fields():
    column = insights_column(USER_SCHEMA)
    field = bigquery_schema(SUMMARY_FIELDS, column)["fields"][-1]
    assert field["name"] == "insights" and field["type"] == "RECORD"
    assert field["mode"] == "NULLABLE"
    sub = {f["name"]: f for f in field["fields"]}
    assert (sub["intent"]["type"], sub["intent"]["mode"]) == ("STRING", "REQUIRED")
    assert sub["intent"]["description"] == "Why they called"
    assert (sub["products"]["type"], sub["products"]["mode"]) == ("RECORD", "REPEATED")
    assert [(f["name"], f["type"]) for f in sub["products"]["fields"]] == [
        ("sku", "STRING"), ("quantity", "INT64")]
    assert (sub["tags"]["type"], sub["tags"]["mode"]) == ("STRING", "REPEATED")
    assert [f["type"] for f in sub["callback"]["fields"]] == ["DATE", "TIMESTAMP"]
    assert (sub["confidence"]["type"], sub["confidence"]["mode"]) == ("FLOAT64", "NULLABLE")
    # BigQuery has no null REPEATED value: the insert row sends [] for a null array.
    insert = json_row(SUMMARY_FIELDS, summary(3, user_insights(3)).to_row(), column,
                      null_arrays=False)
    assert insert["insights"]["tags"] == [] and insert["insights"]["callback"] is None


def test_summary_task_rows_keep_their_columns_and_insights_need_a_schema():
    plain = summary(1, None).to_row()
    assert "insights" not in normalize_row(SUMMARY_FIELDS, plain)
    with pytest.raises(ValueError, match="insights_schema"):
        normalize_row(SUMMARY_FIELDS, summary(1, {"summary": "x"}).to_row())


def test_a_value_the_column_cannot_hold_names_its_path():
    column = insights_column(USER_SCHEMA)
    bad = {**user_insights(0), "callback": {"on": "next tuesday"}}
    with pytest.raises(ValueError, match=r"insights\.callback\.on holds 'next tuesday'"):
        normalize_row(SUMMARY_FIELDS, summary(0, bad).to_row(), column)
    with pytest.raises(ValueError, match=r"insights\.score needs an integer"):
        normalize_row(SUMMARY_FIELDS, summary(0, {**user_insights(0), "score": "ten"}).to_row(),
                      column)


def _with(prop):
    return {"type": "object", "properties": {"ok": {"type": "string"}, "bad": prop}}


@pytest.mark.parametrize("schema, message", [
    (_with({"oneOf": [{"type": "string"}, {"type": "integer"}]}),
     r"insights\.bad: 'oneOf' of 2 alternatives"),
    (_with({"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}),
     r"insights\.bad: 'anyOf' of 3"),
    (_with({"type": ["string", "integer"]}), r"insights\.bad: type \['string', 'integer'\]"),
    (_with({"type": "object", "patternProperties": {"^x": {"type": "string"}}}),
     r"insights\.bad: 'patternProperties'"),
    (_with({"type": "object", "additionalProperties": {"type": "number"}}),
     r"insights\.bad: 'additionalProperties' with a schema is a map"),
    (_with({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}),
     r"insights\.bad: a tuple array"),
    (_with({"type": "array", "prefixItems": [{"type": "string"}]}), r"'prefixItems'"),
    (_with({"type": "array", "items": {"type": "array", "items": {"type": "string"}}}),
     r"insights\.bad: an array of arrays"),
    (_with({"type": "array", "items": {"type": ["string", "null"]}}),
     r"insights\.bad\[\]: array items that may be null"),
    (_with({"$ref": "#/$defs/missing"}), r"insights\.bad: \$ref '#/\$defs/missing' cannot"),
    (_with({"$ref": "https://example.com/other.json"}), r"cannot be resolved"),
    (_with({"type": "object"}), r"insights\.bad: an object with no 'properties'"),
    (_with({}), r"insights\.bad: the schema allows any value"),
    (_with({"description": "no type"}), r"insights\.bad: no 'type' is given"),
    ({"type": "object", "properties": {"bad-name": {"type": "string"}}},
     r"insights\.bad-name: the name 'bad-name' is not a valid column name"),
    ({"type": "array", "items": {"type": "string"}}, r"the top level is 'array'"),
    ({"type": "object", "properties": {"node": {"$ref": "#/$defs/node"}},
      "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}}},
     r"insights\.node\.next: \$ref '#/\$defs/node' is recursive"),
    ({"type": "object", "properties": {"node": {"$ref": "#/$defs/node"}},
      "$defs": {"node": {"type": "object", "properties": {
          "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}}}}},
     r"insights\.node\.next: \$ref '#/\$defs/node' is recursive"),
])
def test_unmappable_schemas_are_refused_with_the_field_path(schema, message):
    with pytest.raises(SchemaMappingError, match=message) as info:
        insights_column(schema)
    assert "\n" not in str(info.value)


def test_the_sinks_refuse_an_unmappable_schema_when_built(tmp_path):
    with pytest.raises(SchemaMappingError, match="insights.bad"):
        WriteSummaries(str(tmp_path), insights_schema=_with({"type": "object"}))
    with pytest.raises(SchemaMappingError, match="insights.bad"):
        RowEncoder("summaries", "json", _with({"type": "object"}))


def test_a_nullable_ref_keeps_the_target_description():
    column = insights_column({"type": "object", "properties": {
        "when": {"$ref": "#/definitions/day"}},
        "definitions": {"day": {"type": "string", "format": "date", "description": "a day"}}})
    assert bigquery_field(column.fields[0]) == {"name": "when", "type": "DATE",
                                                "mode": "NULLABLE", "description": "a day"}
