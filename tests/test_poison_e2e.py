"""Hostile input end to end, through the CLI as a user runs it, for each file sink format.

Hypothesis draws a handful of input folders mixing valid records with every kind of poison
(bad JSON, nesting too deep, lone surrogates, NULs, metadata numbers no sink holds, duplicate
ids) and damaged files (a .gz that is not gzip, a cut .gz). Whatever the mix, the run finishes
and accounts for every input exactly once: each valid record as one summary (or, for a repeated
id, as one DuplicateTranscriptId failure), each hostile record as one failure naming its line,
each damaged file as one failure naming the file, and ``records_in`` equals summaries plus
failures.
"""
from __future__ import annotations

import glob
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

import fastavro
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline import exit_codes
from pipeline.flags import DEFAULT_MAX_FAILURE_RATE
from tests.pipelines import cli_with_counters, local_config, read_rows, summarize
from transforms.core.model import Transcript
from transforms.core.quotas import Quotas

TEXT = ("Customer: my parcel {n} never arrived. Agent: I am sorry, I have sent a new one today. "
        "Customer: thank you.")

# Record kinds: what each line holds, and the failure code it must get (None: a summary).
HOSTILE = {
    "bad_json": (lambda n: '{"id": "x%d", "text": ' % n, "InvalidJson"),
    "deep": (lambda n: "[" * 100_000 + "]" * 100_000, "TooDeep"),
    "surrogate_id": (lambda n: '{"id": "s%d\\ud800", "text": "hi"}' % n, "InvalidUnicode"),
    "surrogate_text": (lambda n: '{"id": "st%d", "text": "hi \\udc00"}' % n, "InvalidUnicode"),
    "nul_id": (lambda n: '{"id": "n%d\\u0000", "text": "hi"}' % n, "InvalidId"),
    "huge_int": (lambda n: '{"id": "h%d", "text": "hi", "metadata": {"v": %d}}' % (n, 2**70),
                 "InvalidMetadata"),
    "nan": (lambda n: '{"id": "f%d", "text": "hi", "metadata": {"v": NaN}}' % n,
            "InvalidMetadata"),
    "not_object": (lambda n: "[1, 2]", "InvalidRecord"),
}
KINDS = ["valid", "valid", "valid", "nul_text", "duplicate", *HOSTILE]
FILE_KINDS = ["jsonl", "gz", "cut_gz", "not_gzip"]


@st.composite
def plans(draw) -> list[tuple[str, list[str]]]:
    """Every file kind and every record kind in each example (a CLI run takes seconds, so few
    examples run): hypothesis varies their order, how they spread over the files, the extras
    and the duplicates."""
    file_kinds = draw(st.permutations(FILE_KINDS))
    kinds = draw(st.permutations(KINDS)) + draw(st.lists(st.sampled_from(KINDS), max_size=4))
    cuts = sorted(draw(st.lists(st.integers(1, len(kinds) - 1), min_size=len(file_kinds) - 1,
                                max_size=len(file_kinds) - 1, unique=True)))
    bounds = [0, *cuts, len(kinds)]
    return [(file_kind, kinds[start:end])
            for file_kind, start, end in zip(file_kinds, bounds, bounds[1:])]


@dataclass
class Line:
    origin_line: int
    id: str | None  # the transcript id, for lines that should become summaries
    code: str | None  # the expected failure code, for hostile lines


def build_inputs(folder: Path, plan: list[tuple[str, list[str]]]) -> tuple[dict, list]:
    """Writes the files; returns {file name: (file kind, [Line])} and the damaged file names."""
    files, valid_ids, counter = {}, [], 0
    for index, (file_kind, kinds) in enumerate(plan):
        name = f"f{index}.jsonl" + ("" if file_kind == "jsonl" else ".gz")
        lines, expected = [], []
        for number, kind in enumerate(kinds, start=1):
            counter += 1
            if kind == "duplicate" and valid_ids:
                tid = valid_ids[counter % len(valid_ids)]
                lines.append(json.dumps({"id": tid, "text": "again: " + TEXT.format(n=counter)}))
                expected.append(Line(number, tid, None))
            elif kind in ("valid", "nul_text", "duplicate"):
                tid = f"call-{counter}"
                text = TEXT.format(n=counter) + (" \x00 end" if kind == "nul_text" else "")
                lines.append(json.dumps({"id": tid, "text": text, "metadata": {"n": counter}}))
                expected.append(Line(number, tid, None))
                valid_ids.append(tid)
            else:
                make, code = HOSTILE[kind]
                lines.append(make(counter))
                expected.append(Line(number, None, code))
        data = ("\n".join(lines) + "\n").encode("utf-8")
        if file_kind in ("gz", "cut_gz"):
            data = gzip.compress(data)
        if file_kind == "cut_gz":
            data = data[: len(data) * 2 // 3]
        (folder / name).write_bytes(data)
        files[name] = (file_kind, expected)
    return files, valid_ids


def read_output(directory: Path, fmt: str) -> list[dict]:
    if fmt == "jsonl":
        return read_rows(directory)
    if fmt == "parquet":
        return pq.read_table(directory).to_pylist()
    rows = []
    for path in sorted(glob.glob(str(directory / "*.avro"))):
        with open(path, "rb") as handle:
            rows += list(fastavro.reader(handle))
    return rows


def run_cli(folder: Path, out: Path, fmt: str, monkeypatch) -> tuple[int, dict[str, int]]:
    """Runs the CLI in-process; returns its exit code and the run's counters."""
    return cli_with_counters(["run", "--input", str(folder / "*"), "--output", str(out),
                              "--sink", fmt, "--min-records-per-job", "1", "--local-speed", "100"],
                             monkeypatch)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "avro"])
