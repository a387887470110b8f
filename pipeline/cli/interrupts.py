"""Ctrl-C (SIGINT) and SIGTERM in the CLI: one line saying what was left behind, exit code 130.

The first signal raises KeyboardInterrupt in the main thread, as Python does for Ctrl-C (SIGTERM
too, which would otherwise end the process without running any ``finally``), so the run's
cleanup still happens: the ``finally`` blocks that hold the output folder and the local backend
run. The CLI's entry point catches it, prints ``interrupted_line`` and exits 130. A second
signal prints that line, if it has not been printed yet, and ends the process at once: a cleanup
that hangs never keeps the user waiting.

The line is built from plain data (no Beam, no signals) and tested directly.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pipeline.exit_codes import INTERRUPTED

if TYPE_CHECKING:
    from transforms.config import BatchConfig

PROG = "python -m pipeline"
SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RUN_ID_FLAGS = ("--run-id", "--run_id")
# The `run` flags `jobs` needs to reach the same Bedrock.
_JOBS_FLAGS = ("backend", "aws-region", "aws-profile", "bedrock-endpoint-url")


@dataclass(frozen=True)
class RunContext:
    """What the interrupted line of a `run` names, known once the run id is.

    Args:
        run_id: The run's id (given or generated).
        backend: "local" (the embedded backend, gone with the run) or "aws".
        job_output: Where the run's jobs write their results (``<this><job id>/``).
    """

    run_id: str
    backend: str
    job_output: str


def resume_argv(argv: list[str], run_id: str) -> list[str]:
    """The command's arguments with ``--run-id run_id``, added unless already there.

    Args:
        argv: The arguments after the command name, as given.
        run_id: The run's id.
    """
    given = any(arg in _RUN_ID_FLAGS or arg.startswith(tuple(f + "=" for f in _RUN_ID_FLAGS))
                for arg in argv)
    return list(argv) if given else [*argv, "--run-id", run_id]


def jobs_argv(argv: list[str]) -> list[str]:
    """The flags of ``argv`` that tell `jobs` where the run's Bedrock is, in their given form.

    Args:
        argv: A `run`'s arguments, as given.
    """
    names = {f"--{name}" for name in _JOBS_FLAGS} | {
        f"--{name.replace('-', '_')}" for name in _JOBS_FLAGS}
    kept: list[str] = []
    for at, arg in enumerate(argv):
        name, equals, _ = arg.partition("=")
        if name in names:
            kept += [arg] if equals else argv[at:at + 2]
    return kept


def interrupted_line(signal_name: str, command: str, argv: list[str],
                     run: RunContext | None) -> str:
    """The one line printed when ``command`` is interrupted.

    Args:
        signal_name: "SIGINT" or "SIGTERM".
        command: The CLI command (run, plan, ...).
        argv: Its arguments, as given.
        run: The run's context once its id is known (``run`` only), else None.
    """
    head = f"interrupted ({signal_name})"
    if command != "run":
        if command == "collect":
            return (f"{head}: collect stopped before it finished; the rows it wrote to --output "
                    f"are incomplete (collect submits no jobs)")
        if command in ("plan", "jobs", "report"):
            return f"{head}: {command} stopped (it submits no jobs)"
        return head
    if run is None:
        return f"{head} before the run started: no job was submitted"
    again = shlex.join([*PROG.split(), command, *resume_argv(argv, run.run_id)])
    if run.backend == "local":
        return (f"{head}: run id {run.run_id}; the embedded local backend stopped with the run "
                f"and its jobs with it, so nothing is left running; run it again with: {again}")
    stop = shlex.join([*PROG.split(), "jobs", "--stop", "--run-id", run.run_id,
                       *jobs_argv(argv)])
    return (f"{head}: run id {run.run_id}; any Bedrock job it submitted goes on running and is "
            f"billed; resume with: {again} (it adopts those jobs instead of paying again), stop "
            f"them with: {stop}, or parse a finished job's results with: {PROG} collect "
            f"--job-output {run.job_output}<job id>/ --output DIR")


class _State:
    """The interrupt state of the command running (see ``handled``)."""

    def __init__(self) -> None:
        self.command = ""
        self.argv: list[str] = []
        self.run: RunContext | None = None
        self.signal_name: str | None = None
        self.printed = False
        # The read end of a pipe the interpreter writes each signal's number to as it arrives,
        # before any Python handler runs (signal.set_wakeup_fd), and what was read from it.
        self.wakeup: int | None = None
        self.arrived: str | None = None


_state = _State()


def note_run(config: BatchConfig, backend: str) -> None:
    """Name the run in the interrupted line from now on (call once its id is known).

    Args:
        config: The run's settings.
        backend: --backend.
    """
    from transforms.core.layout import output_prefix

    _state.run = RunContext(config.run_id, backend, output_prefix(config.base_uri, config.run_id))


def received() -> str | None:
    """The name of the signal that interrupted the command, or None.

    Also a signal whose handler here has not run: on Flink, Beam's SIGINT handler stops the job
    server (which got the Ctrl-C too), and the run fails with the closed channel's gRPC error
    before that handler calls this module's. Noted as handled, so that a handler still to come
    counts as the second signal (see ``_on_signal``).
    """
    if _state.signal_name is None and _arrived() is not None:
        _state.signal_name = _state.arrived
    return _state.signal_name


def _arrived() -> str | None:
    """A signal that arrived, though its handler here may not have run yet: Beam's own SIGINT
    handler (a job server's, Prism's or Flink's) stops the job server first, then calls this
    module's, and the threads reading from the job server break in between."""
    wakeup = _state.wakeup
    if _state.arrived is None and wakeup is not None:
        with contextlib.suppress(OSError):  # nothing arrived (EAGAIN), or the pipe was closed
            for signum in os.read(wakeup, 64):
                if signum in SIGNALS:
                    _state.arrived = signal.Signals(signum).name
    return _state.arrived


def quiet_traces() -> bool:
    """Whether the traces of errors are now noise: once the command was interrupted, without
    --debug. What breaks then (a worker's stream, once a job server stopped) breaks because of
    the interrupt, which the one line already reports."""
    return ((_state.signal_name or _arrived()) is not None
            and "--debug" not in _state.argv)


def report(in_signal_handler: bool = False) -> None:
    """Print the interrupted line to stderr, once per command.

    Only the main thread calls it (signal handlers run there), so no lock: a lock the handler
    of a second signal waited on, held by the same thread, would never be released.

    Args:
        in_signal_handler: Called from a signal handler, which may have interrupted a print to
            stderr (a buffered stream refuses to be re-entered): write to file descriptor 2.
    """
    if _state.printed:
        return
    # No signal noted: a KeyboardInterrupt raised another way (our handler was not installed).
    line = interrupted_line(received() or "SIGINT", _state.command, _state.argv,
                            _state.run)
    _state.printed = True
    if in_signal_handler:
        os.write(2, (line + "\n").encode(errors="replace"))
    else:
        print(line, file=sys.stderr, flush=True)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _state.signal_name is not None:  # the second one: no more waiting for cleanup
        report(in_signal_handler=True)
        os._exit(INTERRUPTED)
    _state.signal_name = signal.Signals(signum).name
    # With a message: Beam re-raises an exception from a step as its own type with the step's
    # name added to its first argument, and as a RuntimeError when it has none.
    raise KeyboardInterrupt(_state.signal_name)


def _quiet_after_interrupt(previous: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A threading.excepthook that only logs (at DEBUG) what a thread raises once the command
    was interrupted (see quiet_traces); before that, or with --debug, it is ``previous``."""
    def hook(args: Any) -> None:
        if not quiet_traces():
            previous(args)
            return
        logging.getLogger(__name__).debug("after the interrupt, thread %s ended with %r",
                                          getattr(args.thread, "name", "?"), args.exc_value)
    return hook


@contextlib.contextmanager
def handled(command: str, argv: list[str]) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described above while ``command`` runs.

    Does nothing outside the main thread (only it can set signal handlers), and leaves a signal
    ignored when it was ignored at start (a background job of a non-interactive shell, nohup),
    as Python does.

    Args:
        command: The CLI command.
        argv: Its arguments, for the resume command the interrupted line prints.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    global _state
    _state = _State()
    _state.command, _state.argv = command, list(argv)
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    read_end, write_end = os.pipe()
    for end in (read_end, write_end):
        os.set_blocking(end, False)
    previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    _state.wakeup = read_end
    thread_hook = threading.excepthook
    threading.excepthook = _quiet_after_interrupt(thread_hook)
    try:
        yield
    finally:
        threading.excepthook = thread_hook
        _arrived()  # what arrived is kept: exit_now still needs it
        _state.wakeup = None
        signal.set_wakeup_fd(previous_wakeup)
        os.close(read_end)
        os.close(write_end)
        for signum, handler in previous.items():
            if handler is not None:  # None: set outside Python, cannot be restored
                signal.signal(signum, handler)


def exit_now(code: int) -> None:
    """End an interrupted CLI process with ``code`` once its cleanup and exit handlers ran.

    Threads an interrupted pipeline leaves behind (runner workers, thread pools mid-call, a
    request still waiting for an answer) would keep the process alive at shutdown, which waits
    for them; exit handlers still run (they stop the job server a FlinkRunner started).

    Args:
        code: The exit code.
    """
    import atexit

    for signum in SIGNALS:  # the exit handlers may hang too: a second signal still ends it
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)
    threading.excepthook = _quiet_after_interrupt(threading.excepthook)
    atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs (logging's flush too)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream: nothing to flush
            stream.flush()
    os._exit(code)
