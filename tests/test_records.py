"""Transcript -> BatchRecord: prompts, record ids and sizes (transforms/prepare/records.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from transforms.core.errors import ConfigError
from transforms.core.model import Transcript, Turn
from transforms.prepare import records
from transforms.prepare.records import (DEFAULT_SYSTEM, DEFAULT_TEMPLATE, PromptConfig,
                                        assign_record_ids, build_record, record_id_for,
                                        render_transcript)

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def test_record_ids_are_alphanumeric_fixed_length_and_deterministic() -> None:
    ids = [record_id_for(f"call-{i}/ü {i}") for i in range(2000)]
    assert all(rid.isascii() and rid.isalnum() and len(rid) == 16 for rid in ids)
    assert len(set(ids)) == len(ids)
    assert record_id_for("call-7") == record_id_for("call-7")
    assert record_id_for("call-7", salt=1) not in (record_id_for("call-7"), record_id_for("call-7", 2))


def test_assign_record_ids_is_unique_and_order_independent() -> None:
    ids = [f"t{i}" for i in range(500)]
    forward, backward = assign_record_ids(ids), assign_record_ids(reversed(ids))
    assert forward == backward
    assert len(set(forward.values())) == 500
    assert forward["t3"] == record_id_for("t3")  # no collision: the plain id


def test_forced_collisions_are_resolved_deterministically(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake hash forces collisions that sha256 would practically never produce."""
    fake = {("a", 0): "R1", ("b", 0): "R1", ("c", 0): "R2",
            ("b", 1): "R2", ("b", 2): "R3", ("c", 1): "R9"}
    monkeypatch.setattr(records, "record_id_for", lambda tid, salt=0: fake[(tid, salt)])
    assigned = assign_record_ids(["c", "b", "a"])
    # "a" sorts first and keeps R1; "b"'s salt 1 would take "c"'s plain id, so it gets salt 2.
    assert assigned == {"a": "R1", "b": "R3", "c": "R2"}
    assert assign_record_ids(["a", "b", "c"]) == assigned


def test_render_transcript_with_and_without_turns() -> None:
    plain = Transcript(id="1", text="Hello, I need help.")
    assert render_transcript(plain) == "Hello, I need help."
    turns = Transcript(id="2", text="ignored", turns=(Turn("Agent", "How can I help?"),
                                                      Turn("Customer", "My order is late.", 1.0, 2.5)))
    assert render_transcript(turns) == "Agent: How can I help?\nCustomer: My order is late."


def test_build_record_size_is_the_utf8_jsonl_line_length() -> None:
    t = Transcript(id="call-1", text="Le client a appelé: colis endommagé ✓ 日本", metadata={"queue": "fr"})
    rec = build_record(t, CLAUDE, PromptConfig(), attempt=2)
    line = rec.jsonl_line()
    assert rec.size_bytes == len(line.encode("utf-8")) > len(line)
    decoded = json.loads(line)
    assert decoded["recordId"] == rec.record_id == record_id_for("call-1")
    prompt = decoded["modelInput"]["messages"][0]["content"][0]["text"]
    assert "colis endommagé ✓ 日本" in prompt and "{transcript}" not in prompt
    assert decoded["modelInput"]["system"] == DEFAULT_SYSTEM
    assert (rec.transcript_id, rec.attempt, rec.metadata) == ("call-1", 2, {"queue": "fr"})


def test_build_record_per_family_and_invocation_type() -> None:
    t = Transcript(id="x", text="short call")
    prompt = PromptConfig(max_tokens=128, temperature=0.0, system_prompt=None)
    llama = build_record(t, "us.meta.llama3-1-8b-instruct-v1:0", prompt, record_id="CALL0000001")
    assert llama.record_id == "CALL0000001"
    assert llama.model_input["max_gen_len"] == 128 and "short call" in llama.model_input["prompt"]
    converse = build_record(t, "cohere.command-r-v1:0", prompt, invocation_type="Converse")
    assert converse.model_input["inferenceConfig"] == {"maxTokens": 128, "temperature": 0.0}
    assert "system" not in converse.model_input
    with pytest.raises(ValueError, match="cohere.command-r-v1:0"):
        build_record(t, "cohere.command-r-v1:0", prompt)


def test_prompt_config_validation() -> None:
    with pytest.raises(ValueError, match="no \\{transcript\\} placeholder"):
        PromptConfig(template="Summarize the call.")
    with pytest.raises(ValueError, match="max_tokens"):
        PromptConfig(max_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        PromptConfig(temperature=1.5)
    assert "{transcript}" in DEFAULT_TEMPLATE
    for topic in ("reason for the call", "resolved", "follow-up"):
        assert topic in DEFAULT_TEMPLATE


def test_templates_may_contain_other_braces() -> None:
    prompt = PromptConfig(template='Answer as JSON {"summary": "..."}:\n{transcript}')
    assert prompt.render("hi") == 'Answer as JSON {"summary": "..."}:\nhi'


def test_prompt_config_from_files(tmp_path: Path) -> None:
    template, system = tmp_path / "user.txt", tmp_path / "system.txt"
    template.write_text("Summarize for a supervisor:\n{transcript}\n", encoding="utf-8")
    system.write_text("You are terse.\n", encoding="utf-8")
    prompt = PromptConfig.from_files(template, system, max_tokens=200, temperature=0.1)
    assert prompt.render("T") == "Summarize for a supervisor:\nT\n"
    assert (prompt.system_prompt, prompt.max_tokens, prompt.temperature) == ("You are terse.", 200, 0.1)
    assert PromptConfig.from_files(template).system_prompt == DEFAULT_SYSTEM
    assert PromptConfig.from_files(system_path=system).template == DEFAULT_TEMPLATE


def test_prompt_config_from_files_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("Summarize the call.", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        PromptConfig.from_files(bad)
    assert str(bad) in str(err.value) and "{transcript}" in str(err.value) and "\n" not in str(err.value)
    missing = tmp_path / "missing.txt"
    with pytest.raises(ConfigError, match=f"template {missing} cannot be read"):
        PromptConfig.from_files(missing)
