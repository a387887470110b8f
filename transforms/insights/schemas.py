"""The insights JSON Schema: the bundled default, or the user's own file, checked before any run."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from jsonschema import validators
from jsonschema.exceptions import SchemaError

TASKS = ("summary", "insights")
DEFAULT_SCHEMA_FILE = "default_schema.json"


class SchemaFileError(ValueError):
    """A --output-schema file that cannot be read, is not JSON, or is no object's JSON Schema."""


def default_schema() -> dict[str, Any]:
    """The bundled insights schema (summary, reason, resolution, sentiment, action items, ...)."""
    text = resources.files("transforms.insights").joinpath(DEFAULT_SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def check_schema(schema: Any, where: str) -> dict[str, Any]:
    """``schema`` if it is a valid JSON Schema whose instances are objects, else SchemaFileError.

    Args:
        schema: the parsed schema document.
        where: what to name in the error ("--output-schema FILE", a config field).
    """
    if not isinstance(schema, Mapping):
        raise SchemaFileError(f"{where}: the schema is a JSON "
                              f"{type(schema).__name__}, not an object; give a JSON Schema "
                              f'with "type": "object"')
    try:
        # The validator class for the schema's own $schema dialect (the latest when it names none).
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as err:
        at = "/".join(str(p) for p in err.path) or "the top level"
        raise SchemaFileError(f"{where} is not a valid JSON Schema: "
                              f"{err.message} (at {at})") from None
    if schema.get("type") != "object":
        raise SchemaFileError(f"{where}: the top level must have "
                              f'"type": "object" (found {schema.get("type")!r}): each call '
                              f"becomes one JSON object")
    return dict(schema)


def load_schema(path: str | Path) -> dict[str, Any]:
    """The JSON Schema in file ``path``, checked with ``check_schema``.

    Args:
        path: a local file holding one JSON Schema document.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SchemaFileError(f"--output-schema {path} cannot be read ({err}); give a "
                              f"readable UTF-8 JSON file") from None
    try:
        schema = json.loads(text)
    except ValueError as err:
        raise SchemaFileError(f"--output-schema {path} is not JSON: {err}") from None
    return check_schema(schema, f"--output-schema {path}")


def resolve_task(task: str | None, schema_path: str | None) -> tuple[str, dict[str, Any] | None]:
    """(task, schema) for the CLI's --task and --output-schema: a schema file implies insights.

    Args:
        task: "summary", "insights", or None when --task was not given.
        schema_path: the --output-schema file, or None for the bundled default.
    """
    if task is None:
        task = "insights" if schema_path is not None else "summary"
    if task not in TASKS:
        raise SchemaFileError(f"--task {task!r}: use one of {', '.join(TASKS)}")
    if schema_path is not None:
        if task == "summary":
            raise SchemaFileError(f"--output-schema {schema_path} needs --task insights "
                                  f"(--task summary writes free-text summaries)")
        return "insights", load_schema(schema_path)
    return task, default_schema() if task == "insights" else None
