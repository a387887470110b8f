"""The fast paths (orjson lines, the recordId hash, the local model's token counting) give the
same results as the plain definitions they replace, so shards, recordIds and bills of earlier
runs stay the same."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.local.summarizer import count_tokens, cut_to_tokens
from transforms.core.model import (BatchRecord, Transcript, Turn, encode_jsonl_bytes,
                                   encode_jsonl_line, jsonl_line_size, loads_json)
from transforms.jobs.results import IndexEntry, JobContext, harvest_lines
from transforms.prepare.records import PromptConfig, build_record, record_id_for

FAST = settings(max_examples=10, deadline=None)
# Text as transcripts hold it: any character but lone surrogates (validation refuses those).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
BODY = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | TEXT
                    | st.floats(min_value=1e-4, max_value=1e6),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@FAST
@given(record_id=TEXT, model_input=st.dictionaries(TEXT, BODY, max_size=5))
def test_lines_are_the_bytes_json_dumps_wrote(record_id, model_input):
    expected = json.dumps({"recordId": record_id, "modelInput": model_input},
                          ensure_ascii=False, separators=(",", ":")) + "\n"
    assert encode_jsonl_line(record_id, model_input) == expected
    assert encode_jsonl_bytes(record_id, model_input) == expected.encode("utf-8")
    assert jsonl_line_size(record_id, model_input) == len(expected.encode("utf-8"))


def test_a_read_only_mapping_is_written_as_its_dict():
    body = MappingProxyType({"a": MappingProxyType({"b": [1, "é"]})})
    assert encode_jsonl_line("R1", body) == '{"recordId":"R1","modelInput":{"a":{"b":[1,"é"]}}}\n'


def test_a_value_json_cannot_hold_is_refused_as_json_dumps_refuses_it():
    with pytest.raises(TypeError):
        encode_jsonl_line("R1", {"when": object()})


@pytest.mark.parametrize("text,expected", [
    ('{"a":"\\ud800"}', {"a": "\ud800"}),  # orjson refuses a lone surrogate escape
    ("[NaN, Infinity]", [float("nan"), float("inf")]),
    ('{"a":[1,"é"]}', {"a": [1, "é"]}),
])
def test_loads_json_reads_what_the_standard_library_reads(text, expected):
    assert json.dumps(loads_json(text)) == json.dumps(expected)


ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | TEXT
                        | st.floats(allow_nan=False, allow_infinity=False),
                        lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12)


@FAST
@given(value=ANY_JSON, as_bytes=st.booleans())
def test_loads_json_reads_any_document_as_the_standard_library_does(value, as_bytes):
    """Within 64-bit integers, which is all the lines it reads can hold (see its docstring)."""
    text = json.dumps(value, ensure_ascii=False)
    document = text.encode("utf-8") if as_bytes else text
    assert repr(loads_json(document)) == repr(json.loads(document))


def test_loads_json_refuses_what_is_no_json():
    with pytest.raises(ValueError):
        loads_json('{"recordId": "R1", "modelOut')


def test_harvest_reads_a_line_whose_output_holds_a_lone_surrogate_escape():
    line = ('{"recordId":"R1","modelInput":{},"modelOutput":{"content":[{"type":"text",'
            '"text":"hi \\ud800"}],"stop_reason":"end_turn","usage":{"input_tokens":3,'
            '"output_tokens":2}}}')
    harvest, seen = harvest_lines([line], {"R1": IndexEntry("R1", "t1")},
                                  JobContext(model_id="anthropic.claude-3-haiku-20240307-v1:0",
                                             job_arn="arn"))
    assert seen == {"R1"} and harvest.summaries[0].summary == "hi \ud800"


@FAST
@given(transcript_id=TEXT, salt=st.integers(0, 5))
def test_record_ids_are_the_first_base32_characters_of_the_whole_digest(transcript_id, salt):
    key = transcript_id if salt == 0 else f"{transcript_id}\x00{salt}"
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    assert record_id_for(transcript_id, salt) == "R" + base64.b32encode(digest).decode()[:15]


def test_a_built_record_carries_the_size_of_the_line_it_writes():
    t = Transcript("call-1", "", {"q": "billing"}, (Turn("Agent", "Hello, ça va?"),
                                                    Turn("Customer", "My bill is wrong 😞")))
    record = build_record(t, "anthropic.claude-3-haiku-20240307-v1:0", PromptConfig())
    assert isinstance(record, BatchRecord)
    assert record.size_bytes == len(record.jsonl_line().encode("utf-8"))
    assert record.record_id == record_id_for("call-1")


def _reference_cost(text: str) -> int:
    # The billing definition: a word costs one token per started 6 characters, punctuation one.
    return sum(1 + (len(token) - 1) // 6 for token in re.findall(r"\w+|[^\w\s]", text))


@FAST
@given(text=TEXT, max_tokens=st.integers(0, 60))
def test_token_counts_and_cuts_follow_the_billing_definition(text, max_tokens):
    assert count_tokens(text) == _reference_cost(text)
    cut, was_cut = cut_to_tokens(text, max_tokens)
    assert text.startswith(cut) and was_cut == (_reference_cost(text) > max_tokens)
    assert count_tokens(cut) == (max_tokens if was_cut else _reference_cost(text))
