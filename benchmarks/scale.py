"""Rows 3, 5 and 7: transcripts to shards on the DirectRunner, its peak memory, and a whole run.

Row 3 runs ``python -m pipeline run`` on the DirectRunner against a local backend in its own
process (``serve-local``), from start until every job is planned (its shards are on S3), and
compares the wall time with a plain single-process script doing the same work the way the AWS
samples do (read JSONL, build requests, pack into quota-sized files, write them to S3).
Row 5 is the pipeline process's peak RSS in that run, at two sizes. Row 7 is a whole CLI run
on the embedded local backend, its wall time split by the log lines that mark the stages.

    .venv/bin/python -m benchmarks.scale [--records N] [--small N] [--end-to-end N]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import boto3

from benchmarks import data
from benchmarks.report import Row, print_rows
from benchmarks.shard_memory import serve_local
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from transforms.prepare.records import DEFAULT_SYSTEM, DEFAULT_TEMPLATE, PLACEHOLDER

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
RECORDS_PER_FILE, RECORDS_PER_JOB = 10_000, 50_000
FLINK_JAR = Path(os.environ.get("JVM_CACHE", ".cache/jvm")).resolve() / "flink-job-server.jar"
QUOTA_FLAGS = ["--max-records-per-file", str(RECORDS_PER_FILE),
               "--max-records-per-job", str(RECORDS_PER_JOB), "--min-records-per-job", "1"]


class Watched:
    """A child process whose stderr lines are timestamped as they arrive; ``stop_when`` ends it
    early (SIGTERM) once a line makes it true."""

    def __init__(self, argv: list[str], env: dict[str, str],
                 stop_when: Callable[[list[tuple[float, str]]], bool] | None = None) -> None:
        self.started = time.perf_counter()
        self.lines: list[tuple[float, str]] = []
        # A session of its own: stopping it stops what it started too (Flink's job server).
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, start_new_session=True)
        self._stop_when = stop_when
        self.stopped_early = False
        self.others: dict[int, float] = {}  # pid -> peak RSS (MiB) of what it started
        self.own_peak: float | None = None  # its own peak RSS (MiB), read when stopped
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter() - self.started, line.rstrip("\n")))
            if self._stop_when is not None and not self.stopped_early and self._stop_when(self.lines):
                self.stop()

    def at_match(self, pattern: str) -> float | None:
        """When the last line matching the regular expression ``pattern`` came."""
        hits = [t for t, line in self.lines if re.search(pattern, line)]
        return hits[-1] if hits else None

    def running(self) -> bool:
        """Whether the process still writes to its stderr (it is reaped only by ``wait``)."""
        return self._reader.is_alive()

    def stop(self) -> None:
        """End the process and every process it started, noting first the peak RSS of each
        process it started (``others``)."""
        if not self.stopped_early:
            self.stopped_early = True
            peaks = session_peak_rss(self.proc.pid)
            # Its own peak, read here: wait4's would include the children it reaped on exit.
            self.own_peak = peaks.pop(self.proc.pid, None)
            self.others = peaks
            self.lines.append((time.perf_counter() - self.started, "(stopped by the benchmark)"))
            os.killpg(self.proc.pid, signal.SIGTERM)

    def wait(self) -> tuple[float, float, int]:
        """(seconds until the stop line or exit, peak RSS in MiB, exit status)."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        ended = time.perf_counter() - self.started
        self.proc.returncode = status
        self._reader.join()
        last = self.lines[-1][0] if self.stopped_early else ended
        return last, self.own_peak or usage.ru_maxrss / 1024, status

    def at(self, text: str, last: bool = False) -> float | None:
        """When the first (or last) line containing ``text`` came."""
        hits = [t for t, line in self.lines if text in line]
        return (hits[-1] if last else hits[0]) if hits else None


