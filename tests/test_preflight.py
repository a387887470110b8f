"""Preflight: `run` refuses unusable flags and destinations before any job exists (exit 2, one
line), prints the run id and how to resume before the pipeline starts, and leaves no probe behind.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.exit_codes import UsageError
from pipeline.cli.preflight import check_cost, check_role_arn, probe_output
from tests.pipelines import transcripts
from tests.standalone import aws_flags, profile_file, standalone_backend  # noqa: F401 (fixtures)


def _input(tmp_path: Path, count: int = 3) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(count)))
    return path


def _refused(capsys) -> str:
    captured = capsys.readouterr()
    [line] = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in captured.err
    assert "run id" not in captured.err  # refused before the run started
    return line


@pytest.mark.parametrize("flags, message", [
    (["--bucket-uri", "s3://no-such-bucket/runs"],
     "--bucket-uri s3://no-such-bucket/runs: bucket 'no-such-bucket' is not reachable"),
    (["--role-arn", "arn:aws:iam::12:role/x"], "--role-arn 'arn:aws:iam::12:role/x' is not an IAM"),
    (["--model-id", "acme.summarizer-v1"], "--model-id: model id 'acme.summarizer-v1' is not of a"),
    (["--min-records-per-job", "600", "--max-records-per-job", "500"],
     "lower --min-records-per-job"),
    (["--run-id", "Bad_ID"], "--run-id 'Bad_ID': use lowercase letters"),
    (["--output", "s3://no-such-bucket/out"],
     "--output s3://no-such-bucket/out is not writable (An error occurred (NoSuchBucket)"),
    (["--max-cost-usd", "0.000001"], "exceeds --max-cost-usd 1e-06; raise --max-cost-usd"),
    (["--backend", "aws", "--aws-profile", "nightly"],
     "--aws-profile nightly is not in the AWS config files"),
    (["--max-cost-usd", "5", "--streaming", "--window-seconds", "60", "--watch-seconds", "5"],
     "--max-cost-usd needs a bounded --input"),
])
def test_bad_settings_are_refused_before_any_job(flags, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--input", str(_input(tmp_path)), "--output", str(out), *flags]
    assert main(argv) == 2
    assert message in _refused(capsys)
    assert not out.exists()


def test_an_existing_file_as_output_is_refused(tmp_path, capsys):
    target = tmp_path / "report.parquet"
    target.write_bytes(b"not a folder")
    assert main(["run", "--input", str(_input(tmp_path)), "--output", str(target)]) == 2
    assert f"--output {target} is an existing file" in _refused(capsys)
    assert target.read_bytes() == b"not a folder"


def test_an_unwritable_output_is_refused(tmp_path, capsys):
    """/proc takes no new folders, even for root (the tests may run as root, whom a read-only
    permission bit does not stop)."""
    assert main(["run", "--input", str(_input(tmp_path)), "--output", "/proc/bedrock-out"]) == 2
    assert "--output /proc/bedrock-out is not writable" in _refused(capsys)


def test_the_probe_leaves_nothing_behind(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    probe_output(str(existing))
    assert list(existing.iterdir()) == []
    fresh = tmp_path / "a" / "b"
    probe_output(str(fresh))
    assert not (tmp_path / "a").exists()  # the folders the probe made are gone again


def test_pure_checks():
    check_role_arn("arn:aws:iam::123456789012:role/BedrockBatch")
    check_role_arn("arn:aws-us-gov:iam::123456789012:role/path/Role")
    with pytest.raises(UsageError, match="not an IAM role ARN"):
        check_role_arn("arn:aws:iam::123456789012:user/alice")
    check_cost(0.5, 1.0, "m", 10)
    with pytest.raises(UsageError, match=r"estimated cost \$2.0000 for 10 records"):
        check_cost(2.0, 1.0, "m", 10)
    with pytest.raises(UsageError, match="no batch price is known"):
        check_cost(None, 1.0, "m", 10)


def test_a_crash_still_shows_the_run_id_and_how_to_resume(tmp_path, capsys, monkeypatch,
                                                          standalone_backend,  # noqa: F811
                                                          profile_file):  # noqa: F811
    """A worker crash cannot be triggered on demand from the CLI, so `run` (the pipeline itself)
    is replaced by one that fails; everything before it is real. The jobs would live in a
    standalone backend reached with --backend aws, where resuming is possible."""
    import pipeline.running.execute

    def crash(options, config):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(pipeline.running.execute, "run", crash)
    assert main(["run", *aws_flags(standalone_backend), "--input", str(_input(tmp_path)),
                 "--output", str(tmp_path / "o"), "--run-id", "nightly-7"]) == 1
    err = capsys.readouterr().err
    assert "run id nightly-7: after a crash, rerun with the same flags and --run-id nightly-7" in err
    assert "s3://bedrock-batch-local/runs/nightly-7/output/<job id>/" in err
    assert err.index("run id nightly-7") < err.index("worker lost")


def test_the_local_banner_promises_no_resume():
    from pipeline.cli.preflight import run_banner
    from transforms.config import BatchConfig
    from transforms.core.bedrock import JobConfig

    config = BatchConfig(base_uri="s3://b/runs", run_id="r-1",
                         job=JobConfig(role_arn="arn:aws:iam::123456789012:role/R"))
    assert run_banner(config, "local") == ("run id r-1 (the embedded local backend keeps its jobs "
                                           "and files only while this run lasts)")
    assert "--run-id r-1" in run_banner(config, "aws")
