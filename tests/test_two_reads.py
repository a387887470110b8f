"""Bounded file input prepared from two reads of its files (transforms/two_reads.py), against the
one-shot preparation (read, deduplicate, build, WriteShardsInParallel) of the same file: the same
shards and index files, line for line, the same failure rows and the same undersized records,
for generated hostile inputs. Each side runs to its written shards only (no job is created)."""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import apache_beam as beam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipelines import local_config, pipeline_on
from tests.test_parallel_shards import _uploaded
from transforms.core.model import Transcript
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.shards import write_shards as shards
from transforms.sources import DeduplicateTranscripts, ReadTranscripts
from transforms.summarize import PrepareRecords
from transforms.two_reads import (DUPLICATE, InputChangedError, PrepareInTwoReads,
                                  _SecondReadFn)

QUOTAS = Quotas(max_records_per_file=7, max_records_per_job=20, min_records_per_job=5,
                max_file_bytes=40_000, max_job_bytes=100_000)

# One line of the input: a good call of some length, a copy of an earlier id (exact, or equal
# up to Unicode normalization), a call too long for any job, or a line that is no record.
LINES = st.one_of(
    st.tuples(st.just("call"), st.integers(1, 400)),
    st.tuples(st.just("copy"), st.integers(0, 1000)),
    st.tuples(st.just("nfc-copy"), st.integers(0, 1000)),
    st.just(("huge", 0)),
    st.sampled_from([("bad", '{"id": "x"'), ("bad", '[1, 2]'), ("bad", '{"id": "no-text"}'),
                     ("bad", "")]))


def _input(lines: list, path: Path) -> Path:
    ids: list[str] = []
    with open(path, "w", encoding="utf-8") as out:
        for n, (kind, value) in enumerate(lines):
            if kind == "bad":
                out.write(value + "\n")
                continue
            if kind in ("copy", "nfc-copy") and ids:
                tid = ids[value % len(ids)]
                if kind == "nfc-copy":
                    tid = unicodedata.normalize("NFD", tid)
            else:
                tid = f"café-{n}" if n % 5 == 0 else f"call-{n}"
            ids.append(tid)
            words = 12_000 if kind == "huge" else (value if kind == "call" else 30)
            out.write(json.dumps({"id": tid, "text": f"Agent: hello {n}. " + "word " * words})
                      + "\n")
    return path


def _collect(result: dict, out: Path, p: beam.Pipeline) -> None:
    (result[shards.FAILURES] | "F" >> beam.Map(lambda f: json.dumps([f.error_code, f.origin]))
     | "WF" >> beam.io.WriteToText(str(out / "failures")))
    undersized = (result[shards.ON_DEMAND], result[shards.DEFERRED]) | "U" >> beam.Flatten()
    (undersized | "UR" >> beam.Map(lambda r: r.jsonl_line())
     | "WU" >> beam.io.WriteToText(str(out / "undersized")))


def _lines(out: Path, name: str) -> list[str]:
    return sorted(line for path in out.glob(f"{name}*") for line in path.read_text().splitlines())


def _one_shot(config, path: Path, out: Path) -> None:
    with pipeline_on("FnApiRunner") as p:
        read = p | ReadTranscripts(str(path))
        unique = read["transcripts"] | DeduplicateTranscripts()
        prepared = unique["transcripts"] | PrepareRecords(config)
        result = prepared["records"] | shards.WriteShardsInParallel(config, 1)
        failures = ((read["failures"], unique["failures"], prepared["failures"],
                     result[shards.FAILURES]) | "All" >> beam.Flatten())
        _collect({**result, shards.FAILURES: failures}, out, p)


def _two_reads(config, path: Path, out: Path) -> None:
    with pipeline_on("FnApiRunner") as p:
        result = p | PrepareInTwoReads(config, ReadTranscripts(str(path)))
        failures = (result["source_failures"], result[shards.FAILURES]) | "All" >> beam.Flatten()
        _collect({**result, shards.FAILURES: failures}, out, p)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINES, min_size=40, max_size=160),
       policy=st.sampled_from(["pad-merge", "fail", "on-demand", "defer"]))
def test_two_reads_lay_out_the_one_shot_shards(local_backend_factory, tmp_path_factory, lines,
                                               policy) -> None:
    backend = local_backend_factory(quotas=QUOTAS)
    tmp = tmp_path_factory.mktemp("in")
    path = _input(lines, tmp / "calls.jsonl")
    seen = []
    for name, prepare in (("one", _one_shot), ("two", _two_reads)):
        config = local_config(backend, run_id=f"same-{tmp.name}-{name}", undersized_policy=policy)
        prepare(config, path, tmp / name)
        seen.append((_uploaded(Storage(config.aws.client("s3")), config),
                     _lines(tmp / name, "failures"), _lines(tmp / name, "undersized")))
    (one_layout, one_failures, one_undersized), (two_layout, two_failures, two_undersized) = seen

    assert two_layout == one_layout
    assert two_failures == one_failures
    assert two_undersized == one_undersized


def test_a_record_the_first_read_did_not_see_fails_the_run_naming_it(local_backend) -> None:
    """The files changed between the reads: the second read finds a record with no verdict, or
    another transcript at a verdict's origin. Called directly: no file can be changed between
    the two reads of one pipeline at a chosen moment."""
    fn = _SecondReadFn(local_config(local_backend))
    fn.setup()
    fn.start_bundle()
    transcript = Transcript(id="call-1", text="hello", origin="calls.jsonl:3")
    with pytest.raises(InputChangedError, match=r"calls.jsonl:3 \(transcript 'call-1'\) changed"):
        list(fn.process(transcript, verdicts={}, shard_placement=None))
    other = {"calls.jsonl:3": (DUPLICATE, "call-2", "", 0, ("calls.jsonl:1", "call-2"))}
    with pytest.raises(InputChangedError, match="leave the input files unchanged"):
        list(fn.process(transcript, verdicts=other, shard_placement=None))
