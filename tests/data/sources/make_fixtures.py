"""Writes the same three made-up calls in every input format the sources read.

Run from the repository root: ``.venv/bin/python tests/data/sources/make_fixtures.py``. The
outputs are committed; tests/test_parsing.py checks every format decodes to ``CALLS``.
Names and numbers are invented; there is no real customer data here.
"""
from __future__ import annotations

import csv
import json
import os
import re
import sys

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

HERE = os.path.dirname(os.path.abspath(__file__))

# Speakers are Transcribe's labels so the Transcribe files carry the same content.
CALLS = [
    {"id": "call-001", "queue": "billing", "agent": "dana",
     "turns": [
         {"speaker": "spk_0", "text": "Thank you for calling Northwind Bank, this is Dana. How "
          "can I help you today?", "start": 0.5, "end": 4.75},
         {"speaker": "spk_1", "text": "Hi Dana. I was charged twice for my card payment last "
          "week, and I'd like one of them refunded.", "start": 5.0, "end": 10.25},
         {"speaker": "spk_0", "text": "I'm sorry about that. I can see both charges, so I've "
          "started a refund for the second one. It should arrive in three to five days.",
          "start": 10.5, "end": 17.0},
         {"speaker": "spk_1", "text": "Great, thanks for sorting it out so quickly.",
          "start": 17.25, "end": 19.5},
     ]},
    {"id": "call-002", "queue": "cards", "agent": "lee",
     "text": "Customer reported a lost debit card while travelling. Agent blocked the card, "
             "ordered a replacement to the hotel address and confirmed no unknown payments."},
    {"id": "call-003", "queue": "loans", "agent": "sam",
     "turns": [
         {"speaker": "spk_0", "text": "Loans desk, Sam speaking.", "start": 0.0, "end": 1.75},
         {"speaker": "spk_1", "text": "Can I move my repayment date to the end of the month?",
          "start": 2.0, "end": 5.5},
         {"speaker": "spk_0", "text": "Yes, from next month it will be on the 28th. Anything "
          "else?", "start": 6.0, "end": 9.5},
         {"speaker": "spk_1", "text": "No, that's all. Bye.", "start": 10.0, "end": 11.5},
     ]},
]

TOKEN = re.compile(r"[\w'-]+|[.,?!]")


def _records_with_text_field() -> list[dict]:
    return [{**call, "text": call.get("text"), "turns": call.get("turns")} for call in CALLS]


def _words(turn: dict) -> list[dict]:
    """Transcribe items for one turn: words spread evenly over the turn, punctuation untimed."""
    tokens = TOKEN.findall(turn["text"])
    words = [t for t in tokens if t not in ".,?!"]
    step = (turn["end"] - turn["start"]) / len(words)
    items, index = [], 0
    for token in tokens:
        if token in ".,?!":
            items.append({"type": "punctuation",
                          "alternatives": [{"confidence": "0.0", "content": token}]})
            continue
        start = turn["start"] + index * step
        end = turn["end"] if index == len(words) - 1 else start + step * 0.9
        index += 1
        items.append({"start_time": f"{start:.3f}", "end_time": f"{end:.3f}",
                      "type": "pronunciation", "speaker_label": turn["speaker"],
                      "alternatives": [{"confidence": "0.98", "content": token}]})
    return items


def _transcribe(call: dict, style: str) -> dict:
    """Transcribe job output; ``style`` picks speaker_labels+items or audio_segments."""
    turns = call["turns"]
    items = [item for turn in turns for item in _words(turn)]
    results = {"transcripts": [{"transcript": " ".join(t["text"] for t in turns)}],
               "items": [{k: v for k, v in item.items() if k != "speaker_label"}
                         for item in items]}
    if style == "speaker_labels":
        segments = []
        for turn, turn_items in ((t, _words(t)) for t in turns):
            timed = [i for i in turn_items if "start_time" in i]
            segments.append({"start_time": f"{turn['start']:.3f}", "end_time": f"{turn['end']:.3f}",
                             "speaker_label": turn["speaker"],
                             "items": [{"start_time": i["start_time"], "end_time": i["end_time"],
                                        "speaker_label": turn["speaker"]} for i in timed]})
        results["speaker_labels"] = {"channel_label": None, "speakers": 2, "segments": segments}
    else:
        # Transcribe splits a long turn into several segments; the reader merges them back.
        results["audio_segments"] = []
        for turn in turns:
            sentences = re.findall(r"[^.?!]+[.?!]", turn["text"])
            span = (turn["end"] - turn["start"]) / len(sentences)
            for n, sentence in enumerate(sentences):
                end = turn["end"] if n == len(sentences) - 1 else turn["start"] + (n + 1) * span
                results["audio_segments"].append({
                    "id": len(results["audio_segments"]), "transcript": sentence.strip(),
                    "start_time": f"{turn['start'] + n * span:.3f}", "end_time": f"{end:.3f}",
                    "speaker_label": turn["speaker"], "items": []})
    return {"jobName": call["id"], "accountId": "123456789012", "status": "COMPLETED",
            "results": results}


def main() -> None:
    records = _records_with_text_field()
    with open(os.path.join(HERE, "calls.jsonl"), "w", encoding="utf-8") as f:
        for call in CALLS:
            f.write(json.dumps(call) + "\n")
    with open(os.path.join(HERE, "calls_array.json"), "w", encoding="utf-8") as f:
        json.dump(CALLS, f, indent=2)
    with open(os.path.join(HERE, "calls_wrapped.json"), "w", encoding="utf-8") as f:
        json.dump({"transcripts": CALLS}, f, indent=2)
    with open(os.path.join(HERE, "calls.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "turns", "queue", "agent"])
        for call in CALLS:
            writer.writerow([call["id"], call.get("text", ""),
                             json.dumps(call["turns"]) if "turns" in call else "",
                             call["queue"], call["agent"]])
    turn_schema = {"type": "record", "name": "Turn", "fields": [
        {"name": "speaker", "type": "string"}, {"name": "text", "type": "string"},
        {"name": "start", "type": ["null", "double"]}, {"name": "end", "type": ["null", "double"]}]}
    schema = {"type": "record", "name": "Call", "fields": [
        {"name": "id", "type": "string"}, {"name": "text", "type": ["null", "string"]},
        {"name": "turns", "type": ["null", {"type": "array", "items": turn_schema}]},
        {"name": "queue", "type": "string"}, {"name": "agent", "type": "string"}]}
    with open(os.path.join(HERE, "calls.avro"), "wb") as f:
        fastavro.writer(f, fastavro.parse_schema(schema), records, codec="deflate")
    pq.write_table(pa.Table.from_pylist(records), os.path.join(HERE, "calls.parquet"),
                   row_group_size=2)
    os.makedirs(os.path.join(HERE, "text"), exist_ok=True)
    with open(os.path.join(HERE, "text", "call-002.txt"), "w", encoding="utf-8") as f:
        f.write(CALLS[1]["text"])
    os.makedirs(os.path.join(HERE, "transcribe"), exist_ok=True)
    for call, style in ((CALLS[0], "speaker_labels"), (CALLS[2], "audio_segments")):
        with open(os.path.join(HERE, "transcribe", f"{call['id']}.json"), "w") as f:
            json.dump(_transcribe(call, style), f)


if __name__ == "__main__":
    sys.exit(main())
