"""The bundled sample transcripts: committed file == fresh generation, and every record valid."""
import json
import re
from pathlib import Path

import pytest

from pipeline.samples import generate as gen

SAMPLES = Path(gen.__file__).with_name("calls.jsonl")
SPEAKERS = {"Agent", "Customer"}
CHANNELS = set(gen.CHANNELS)
QUEUES = {topic["queue"] for topic in gen.TOPICS.values()}


@pytest.fixture(scope="module")
def records():
    with SAMPLES.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_committed_file_equals_a_fresh_generation():
    assert SAMPLES.read_text(encoding="utf-8") == gen.render(gen.generate(gen.DEFAULT_COUNT, gen.DEFAULT_SEED)), (
        "pipeline/samples/calls.jsonl is stale: run python -m pipeline.samples.generate")


def test_size_and_count(records):
    assert len(records) == gen.DEFAULT_COUNT == 300
    assert SAMPLES.stat().st_size < 1_500_000


def test_ids_are_unique_and_well_formed(records):
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"call-\d{5}", i) for i in ids)


def check_no_real_pii(text):
    assert "{" not in text and "}" not in text, f"unfilled template: {text!r}"
    for email in re.findall(r"\S+@\S+", text):
        assert re.fullmatch(r"[a-z.]+\d*@example\.com[.,]?", email), email
    for account in re.findall(r"ACCT-\w*", text):
        assert re.fullmatch(r"ACCT-\d{4}", account), account
    assert not re.search(r"\b\d{3}[-. ]\d{3}[-. ]\d{4}\b", text), f"phone-number-like text: {text!r}"


def test_every_record_is_valid(records):
    for r in records:
        assert set(r) in ({"id", "turns", "metadata"}, {"id", "text", "metadata"}), r["id"]
        meta = r["metadata"]
        assert set(meta) == {"queue", "language", "duration_seconds", "agent_id", "channel"}
        assert meta["queue"] in QUEUES and meta["channel"] in CHANNELS and meta["language"] == "en-US"
        assert re.fullmatch(r"AG-\d{3}", meta["agent_id"])
        if "turns" in r:
            turns = r["turns"]
            assert gen.MIN_TURNS <= len(turns) <= gen.MAX_TURNS, r["id"]
            previous_end = 0.0
            for turn in turns:
                assert set(turn) == {"speaker", "text", "start", "end"}
                assert turn["speaker"] in SPEAKERS and turn["text"].strip()
                assert previous_end <= turn["start"] < turn["end"], r["id"]
                previous_end = turn["end"]
                check_no_real_pii(turn["text"])
            assert turns[0]["speaker"] == "Agent"
            assert all(a["speaker"] != b["speaker"] for a, b in zip(turns, turns[1:])), r["id"]
            assert meta["duration_seconds"] >= turns[-1]["end"]
        else:
            lines = r["text"].split("\n")
            assert gen.MIN_TURNS <= len(lines) <= gen.MAX_TURNS, r["id"]
            assert all(line.split(": ", 1)[0] in SPEAKERS and line.split(": ", 1)[1] for line in lines)
            check_no_real_pii(r["text"])
            assert meta["duration_seconds"] > 0


def test_samples_are_varied(records):
    assert {r["metadata"]["queue"] for r in records} == QUEUES
    assert {r["metadata"]["channel"] for r in records} == CHANNELS
    with_text = sum("text" in r for r in records)
    assert 0 < with_text < len(records) / 3
    openings = {r["turns"][1]["text"] if "turns" in r else r["text"].split("\n")[1] for r in records}
    assert len(openings) > 40
    lengths = {len(r["turns"]) for r in records if "turns" in r}
    assert min(lengths) <= 8 and max(lengths) >= 24
    everything = json.dumps(records, ensure_ascii=False)
    for name, topic in gen.TOPICS.items():  # every topic was drawn
        assert any(opening.split("{")[0] in everything for opening in topic["open"]), name
    # Both outcomes occur: resolved calls and calls escalated with a ticket reference.
    assert all(any(agent.split("{")[0] in everything for agent, _ in topic[outcome])
               for topic in gen.TOPICS.values() for outcome in ("resolve", "escalate"))


def test_generation_is_deterministic_and_seeded():
    assert gen.generate(20, 5) == gen.generate(20, 5)
    assert gen.generate(20, 5) != gen.generate(20, 6)
    assert [r["id"] for r in gen.generate(3, 1)] == ["call-00001", "call-00002", "call-00003"]


def test_cli_writes_the_requested_file(tmp_path):
    out = tmp_path / "calls.jsonl"
    assert gen.main(["--count", "7", "--seed", "11", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == gen.render(gen.generate(7, 11))
    assert len(out.read_text(encoding="utf-8").splitlines()) == 7


def test_cli_rejects_a_non_positive_count(capsys):
    with pytest.raises(SystemExit) as exit_info:
        gen.main(["--count", "0", "--output", "-"])
    assert exit_info.value.code == 2
    assert "--count must be at least 1, got 0" in capsys.readouterr().err
