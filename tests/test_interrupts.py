"""Ctrl-C (SIGINT) and SIGTERM: one line naming the run and the command to resume it, exit 130, no
traceback, no hang, a second signal ends the process at once; the rerun accounts for every input.

The interrupted CLI runs as a real subprocess, against a local backend that belongs to the test
and so outlives it (as a Bedrock on AWS does), and gets a real signal. The moment comes from the
kill-point hooks of tests/test_kill_points.py: the same wrapped functions, but where they SIGKILL
the process group, the prelude here sends the process one SIGINT or SIGTERM, as a user's Ctrl-C
or a `kill` would, and lets the run unwind. While jobs run, there is no hook: the test polls the
service until the jobs exist and are not finished, and signals from outside. The rerun is the
command the interrupted line printed, run in this process as the other CLI tests run it.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline import exit_codes
from pipeline.cli.console import ProgressDisplay
from pipeline.cli.interrupts import PROG, RunContext, interrupted_line, resume_argv
from pipeline.progress import RunProgress
from pipeline.local.jobs_store import Timing
from tests.jvm_services import flink_runner_args
from tests.test_kill_points import (AT_POINT, IN_FLIGHT, QUICK, QUOTAS, ROOT, RECORDS,
                                    _assert_exactly_once, _cli_args, _env, _input, _jobs)

# Defines die(where) for AT_POINT: the first thread at the point notes it and sends the process
# INTERRUPT_WITH; the others go on. Where die runs in the main thread, the KeyboardInterrupt is
# raised in it right there; with THEN_BLOCK the hook catches it and blocks for ever, as a cleanup
# that never ends, so that only a second signal can end the process. LEAVE_A_THREAD starts a
# thread that never ends first, as a runner's worker or a pool's call that never returns.
DIE_BY_SIGNAL = textwrap.dedent("""
    import os, signal, sys, threading
    point, note = os.environ["KILL_AT"], os.environ["KILL_NOTE"]
    signum = getattr(signal, os.environ["INTERRUPT_WITH"])
    once = threading.Lock()

    def die(where):
        if not once.acquire(blocking=False):
            return
        with open(note, "w") as f:
            f.write(where)
        if os.environ.get("LEAVE_A_THREAD"):
            threading.Thread(target=threading.Event().wait, name="never-ends").start()
        if not os.environ.get("THEN_BLOCK"):
            os.kill(os.getpid(), signum)
            return
        try:
            os.kill(os.getpid(), signum)
            threading.Event().wait()  # the interrupt lands here at the latest
        except KeyboardInterrupt:
            open(note + ".blocked", "w").close()
            threading.Event().wait()
