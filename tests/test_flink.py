"""The whole pipeline on a real Flink (Beam's Flink job server on an embedded Flink 1.19,
parallelism 2), batch and streaming, LOOPBACK and EXTERNAL workers, through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.__main__ import main
from tests.jvm_services import flink_pipeline_args, flink_runner_args
from tests.pipelines import read_rows, transcripts
from tests.test_streaming import BATCHES, PER_BATCH, files_arriving

flink_timeout = pytest.mark.timeout(300)


def _input(path: Path, count: int) -> Path:
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(count)))
    return path


def _run(argv: list[str]) -> None:
    assert main(argv + ["--debug"]) == 0


@flink_timeout
def test_batch_on_flink_runner(tmp_path, capsys):
    """As a user runs it: --runner FlinkRunner with the job-server jar the Makefile built."""
    out = tmp_path / "out"
    _run(["run", "--input", str(_input(tmp_path / "in.jsonl", 60)), "--output", str(out),
          "--sink", "jsonl", "--max-records-per-job", "25", "--min-records-per-job", "10",
          "--max-concurrent-jobs", "2", "--environment_type", "LOOPBACK"] + flink_runner_args())
    report = capsys.readouterr().out
    assert "summaries       60" in report and "3 submitted, 3 finished" in report
    summaries = read_rows(out / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in transcripts(60))
    assert len({r["job_arn"] for r in summaries}) == 3


@flink_timeout
def test_batch_on_flink_with_external_worker_pool(tmp_path, flink_job_endpoint, sdk_worker_pool):
    out = tmp_path / "out"
    _run(["run", "--input", str(_input(tmp_path / "in.jsonl", 20)), "--output", str(out),
          "--sink", "parquet", "--min-records-per-job", "5"]
         + flink_pipeline_args(flink_job_endpoint, worker_pool=sdk_worker_pool))
    import pyarrow.parquet as pq
    ids = pq.read_table(out / "summaries").column("transcript_id").to_pylist()
    assert sorted(ids) == sorted(t.id for t in transcripts(20))


@flink_timeout
def test_streaming_on_flink(tmp_path, flink_job_endpoint):
    with files_arriving(tmp_path / "inbox") as inbox:
        _run(["run", "--input", str(inbox / "*.jsonl"), "--output", str(tmp_path / "out"),
              "--sink", "jsonl", "--window-seconds", "3", "--watch-interval-seconds", "1",
              "--watch-seconds", "45", "--min-records-per-job", "1",
              "--environment_type", "LOOPBACK"]
             + flink_pipeline_args(flink_job_endpoint, streaming=True))
    summaries = read_rows(tmp_path / "out" / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == \
        sorted(t.id for t in transcripts(BATCHES * PER_BATCH, prefix="live"))
    assert len({r["window_start"] for r in summaries}) >= 2
