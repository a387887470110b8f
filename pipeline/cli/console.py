"""The CLI's console: log and warning filters (set by the entry point only, never on import) and
the live progress display of a run.

The display polls the Bedrock service for the run's jobs from the CLI process, so the jobs show
under any runner; read, shard, harvest and sink counts come from the pipeline steps that run in
this process (the DirectRunner; on Flink only with the LOOPBACK environment).
"""
from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterator

from rich.console import Console, Group
from rich.logging import RichHandler
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.cli import interrupts
from pipeline.progress import TERMINAL, RunProgress, format_duration, unwatch, watch

log = logging.getLogger("pipeline.progress")

# Loggers of libraries whose INFO lines say nothing a user of this CLI can act on.
NOISY_LOGGERS = ("botocore", "urllib3", "apache_beam", "werkzeug", "moto", "s3transfer")
# How often the plain (not a terminal) form logs the progress, seconds.
LOG_EVERY_SECONDS = 5.0


class ThirdPartyNoise(logging.Filter):
    """Drops log lines about third-party code a user can do nothing about.

    - "crcmod package not found": Beam's notice that a checksum library of an extra it does not
      use here is missing.
    - Beam's "Using yield and return in the process method" for Beam's own DoFns (fileio's
      _ReadMatchesFn); the same line for one of ours still shows.
    - The trace of a KeyboardInterrupt (Ctrl-C, SIGTERM) Beam logs as an error of the step it
      interrupted, and any line with a trace once the command was interrupted (without
      --debug): the CLI prints its own one line for it (pipeline.cli.interrupts).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], KeyboardInterrupt)
                                or interrupts.quiet_traces()):
            return False
        message = str(record.msg)
        if message.startswith("crcmod package not found"):
            return False
        if message.startswith("Using yield and return in the process method") and record.args:
            cls = record.args[0] if isinstance(record.args, tuple) else None
            return not getattr(cls, "__module__", "").startswith("apache_beam.")
        return True


def filter_third_party_warnings() -> None:
    """Hide the google packages' FutureWarnings about grpcio versions (Beam's gcp extra pins
    them; nothing a user of this CLI can change)."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google(\.|$)")


def verbosity(argv: list[str]) -> int:
    """-1 with -q/--quiet, else the number of -v (``-vv`` counts 2, as argparse does).

    Args:
        argv: the command's arguments.
    """
    if "-q" in argv or "--quiet" in argv:
        return -1
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-v") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


_console: Console | None = None


def console() -> Console:
    """The stderr console the log lines and the live display share (lines print above it)."""
    global _console
    if _console is None:
        _console = Console(stderr=True)
    return _console


def interactive() -> bool:
    """Whether stderr is a terminal, where the live display replaces the INFO log lines."""
    return console().is_terminal


def handler_level(level: int, is_terminal: bool) -> int:
    """The lowest log level shown, for a verbosity (see ``verbosity``).

    -q: warnings and errors. Default: the same on a terminal (the live display shows progress),
    INFO lines otherwise (logs of a batch job). -v: INFO. -vv: DEBUG.

    Args:
        level: the verbosity.
        is_terminal: whether stderr is a terminal.
    """
    if level < 0 or (level == 0 and is_terminal):
        return logging.WARNING
    return logging.INFO if level <= 1 else logging.DEBUG


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler writing to whatever ``sys.stderr`` is at each line: a caller that swaps
    stderr (pytest's capture, a notebook) and closes the old one must not get logging errors
    from pipeline threads that log later."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: int) -> None:
    """The CLI's log set-up: one stderr handler, filtered of third-party noise.

    Loggers stay at INFO (DEBUG with -vv) so the progress display sees the pipeline's events;
    the handler's level decides what is printed.

    Args:
        level: the verbosity (see ``verbosity``).
    """
    filter_third_party_warnings()
    is_terminal = interactive()
    if is_terminal:
        handler: logging.Handler = RichHandler(console=console(), show_path=False, markup=False,
                                               log_time_format="%H:%M:%S")
    else:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(handler_level(level, is_terminal))
    handler.addFilter(ThirdPartyNoise())
    logging.basicConfig(level=logging.DEBUG if level >= 2 else logging.INFO, handlers=[handler],
                        force=True)
    # -vv is for debugging a run: the libraries' own DEBUG lines (botocore's requests) show too.
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.DEBUG if level >= 2 else logging.WARNING)


class _EventTap(logging.Handler):
    """Feeds the pipeline's log events (files read, jobs planned and harvested) to a run."""

    def __init__(self, progress: RunProgress) -> None:
        super().__init__(logging.INFO)
        self._progress = progress

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self._progress.on_log_event(record.name, str(record.msg), args)


_STATUS_STYLE = {"Completed": "green", "PartiallyCompleted": "yellow", "Failed": "red",
                 "Stopped": "red", "Expired": "red"}


