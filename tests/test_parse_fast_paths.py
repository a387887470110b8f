"""The fast paths of the output parse give what the plain forms give: ``Summary.from_fields``
against ``Summary(...)``, ``metadata_json`` against ``json.dumps`` with its settings, and
``response_reader`` against ``parse_model_output``."""
from __future__ import annotations

import datetime as dt
import decimal
import json

import pytest

from transforms.core.model import Summary, metadata_json
from transforms.prepare.families import UnparseableOutput, parse_model_output, response_reader

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
FIELDS = dict(transcript_id="t1", record_id="R1", model_id=CLAUDE, summary="ok",
              stop_reason="end_turn", input_tokens=10, output_tokens=2, job_arn="arn:j",
              window_start=None, window_end=None, attempt=1, metadata='{"a": 1}',
              created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), insights=None)


def test_from_fields_builds_the_row_the_constructor_builds() -> None:
    built = Summary.from_fields(**FIELDS)
    assert built == Summary(**FIELDS)
    assert built.to_row() == Summary(**FIELDS).to_row()
    assert hash(built) == hash(Summary(**FIELDS))


def test_from_fields_refuses_a_missing_or_unknown_field() -> None:
    with pytest.raises(TypeError, match="created_at"):
        Summary.from_fields(**{k: v for k, v in FIELDS.items() if k != "created_at"})
    with pytest.raises(TypeError, match="colour"):
        Summary.from_fields(**FIELDS, colour="red")


@pytest.mark.parametrize("metadata", [
    {"queue": "tech", "n": 0},
    {"b": 1.5e-05, "a": [1, {"z": None, "y": True}], "café": "naïve \u2028"},
    {"when": dt.date(2026, 1, 2), "amount": decimal.Decimal("1.10"), "nan": float("nan")},
])
def test_metadata_json_is_json_dumps_with_its_settings(metadata: dict) -> None:
    assert metadata_json(metadata) == json.dumps(metadata, sort_keys=True, default=str,
                                                 ensure_ascii=False)


def test_metadata_json_still_refuses_a_circular_reference() -> None:
    loop: dict = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular reference"):
        metadata_json(loop)


@pytest.mark.parametrize("body", [
    {"content": [{"type": "text", "text": " a "}, {"type": "tool_use", "input": {"k": 1}},
                 {"type": "text", "text": "b"}], "stop_reason": "max_tokens",
     "usage": {"input_tokens": True, "output_tokens": 3}},
    {"output": {"message": {"content": [{"text": "x"}, {"toolUse": {"input": {"k": 2}}}]}},
     "stopReason": "end_turn", "usage": {"inputTokens": 4, "outputTokens": 1}},
    {"generation": "g", "stop_reason": "length"},
])
def test_response_reader_reads_as_parse_model_output(body: dict) -> None:
    assert response_reader(CLAUDE)(body) == parse_model_output(body, CLAUDE)
    assert response_reader()(body) == parse_model_output(body)


def test_response_reader_refuses_what_parse_model_output_refuses() -> None:
    with pytest.raises(UnparseableOutput) as read:
        response_reader(CLAUDE)({"message": "Internal error"})
    with pytest.raises(UnparseableOutput) as parsed:
        parse_model_output({"message": "Internal error"}, CLAUDE)
    assert str(read.value) == str(parsed.value)
