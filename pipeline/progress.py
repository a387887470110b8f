"""What the progress display shows, as plain data: no Beam, no terminal, tested directly.

``RunProgress`` gathers a run's state from two sources the CLI process can see under any runner
or only in-process:

- the Bedrock service's ``ListModelInvocationJobs`` summaries (status, live record counts,
  submit and end times), which the CLI polls itself, so the jobs show on Flink too;
- the pipeline's own log events (files read, jobs planned, jobs harvested) and the rows reaching
  the sinks, which reach the CLI only when the runner works in this process (the DirectRunner,
  or Flink's LOOPBACK environment).
"""
from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

# Bedrock's terminal job states (the display stops the clock and the ETA for them).
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})


def format_duration(seconds: float | None) -> str:
    """``seconds`` as H:MM:SS (or M:SS under an hour); "-" when unknown.

    Args:
        seconds: a duration, or None.
    """
    if seconds is None:
        return "-"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(samples: list[tuple[float, int]], total: int | None) -> float | None:
    """Seconds until ``total`` records are done, at the pace the samples show; None if unknown.

    The pace is measured between the first and the last sample, not from the submit time: a
    batch job can wait in the queue for hours before it processes its first record.

    Args:
        samples: (time in seconds, records processed) observations, oldest first.
        total: the job's record count, or None before the service has counted them.
    """
    if total is None or not samples:
        return None
    (t0, done0), (t1, done1) = samples[0], samples[-1]
    if done1 >= total:
        return 0.0
    if t1 <= t0 or done1 <= done0:
        return None
    rate = (done1 - done0) / (t1 - t0)
    return (total - done1) / rate


def _epoch(value: Any) -> float | None:
    """A ListModelInvocationJobs time (boto3 gives datetimes) as epoch seconds."""
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return None


