"""Typed sink columns for insights, derived from the task's JSON Schema (no Beam import).

``insights_column(schema)`` maps a JSON Schema onto one ``Column`` tree, from which the Parquet
(pyarrow), Avro and BigQuery types of the ``insights`` column are built, so an insights row is
stored as nested records and repeated fields rather than one JSON string:

=================================  =================  =======================  ==========
JSON Schema                        Parquet (pyarrow)  Avro                     BigQuery
=================================  =================  =======================  ==========
object with properties             struct             record                   RECORD
array with one ``items`` schema    list               array                    REPEATED
string (enums too)                 string             string                   STRING
string, ``format: date``           date32             int (logicalType date)   DATE
string, ``format: date-time``      timestamp (UTC)    long (timestamp-micros)  TIMESTAMP
integer / number / boolean         int64/double/bool  long/double/boolean      INT64/FLOAT64/BOOL
=================================  =================  =======================  ==========

A property is nullable unless the object lists it in ``required`` and its type does not allow
``null``. ``$ref`` to ``#/definitions/...`` or ``#/$defs/...`` is followed. Anything else that
has no single column type (mixed ``oneOf``/``anyOf``, ``patternProperties``, map-like
``additionalProperties``, tuple arrays, arrays of arrays, empty objects, ...) raises
``SchemaMappingError`` naming the field path and what to change, before anything runs.

Keys an answer holds that the schema does not declare have no column: they are not written.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Mapping

import pyarrow as pa

from transforms.core.model import encodable

SCALARS = ("string", "integer", "number", "boolean", "date", "timestamp")
# Avro and BigQuery both accept only these column names.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_ARROW = {"string": pa.string(), "integer": pa.int64(), "number": pa.float64(),
          "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us", tz="UTC")}
_AVRO: dict[str, Any] = {"string": "string", "integer": "long", "number": "double",
                         "boolean": "boolean", "date": {"type": "int", "logicalType": "date"},
                         "timestamp": {"type": "long", "logicalType": "timestamp-micros"}}
_BIGQUERY = {"string": "STRING", "integer": "INT64", "number": "FLOAT64", "boolean": "BOOL",
             "date": "DATE", "timestamp": "TIMESTAMP", "record": "RECORD"}


class SchemaMappingError(ValueError):
    """The JSON Schema has a construct no typed column can hold; the message names the field
    path and the change to make."""


@dataclass(frozen=True)
class Column:
    """One typed column (or nested field) derived from a JSON Schema.

    Args:
        name: Field name (``insights`` for the top-level column).
        kind: One of ``SCALARS``, ``"record"`` or ``"array"``.
        nullable: Whether the value may be null (or missing).
        description: The schema's ``description``, kept as column documentation.
        fields: The record's fields, in the schema's property order (records only).
        item: The element column (arrays only).
        path: Dotted path from the top-level column, for error messages (``[]`` marks items).
    """

    name: str
    kind: str
    nullable: bool = True
    description: str = ""
    fields: tuple["Column", ...] = ()
    item: "Column | None" = None
    path: str = "insights"


def insights_column(schema: Mapping[str, Any], name: str = "insights") -> Column:
    """Map a JSON Schema (a dict) onto the typed ``insights`` column.

    Args:
        schema: The JSON Schema of one insights object; its top level must be an object with
            properties.
        name: The column name.

    Returns:
        The column tree (top level nullable: summary-task rows hold no insights).

    Raises:
        SchemaMappingError: naming the field path and the change to make.
    """
    if not isinstance(schema, Mapping):
        raise SchemaMappingError(f"the schema is a {type(schema).__name__}, not a JSON object")
    column = _Mapper(schema).column(schema, name, name, required=False)
    if column.kind != "record":
        raise SchemaMappingError(f"{name}: the top level is {column.kind!r}; an insights schema "
                                 f"must be an object with properties")
    return column


class _Mapper:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.resolving: list[str] = []

    def resolve(self, node: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if ref is None:
            return node
        match = re.fullmatch(r"#/(definitions|\$defs)/([^/]+)", str(ref))
        target = (self.root.get(match[1], {}) or {}).get(match[2]) if match else None
        if not isinstance(target, Mapping):
            raise SchemaMappingError(
                f"{path}: $ref {ref!r} cannot be resolved; refer to '#/$defs/<name>' or "
                f"'#/definitions/<name>' in the same file, or write the schema inline")
        if ref in self.resolving:
            raise SchemaMappingError(f"{path}: $ref {ref!r} is recursive, which no fixed column "
                                     f"type can hold; limit the nesting and write it out")
        self.resolving.append(ref)
        try:
            merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
            return self.resolve(merged, path)
        finally:
            self.resolving.pop()

    def column(self, node: Any, name: str, path: str, required: bool) -> Column:
        if node is True or node == {}:
            raise SchemaMappingError(f"{path}: the schema allows any value, which has no column "
                                     f"type; give it a 'type'")
        if not isinstance(node, Mapping):
            raise SchemaMappingError(f"{path}: expected a schema object, got {node!r}")
        if not _NAME.fullmatch(name):
            raise SchemaMappingError(f"{path}: the name {name!r} is not a valid column name; "
                                     f"rename it to letters, digits and underscores, not "
                                     f"starting with a digit")
        ref = node.get("$ref")
        node = self.resolve(node, path)
        if ref is not None:
            self.resolving.append(ref)
        try:
            return self._column(node, name, path, required)
        finally:
            if ref is not None:
                self.resolving.pop()

    def _column(self, node: Mapping[str, Any], name: str, path: str, required: bool) -> Column:
        for keyword in ("allOf", "not", "if", "patternProperties", "prefixItems",
                        "dependentSchemas", "unevaluatedProperties"):
            if keyword in node:
                raise SchemaMappingError(f"{path}: {keyword!r} has no typed column; describe "
                                         f"the field with one 'type' (and 'properties'/'items')")
        node, union_null = self._unwrap_union(node, path)
        if "$ref" in node:  # the union's schema is a reference: resolve it as a field of its own
            return self.column(node, name, path, required and not union_null)
        nullable = not required or union_null
        types = self._types(node, path)
        if "null" in types:
            nullable = True
            types = [t for t in types if t != "null"]
        if len(types) != 1:
            raise SchemaMappingError(
                f"{path}: type {types or 'missing'} is not one column type; give one of string, "
                f"integer, number, boolean, object, array (optionally with 'null')")
        kind = types[0]
        description = str(node.get("description") or "")
        if kind == "object":
            return self._record(node, name, path, nullable, description)
        if kind == "array":
            return self._array(node, name, path, nullable, description)
        if kind == "string":
            kind = {"date": "date", "date-time": "timestamp"}.get(node.get("format"), "string")
        if kind not in SCALARS:
            raise SchemaMappingError(f"{path}: type {kind!r} is not a JSON Schema type; use "
                                     f"string, integer, number, boolean, object or array")
        return Column(name, kind, nullable, description, path=path)

    def _unwrap_union(self, node: Mapping[str, Any], path: str) -> tuple[Mapping[str, Any], bool]:
        """``anyOf``/``oneOf`` of one schema and ``{"type": "null"}`` -> (that schema, True)."""
        for keyword in ("anyOf", "oneOf"):
            if keyword not in node:
                continue
            options = list(node[keyword])
            others = [o for o in options if o != {"type": "null"}]
            if len(others) != 1 or len(options) > 2:
                raise SchemaMappingError(
                    f"{path}: {keyword!r} of {len(options)} alternatives has no single column "
                    f"type; use one 'type' (a '{keyword}' of one schema and {{\"type\": "
                    f"\"null\"}} is fine)")
            rest = {k: v for k, v in node.items() if k != keyword}
            return {**rest, **others[0]}, len(options) == 2
        return node, False

    def _types(self, node: Mapping[str, Any], path: str) -> list[str]:
        declared = node.get("type")
        if isinstance(declared, str):
            return [declared]
        if isinstance(declared, list) and all(isinstance(t, str) for t in declared):
            return list(declared)
        if declared is not None:
            raise SchemaMappingError(f"{path}: 'type' {declared!r} is neither a type name nor "
                                     f"a list of them")
        # No type: an enum or const of strings is still a string column.
        values = node.get("enum", [node["const"]] if "const" in node else None)
        if values and all(isinstance(v, str) or v is None for v in values):
            return ["string", "null"] if None in values else ["string"]
        if "properties" in node:
            return ["object"]
        raise SchemaMappingError(f"{path}: no 'type' is given; add one (string, integer, "
                                 f"number, boolean, object or array)")

    def _record(self, node: Mapping[str, Any], name: str, path: str, nullable: bool,
                description: str) -> Column:
        properties = node.get("properties") or {}
        extra = node.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            raise SchemaMappingError(f"{path}: 'additionalProperties' with a schema is a map, "
                                     f"which has no typed column; list the keys in "
                                     f"'properties' or use an array of objects")
        if not properties:
            raise SchemaMappingError(f"{path}: an object with no 'properties' has no columns; "
                                     f"list its fields in 'properties'")
        required = set(node.get("required") or ())
        fields = tuple(self.column(sub, key, f"{path}.{key}", key in required)
                       for key, sub in properties.items())
        return Column(name, "record", nullable, description, fields=fields, path=path)

    def _array(self, node: Mapping[str, Any], name: str, path: str, nullable: bool,
               description: str) -> Column:
        items = node.get("items")
        if isinstance(items, list):
            raise SchemaMappingError(f"{path}: a tuple array ('items' as a list) has no typed "
                                     f"column; give 'items' one schema, e.g. an object")
        if items is None:
            raise SchemaMappingError(f"{path}: the array has no 'items'; give 'items' one schema")
        item = self.column(items, "item", f"{path}[]", required=True)
        if item.kind == "array":
            raise SchemaMappingError(f"{path}: an array of arrays has no BigQuery column; wrap "
                                     f"the inner array in an object")
        if item.nullable:
            raise SchemaMappingError(f"{path}[]: array items that may be null have no BigQuery "
                                     f"column; drop 'null' from the items' type")
        return Column(name, "array", nullable, description, item=item, path=path)


# --- Sink types -----------------------------------------------------------------------------

def arrow_type(column: Column) -> pa.DataType:
    """The pyarrow (Parquet) type of ``column``.

    Args:
        column: A column from ``insights_column``.
    """
    if column.kind == "record":
        return pa.struct([arrow_field(f) for f in column.fields])
    if column.kind == "array":
        return pa.list_(pa.field("item", arrow_type(column.item), nullable=False))
    return _ARROW[column.kind]


def arrow_field(column: Column) -> pa.Field:
    """The pyarrow field of ``column``: its type, nullability and description as metadata.

    Args:
        column: A column from ``insights_column``.
    """
    return pa.field(column.name, arrow_type(column), nullable=column.nullable,
                    metadata={"description": column.description} if column.description else None)


def avro_type(column: Column, record_name: str = "Insights") -> Any:
    """The Avro type of ``column`` (``["null", T]`` when nullable).

    Args:
        column: A column from ``insights_column``.
        record_name: Avro name of the top record; nested records are named after their path
            (Avro names must be unique within a schema).
    """
    if column.kind == "record":
        fields = []
        for f in column.fields:
            entry: dict[str, Any] = {"name": f.name,
                                     "type": avro_type(f, f"{record_name}_{f.name}")}
            if f.nullable:
                entry["default"] = None
            if f.description:
                entry["doc"] = f.description
            fields.append(entry)
        base: Any = {"type": "record", "name": record_name, "fields": fields}
    elif column.kind == "array":
        base = {"type": "array", "items": avro_type(column.item, f"{record_name}_item")}
    else:
        base = _AVRO[column.kind]
    return ["null", base] if column.nullable else base


def bigquery_field(column: Column) -> dict[str, Any]:
    """The BigQuery TableFieldSchema dict of ``column``.

    A nullable array is ``REPEATED`` too: BigQuery has no null array (see ``json_value``).

    Args:
        column: A column from ``insights_column``.
    """
    if column.kind == "array":
        inner = bigquery_field(dataclasses.replace(column.item, name=column.name))
        return {**inner, "mode": "REPEATED",
                "description": column.description or inner.get("description", "")}
    field: dict[str, Any] = {"name": column.name, "type": _BIGQUERY[column.kind],
                             "mode": "NULLABLE" if column.nullable else "REQUIRED",
                             "description": column.description}
    if column.kind == "record":
        field["fields"] = [bigquery_field(f) for f in column.fields]
    return field


# --- Values ---------------------------------------------------------------------------------

def _as_timestamp(path: str, value: Any) -> dt.datetime:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{path} holds {value!r}, not an ISO 8601 date-time") from None
    if not isinstance(value, dt.datetime):
        raise ValueError(f"{path} needs a date-time string, got {type(value).__name__}")
    # Naive date-times are taken as UTC, as everywhere in this project.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(
        dt.timezone.utc)


def _as_date(path: str, value: Any) -> dt.date:
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{path} holds {value!r}, not an ISO 8601 date (YYYY-MM-DD)") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    raise ValueError(f"{path} needs a date string, got {type(value).__name__}")


def _scalar(column: Column, value: Any) -> Any:
    path, kind = column.path, column.kind
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{path} needs a string, got {type(value).__name__}")
        return encodable(value)
    if kind == "integer":
        # JSON Schema counts 1.0 as an integer.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path} needs an integer, got {type(value).__name__}")
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"{path} holds {value}, outside the int64 range")
        return value
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path} needs a number, got {type(value).__name__}")
        return float(value)
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{path} needs a boolean, got {type(value).__name__}")
        return value
    if kind == "date":
        return _as_date(path, value)
    return _as_timestamp(path, value)


def typed_value(column: Column, value: Any) -> Any:
    """An insights value converted for Parquet/Avro: dates and date-times as Python objects,
    integers as int, numbers as float; undeclared keys left out.

    Args:
        column: A column from ``insights_column``.
        value: The validated insights object (or a nested value of it).

    Raises:
        ValueError: naming the field path, for a value the column cannot hold.
    """
    if value is None:
        if not column.nullable:
            raise ValueError(f"{column.path} is required but holds null")
        return None
    if column.kind == "record":
        if not isinstance(value, Mapping):
            raise ValueError(f"{column.path} needs an object, got {type(value).__name__}")
        return {f.name: typed_value(f, value.get(f.name)) for f in column.fields}
    if column.kind == "array":
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{column.path} needs an array, got {type(value).__name__}")
        return [typed_value(column.item, v) for v in value]
    return _scalar(column, value)


def json_value(column: Column, value: Any, null_arrays: bool = True) -> Any:
    """``typed_value`` with dates and date-times as ISO 8601 strings, for JSON lines, Kafka JSON
    values and BigQuery inserts (``typed_value`` reads it back).

    Args:
        column: A column from ``insights_column``.
        value: The validated insights object (or a nested value of it).
        null_arrays: False writes a null array as [] (BigQuery has no null REPEATED field).
    """
    return _to_json(column, typed_value(column, value), null_arrays)


def _to_json(column: Column, value: Any, null_arrays: bool) -> Any:
    if value is None:
        return [] if column.kind == "array" and not null_arrays else None
    if column.kind == "array":
        return [_to_json(column.item, v, null_arrays) for v in value]
    if column.kind == "record":
        return {f.name: _to_json(f, value[f.name], null_arrays) for f in column.fields}
    if column.kind in ("date", "timestamp"):
        return value.isoformat()
    return value
