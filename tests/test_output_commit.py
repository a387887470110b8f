"""A run's output never mixes with another's: refusal, --overwrite, resuming the same run id,
publishing on local folders and on S3, and the exit code of a run where every record failed."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.__main__ import main
from pipeline import exit_codes
from transforms.sinks import commit
from tests.pipelines import read_rows, transcripts


def write_input(path: Path, items, extra_lines: str = "") -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items)
                    + extra_lines)
    return path


def run_cli(*argv: str) -> int:
    return main(["run", "--sink", "jsonl", "--min-records-per-job", "1", *argv])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_conflict_allows_an_empty_folder_and_the_runs_own_files():
    assert commit.conflict("out", [], None, "r1") is None
    assert commit.conflict("out", [".staging-r1/summaries/part-0.jsonl"], None, "r1") is None
    assert commit.conflict("out", ["_RUN_ID", "summaries/part-0.jsonl"], "r1", "r1") is None


def test_conflict_names_the_other_run_and_the_flags():
    unfinished = commit.conflict("out", ["_RUN_ID", ".staging-r0/failures/a.jsonl"], "r0", "r1")
    assert unfinished == ("--output out already holds the output of run r0 (.staging-r0, _RUN_ID): "
                          "rerun with --run-id r0 to finish that run, pass --overwrite to replace "
                          "its summaries/ and failures/, or choose an empty --output")
    finished = commit.conflict("out", ["_RUN_ID", "_SUCCESS", "summaries/a.jsonl"], "r0", "r1")
    assert "--run-id" not in finished and "--overwrite" in finished
    foreign = commit.conflict("out", ["notes.txt"], None, "r1")
    assert foreign.startswith("--output out already holds files of another run or program "
                              "(notes.txt)")


def test_rerun_into_a_used_folder_is_refused_then_overwrite_replaces_it(tmp_path, capsys):
    out = tmp_path / "out"
    first = write_input(tmp_path / "first.jsonl", transcripts(3, prefix="old"), '{"id": "bad"}\n')
    assert run_cli("--input", str(first), "--output", str(out), "--run-id",
                   f"old{uuid.uuid4().hex[:8]}", "--max-failure-rate", "0.5") == exit_codes.OK
    assert [r["transcript_id"] for r in read_rows(out / "failures")] == ["bad"]
    before = snapshot(out)
    capsys.readouterr()

    second = write_input(tmp_path / "second.jsonl", transcripts(2, prefix="new"))
    new_run = f"new{uuid.uuid4().hex[:8]}"
    assert run_cli("--input", str(second), "--output", str(out), "--run-id", new_run) \
        == exit_codes.USAGE
    error = capsys.readouterr().err
    assert "already holds the output of run old" in error and "--overwrite" in error
    assert snapshot(out) == before, "a refused run leaves the folder untouched"

    assert run_cli("--input", str(second), "--output", str(out), "--run-id", new_run,
                   "--overwrite") == exit_codes.OK
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ["new-0000",
                                                                                "new-0001"]
    assert not (out / "failures").exists(), "the old run's failures file is gone"
    assert sorted(p.name for p in out.iterdir()) == ["_LOCK.2", "_RUN_ID", "_SUCCESS",
                                                    "report.html", "report.json", "summaries"]
    assert (out / "_SUCCESS").read_text() == new_run
    assert f"written to      {out / 'summaries'}\n" in capsys.readouterr().out


def test_a_crashed_run_rerun_with_its_run_id_publishes_only_its_new_rows(tmp_path):
    """The crash is simulated by the files a run leaves when it dies before publishing: its
    _RUN_ID claim and a partly written staging folder."""
    run_id = f"crash{uuid.uuid4().hex[:8]}"
    out = tmp_path / "out"
    stale = out / f".staging-{run_id}" / "summaries" / "part-stale.jsonl"
    stale.parent.mkdir(parents=True)
    stale.write_text(json.dumps({"transcript_id": "stale"}) + "\n")
    (out / "_RUN_ID").write_text(run_id)

    items = transcripts(3, prefix="resumed")
    path = write_input(tmp_path / "in.jsonl", items)
    assert run_cli("--input", str(path), "--output", str(out), "--run-id", run_id) == exit_codes.OK
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == [t.id for t in items]
    assert sorted(p.name for p in out.iterdir()) == ["_LOCK.1", "_RUN_ID", "_SUCCESS",
                                                    "report.html", "report.json", "summaries"]


def test_a_run_where_every_record_failed_exits_3(tmp_path, capsys):
    out = tmp_path / "out"
    path = write_input(tmp_path / "in.jsonl", transcripts(3, prefix="tiny"))
    code = main(["run", "--input", str(path), "--output", str(out), "--sink", "jsonl",
                 "--min-records-per-job", "10", "--undersized-policy", "fail",
                 "--max-failure-rate", "1"])
    assert code == exit_codes.FAILURES_ABOVE_THRESHOLD
    report = capsys.readouterr().out
    assert "exit code       3: every record failed" in report
    assert f"written to      {out / 'failures'}\n" in report, "no summaries folder is named"
    assert not (out / "summaries").exists()
    assert len(read_rows(out / "failures")) == 3


def test_max_failure_rate_must_be_a_fraction(tmp_path, capsys):
    path = write_input(tmp_path / "in.jsonl", transcripts(1))
    assert run_cli("--input", str(path), "--output", str(tmp_path / "out"),
                   "--max-failure-rate", "5") == exit_codes.USAGE
    assert "--max-failure-rate 5 is not a fraction" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "refused before anything was written"


def test_claim_and_publish_on_s3(local_backend):
    """Beam's S3 filesystem against the local backend's moto server."""
    FileSystems.set_options(PipelineOptions([]))  # as a pipeline (or the CLI) does before I/O
    s3 = local_backend.boto3_client("s3")
    bucket = f"out-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    output = f"s3://{bucket}/results"
    s3.put_object(Bucket=bucket, Key="results/_RUN_ID", Body=b"old")
    s3.put_object(Bucket=bucket, Key="results/failures/part-old.jsonl", Body=b"{}\n")

    with pytest.raises(commit.OutputInUse, match="output of run old"):
        commit.claim(output, "r1", overwrite=False)
    commit.claim(output, "r1", overwrite=True)
    staged = commit.staging_dir(output, "r1") + "/summaries/part-0.jsonl"
    with FileSystems.create(staged) as handle:
        handle.write(b'{"transcript_id": "a"}\n')
    commit.publish(output, "r1")

    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["results/_RUN_ID", "results/_SUCCESS", "results/summaries/part-0.jsonl"]
    assert commit.written_dirs(output) == [f"{output}/summaries"]
