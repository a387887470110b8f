"""Ending a bounded watch on Flink with checkpointing: the CLI cancels the job once the durable
facts say the run is done (``pipeline.report.drain``), since the job would not end by itself."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from apache_beam.runners.runner import PipelineResult, PipelineState

from pipeline.report.drain import missing
from pipeline.report.reconcile import Facts

log = logging.getLogger(__name__)

_ENDED = frozenset({PipelineState.DONE, PipelineState.FAILED, PipelineState.CANCELLED,
                    PipelineState.UPDATED, PipelineState.DRAINED})


def drain(result: PipelineResult, listed: Callable[[], Iterable[str]],
          facts: Callable[[], Facts], watch_seconds: float, drain_seconds: float,
          poll_seconds: float, clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> list[str]:
    """Wait out the watch, then until the facts agree or ``drain_seconds`` have passed, and
    cancel the job (unless it ended by itself).

    The watch ends ``watch_seconds`` after its first listing, which comes after this is called,
    so every file ``listed()`` returns by then is one the watch lists too.

    Args:
        result: The running job.
        listed: The files under ``--input`` now.
        facts: The durable facts now (``pipeline.run.durable_facts``).
        watch_seconds: ``--watch-seconds``.
        drain_seconds: How long after the watch to wait for the facts to agree.
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
    files = frozenset(listed())
    give_up_at = clock() + drain_seconds
    while True:
        ended = _ended(result)
        gaps = missing(files, facts())
        if not gaps or ended or clock() >= give_up_at:
            break
        sleep(poll_seconds)
    if ended:
        # The job ended by itself: done, or failed (raises with Flink's error).
        result.wait_until_finish()
        return gaps
    if gaps:
        log.error("the run is not done %.0f s after its watch ended; cancelling the Flink job: "
                  "%s", drain_seconds, "; ".join(gaps))
    else:
        log.info("every listed record is a row and every job is harvested: cancelling the "
                 "Flink job, which does not end by itself with checkpointing")
    result.cancel()
    return gaps


def _ended(result: PipelineResult) -> bool:
    return result.state in _ENDED
