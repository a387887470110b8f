"""The run report rests on durable facts (the source ledger, the job ledger, the rows written),
not on Beam counters alone, through the CLI on the DirectRunner.

On Flink, a restarted attempt starts its counters from zero while the files it read before the
restart and the jobs it created stay read and billed. The DirectRunner never restarts an
attempt, so the test makes the same situation for real, as a user can: a run is SIGKILLed right
after its first Bedrock job was created (the hook of tests/test_kill_points.py; the backend
belongs to the test and outlives the kill); its input file is then moved away, and the run is
resumed with the same --run-id on what is left (an empty file). Nothing is faked: the resumed
run's counters hold none of the killed attempt's reads, and the killed attempt's job exists at
the service but is in no plan of the resumed run, so the run never harvests it: the honest way
on the DirectRunner (which waits for every job it submits) to leave a job of the run unharvested.
"""
from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.local.backend import DEFAULT_BUCKET
from tests.test_bad_folders import _answered
from tests.pipelines import read_rows
from tests.test_kill_points import QUICK, QUOTAS, RECORDS, _cli_args, _input, _jobs, _run_killed_at

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"


def _report(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(argv)
    return code, capsys.readouterr().out.splitlines()


def _line(lines: list[str], label: str) -> str:
    [found] = [line for line in lines if line.startswith(label)]
    return found


def _wait_until_ended(backend, run_id: str, name: str) -> None:
    deadline = time.monotonic() + 300
    while _jobs(backend, run_id)[name][2] != "Completed":
        assert time.monotonic() < deadline, f"job {name} did not complete"
        time.sleep(0.5)


@pytest.mark.timeout(900)
def test_a_resumed_run_accounts_for_the_reads_and_the_job_of_its_killed_attempt(
        local_backend_factory, tmp_path, capsys):
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    folder = tmp_path / "incoming"
    folder.mkdir()
    source, ids = _input(folder)  # incoming/in.jsonl, RECORDS transcripts
    output, run_id = tmp_path / "out", "ledger-1"
    argv = _cli_args(backend, folder / "*.jsonl", output, run_id) + ["--model-id", MODEL]

    assert _run_killed_at("submit", argv, tmp_path).startswith("submit")
    [job_name] = _jobs(backend, run_id)
    moved = tmp_path / "archive.jsonl"
    source.rename(moved)
    (folder / "empty.jsonl").write_text("")

    code, lines = _report(capsys, argv)
    # Before the ledger this said "records in 0" and "exit code 0: the input held no records".
    assert code == 4
    assert _line(lines, "records in") == f"records in      {RECORDS}  (source ledger: 2 files)"
    assert _line(lines, "counted").startswith("counted         0 in, 0 summaries, 0 failures")
    assert _line(lines, "jobs").endswith("; 1 at the service, 1 not harvested")
    [named] = [line for line in lines if line.startswith(f"NOT ACCOUNTED   job {job_name} ")]
    assert f"NOT ACCOUNTED   {RECORDS} records in are neither a summary nor a failure row" in (
        " ".join(lines))
    assert lines[-2].startswith("exit code       4: records are not accounted for")
    report = json.loads((output / "report.json").read_text())
    [open_job] = report["accounting"]["open_jobs"]
    assert (open_job["name"], report["records"]["in"]) == (job_name, RECORDS)
    assert [j["harvested"] for j in report["jobs"]] == [False]
    assert main(["report", str(output)]) == 0  # report.json still passes its schema
    assert f"NOT ACCOUNTED: job {job_name} " in (output / "report.html").read_text()

    # The command the report names collects the job's rows, exactly as printed.
    command = named[named.index("python -m pipeline collect"):]
    argv_collect = shlex.split(command)[3:]
    assert argv_collect[0] == "collect"
    _wait_until_ended(backend, run_id, job_name)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main([*argv_collect, "--sink", "jsonl"]) == 0
    collected = tmp_path / argv_collect[argv_collect.index("--output") + 1]
    rows = read_rows(collected / "summaries") + read_rows(collected / "failures")
    assert len(rows) == QUOTAS.max_records_per_job  # the first job held one job's worth

    # Resumed once more with the file back: it is read again, and its ledger entry replaced.
    moved.rename(source)
    code, lines = _report(capsys, argv)
    assert code == 0, "\n".join(lines)
    assert _line(lines, "records in") == f"records in      {RECORDS}  (source ledger: 2 files)"
    assert _line(lines, "jobs").endswith("; 2 at the service, 0 not harvested")
    assert not any(line.startswith(("counted", "NOT ACCOUNTED")) for line in lines)
    out_rows = read_rows(output / "summaries") + read_rows(output / "failures")
    assert sorted(r["transcript_id"] for r in out_rows) == ids


@pytest.mark.timeout(900)
def test_a_rerun_that_spells_the_input_differently_counts_its_file_once(
        local_backend_factory, tmp_path, capsys, monkeypatch):
    """The same file named `in.jsonl` from its folder, then by a full path through `..`, under
    one --run-id: one file in the ledger (its entries were keyed by the path as spelled, so the
    rerun reported records in 60 for 30 and exited 4)."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    _input(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    run_id = "ledger-spelled"
    for spelled, output in ((Path("in.jsonl"), "one"), (tmp_path / "sub" / ".." / "in.jsonl", "two")):
        code, lines = _report(capsys, _cli_args(backend, spelled, tmp_path / output, run_id))
        assert code == 0, "\n".join(lines)
        assert _line(lines, "records in") == f"records in      {RECORDS}  (source ledger: 1 file)"


def test_collect_reaches_the_s3_the_environment_names_now(local_backend_factory, tmp_path, capsys):
    """The printed collect command names no endpoint: S3 is where AWS_ENDPOINT_URL_S3 says (as
    the local backend's env() sets it). The project's boto3 clients were kept per settings for
    the process, so a collect after one against an earlier backend (the same settings: no
    flags) reused that backend's client and failed with EndpointConnectionError."""
    for number in (1, 2):
        backend = local_backend_factory()  # its env() replaces the last one's
        job_output = f"s3://{DEFAULT_BUCKET}/jobs/job{number}/"
        backend.boto3_client("s3").put_object(
            Bucket=DEFAULT_BUCKET, Key=f"jobs/job{number}/in.jsonl.out",
            Body=_answered(f"r{number}").encode())
        capsys.readouterr()
        assert main(["collect", "--job-output", job_output, "--output",
                     str(tmp_path / f"collected-{number}"), "--sink", "jsonl", "--model-id",
                     MODEL]) == 0, capsys.readouterr().err
        [row] = read_rows(tmp_path / f"collected-{number}" / "summaries")
        assert row["transcript_id"] == f"r{number}"
        backend.stop()


def test_an_empty_input_with_no_job_is_said_to_hold_no_records(local_backend, tmp_path, capsys):
    """The one case where the ledger, the listed jobs and the rows all agree there was nothing."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    code, lines = _report(capsys, ["run", "--input", str(empty), "--output", str(tmp_path / "out"),
                                   "--sink", "jsonl", "--quiet"])
    assert code == 0
    assert _line(lines, "records in") == "records in      0  (source ledger: 1 file)"
    assert lines[-2] == "exit code       0: the input held no records"
