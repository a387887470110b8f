"""When a bounded run that cannot end by itself is done: the durable facts agree.

Beam's Flink runner keeps a streaming job with checkpointing running after its sources are done
(Beam's ``--shutdown_sources_after_idle_ms`` would end them, but a source that ends sends its
watermark to the end of time and drops the records still on their way as late). So the CLI ends
such a run itself: after the watch's end it reads the facts the report reconciles, and cancels
the job once every input the read had to cover (the files the watch had listed when it ended, as
it recorded them, or the partitions of a Kafka topic) is in the source ledger, every record the
ledger counted is a summary or a failure row, and every job of the run was harvested.

Pure (no Beam, no AWS): the CLI gathers the facts (``pipeline.running.drain``) and hands them in.
"""
from __future__ import annotations

from typing import Iterable

from pipeline.report.reconcile import RUNNING, Facts, reconcile

_SHOWN = 5  # names listed in one line; the rest are counted


def _some(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def missing(listed: Iterable[str] | None, facts: Facts) -> list[str]:
    """What keeps the run from being done, one line each; empty when it is done.

    Args:
        listed: The ledger paths the read had to cover: the files the watch had listed when it
            ended (``transforms.sources.source_ledger.WatchEnd``), or the topic's partitions
            (``kafka:<topic>/<partition>``); None while the watch has not ended.
        facts: The durable facts as they stand now.
    """
    gaps = []
    if listed is None:
        gaps.append("the watch has not recorded its end yet")
    if facts.ledger is None:
        gaps.append("the source ledger could not be read")
    if facts.jobs is None:
        gaps.append("the run's jobs could not be listed")
    if facts.rows is None:
        gaps.append("the rows in --output could not be counted")
    if gaps:
        return gaps
    unread = set(listed) - {entry.path for entry in facts.ledger}
    if unread:
        gaps.append(f"{len(unread)} listed input(s) not read whole yet: {_some(unread)}")
    accounting = reconcile({}, facts)
    rows = accounting.summaries + accounting.failures
    if rows < accounting.records_in:
        gaps.append(f"{accounting.records_in - rows} of {accounting.records_in} record(s) in "
                    f"are not yet a summary or a failure row")
    elif rows > accounting.records_in:
        gaps.append(f"{rows - accounting.records_in} row(s) more than the {accounting.records_in} "
                    f"record(s) in")
    for job in accounting.open_jobs:
        gaps.append(f"job {job.name} ({job.status}) is not harvested yet")
    return gaps


def jobs_running(facts: Facts) -> bool:
    """Whether a job of the run has not ended yet (its rows are still on their way).

    Args:
        facts: The durable facts as they stand now.
    """
    return any(job.status in RUNNING for job in facts.jobs or ())


def quiet_seconds(window_seconds: float | None, poll_interval_seconds: float) -> float:
    """How long the facts may stand still, with no job of the run running, before the CLI
    takes the records still missing for lost (the runner dropped them: nothing is on its way)
    and cancels the job: five minutes, two windows or ten job polls, whichever is longest.

    Args:
        window_seconds: ``--window-seconds`` (None: no windows).
        poll_interval_seconds: Seconds between job status polls.
    """
    return max(300.0, 2 * (window_seconds or 0), 10 * poll_interval_seconds)


def drain_seconds(window_seconds: float | None, poll_interval_seconds: float,
                  job_timeout_hours: float | None) -> float:
    """How long after the watch's end the CLI waits for the facts to agree before it cancels
    the job and reports what is missing (exit 4): the last window's close, then its jobs for as
    long as Bedrock lets a job run (``--job-timeout-hours``, else Bedrock's default of 24 h),
    plus ten polls to harvest them.

    Args:
        window_seconds: ``--window-seconds`` (None: no windows).
        poll_interval_seconds: Seconds between job status polls.
        job_timeout_hours: ``--job-timeout-hours``, or None for Bedrock's default.
    """
    return ((window_seconds or 0) + (job_timeout_hours or 24) * 3600
            + 10 * poll_interval_seconds)
