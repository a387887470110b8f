"""Rows 1, 2 and 8: request build + encode and output parse against orjson, and the local model.

Row 1 times ``build_record`` (prompt, the family's request body, the recordId and the encoded
line whose length the quotas count) against ``orjson.dumps`` of the same final
``{"recordId", "modelInput"}`` dicts. Row 2 times ``harvest_lines`` (parse, join on recordId,
the family's response read into Summary rows) against ``orjson.loads`` of the same output lines,
which the local model wrote in Claude's real response shape. Row 8 times the local model itself
over one model of each response family.

    .venv/bin/python -m benchmarks.codec [--records N]
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable

import orjson

from benchmarks import data
from benchmarks.report import Row, print_rows
from pipeline.local.responses import invoke
from transforms.core.model import Transcript, Turn
from transforms.jobs.results import IndexEntry, JobContext, harvest_lines
from transforms.prepare.records import (PromptConfig, build_record, record_for_prompt,
                                        record_id_for, render_transcript)

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def best_seconds(*works: Callable[[], Any], repeats: int = 5) -> list[float]:
    """The fastest of ``repeats`` runs of each of ``works``, run in turns (ours, baseline, ours,
    ...) so that load from other processes on the machine falls on both alike.

    Args:
        works: What to time.
        repeats: Runs of each.
    """
    best = [float("inf")] * len(works)
    for _ in range(repeats):
        for i, work in enumerate(works):
            started = time.perf_counter()
            work()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def make_transcripts(count: int) -> list[Transcript]:
    """Benchmark transcripts as the sources produce them.

    Args:
        count: How many.
    """
    return [Transcript(id=row["id"], text="", metadata=row["metadata"],
                       turns=tuple(Turn(t["speaker"], t["text"]) for t in row["turns"]))
            for row in data.transcripts(count)]


def _each(function: Callable[..., Any], arguments: list[tuple[Any, ...]]) -> Callable[[], None]:
    # Results are dropped as they come, on both sides, so neither pays for holding them.
    def run() -> None:
        for args in arguments:
            function(*args)
    return run


def encode_row(count: int) -> Row:
    """Row 1: records/s of the request build + encode (``record_for_prompt``: the family's body,
    built once, and its line encoded once for its size) against ``orjson.dumps`` of the same
    final dicts. The whole ``build_record`` (recordId hash and prompt text rendered from the
    turns, too) is kept in the row's details.

    Args:
        count: Transcripts to build.
    """
    transcripts, prompt = make_transcripts(count), PromptConfig()
    built = [(record_id_for(t.id), t.id, prompt.render(render_transcript(t)), MODEL, prompt,
              "InvokeModel", t.metadata) for t in transcripts]
    finals = [({"recordId": r.record_id, "modelInput": r.model_input},)
              for r in (record_for_prompt(*args) for args in built)]
    ours, limit, whole = best_seconds(
        _each(record_for_prompt, built), _each(orjson.dumps, finals),
        _each(build_record, [(t, MODEL, prompt) for t in transcripts]))
    return Row(1, "request build + encode (record_for_prompt)",
               "orjson.dumps of the same final dict", count / ours, count / limit, "records/s",
               "ratio >= 0.5", limit / ours >= 0.5, ratio=limit / ours,
               note=(f"the whole build_record, with the recordId hash and the prompt rendered "
                     f"from the turns: {count / whole:,.0f} records/s, ratio {limit / whole:.2f}"),
               details={"build_record_per_s": count / whole, "build_record_ratio": limit / whole})


def output_lines(count: int) -> tuple[list[str], dict[str, IndexEntry]]:
    """Output lines the local model writes for ``count`` records and the index they join to.

    Args:
        count: Records.
    """
    prompt, lines, index = PromptConfig(), [], {}
    for t in make_transcripts(count):
        record = build_record(t, MODEL, prompt)
        body = invoke(MODEL, "InvokeModel", dict(record.model_input)).body
        lines.append(json.dumps({"recordId": record.record_id, "modelInput": record.model_input,
                                 "modelOutput": body}) + "\n")
        index[record.record_id] = IndexEntry(record.record_id, t.id, t.metadata, 1)
    return lines, index


def parse_row(count: int) -> Row:
    """Row 2: lines/s of ``harvest_lines`` against ``orjson.loads`` of the same lines.

    Args:
        count: Output lines.
    """
    lines, index = output_lines(count)
    ctx = JobContext(model_id=MODEL, job_arn="arn:aws:bedrock:us-east-1:1:model-invocation-job/b")
    harvest, _ = harvest_lines(lines, index, ctx)
    if len(harvest.summaries) != count:
        raise RuntimeError(f"harvest_lines made {len(harvest.summaries)} summaries of {count} lines")
    ours, limit = best_seconds(lambda: harvest_lines(lines, index, ctx),
                               _each(orjson.loads, [(line,) for line in lines]))
    return Row(2, "output parse (harvest_lines)", "orjson.loads of the same lines",
               count / ours, count / limit, "lines/s", "ratio >= 0.5", (limit / ours) >= 0.5,
               ratio=limit / ours)


# One model of each response family the local backend serves.
FAMILY_MODELS = (MODEL, "amazon.nova-lite-v1:0", "meta.llama3-8b-instruct-v1:0",
                 "mistral.mistral-7b-instruct-v0:2", "amazon.titan-text-express-v1")


def model_row(count: int) -> Row:
    """Row 8: records/s of the local backend's model (``invoke``: validate the body, summarize,
    count tokens, shape the family's response), ``count`` records of each family in turn.

    Args:
        count: Records per family.
    """
    prompt, per_family, total = PromptConfig(), {}, 0.0
    transcripts = make_transcripts(count)
    for model in FAMILY_MODELS:
        bodies = [dict(build_record(t, model, prompt).model_input) for t in transcripts]
        started = time.perf_counter()
        for body in bodies:
            invoke(model, "InvokeModel", body)
        seconds = time.perf_counter() - started
        per_family[model] = round(count / seconds)
        total += seconds
    figure = count * len(FAMILY_MODELS) / total
    return Row(8, "local model answers (pipeline.local.responses.invoke)", "", figure, None,
               "records/s", ">= 5,000 records/s", figure >= 5_000, ratio=figure / 5_000,
               note="per family: " + ", ".join(f"{m.split('.')[1].split('-')[0]} {n:,}/s"
                                               for m, n in per_family.items()),
               details={"records_per_s_by_model": per_family})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    print_rows([encode_row(args.records), parse_row(args.records), model_row(args.records)])


if __name__ == "__main__":
    main()