# No shrinking: each example is a whole CLI run, and a failing one is reported as drawn.
@settings(max_examples=1, deadline=None, database=None,
          phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=plans())
def test_every_input_is_accounted_for_exactly_once(fmt, plan, tmp_path_factory, monkeypatch):
    folder, out = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    files, _ = build_inputs(folder, plan)
    code, counters = run_cli(folder, out, fmt, monkeypatch)
    summaries = read_output(out / "summaries", fmt)
    failures = read_output(out / "failures", fmt)

    expected_summaries: dict[str, str] = {}  # transcript id -> origin of the kept record
    expected_failures: dict[str, str] = {}  # origin -> error code
    for name, (file_kind, lines) in sorted(files.items()):
        path = str(folder / name)
        if file_kind == "not_gzip":
            expected_failures[path] = "UnreadableFile"
            continue
        if file_kind == "cut_gz":
            [cut] = [f for f in failures if f["origin"] == path]
            read_before = int(re.search(r"(\d+) records? read before it", cut["error_message"])[1])
            expected_failures[path] = "TruncatedFile"
            lines = lines[:read_before]
        for line in lines:
            origin = f"{path}:{line.origin_line}"
            if line.code is not None:
                expected_failures[origin] = line.code
            elif line.id in expected_summaries:  # files are read in name order: first one kept
                expected_failures[origin] = "DuplicateTranscriptId"
            else:
                expected_summaries[line.id] = origin

    assert sorted(s["transcript_id"] for s in summaries) == sorted(expected_summaries)
    assert {f["origin"]: f["error_code"] for f in failures} == expected_failures
    assert len(failures) == len(expected_failures)  # no origin twice
    assert counters["records_in"] == len(summaries) + len(failures)
    assert all(f["error_message"] and f["stage"] in ("source", "validate") for f in failures)
    # The documented exit code: 3 when failure rows exceed the default --max-failure-rate.
    rate = len(failures) / (len(summaries) + len(failures))
    assert code == (exit_codes.FAILURES_ABOVE_THRESHOLD if rate > DEFAULT_MAX_FAILURE_RATE
                    else exit_codes.OK)


def test_plan_counts_hostile_input_as_invalid_instead_of_crashing(tmp_path, capsys):
    files, _ = build_inputs(tmp_path, [("jsonl", KINDS), ("not_gzip", ["valid"]),
                                       ("cut_gz", ["valid"] * 200)])
    assert main(["plan", "--input", str(tmp_path / "*")]) == 0
    plan = json.loads(capsys.readouterr().out)
    valid = sum(line.code is None for line in files["f0.jsonl"][1])
    # The cut file gives its whole lines before the cut, then one failure.
    assert valid < plan["records"] < valid + 200
    assert plan["invalid_records"] == len(HOSTILE) + 2


def test_summarize_transcripts_embedded_keeps_one_of_each_duplicate_id(local_backend_factory,
                                                                      tmp_path):
    """The public transform, as a user embeds it, fed the same id twice from two origins."""
    backend = local_backend_factory(quotas=Quotas(max_concurrent_jobs=3, max_records_per_file=40,
                                                  max_records_per_job=100, min_records_per_job=1))
    text = TEXT.format(n=1)
    items = [Transcript(id="dup", text=text, metadata={"from": "b"}, origin="b.jsonl:1"),
             Transcript(id="dup", text=text, metadata={"from": "a"}, origin="a.jsonl:7"),
             Transcript(id="solo", text=text, metadata={"from": "c"}, origin="c.jsonl:1")]
    summaries, failures = summarize(items, local_config(backend), tmp_path)
    assert sorted((s["transcript_id"], json.loads(s["metadata"])["from"]) for s in summaries) \
        == [("dup", "a"), ("solo", "c")]
    [duplicate] = failures
    assert (duplicate["error_code"], duplicate["origin"]) == ("DuplicateTranscriptId",
                                                              "b.jsonl:1")
    assert "a.jsonl:7" in duplicate["error_message"]
