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
from dataclasses import dataclass
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


def flink_flags(master: str, parallelism: int, sdk_parallelism: int,
                workers: list[str]) -> list[str]:
    """The CLI's flags for a Flink run whose SDK workers the flags ``workers`` choose."""
    return ["--runner=FlinkRunner", f"--flink_master={master}",
            f"--flink_job_server_jar={FLINK_JAR}", f"--parallelism={parallelism}",
            f"--sdk_worker_parallelism={sdk_parallelism}", *workers,
            "--job_server_jvm_properties=-Xmx1g"]


def bedrock_client(bedrock_url: str, exports: dict[str, str]):
    """A Bedrock client of serve-local's backend, with the key pair it exported."""
    return boto3.client("bedrock", endpoint_url=bedrock_url, region_name="us-east-1",
                        aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])


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
        self._stopping = threading.Lock()  # the line reader and a memory watch may both stop it
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
        with self._stopping:
            if self.stopped_early:
                return
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


class MemoryCapReached(Exception):
    """A run stopped because its processes together held more than the benchmark's cap.

    Args:
        seconds: When it was stopped.
        peak_mib: The peak RSS of all its processes, summed, when it was stopped.
    """

    def __init__(self, seconds: float, peak_mib: float) -> None:
        super().__init__(f"stopped at {seconds:.0f} s holding {peak_mib:,.0f} MiB")
        self.seconds, self.peak_mib = seconds, peak_mib


def _stop_above(run: Watched, cap_mib: float, tripped: list[float]) -> None:
    """Stop ``run`` once its processes' resident memory, summed, passes ``cap_mib`` (noted in
    ``tripped``): a run that would take the machine's memory is cut short, not swapped."""
    while run.running() and not run.stopped_early:
        held = sum(_peaks_in_group(3, run.proc.pid, "VmRSS:").values())
        if held > cap_mib:
            tripped.append(held)
            run.stop()
            return
        time.sleep(0.5)


def to_shards(input_path: Path, count: int, workdir: Path, flink_parallelism: int | None = None,
              runner: str | None = None, rss_cap_mib: float | None = None
              ) -> tuple[float, float, dict[int, float]]:
    """The CLI until every job is planned: (seconds, peak RSS MiB of the pipeline process, the
    peak RSS of each process the CLI started by pid). The backend runs in its own process, so
    its memory is not counted.

    ``runner`` is a local --runner (the CLI chooses one when None).

    On the DirectRunner the end is the last "planned" log line. On Flink
    (``flink_parallelism``) the workers log, not the CLI, so there it is when the last job
    exists on the backend (submission follows planning within a poll), and the memory is the
    largest peak of the Python SDK workers, where the pipeline's code runs.

    With ``rss_cap_mib`` (local runners only), a run whose processes hold more than that much
    resident memory together is stopped and ``MemoryCapReached`` raised.
    """
    jobs = math.ceil(count / RECORDS_PER_JOB)
    tripped: list[float] = []
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
            if rss_cap_mib is not None:
                threading.Thread(target=_stop_above, args=(run, rss_cap_mib, tripped),
                                 daemon=True).start()
        else:
            # The workers reach the backend with their own credential chain: the pool's env.
            pool, pool_pid = stack.enter_context(worker_pool(env))
            run = Watched(argv + flink_flags("[local]", flink_parallelism, flink_parallelism,
                                             ["--environment_type=EXTERNAL",
                                              f"--environment_config={pool}"]),
                          env)
            bedrock = bedrock_client(bedrock_url, exports)
            while run.running():
                listed = bedrock.list_model_invocation_jobs()["invocationJobSummaries"]
                if len(listed) >= jobs:
                    workers_rss = workers_peak_rss(pool_pid)
                    run.stop()
                    break
                time.sleep(0.5)
        seconds, rss, _ = run.wait()
    if tripped:
        raise MemoryCapReached(seconds, rss + sum(run.others.values()))
    if not run.stopped_early:
        tail = "\n".join(line for _, line in run.lines[-15:])
        raise RuntimeError(f"the pipeline ended before planning {jobs} jobs:\n{tail}")
    return seconds, rss if flink_parallelism is None else workers_rss, run.others


def _peaks_in_group(field: int, leader: int, status_field: str = "VmHWM:") -> dict[int, float]:
    """The peak RSS (VmHWM), in MiB, by pid, of the processes whose /proc stat ``field`` (counted
    after the command name: 0 state, 1 ppid, 2 pgrp, 3 session) is ``leader``; with
    ``status_field`` "VmRSS:", their resident memory now instead."""
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
            if line.startswith(status_field):
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