def render(progress: RunProgress, now: float) -> Group:
    """The live display: counts, then one line per job with a bar, elapsed time and ETA.

    Args:
        progress: the run's state.
        now: the current time, epoch seconds.
    """
    parts: list[Any] = [Text(f"run {progress.run_id}  {format_duration(now - progress.started)} "
                             f"elapsed", style="bold")]
    if progress.in_process:
        parts.append(Text(f"read     {progress.records_read} records from {progress.files_read} "
                          f"files ({progress.read_failures} failures)\n"
                          f"sharded  {progress.records_sharded} records into "
                          f"{progress.jobs_planned} jobs"))
    totals = progress.job_totals()
    statuses = ", ".join(f"{n} {s}" for s, n in totals["by_status"].items()) or "none yet"
    parts.append(Text(f"jobs     {totals['jobs']} ({statuses}), {totals['processed']}/"
                      f"{totals['total']} records, ETA {format_duration(totals['eta'])}"))
    rows, hidden = progress.job_rows(now)
    if rows:
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim")
        for column in ("job", "status", "", "records", "elapsed", "ETA"):
            table.add_column(column, justify="right" if column in ("elapsed", "ETA") else "left")
        for row in rows:
            total, done = row["total"], row["processed"] or 0
            table.add_row(row["name"], Text(row["status"], style=_STATUS_STYLE.get(row["status"],
                                                                                   "cyan")),
                          ProgressBar(total=total or None, completed=done, width=24,
                                      pulse=total is None and row["status"] not in TERMINAL),
                          "?/?" if total is None else f"{done}/{total}",
                          format_duration(row["elapsed"]), format_duration(row["eta"]))
        parts.append(table)
        if hidden:
            parts.append(Text(f"... and {hidden} more jobs", style="dim"))
    if progress.in_process:
        parts.append(Text(f"harvest  {progress.harvested_jobs} jobs: "
                          f"{progress.harvested_summaries} summaries, "
                          f"{progress.harvested_failures} failures, {progress.to_retry} to retry\n"
                          f"written  {progress.summaries_written} summaries, "
                          f"{progress.failures_written} failures"))
    return Group(*parts)


class ProgressDisplay:
    """Polls the run's jobs and shows the progress while the run lasts (a context manager).

    Args:
        progress: the run's state to fill and show.
        list_jobs: returns the current ListModelInvocationJobs summaries of the run.
        mode: "live" (a terminal), "log" (periodic plain lines) or "off".
        poll_seconds: seconds between job listings.
    """

    def __init__(self, progress: RunProgress, list_jobs: Callable[[], list[dict[str, Any]]],
                 mode: str, poll_seconds: float) -> None:
        self.progress = progress
        self._list_jobs = list_jobs
        self._mode = mode
        self._poll_seconds = poll_seconds
        self._stop = threading.Event()
        # Set when the run is interrupted: no final listing, nobody waits for one in flight.
        self._interrupted = threading.Event()
        self._tap = _EventTap(progress)
        self._threads: list[threading.Thread] = []
        self._last_logged: list[str] | None = None

    def __enter__(self) -> "ProgressDisplay":
        if self._mode == "off":
            return self
        logging.getLogger().addHandler(self._tap)
        watch(self.progress)
        self._threads = [threading.Thread(target=self._poll, name="progress-poll", daemon=True)]
        self._threads.append(threading.Thread(
            target=self._live if self._mode == "live" else self._log, name="progress-show",
            daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: Any) -> None:
        if self._mode == "off":
            return
        # A listing may be waiting on a slow or gone service: after Ctrl-C the (daemon) poller
        # is left to it, so the interrupted line comes at once.
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if interrupted:
            self._interrupted.set()
        self._stop.set()
        for thread in self._threads[1:] if interrupted else self._threads:
            thread.join()
        logging.getLogger().removeHandler(self._tap)
        unwatch(self.progress)

    def _poll_once(self) -> None:
        try:
            self.progress.on_jobs(self._list_jobs(), time.time())
        except Exception as exc:  # noqa: BLE001 - the display must never fail the run
            log.debug("listing the run's jobs for the progress display failed: %s", exc)

    def _poll(self) -> None:
        while True:
            self._poll_once()
            if self._stop.wait(self._poll_seconds):
                if not self._interrupted.is_set():
                    self._poll_once()  # the final state, shown once more as the display ends
                return

    def _live(self) -> None:
        from rich.live import Live

        with Live(render(self.progress, time.time()), console=console(),
                  refresh_per_second=4) as live:
            while not self._stop.wait(0.25):
                live.update(render(self.progress, time.time()))
            self._final_listing()
            live.update(render(self.progress, time.time()))

    def _log(self) -> None:
        while not self._stop.wait(LOG_EVERY_SECONDS):
            self._log_if_changed()
        if self._final_listing():
            self._log_if_changed()

    def _final_listing(self) -> bool:
        """Wait for the poller's last listing; False (no wait) once interrupted."""
        if self._interrupted.is_set():
            return False
        self._threads[0].join()
        return True

    def _log_if_changed(self) -> None:
        lines = self.progress.lines(time.time())
        if lines[1:] != (self._last_logged or [])[1:]:  # the first line is the elapsed time
            log.info("\n".join(lines))
            self._last_logged = lines


def display_mode(quiet: bool) -> str:
    """"off" with --quiet, "live" on a terminal, "log" otherwise.

    Args:
        quiet: whether --quiet was given.
    """
    if quiet:
        return "off"
    return "live" if interactive() else "log"


@contextlib.contextmanager
def run_progress(run_id: str, bedrock: Any, quiet: bool, poll_seconds: float
                 ) -> Iterator[RunProgress]:
    """Show the progress of run ``run_id`` while the block runs.

    Args:
        run_id: the run (its jobs' names hold it).
        bedrock: a boto3 ``bedrock`` client.
        quiet: --quiet: show nothing.
        poll_seconds: seconds between job listings.
    """
    def list_jobs() -> list[dict[str, Any]]:
        pages = bedrock.get_paginator("list_model_invocation_jobs").paginate(nameContains=run_id)
        return [job for page in pages for job in page.get("invocationJobSummaries", [])]

    progress = RunProgress(run_id, time.time())
    with ProgressDisplay(progress, list_jobs, display_mode(quiet), poll_seconds):
        yield progress

