"""A model's answer -> the JSON object it holds, validated against the insights schema.

Models wrap JSON in code fences and prose, continue a prefilled "{" without repeating it, or
answer through a tool-use block; all of these are read. Validation uses the ``jsonschema``
library with the validator of the schema's own dialect.
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping

from jsonschema import validators
from jsonschema.exceptions import best_match

_FENCE = re.compile(r"```[a-zA-Z]*\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()
_OBJECT_START = re.compile(r'\{\s*["}]')


class AnswerError(ValueError):
    """An answer that holds no JSON object, or one that does not validate against the schema."""


@dataclass(frozen=True)
class Insights:
    """A schema-valid answer: the object, and the summary text for the row's summary column.

    Args:
        value: The schema-valid JSON object.
        summary: Its ``summary`` text, for the row's summary column.
    """

    value: dict[str, Any]
    summary: str


def _object_at(text: str, start: int) -> dict[str, Any] | None:
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _first_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text``. Braces in prose ("{if}") are skipped, but the first
    that opens a JSON object ("{" then a key or "}") must decode: the objects nested in a
    broken answer are not the answer. AnswerError when it does not."""
    for match in _OBJECT_START.finditer(text):
        try:
            value, _ = _DECODER.raw_decode(text, match.start())
        except ValueError as err:
            raise AnswerError(f"the JSON object in the answer is not complete or not valid: "
                              f"{err}") from None
        if isinstance(value, dict):
            return value
    return None


def extract_object(text: str, tool_input: Any = None) -> dict[str, Any]:
    """The JSON object in a model answer, or AnswerError saying why there is none.

    Args:
        text: the answer's text (may be empty when the model answered with a tool call).
        tool_input: the input of the answer's tool-use block, when it has one.
    """
    if isinstance(tool_input, Mapping):
        return dict(tool_input)
    stripped = text.strip()
    shown = stripped[:80] + ("..." if len(stripped) > 80 else "")
    # An answer continuing a prefilled "{" starts with its first key (or closes an empty object).
    # If it does not decode, the objects nested in it are not the answer: none is looked for.
    if stripped.startswith(('"', "}")):
        found = _object_at("{" + stripped, 0)
        if found is None:
            raise AnswerError(f"the answer continuing the prefilled '{{' is no complete JSON "
                              f"object (it begins {shown!r})")
        return found
    for fenced in _FENCE.findall(stripped):
        found = _first_object(fenced)
        if found is not None:
            return found
    found = _first_object(stripped)
    if found is not None:
        return found
    raise AnswerError(f"the answer holds no complete JSON object (it begins {shown!r})")


@functools.lru_cache(maxsize=8)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return validators.validator_for(schema)(schema)


def schema_error(value: Any, schema: Mapping[str, Any]) -> str | None:
    """The most relevant validation error of ``value`` against ``schema``, or None when valid.

    Args:
        value: the decoded answer.
        schema: the JSON Schema (already checked by ``schemas.check_schema``).
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = best_match(validator.iter_errors(value))
    if error is None:
        return None
    at = "/" + "/".join(str(p) for p in error.absolute_path)
    return f"at {at}: {error.message}"


def read_answer(text: str, schema: Mapping[str, Any], tool_input: Any = None) -> Insights:
    """The schema-valid insights in an answer, or AnswerError with the reason.

    Args:
        text: the answer's text.
        schema: the JSON Schema the object must validate against.
        tool_input: the input of the answer's tool-use block, when it has one.
    """
    value = extract_object(text, tool_input)
    error = schema_error(value, schema)
    if error is not None:
        raise AnswerError(error)
    summary = value.get("summary")
    return Insights(value, summary if isinstance(summary, str) else "")