@dataclass
class Prepared:
    """One size's run to the last planned job on the default local runner, and its baseline.

    Args:
        records: Transcripts in the input.
        input_mb: The input's size in MB.
        plain_s: The plain script's seconds on the same input.
        seconds: The CLI's seconds until its last job was planned, or until it was stopped at
            the memory cap.
        peak_mib: The peak RSS of every process the CLI's run started (its own included),
            summed.
        capped: Whether the run was stopped at the memory cap before its last job was planned.
    """

    records: int
    input_mb: float
    plain_s: float
    seconds: float
    peak_mib: float
    capped: bool = False


def shards_rows(records: int, small: int, workdir: Path,
                keep: dict[int, Prepared] | None = None) -> list[Row]:
    """Rows 3 and 5; the run at ``records`` is kept in ``keep`` for rows 11-13."""
    big_input, small_input = workdir / f"calls-{records}.jsonl", workdir / f"calls-{small}.jsonl"
    size_mb = data.write_jsonl(big_input, records) / 1e6
    data.write_jsonl(small_input, small)
    plain = plain_script(big_input, records)
    pipeline_s, big_rss, big_others = to_shards(big_input, records, workdir)
    if keep is not None:
        keep[records] = Prepared(records, size_mb, plain, pipeline_s,
                                 big_rss + sum(big_others.values()))
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
               note=(f"{growth:.1f}x the memory for {records / small:.0f}x the records, "
                     f"{_per_record(big_rss, small_rss, records, small)}: the DirectRunner "
                     f"(in-memory FnApiRunner) keeps each stage's whole output for the next, "
                     f"so the CLI spills bounded files' transcripts and plans them on local disk "
                     f"(SQLite): what it keeps between stages is a few paths and the plan, not "
                     f"the records (transforms/summarize_files.py, transforms/sighting_plan.py). "
                     f"On Flink, which streams bundles between workers, the SDK worker's peak "
                     f"at two sizes is in row 4's note"),
               details={"input_mb": size_mb})
    return [row3, row5]


MEMORY_GOAL_MIB, TIME_GOAL, GROWTH_GOAL = 2048, 3.0, 1.5


def _per_record(big_mib: float, small_mib: float, big: int, small: int) -> str:
    """How much more memory each record past the smaller run's cost, as words."""
    per_record = (big_mib - small_mib) * 2**20 / (big - small)
    if per_record < 0:  # the larger run's peak was lower: nothing grows with the records
        return f"no more memory a record ({-per_record:,.0f} bytes fewer)"
    return f"{per_record:,.0f} bytes a record more"


def cli_to_shards(path: Path, records: int, workdir: Path,
                  rss_cap_mib: float | None = None) -> tuple[float, float, bool]:
    """The CLI on the default local runner until its last job is planned or it holds more than
    ``rss_cap_mib``: (seconds, peak MiB of all its processes summed, whether it was stopped at
    the cap). Printed at once: a long benchmark stopped half way still told something."""
    try:
        seconds, own, others = to_shards(path, records, workdir, rss_cap_mib=rss_cap_mib)
        peak, capped = own + sum(others.values()), False
    except MemoryCapReached as cap:
        seconds, peak, capped = cap.seconds, cap.peak_mib, True
    print(f"    {records:,} transcripts: {seconds:.0f} s, {peak:,.0f} MiB"
          f"{' (stopped at the cap)' if capped else ''}", flush=True)
    return seconds, peak, capped


def head(path: Path, lines: int, to: Path) -> int:
    """Copy the first ``lines`` lines of ``path`` to ``to``; returns the bytes copied. The
    generator is seeded and sequential, so the first N of a larger input are what
    ``data.write_jsonl(to, N)`` would write, without generating them again."""
    written = 0
    with open(path, "rb") as source, open(to, "wb") as out:
        for _, line in zip(range(lines), source):
            written += out.write(line)
    return written