def to_shards(input_path: Path, count: int, workdir: Path, flink_parallelism: int | None = None,
              runner: str | None = None) -> tuple[float, float, dict[int, float]]:
    """The CLI until every job is planned: (seconds, peak RSS MiB of the pipeline process, the
    peak RSS of each process the CLI started by pid). The backend runs in its own process, so
    its memory is not counted.

    ``runner`` is a local --runner (the CLI chooses one when None).

    On the DirectRunner the end is the last "planned" log line. On Flink
    (``flink_parallelism``) the workers log, not the CLI, so there it is when the last job
    exists on the backend (submission follows planning within a poll), and the memory is the
    largest peak of the Python SDK workers, where the pipeline's code runs.
    """
    jobs = math.ceil(count / RECORDS_PER_JOB)
    with serve_local() as (s3_url, bedrock_url, exports), contextlib.ExitStack() as stack:
        env = {**os.environ, **exports, "AWS_DEFAULT_REGION": "us-east-1"}
        argv = [sys.executable, "-m", "pipeline", "run", "--input", str(input_path),
                "--output", tempfile.mkdtemp(prefix="out-", dir=workdir), "--backend", "aws",
                "--aws-region", "us-east-1", "--s3_endpoint_url", s3_url,
                "--bedrock-endpoint-url", bedrock_url, "--bedrock-runtime-endpoint-url",
                bedrock_url, "--bucket-uri", f"s3://{DEFAULT_BUCKET}/bench-{count}",
                "--role-arn", SERVICE_ROLE_ARN, "--model-id", MODEL, *QUOTA_FLAGS]
        if flink_parallelism is None:
            run = Watched(argv + ([f"--runner={runner}"] if runner else []), env,
                          lambda lines: sum(" planned " in line for _, line in lines) >= jobs)
        else:
            # The workers reach the backend with their own credential chain: the pool's env.
            pool, pool_pid = stack.enter_context(worker_pool(env))
            run = Watched(argv + [
                "--runner=FlinkRunner", "--flink_master=[local]",
                f"--flink_job_server_jar={FLINK_JAR}", f"--parallelism={flink_parallelism}",
                f"--sdk_worker_parallelism={flink_parallelism}", "--environment_type=EXTERNAL",
                f"--environment_config={pool}", "--job_server_jvm_properties=-Xmx1g"], env)
            bedrock = boto3.client("bedrock", endpoint_url=bedrock_url, region_name="us-east-1",
                                   aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                                   aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
            while run.running():
                listed = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
                if len(listed) >= jobs:
                    workers_rss = workers_peak_rss(pool_pid)
                    run.stop()
                    break
                time.sleep(0.5)
        seconds, rss, _ = run.wait()
    if not run.stopped_early:
        tail = "\n".join(line for _, line in run.lines[-15:])
        raise RuntimeError(f"the pipeline ended before planning {jobs} jobs:\n{tail}")
    return seconds, rss if flink_parallelism is None else workers_rss, run.others


def _peaks_in_group(field: int, leader: int) -> dict[int, float]:
    """The peak RSS (VmHWM), in MiB, by pid, of the processes whose /proc stat ``field`` (counted
    after the command name: 0 state, 1 ppid, 2 pgrp, 3 session) is ``leader``."""
    peaks: dict[int, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[field]) != leader:
                continue
            status = (proc / "status").read_text()
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(proc.name)] = int(line.split()[1]) / 1024
    return peaks


def session_peak_rss(leader: int) -> dict[int, float]:
    """The peak RSS (VmHWM), in MiB, of every process in ``leader``'s session, by pid.

    Args:
        leader: A process that leads its own session (``start_new_session``).
    """
    return _peaks_in_group(3, leader)


def workers_peak_rss(pool_pid: int) -> float:
    """The largest peak RSS (VmHWM), in MiB, of the processes a worker pool started.

    Args:
        pool_pid: The pool's pid; it leads its own process group, which its workers join.
    """
    workers = _peaks_in_group(2, pool_pid)
    workers.pop(pool_pid, None)
    return max(workers.values(), default=0.0)


def plain_script(input_path: Path, count: int) -> float:
    """The baseline: one process, the AWS samples' way (stdlib json, files of a fixed record
    count, put_object per file), writing to a local S3 like the pipeline's. Seconds."""
    with serve_local() as (s3_url, _, exports):
        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                          aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        started = time.perf_counter()
        lines: list[str] = []
        file_no = 0

        def flush() -> None:
            nonlocal file_no, lines
            job, part = divmod(file_no, RECORDS_PER_JOB // RECORDS_PER_FILE)
            s3.put_object(Bucket=DEFAULT_BUCKET, Key=f"plain/job-{job}/part-{part}.jsonl",
                          Body="".join(lines).encode("utf-8"))
            file_no, lines = file_no + 1, []

        with open(input_path, encoding="utf-8") as source:
            for number, line in enumerate(source):
                row = json.loads(line)
                text = "\n".join(f"{t['speaker']}: {t['text']}" for t in row["turns"])
                body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 512,
                        "temperature": 0.2, "system": DEFAULT_SYSTEM,
                        "messages": [{"role": "user", "content": [
                            {"type": "text", "text": DEFAULT_TEMPLATE.replace(PLACEHOLDER, text)}]}]}
                lines.append(json.dumps({"recordId": f"R{number:011d}", "modelInput": body},
                                        ensure_ascii=False) + "\n")
                if len(lines) == RECORDS_PER_FILE:
                    flush()
        if lines:
            flush()
        return time.perf_counter() - started


