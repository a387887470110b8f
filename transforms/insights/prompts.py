"""The words that ask a model for schema-valid JSON, and the note asking it to repair an answer."""
from __future__ import annotations

import json
from typing import Any, Mapping

INSIGHTS_TEMPLATE = """Read the customer service call transcript below and describe the call as one
JSON object. Use only facts stated in the transcript; where the schema allows null and the
transcript says nothing, use null.

<transcript>
{transcript}
</transcript>"""

# The repair note starts with this sentence. It is how a later round tells a repair request from
# a first one (the round number cannot: a record may have been resubmitted for a model error).
REPAIR_MARKER = "Your previous answer did not validate against the JSON Schema."


def schema_instructions(schema: Mapping[str, Any]) -> str:
    """The paragraph appended to the user prompt: the schema and how to answer.

    Args:
        schema: the JSON Schema the answer must validate against.
    """
    return ("Answer with exactly one JSON object that validates against this JSON Schema, and "
            "nothing else: no prose, no code fences.\n<json_schema>\n"
            + json.dumps(schema, ensure_ascii=False, separators=(",", ":")) + "\n</json_schema>")


def repair_note(error: str) -> str:
    """The user turn of a repair request: what was wrong with the answer.

    Args:
        error: the validation error of the previous answer.
    """
    return (f"{REPAIR_MARKER} The error was: {error}\nAnswer again with the corrected JSON "
            f"object only.")


def is_repair(model_input: Mapping[str, Any]) -> bool:
    """Whether ``model_input`` is already a repair request (so its answer gets no second one).

    Args:
        model_input: a record's request body, in any family's shape.
    """
    return REPAIR_MARKER in json.dumps(model_input, ensure_ascii=False)