def million_rows(big: int, mid: int, workdir: Path, kept: dict[int, Prepared],
                 rss_cap_mib: float) -> list[Row]:
    """Rows 11-13: ``big`` (1,000,000) transcripts to the last planned job on the default local
    runner: the peak RSS of every process the run starts, the wall time against the plain
    script, and the memory's growth from ``mid`` (200,000; row 3's run when it ran) to ``big``.

    A run whose processes pass ``rss_cap_mib`` together is stopped there: its memory figure is
    then a lower bound, and so are its time and growth.
    """
    big_path, mid_path = workdir / f"calls-{big}.jsonl", workdir / f"calls-{mid}.jsonl"
    try:
        big_mb = data.write_jsonl(big_path, big) / 1e6
        large = Prepared(big, big_mb, 0.0, *cli_to_shards(big_path, big, workdir, rss_cap_mib))
        small = kept.get(mid)
        if small is None:
            mid_mb = head(big_path, mid, mid_path) / 1e6
            small = Prepared(mid, mid_mb, 0.0, *cli_to_shards(mid_path, mid, workdir))
            small.plain_s = plain_script(mid_path, mid)
        large.plain_s = plain_script(big_path, big)
        print(f"    plain script: {large.plain_s:.1f} s at {big:,}, {small.plain_s:.1f} s at "
              f"{mid:,}", flush=True)
    finally:
        big_path.unlink(missing_ok=True)
        mid_path.unlink(missing_ok=True)
    cut = (f"stopped at {large.seconds:.0f} s, its processes holding {large.peak_mib:,.0f} MiB, "
           f"over the benchmark's {rss_cap_mib:,.0f} MiB cap, before its last job was planned"
           if large.capped else "")
    why_memory = (f"the FnApiRunner runs one stage at a time and keeps each stage's whole "
                  f"output in memory for the next; with the spills and the plan on disk "
                  f"that is a few paths and the plan, "
                  f"{_per_record(large.peak_mib, small.peak_mib, big, mid)}")
    memory = Row(11, f"{big:,} transcripts ({large.input_mb:,.0f} MB) to the last planned job, "
                     f"default local runner: peak RSS of every process",
                 f"the same at {mid:,}", large.peak_mib, small.peak_mib, "MiB",
                 f"<= {MEMORY_GOAL_MIB:,} MiB",
                 large.peak_mib <= MEMORY_GOAL_MIB and not large.capped,
                 note="; ".join(part for part in (
                     cut, why_memory if large.capped or large.peak_mib > MEMORY_GOAL_MIB else "",
                     f"{small.peak_mib:,.0f} MiB at {mid:,}") if part),
                 details={"capped": large.capped, "cap_mib": rss_cap_mib,
                          "seconds": large.seconds, "input_mb": large.input_mb})
    ratio = large.seconds / large.plain_s
    small_ratio = small.seconds / small.plain_s
    if large.capped:  # the time until the cut is a lower bound of the whole run's
        holds = False if ratio > TIME_GOAL else None
        note = (f"not reached: {cut}; that is already {ratio:.1f}x the plain script. "
                f"At {mid:,}: {small.seconds:.0f} s against {small.plain_s:.1f} s, "
                f"{small_ratio:.1f}x")
        figure = None
    else:
        holds, figure = ratio <= TIME_GOAL, large.seconds
        note = (f"at {mid:,}: {small.seconds:.0f} s against {small.plain_s:.1f} s, "
                f"{small_ratio:.1f}x")
    time_row = Row(12, f"{big:,} transcripts to the last planned job, default local runner",
                   "plain single-process script", figure, large.plain_s, "s",
                   f"<= {TIME_GOAL:g}x its wall time", holds,
                   ratio=None if large.capped else ratio, note=note,
                   details={"mid_seconds": small.seconds, "mid_plain_seconds": small.plain_s,
                            "seconds_until_stopped": large.seconds if large.capped else None})
    growth = large.peak_mib / small.peak_mib
    growth_holds = growth <= GROWTH_GOAL if not large.capped else (
        False if growth > GROWTH_GOAL else None)
    if not large.capped:
        growth_note = f"{growth:.2f}x the memory for {big / mid:.0f}x the records"
    elif growth >= 1:
        growth_note = f"at least {growth:.2f}x ({cut})"
    else:  # stopped below the smaller run's peak: no bound at all
        growth_note, growth = f"no growth figure: {cut}, below the {mid:,} run's peak", None
    growth_row = Row(13, f"peak RSS growth from {mid:,} to {big:,} transcripts",
                     f"{mid:,}", large.peak_mib, small.peak_mib, "MiB",
                     f"<= {GROWTH_GOAL:g}x", growth_holds, ratio=growth, note=growth_note)
    return [memory, time_row, growth_row]


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
