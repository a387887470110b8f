"""Bounded file input prepared from a plan on local disk (transforms/summarize_files.py), against
the one-shot preparation (read, deduplicate, build, WriteShardsInParallel) of the same file:
the same shards and index files, line for line, the same failure rows and the same undersized
records, for generated hostile inputs. Each side runs to its written shards only (no job is
created)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import apache_beam as beam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipelines import local_config, pipeline_on
from tests.test_parallel_shards import _uploaded
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.shards import write_shards as shards
from transforms.sources import DeduplicateTranscripts, ReadTranscripts
from transforms.summarize import PrepareRecords
from transforms.summarize_files import PrepareOnDisk, _SpillFn, _scratch_directory

QUOTAS = Quotas(max_records_per_file=7, max_records_per_job=20, min_records_per_job=5,
                max_file_bytes=40_000, max_job_bytes=100_000)

# One line of the input: a good call of some length (as text, as speaker turns, or as both, its
# text unlike its turns), a copy of an earlier id (exact, or equal up to Unicode normalization),
# a call too long for any job, or a line that is no record.
LINES = st.one_of(
    st.tuples(st.sampled_from(["call", "turns", "text+turns"]), st.integers(1, 400)),
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
            words = 12_000 if kind == "huge" else (30 if "copy" in kind else value)
            call = {"id": tid, "text": f"Agent: hello {n}. " + "word " * words}
            if "turns" in kind:
                call["turns"] = [{"speaker": "Agent", "text": f"hello {n}."},
                                 {"speaker": "Customer", "text": "word " * words}]
                if kind == "turns":
                    del call["text"]
            out.write(json.dumps(call) + "\n")
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


def _on_disk(config, path: Path, out: Path) -> None:
    with pipeline_on("FnApiRunner") as p:
        result = p | PrepareOnDisk(config, ReadTranscripts(str(path)))
        failures = (result["source_failures"], result[shards.FAILURES]) | "All" >> beam.Flatten()
        _collect({**result, shards.FAILURES: failures}, out, p)


@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINES, min_size=40, max_size=160),
       policy=st.sampled_from(["pad-merge", "fail", "on-demand", "defer"]))
def test_the_plan_on_disk_lays_out_the_one_shot_shards(local_backend_factory, tmp_path_factory,
                                                       lines, policy) -> None:
    backend = local_backend_factory(quotas=QUOTAS)
    tmp = tmp_path_factory.mktemp("in")
    path = _input(lines, tmp / "calls.jsonl")
    seen = []
    for name, prepare in (("one", _one_shot), ("disk", _on_disk)):
        config = local_config(backend, run_id=f"same-{tmp.name}-{name}", undersized_policy=policy)
        prepare(config, path, tmp / name)
        seen.append((_uploaded(Storage(config.aws.client("s3")), config),
                     _lines(tmp / name, "failures"), _lines(tmp / name, "undersized")))
    (one_layout, one_failures, one_undersized), (disk_layout, disk_failures, disk_undersized) = seen

    assert disk_layout == one_layout
    assert disk_failures == one_failures
    assert disk_undersized == one_undersized


def test_a_worker_without_the_plan_folder_says_which_transform_to_use(local_backend,
                                                                      tmp_path) -> None:
    """On a runner whose workers do not share the launching machine's disk, the plan's folder
    is not there: the worker stops with the remedy, before it spills anything."""
    fn = _SpillFn(local_config(local_backend), str(tmp_path / "on-the-launcher"))
    with pytest.raises(RuntimeError, match=r"on-the-launcher is not on this worker.*"
                                           r"read \| SummarizeTranscripts\(config\)"):
        fn.setup()


def test_the_plan_folder_is_gone_once_the_shards_are_joined(local_backend_factory, tmp_path,
                                                            monkeypatch) -> None:
    """The spills, the plan and the slices live in one folder under the system's temporary
    folder, which the run removes itself, not only when its process exits."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    backend = local_backend_factory(quotas=QUOTAS)
    config = local_config(backend, run_id="scratch", undersized_policy="on-demand")
    path = _input([("call", 20 + n) for n in range(30)], tmp_path / "calls.jsonl")
    _on_disk(config, path, tmp_path / "out")
    assert _uploaded(Storage(config.aws.client("s3")), config)  # its shards were written
    assert [p.name for p in scratch.iterdir() if p.name.startswith("bedrock-batch-plan-")] == []


def test_a_killed_runs_plan_folder_goes_when_the_next_run_starts(tmp_path, monkeypatch) -> None:
    """A run killed with SIGKILL cannot remove its folder (its slices weigh about its shards):
    the next run on the machine does, and leaves the folders of running processes alone."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    killed = tmp_path / f"bedrock-batch-plan-{ended.pid}-x1"
    running = tmp_path / f"bedrock-batch-plan-{os.getpid()}-x2"
    other = tmp_path / "bedrock-batch-plan-notes"
    for folder in (killed, running, other):
        (folder / "slices").mkdir(parents=True)
    new = Path(_scratch_directory())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [running.name, other.name, new.name])
    assert new.name.startswith(f"bedrock-batch-plan-{os.getpid()}-")