@dataclass
class JobProgress:
    """One batch job as the service last reported it.

    Args:
        name: the job name.
        status: its Bedrock status.
        processed: records processed so far (None until the service counts them).
        total: the job's records (None until the service counts them).
        submitted: submit time, epoch seconds.
        ended: end time, epoch seconds, once terminal.
        samples: (time, processed) observations for the ETA.
    """

    name: str
    status: str
    processed: int | None = None
    total: int | None = None
    submitted: float | None = None
    ended: float | None = None
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (its clock and ETA stop)."""
        return self.status in TERMINAL

    def elapsed(self, now: float) -> float | None:
        """Seconds since submission, up to the end for a finished job.

        Args:
            now: the current time, epoch seconds.
        """
        if self.submitted is None:
            return None
        return (self.ended if self.ended is not None else now) - self.submitted

    def eta(self) -> float | None:
        """Seconds left at the observed pace; 0 once terminal; None when unknown."""
        if self.terminal:
            return 0.0
        return eta_seconds(self.samples, self.total)


# The log events of the transforms the display counts: (logger, message format) -> event name.
# Matching the format string (not the text) keeps paths with odd characters harmless.
LOG_EVENTS = {
    ("transforms.sources.files", "read %s: %d records, %d failures"): "read",
    ("transforms.sources.files", "read %s: unknown format, 1 failure"): "unreadable",
    ("transforms.sources.files", "read %s: cannot be opened, 1 failure"): "unreadable",
    ("transforms.shards.shard_writer", "planned %s: %d records, %d bytes%s"): "planned",
    ("transforms.jobs.harvest", "harvested %s: %d summaries, %d failures, %d to retry"): "harvested",
}


@dataclass(eq=False)  # one object per run: compared by identity
class RunProgress:
    """A run's progress, fed by job listings, log events and sink tallies; thread-safe.

    Args:
        run_id: the run whose jobs to show.
        started: when the run started, epoch seconds.
    """

    run_id: str
    started: float
    files_read: int = 0
    records_read: int = 0
    read_failures: int = 0
    records_sharded: int = 0
    jobs_planned: int = 0
    harvested_jobs: int = 0
    harvested_summaries: int = 0
    harvested_failures: int = 0
    to_retry: int = 0
    summaries_written: int = 0
    failures_written: int = 0
    in_process: bool = False  # any pipeline event seen here (False on remote workers)
    jobs: dict[str, JobProgress] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def on_log_event(self, logger: str, message: str, args: tuple[Any, ...]) -> bool:
        """Count one of the LOG_EVENTS; False for any other log record.

        Args:
            logger: the record's logger name.
            message: the record's format string (``LogRecord.msg``).
            args: the record's arguments.
        """
        event = LOG_EVENTS.get((logger, message))
        if event is None:
            return False
        with self._lock:
            self.in_process = True
            if event == "read":
                self.files_read += 1
                self.records_read += args[1]
                self.read_failures += args[2]
            elif event == "unreadable":
                self.files_read += 1
                self.records_read += 1
                self.read_failures += 1
            elif event == "planned":
                self.jobs_planned += 1
                self.records_sharded += args[1]
            else:
                self.harvested_jobs += 1
                self.harvested_summaries += args[1]
                self.harvested_failures += args[2]
                self.to_retry += args[3]
        return True

    def on_written(self, summaries: int = 0, failures: int = 0) -> None:
        """Count rows handed to the sinks.

        Args:
            summaries: summary rows.
            failures: failure rows.
        """
        with self._lock:
            self.in_process = True
            self.summaries_written += summaries
            self.failures_written += failures

    def on_jobs(self, summaries: Iterable[Mapping[str, Any]], now: float) -> None:
        """Take ListModelInvocationJobs summaries; jobs of other runs are ignored.

        Args:
            summaries: ``invocationJobSummaries`` entries.
            now: when they were listed, epoch seconds.
        """
        with self._lock:
            for job in summaries:
                name = job.get("jobName", "")
                if self.run_id not in name:
                    continue
                view = self.jobs.get(name) or JobProgress(name, job.get("status", "?"))
                view.status = job.get("status", view.status)
                view.total = job.get("totalRecordCount", view.total)
                view.processed = job.get("processedRecordCount", view.processed)
                view.submitted = _epoch(job.get("submitTime")) or view.submitted
                view.ended = _epoch(job.get("endTime")) or view.ended
                if view.processed is not None and not view.terminal:
                    last = view.samples[-1][1] if view.samples else None
                    if view.processed != last:
                        view.samples.append((now, view.processed))
                self.jobs[name] = view

    def job_rows(self, now: float, limit: int = 12) -> tuple[list[dict[str, Any]], int]:
        """The jobs to show, one dict each, and how many more are not shown.

        Running jobs come first (oldest first), then finished ones (latest first), so a long run
        shows what is moving.

        Args:
            now: the current time, epoch seconds.
            limit: the most jobs to list.
        """
        with self._lock:
            jobs = list(self.jobs.values())
        running = sorted((j for j in jobs if not j.terminal), key=lambda j: j.submitted or 0)
        done = sorted((j for j in jobs if j.terminal), key=lambda j: -(j.ended or 0))
        shown = (running + done)[:limit]
        rows = [{"name": j.name, "status": j.status, "processed": j.processed, "total": j.total,
                 "elapsed": j.elapsed(now), "eta": j.eta()} for j in shown]
        return rows, len(jobs) - len(shown)

    def job_totals(self) -> dict[str, Any]:
        """Jobs by status, records processed of total over all jobs, and the run's ETA (the
        slowest running job's)."""
        with self._lock:
            jobs = list(self.jobs.values())
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job.status] = by_status.get(job.status, 0) + 1
        etas = [j.eta() for j in jobs if not j.terminal]
        return {"jobs": len(jobs), "by_status": dict(sorted(by_status.items())),
                "processed": sum(j.processed or 0 for j in jobs),
                "total": sum(j.total or 0 for j in jobs),
                "eta": (None if not jobs or any(e is None for e in etas)
                        else max(etas, default=0.0))}

    def lines(self, now: float) -> list[str]:
        """The whole state as plain text lines (the log form of the display).

        Args:
            now: the current time, epoch seconds.
        """
        totals = self.job_totals()
        statuses = ", ".join(f"{n} {s}" for s, n in totals["by_status"].items()) or "none yet"
        out = [f"progress {self.run_id}: {format_duration(now - self.started)} elapsed"]
        if self.in_process:
            out += [f"  read      {self.records_read} records from {self.files_read} files "
                    f"({self.read_failures} failures)",
                    f"  sharded   {self.records_sharded} records into {self.jobs_planned} jobs"]
        out.append(f"  jobs      {totals['jobs']} ({statuses}); {totals['processed']}/"
                   f"{totals['total']} records processed, ETA {format_duration(totals['eta'])}")
        rows, _ = self.job_rows(now)
        for row in rows:
            if row["status"] not in TERMINAL:
                out.append(f"    {row['name']}: {row['status']}, {_count(row)} records, "
                           f"{format_duration(row['elapsed'])} elapsed, "
                           f"ETA {format_duration(row['eta'])}")
        if self.in_process:
            out += [f"  harvested {self.harvested_jobs} jobs: {self.harvested_summaries} "
                    f"summaries, {self.harvested_failures} failures, {self.to_retry} to retry",
                    f"  written   {self.summaries_written} summaries, {self.failures_written} "
                    f"failures"]
        return out


# The displays of the runs in this process; rows written on remote workers never reach them.
_DISPLAYS: list[RunProgress] = []
_DISPLAYS_LOCK = threading.Lock()


def watch(progress: RunProgress) -> None:
    """Let ``progress`` count the rows this process hands to the sinks (see note_written).

    Args:
        progress: a run's progress, until unwatch.
    """
    with _DISPLAYS_LOCK:
        _DISPLAYS.append(progress)


def unwatch(progress: RunProgress) -> None:
    """Stop counting rows for ``progress``.

    Args:
        progress: a run's progress given to watch.
    """
    with _DISPLAYS_LOCK:
        if progress in _DISPLAYS:
            _DISPLAYS.remove(progress)


def note_written(summaries: int = 0, failures: int = 0) -> None:
    """Rows handed to the sinks by a pipeline step in this process: counted by every watched run.

    Args:
        summaries: summary rows.
        failures: failure rows.
    """
    with _DISPLAYS_LOCK:
        displays = list(_DISPLAYS)
    for progress in displays:
        progress.on_written(summaries, failures)


def _count(row: Mapping[str, Any]) -> str:
    if row["total"] is None:
        return "?/?"
    return f"{row['processed'] or 0}/{row['total']}"