def shards_rows(records: int, small: int, workdir: Path) -> list[Row]:
    """Rows 3 and 5."""
    big_input, small_input = workdir / f"calls-{records}.jsonl", workdir / f"calls-{small}.jsonl"
    size_mb = data.write_jsonl(big_input, records) / 1e6
    data.write_jsonl(small_input, small)
    plain = plain_script(big_input, records)
    pipeline_s, big_rss, _ = to_shards(big_input, records, workdir)
    _, small_rss, _ = to_shards(small_input, small, workdir)
    ratio = pipeline_s / plain
    row3 = Row(3, f"{records:,} transcripts ({size_mb:,.0f} MB) to shards, DirectRunner",
               "plain single-process script", pipeline_s, plain, "s", "<= 2x its wall time",
               ratio <= 2, ratio=ratio,
               note="pipeline: from start until the last job is planned (its shards on S3)")
    growth = big_rss / small_rss
    row5 = Row(5, f"peak RSS of the pipeline process (DirectRunner) at {records:,}",
               f"the same at {small:,}", big_rss, small_rss, "MiB",
               "say which runner keeps it bounded", None, ratio=growth,
               note=(f"{growth:.1f}x the memory for {records / small:.0f}x the records: the "
                     f"DirectRunner (in-memory FnApiRunner) holds each stage's whole output "
                     f"between stages, so its peak grows with the input. On Flink, which "
                     f"streams bundles between workers, the SDK worker's peak at two sizes is "
                     f"in row 4's note"),
               details={"input_mb": size_mb})
    return [row3, row5]


@contextlib.contextmanager
def worker_pool(env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """A Python SDK worker pool (each worker its own process) for EXTERNAL environments:
    (its address, its pid).

    Args:
        env: The workers' environment (their credentials).
    """
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    # The pool starts each worker as plain `python`: this interpreter's folder goes first on
    # PATH so the workers get this environment.
    env = {**env, "PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                           env.get("PATH", "")])}
    pool = subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                             f"--service_port={port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("localhost", port)) == 0:
                    break
            if time.monotonic() > deadline or pool.poll() is not None:
                raise RuntimeError("the SDK worker pool did not start")
            time.sleep(0.5)
        yield f"localhost:{port}", pool.pid
    finally:
        os.killpg(pool.pid, signal.SIGTERM)
        pool.wait()


def flink_row(records: int, workdir: Path) -> Row:
    """Row 4: the same as row 3 on a real (embedded) Flink, parallelism 2 against 1; and the
    SDK workers' peak memory at parallelism 1 for a tenth of the records against all of them."""
    if not FLINK_JAR.is_file():
        return Row(4, "transcripts to shards on Flink, parallelism 2", "parallelism 1",
                   None, None, "s", ">= 1.6x faster", False,
                   note=f"NOT MEASURED: {FLINK_JAR} is missing; `make jvm-jars` builds it")
    input_path, small_path = workdir / f"flink-{records}.jsonl", workdir / "flink-small.jsonl"
    small = max(1, records // 10)
    data.write_jsonl(input_path, records, seed=4)
    data.write_jsonl(small_path, small, seed=4)
    runs = {p: to_shards(input_path, records, workdir, flink_parallelism=p) for p in (1, 2)}
    _, small_rss, _ = to_shards(small_path, small, workdir, flink_parallelism=1)
    seconds = {p: run[0] for p, run in runs.items()}
    speedup = seconds[1] / seconds[2]
    return Row(4, f"{records:,} transcripts to shards on Flink, parallelism 2", "parallelism 1",
               seconds[2], seconds[1], "s", ">= 1.6x faster", speedup >= 1.6, ratio=speedup,
               note=(f"{records:,} records to fit the time budget (each run starts its own "
                     f"embedded Flink); until the last job exists on the backend; SDK workers "
                     f"are processes of a worker pool, one per unit of parallelism. Peak RSS of "
                     f"the SDK worker at parallelism 1: {runs[1][1]:.0f} MiB at {records:,} "
                     f"records, {small_rss:.0f} MiB at {small:,}"),
               details={"worker_peak_mib": runs[1][1], "small_records": small,
                        "small_worker_peak_mib": small_rss})


def end_to_end_row(records: int, workdir: Path) -> Row:
    """Row 7: a whole CLI run on the embedded local backend, its wall time split by stage."""
    input_path = workdir / f"e2e-{records}.jsonl"
    data.write_jsonl(input_path, records, seed=7)
    run = Watched([sys.executable, "-m", "pipeline", "run", "--input", str(input_path),
                   "--output", str(workdir / "e2e-out"), "--model-id", MODEL, *QUOTA_FLAGS],
                  dict(os.environ))
    total, _, status = run.wait()
    planned, harvested = run.at(" planned ", last=True), run.at(" harvested ", last=True)
    ended = run.at_match(r"\): (Completed|PartiallyCompleted|Failed|Stopped|Expired),")
    if status != 0 or None in (planned, harvested, ended):
        tail = "\n".join(line for _, line in run.lines[-15:])
        raise RuntimeError(f"the end-to-end run failed (status {status}):\n{tail}")
    split = {"prepare": planned, "wait": ended - planned, "harvest": harvested - ended,
             "sink": total - harvested}
    return Row(7, f"{records:,} transcripts end to end (CLI, embedded local backend)", "",
               total, None, "s", "wall time split", None,
               note=" / ".join(f"{k} {v:.1f} s" for k, v in split.items())
               + " (cut at the log lines of the last job planned, the last job ended and the "
                 "last harvested; sink includes the report and the shutdown)",
               details=split)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--end-to-end", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        print_rows(shards_rows(args.records, args.small, Path(tmp))
                   + [end_to_end_row(args.end_to_end, Path(tmp))])


if __name__ == "__main__":
    main()
