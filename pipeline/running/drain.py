"""Ending a bounded watch on Flink with checkpointing: the CLI cancels the job once the durable
facts say the run is done (``pipeline.report.drain``), since the job would not end by itself."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.report.drain import jobs_running, missing
from pipeline.report.reconcile import Facts

log = logging.getLogger(__name__)

_ENDED = frozenset({PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED,
                    PipelineState.UPDATED, PipelineState.DRAINED})


def drain(result: PipelineResult, listed: Callable[[], Iterable[str] | None],
          facts: Callable[[], Facts], watch_seconds: float, drain_seconds: float,
          quiet_seconds: float, poll_seconds: float, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Wait out the watch, then until the facts agree, and cancel the job (unless it ended by
    itself). Also cancelled, with what is missing: when the facts have not changed for
    ``quiet_seconds`` with no job of the run running (the runner dropped what is missing:
    measured on Flink after a restore), or ``drain_seconds`` after the watch.

    The watch ends ``watch_seconds`` after its first listing, which comes after this is called:
    the facts are read from then on, and ``listed()`` says, once the read has ended, what it
    had to cover.

    Args:
        result: The running job.
        listed: The ledger paths the read had to cover (the files the watch had listed when it
            ended, or the topic's partitions); None while the watch has not ended.
        facts: The durable facts now (``pipeline.running.execute.durable_facts``).
        watch_seconds: ``--watch-seconds``.
        drain_seconds: How long after the watch to wait for the facts to agree.
        quiet_seconds: How long the facts may stand still with no job running.
        poll_seconds: Seconds between looks at the facts.
        clock: Monotonic seconds (a parameter for tests).
        sleep: Waits (a parameter for tests).

    Returns:
        What was still missing when the job was cancelled (empty: the run is done).

    Raises:
        RuntimeError: The job failed (Flink gave up restarting it).
    """
    watch_ends = clock() + watch_seconds
    while clock() < watch_ends:
        if _ended(result):
            break
        sleep(min(poll_seconds, max(watch_ends - clock(), 0)))
    give_up_at = clock() + drain_seconds
    last, changed_at = None, clock()
    while True:
        ended = _ended(result)
        # Read each time: a watch restored from a checkpoint that ends again records its end
        # again, maybe with files moved in meanwhile.
        files = listed()
        now = facts()
        gaps = missing(files, now)
        if (files, now) != last:
            last, changed_at = (files, now), clock()
        if not gaps or ended or clock() >= give_up_at:
            break
        if not jobs_running(now) and clock() - changed_at >= quiet_seconds:
            gaps.append(f"nothing changed for {quiet_seconds:.0f} s with no job of the run "
                        f"running: what is missing is not on its way")
            break
        sleep(poll_seconds)
    if ended:
        # The job ended by itself: done, or failed (raises with Flink's error).
        result.wait_until_finish()
        return gaps
    if gaps:
        log.error("the run is not done after its watch ended; cancelling the Flink job: %s",
                  "; ".join(gaps))
    else:
        log.info("every listed record is a row and every job is harvested: cancelling the "
                 "Flink job, which does not end by itself with checkpointing")
    result.cancel()
    return gaps


def _ended(result: PipelineResult) -> bool:
    return result.state in _ENDED
