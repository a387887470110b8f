"""The bundled samples end in every insights resolution value, each said in a phrase a
rule-based reader can find, and exactly one ending per call."""
import json
import re
from pathlib import Path

from pipeline.samples import generate as gen

SAMPLES = Path(gen.__file__).with_name("calls.jsonl")
# The phrase each ending says, as generate.py writes it.
PHRASES = {"resolved": r"[Tt]hat's resolved", "escalated": r"escalate this",
           "callback_scheduled": r"call you back tomorrow",
           "unresolved": r"still not resolved|stays unresolved"}


def test_every_resolution_value_occurs_once_per_call():
    counts = dict.fromkeys(PHRASES, 0)
    for line in SAMPLES.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        text = record.get("text") or " ".join(t["text"] for t in record["turns"])
        endings = [name for name, phrase in PHRASES.items() if re.search(phrase, text)]
        assert len(endings) == 1, (record["id"], endings)
        counts[endings[0]] += 1
    assert all(count >= 15 for count in counts.values()), counts
    assert set(counts) == set(gen.OUTCOMES)
