"""Seeded synthetic call transcripts of 1-8 KB for the benchmarks (stdlib only).

Sizes are log-uniform between 1 KB and 8 KB (mean about 3.4 KB), so short calls are common and
long ones present, as in a contact center. Turns alternate between an agent and a customer; a
few words carry non-ASCII letters so encoders take their slower path some of the time.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any, Iterator

MIN_BYTES, MAX_BYTES = 1024, 8192
WORDS = ("account bill charge refund router modem outage technician appointment plan upgrade "
         "cancel payment card address delivery order replacement warranty signal speed network "
         "password reset email invoice discount loyalty contract fee late credit statement "
         "tuesday friday morning afternoon please thanks sorry understand certainly confirm "
         "number reference case ticket escalate supervisor callback résumé café naïve Zoë").split()


def transcript(rng: random.Random, index: int) -> dict[str, Any]:
    """One transcript row (``id``, ``turns``, ``metadata``) of a log-uniform 1-8 KB size.

    Args:
        rng: The seeded generator to draw from.
        index: Position of the row; it names the transcript id.
    """
    target = int(math.exp(rng.uniform(math.log(MIN_BYTES), math.log(MAX_BYTES))))
    turns, size, speaker = [], 0, "Agent"
    while size < target:
        text = " ".join(rng.choices(WORDS, k=rng.randint(6, 30))).capitalize() + "."
        turns.append({"speaker": speaker, "text": text})
        size += len(text) + 30
        speaker = "Customer" if speaker == "Agent" else "Agent"
    return {"id": f"call-{index:07d}", "turns": turns,
            "metadata": {"queue": rng.choice(("billing", "tech", "orders")), "n": index}}


def transcripts(count: int, seed: int = 10) -> Iterator[dict[str, Any]]:
    """``count`` transcripts, the same ones for the same seed.

    Args:
        count: How many to make.
        seed: Seed of the generator.
    """
    rng = random.Random(seed)
    return (transcript(rng, i) for i in range(count))


def write_jsonl(path: Path, count: int, seed: int = 10) -> int:
    """Write ``count`` transcripts as JSONL to ``path``; returns the bytes written.

    Args:
        path: File to write (its folder must exist).
        count: How many transcripts.
        seed: Seed of the generator.
    """
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        for row in transcripts(count, seed):
            line = json.dumps(row, ensure_ascii=False) + "\n"
            written += len(line.encode("utf-8"))
            out.write(line)
    return written