""")
HOOK = DIE_BY_SIGNAL + AT_POINT
TIMEOUT = 600


# The line, from plain data.

def test_resume_argv_adds_the_run_id_only_when_missing() -> None:
    assert resume_argv(["--input", "a b.jsonl"], "r-1") == ["--input", "a b.jsonl", "--run-id", "r-1"]
    for given in (["--run-id", "r-1"], ["--run-id=r-1"], ["--run_id", "r-1"], ["--run_id=r-1"]):
        assert resume_argv(["--input", "x", *given], "r-1") == ["--input", "x", *given]


def test_the_line_on_aws_names_the_run_the_billing_and_the_commands() -> None:
    run = RunContext("r-1", "aws", "s3://b/runs/r-1/output/")
    argv = ["--input", "calls/*.jsonl", "--backend=aws", "--output", "my out", "--aws_region",
            "eu-west-1", "--bedrock-endpoint-url", "http://h:1", "--aws-profile", "p"]
    line = interrupted_line("SIGTERM", "run", argv, run)
    assert "\n" not in line
    assert line.startswith("interrupted (SIGTERM): run id r-1;")
    assert "goes on running and is billed" in line
    assert (f"resume with: {PROG} run --input 'calls/*.jsonl' --backend=aws --output 'my out' "
            f"--aws_region eu-west-1 --bedrock-endpoint-url http://h:1 --aws-profile p "
            f"--run-id r-1 (it adopts") in line
    assert (f"stop them with: {PROG} jobs --stop --run-id r-1 --backend=aws --aws_region "
            f"eu-west-1 --bedrock-endpoint-url http://h:1 --aws-profile p,") in line
    assert f"{PROG} collect --job-output s3://b/runs/r-1/output/<job id>/ --output DIR" in line


def test_the_line_with_the_embedded_backend_says_its_jobs_are_gone() -> None:
    line = interrupted_line("SIGINT", "run", ["--input", "x"], RunContext("r-1", "local", "-"))
    assert "the embedded local backend stopped with the run and its jobs with it" in line
    assert "billed" not in line and "collect" not in line
    assert line.endswith(f"run it again with: {PROG} run --input x --run-id r-1")


def test_the_line_before_the_run_id_and_for_the_other_commands() -> None:
    assert interrupted_line("SIGINT", "run", [], None) == \
        "interrupted (SIGINT) before the run started: no job was submitted"
    assert interrupted_line("SIGINT", "plan", [], None) == \
        "interrupted (SIGINT): plan stopped (it submits no jobs)"
    assert "incomplete" in interrupted_line("SIGINT", "collect", [], None)


# The progress display.

def test_the_progress_display_does_not_wait_for_a_listing_after_an_interrupt() -> None:
    """A listing that never answers (a service gone or slow) must not hold the interrupted line
    back: the poller is left to it. Without an interrupt the display still waits for it."""
    listing, release = threading.Event(), threading.Event()

    def list_jobs() -> list:
        listing.set()
        release.wait()
        return []

    display = ProgressDisplay(RunProgress("r-1", time.time()), list_jobs, "log", 3600)
    display.__enter__()
    assert listing.wait(TIMEOUT)
    ended = threading.Event()
    closer = threading.Thread(target=lambda: (display.__exit__(KeyboardInterrupt, None, None),
                                              ended.set()), daemon=True)
    closer.start()
    assert ended.wait(TIMEOUT), "the display waited for the listing after Ctrl-C"
    release.set()


# Through the CLI, against a backend that outlives the run.

def _without_run_id(argv: list[str]) -> list[str]:
    at = argv.index("--run-id")
    return argv[:at] + argv[at + 2:]


def _interrupted_run(argv: list[str], tmp_path: Path, point: str | None = None,
                     signame: str = "SIGINT", wait_for=None, **extra_env: str
                     ) -> subprocess.CompletedProcess:
    """Run the CLI until a signal ends it: at ``point`` by the hook, or from outside once
    ``wait_for(process)`` returned."""
    note = tmp_path / f"interrupted-at-{point}"
    if point:
        command = [sys.executable, "-c", HOOK, *argv]
        env = _env(KILL_AT=point, KILL_NOTE=str(note), INTERRUPT_WITH=signame, **extra_env)
    else:
        command, env = [sys.executable, "-m", "pipeline", *argv], _env()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        if wait_for is not None:
            wait_for(process)
            process.send_signal(getattr(signal, signame))
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if point:
        assert note.read_text().startswith(point), "the hook never reached its point"
    return subprocess.CompletedProcess(command, process.returncode, out, err)


# Beam's LOOPBACK worker reporting a data stream the Flink job server closed (it also does so
# when Flink ends a stage, before any Ctrl-C), in either of its two forms:
# - the data plane's log line or its reader thread's end, the trace (indented frames) and the
#   gRPC error it ends with;
# - the bundle that stream cut: the worker prints its chained trace (an empty queue, then
#   "Channel closed prematurely") and logs it once more after "Error processing instruction".
LOOPBACK_WORKER_TRACE = re.compile(
    r"(?:[^\n]*Failed to read inputs in the data plane\.|Exception in thread "
    r"read_grpc_client_inputs:)\nTraceback \(most recent call last\):\n"
    r"(?:[ \t].*\n|grpc\._channel\..*\n|>\n)*"
    r"|(?:[^\n]*Error processing instruction \d+\. Original traceback is\n)?"
    r"Traceback \(most recent call last\):\n"
    r"(?:(?:[ \t].*|_queue\.Empty|During handling of the above exception, another exception "
    r"occurred:|Traceback \(most recent call last\):|)\n)*?"
    r"RuntimeError: Channel closed prematurely\.\n")


def _the_line(run: subprocess.CompletedProcess, signame: str = "SIGINT") -> str:
    """The interrupted line, after checking the exit code and that it is the only such line."""
    assert run.returncode == exit_codes.INTERRUPTED, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, run.stderr[-3000:]
    assert lines[0].startswith(f"interrupted ({signame}): run id ")
    return lines[0]


def _resume(line: str, argv: list[str]) -> tuple[str, list[str]]:
    """(run id, the resume command's arguments): the printed command is the given one plus
    --run-id."""
    run_id = re.search(r"run id ([a-z0-9-]+);", line).group(1)
    command = re.search(r"(?:resume with|run it again with): (.*?)(?: \(it adopts|$)", line).group(1)
    words = shlex.split(command)
    assert words[:4] == [*PROG.split(), "run"]
    assert words[4:] == argv + ["--run-id", run_id]
    return run_id, words[3:]


def _rerun(resume: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(resume) == exit_codes.OK
    return capsys.readouterr().out


def _until_jobs_run(backend, count: int):
    """Waits (for the test's subprocess) until ``count`` jobs exist and none has finished."""
    def wait(process: subprocess.Popen) -> None:
        deadline = time.monotonic() + TIMEOUT
        while True:
            jobs = [j for j in _all_jobs(backend) if j["status"] not in ("Completed", "Failed")]
            if len(jobs) >= count:
                return
            assert process.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline, "the run never submitted its jobs"
            time.sleep(0.2)
    return wait


def _all_jobs(backend) -> list[dict]:
    pages = backend.boto3_client("bedrock").get_paginator(
        "list_model_invocation_jobs").paginate()
    return [j for page in pages for j in page["invocationJobSummaries"]]


# While jobs run, for the case that stops them: they stay queued for 30 s unless stopped, which
# leaves the stop command time on a loaded machine (the resumed run's retry jobs wait as long).
QUEUED = Timing(submitted=2.0, validating=2.0, scheduled=120.0, per_record=0.05, speed=4.0)


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("point, signame", [("upload", "SIGINT"), (None, "SIGINT"),
                                             (None, "SIGTERM"), ("harvest", "SIGINT"),
                                             ("sink", "SIGINT")],
                         ids=["sharding", "jobs-running", "jobs-running-sigterm", "harvest",
                              "write"])
def test_interrupt_then_the_printed_command_accounts_for_every_input(
        point, signame, local_backend_factory, tmp_path, capsys):
    """The SIGTERM case also runs the printed `jobs --stop` command before resuming."""
    stop = signame == "SIGTERM"
    timing = QUICK if point else QUEUED if stop else IN_FLIGHT
    backend = local_backend_factory(timing=timing, quotas=QUOTAS)
    input_path, ids = _input(tmp_path)
    output = tmp_path / "out"
    argv = _without_run_id(_cli_args(backend, input_path, output, "unused"))

    run = _interrupted_run(argv, tmp_path, point, signame,
                           wait_for=_until_jobs_run(backend, 2) if point is None else None)
    line = _the_line(run, signame)
    assert "goes on running and is billed" in line
    run_id, resume = _resume(line, argv[1:])
    after = _jobs(backend, run_id)
    if point == "upload":
        assert after == {}, "interrupted while sharding, before any job"
    elif point is None:
        assert len(after) == 2 and all(v[2] not in ("Completed", "Failed")
                                       for v in after.values())
    assert not (output / "summaries").exists(), "nothing is published by an interrupted run"
    if stop:
        _stop_jobs(line, run_id, backend, capsys)

    report = _rerun(resume, capsys)
    assert f"summaries       {RECORDS}" in report
    jobs = _assert_exactly_once(backend, run_id, output, ids, after)
    if stop:  # the stopped jobs answered nothing: their records went into retry jobs
        assert {n for n, v in jobs.items() if v[2] == "Stopped"} == set(after)
        assert len(jobs) > 2
    else:
        assert len(jobs) == 2


def _stop_jobs(line: str, run_id: str, backend, capsys: pytest.CaptureFixture[str]) -> None:
    """Run the `jobs --stop` command the line printed; the run's jobs are then stopping."""
    words = shlex.split(re.search(r"stop them with: (.*?), or parse", line).group(1))
    assert words[:5] == [*PROG.split(), "jobs", "--stop"]
    capsys.readouterr()
    assert main(words[3:]) == exit_codes.OK
    assert f"asked Bedrock to stop 2 job(s) of run {run_id}" in capsys.readouterr().err
    assert {v[2] for v in _jobs(backend, run_id).values()} <= {"Stopping", "Stopped"}


def test_jobs_stop_needs_a_run_id(capsys) -> None:
    assert main(["jobs", "--stop", "--backend", "aws"]) == exit_codes.USAGE
    assert "jobs --stop needs --run-id" in capsys.readouterr().err


@pytest.mark.timeout(900)
def test_a_second_sigint_ends_a_cleanup_that_hangs(local_backend_factory, tmp_path):
    """The first SIGINT comes right after the first job was created; the hook then blocks the
    unwinding for ever. The test's SIGINT, sent once the hook blocks, ends the process at once
    with the same one line (the first interrupt never got to print it)."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, _ = _input(tmp_path)
    argv = _cli_args(backend, input_path, tmp_path / "out", "twice")
    blocked = tmp_path / "interrupted-at-submit.blocked"

    def when_blocked(process: subprocess.Popen) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not blocked.exists():
            assert process.poll() is None, process.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the hook never blocked"
            time.sleep(0.2)

    note = tmp_path / "interrupted-at-submit"
    process = subprocess.Popen([sys.executable, "-c", HOOK, *argv], cwd=ROOT,
                               env=_env(KILL_AT="submit", KILL_NOTE=str(note),
                                        INTERRUPT_WITH="SIGINT", THEN_BLOCK="1"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        when_blocked(process)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    line = _the_line(subprocess.CompletedProcess([], process.returncode, "", err))
    assert line.startswith("interrupted (SIGINT): run id twice;")
    assert len(_jobs(backend, "twice")) == 1


@pytest.mark.timeout(900)
def test_a_thread_left_running_does_not_keep_the_process_alive(local_backend_factory, tmp_path):
    """A (non-daemon) thread that never ends would make Python's exit wait for ever; the
    interrupted process exits all the same. The thread is the hook's: a runner's own threads
    cannot be made to hang on purpose."""
    backend = local_backend_factory(timing=QUICK, quotas=QUOTAS)
    input_path, _ = _input(tmp_path)
    argv = _cli_args(backend, input_path, tmp_path / "out", "left-thread")
    line = _the_line(_interrupted_run(argv, tmp_path, "submit", LEAVE_A_THREAD="1"))
    assert line.startswith("interrupted (SIGINT): run id left-thread;")


@pytest.mark.timeout(900)
def test_interrupt_with_the_embedded_backend(tmp_path, capsys):
    """--backend local (the default): its jobs die with the run, and the line says so; the
    command it prints reruns the input from the start into the same folder."""
    input_path, ids = _input(tmp_path)
    output = tmp_path / "out"
    argv = ["run", "--input", str(input_path), "--output", str(output), "--sink", "jsonl",
            "--max-records-per-job", "15", "--min-records-per-job", "5"]
    run = _interrupted_run(argv, tmp_path, "submit")
    line = _the_line(run)
    assert "the embedded local backend stopped with the run and its jobs with it" in line
    assert "billed" not in line
    _, resume = _resume(line, argv[1:])

    _rerun(resume, capsys)
    rows = [json.loads(row) for part in sorted(output.glob("*/part-*.jsonl"))
            for row in part.read_text().splitlines()]
    assert sorted(r["transcript_id"] for r in rows) == ids


# The other commands: each interrupted by the hook right after a step of its real work.
OTHER_POINTS = {
    "plan": """
        from pipeline.cli import commands
        read = commands.read_stored_file
        def hooked(*args, **kwargs):
            yield from read(*args, **kwargs)
            die("plan")
        commands.read_stored_file = hooked
    """,
    "collect": """
        from pipeline.running import collect
        parse = collect.harvest_lines
        def hooked(*args, **kwargs):
            parsed = parse(*args, **kwargs)
            die("collect")
            return parsed
        collect.harvest_lines = hooked
    """,
    "jobs": """
        from transforms.core.bedrock import JobsClient
        listing = JobsClient.list
        def hooked(*args, **kwargs):
            yield from listing(*args, **kwargs)
            die("jobs")
        JobsClient.list = hooked
    """,
}


def _job_output(tmp_path: Path) -> Path:
    """A downloaded job output folder, as `collect` reads it."""
    from pipeline.local.responses import invoke
    from transforms.prepare.families import family_for

    model = "anthropic.claude-3-haiku-20240307-v1:0"
    folder = tmp_path / "abcdefghijkl"
    folder.mkdir()
    lines = []
    for i in range(3):
        body = family_for(model).build_request(f"Customer: order {i} is late.", None, 100, 0.2)
        lines.append(json.dumps({"recordId": f"REC{i}", "modelInput": body,
                                 "modelOutput": invoke(model, "InvokeModel", body).body}))
    (folder / "shard-00000.jsonl.out").write_text("\n".join(lines) + "\n")
    return folder


@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", sorted(OTHER_POINTS))
def test_the_other_commands_interrupted_exit_130_with_one_line(command, local_backend_factory,
                                                               tmp_path):
    input_path, _ = _input(tmp_path)
    argv = {"plan": ["--input", str(input_path)],
            "collect": ["--job-output", str(_job_output(tmp_path)), "--output",
                        str(tmp_path / "out"), "--sink", "jsonl"],
            "jobs": []}[command]
    if command == "jobs":
        backend = local_backend_factory()
        argv = ["--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
                "--aws-region", backend.region]
    hook = DIE_BY_SIGNAL + textwrap.dedent(OTHER_POINTS[command]) + textwrap.dedent("""
        from pipeline.__main__ import cli
        sys.exit(cli())
    """)
    note = tmp_path / "note"
    run = subprocess.run([sys.executable, "-c", hook, command, *argv], cwd=ROOT,
                         env=_env(KILL_AT=command, KILL_NOTE=str(note), INTERRUPT_WITH="SIGINT"),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert note.read_text() == command
    assert run.returncode == exit_codes.INTERRUPTED, run.stderr
    assert "Traceback" not in run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted (SIGINT): {command} stopped")


@pytest.mark.timeout(1200)
def test_ctrl_c_on_a_flink_run_prints_the_one_line(local_backend_factory, tmp_path):
    """--runner FlinkRunner (its own job server, a JVM in the CLI's process group; LOOPBACK
    workers in the CLI process), Ctrl-C while a job runs. A terminal sends SIGINT to the whole
    foreground process group, so the test does too: Beam's handler stops the job server, and the
    run failed with the closed channel's gRPC error (exit 1) before this project's handler ran."""
    backend = local_backend_factory(timing=IN_FLIGHT, quotas=QUOTAS)
    input_path, _ = _input(tmp_path)
    argv = _without_run_id(_cli_args(backend, input_path, tmp_path / "out", "unused")) + (
        flink_runner_args())
    # Into a file, not a pipe: the job server's log would fill a pipe nobody reads yet, and the
    # run would block on it.
    with open(tmp_path / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], cwd=ROOT,
                                   env=_env(), stdout=subprocess.DEVNULL, stderr=stderr,
                                   start_new_session=True)
        try:
            _until_jobs_run(backend, 1)(process)
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=TIMEOUT)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    err = (tmp_path / "stderr").read_text()
    # The one trace the README allows here: Beam's LOOPBACK worker logs the bundle the stopped
    # job server cut (when its stream breaks before the signal reached this process's handler).
    err = LOOPBACK_WORKER_TRACE.sub("", err)
    line = _the_line(subprocess.CompletedProcess(argv, process.returncode, "", err))
    assert "goes on running and is billed" in line
    assert not [row for row in err.splitlines() if row.startswith("error:")], err[-3000:]
