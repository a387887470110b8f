"""The CLI as a user runs it: help, plan, run on the embedded local backend, collect, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.__main__ import COMMANDS, main
from tests.pipelines import read_rows, transcripts

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "pipeline" / "samples" / "calls.jsonl"


def _write_input(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text, "metadata": {"n": i}}) + "\n"
                            for i, t in enumerate(transcripts(count))))
    return path


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


def test_run_help_lists_the_flags(capsys):
    assert main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--input", "--output", "--sink", "--backend", "--model-id", "--max-records-per-job",
                 "--min-records-per-job", "--max-concurrent-jobs", "--undersized-policy",
                 "--quota-profile", "--role-arn", "--kms-key-id", "--job-timeout-hours",
                 "--model-invocation-type", "--max-record-retries", "--tags"):
        assert flag in out


def test_plan_prints_jobs_without_submitting(tmp_path, capsys):
    path = _write_input(tmp_path / "in.jsonl", 250)
    assert main(["plan", "--input", str(path), "--max-records-per-job", "100",
                 "--min-records-per-job", "60"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["records"] == 250
    assert [job["records"] for job in plan["jobs"]] == [84, 83, 83]
    assert all(sum(f["records"] for f in job["files"]) == job["records"] for job in plan["jobs"])
    assert plan["estimate"]["input_tokens"] > 0 and plan["estimate"]["max_cost_usd"] > 0


def test_run_on_samples_writes_one_summary_per_transcript(tmp_path, capsys):
    """What `make demo` does, on the bundled samples."""
    out = tmp_path / "demo"
    assert main(["run", "--input", str(SAMPLES), "--output", str(out)]) == 0
    report = capsys.readouterr().out
    assert "summaries       300" in report and "failures        0" in report
    table = pq.read_table(out / "summaries")
    ids = [json.loads(line)["id"] for line in SAMPLES.read_text().splitlines()]
    assert sorted(table.column("transcript_id").to_pylist()) == sorted(ids)
    assert all(s.startswith("[local extractive summary]") for s in table.column("summary").to_pylist())


def test_run_reports_bad_records_as_failures(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "text": "Customer: hi. Agent: hello, how can I help?"}\n'
                    '{"id": "b"}\nnot json\n{"id": "a", "text": "duplicate"}\n')
    # 3 of 4 records failed: above the default --max-failure-rate, so the run exits 3.
    assert main(["run", "--input", str(path), "--output", str(tmp_path / "o"), "--sink", "jsonl",
                 "--min-records-per-job", "1"]) == 3
    failures = read_rows(tmp_path / "o" / "failures")
    codes = sorted(f["error_code"] for f in failures)
    assert codes == ["DuplicateTranscriptId", "InvalidJson", "MissingText"]
    assert [r["transcript_id"] for r in read_rows(tmp_path / "o" / "summaries")] == ["a"]


def test_collect_parses_a_downloaded_job_output(tmp_path, capsys):
    from pipeline.local.responses import invoke
    from transforms.prepare.families import family_for

    model = "anthropic.claude-3-haiku-20240307-v1:0"
    job_dir = tmp_path / "abcdefghijkl"
    job_dir.mkdir()
    lines = []
    for i in range(5):
        body = family_for(model).build_request(f"Customer: order {i} is late. Agent: refunded.",
                                               None, 100, 0.2)
        lines.append(json.dumps({"recordId": f"REC{i}", "modelInput": body,
                                 "modelOutput": invoke(model, "InvokeModel", body).body}))
    lines.append(json.dumps({"recordId": "REC9", "modelInput": {},
                             "error": {"errorCode": 400, "errorMessage": "bad input"}}))
    (job_dir / "shard-00000.jsonl.out").write_text("\n".join(lines) + "\n")
    (job_dir / "manifest.json.out").write_text(json.dumps(
        {"totalRecordCount": 6, "processedRecordCount": 6, "successRecordCount": 5,
         "errorRecordCount": 1, "inputTokenCount": 100, "outputTokenCount": 50}))
    assert main(["collect", "--job-output", str(job_dir), "--output", str(tmp_path / "o"),
                 "--sink", "jsonl", "--model-id", model]) == 0
    report = capsys.readouterr().out
    assert "5 succeeded, 1 errored" in report
    assert sorted(r["transcript_id"] for r in read_rows(tmp_path / "o" / "summaries")) == \
        [f"REC{i}" for i in range(5)]
    [failure] = read_rows(tmp_path / "o" / "failures")
    assert failure["record_id"] == "REC9" and failure["error_message"] == "bad input"


@pytest.mark.parametrize("argv, message", [
    (["run", "--output", "x"], "--input is required"),
    (["run", "--input", "x", "--output", "y", "--direct_running_mode", "multi_processing"],
     "multi_processing"),
    (["run", "--input", "x", "--output", "y", "--job-timeout-hours", "3"], "24 to 168"),
    (["run", "--input", "x", "--output", "y", "--backend", "aws"], "--bucket-uri is required"),
    (["jobs"], "serve-local"),
    (["frobnicate"], "unknown command"),
])
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) != 0
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert message in line and "Traceback" not in err


def test_jobs_and_collect_against_a_running_backend(local_backend_factory, tmp_path, capsys):
    """`jobs` lists a run's jobs with live counts; `collect` parses one of them from S3."""
    from tests.pipelines import local_config, summarize
    from transforms.core.quotas import Quotas

    local_backend = local_backend_factory(quotas=Quotas(min_records_per_job=1))
    config = local_config(local_backend)
    summaries, _ = summarize(transcripts(30), config, tmp_path / "run")
    assert main(["jobs", "--bedrock-endpoint-url", local_backend.bedrock_endpoint_url,
                 "--run-id", config.run_id]) == 0
    listing = capsys.readouterr().out
    [row] = [line for line in listing.splitlines() if config.run_id in line]
    assert "Completed" in row and row.split()[2:4] == ["30", "30"]
    job_id = summaries[0]["job_arn"].rsplit("/", 1)[-1]
    job_output = f"{config.base_uri}/{config.run_id}/output/{job_id}/"
    assert main(["collect", "--job-output", job_output, "--output", str(tmp_path / "c"),
                 "--sink", "jsonl"]) == 0
    assert "30 succeeded, 0 errored" in capsys.readouterr().out
    collected = read_rows(tmp_path / "c" / "summaries")
    assert sorted(r["record_id"] for r in collected) == sorted(r["record_id"] for r in summaries)
