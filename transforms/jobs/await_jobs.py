"""Beam stage: submit a window's jobs within the concurrency quota and wait for them to finish.

A splittable DoFn that self-checkpoints (``defer_remainder``) between polls. Where the runner
honours the deferral delay (Flink ``--streaming`` while input is still arriving) no task slot is
held between polls. Flink batch, Flink streaming once input has ended, and the local runners
ignore the delay, so the restriction carries the time of the next poll and the DoFn sleeps, in
its slot, only what the runner did not already wait. Processing-time timers are not used: the
DirectRunner drops them and the portable local runners fail on them in batch. See
docs/architecture.md ("Why the wait is a splittable DoFn").

All scheduling state is derived from Bedrock itself (deterministic job names) plus the set of
jobs already emitted, which lives in the restriction: a restarted pipeline re-adopts its jobs.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration
from botocore.exceptions import ParamValidationError

from transforms.config import BatchConfig
from transforms.core import beam_compat
from transforms.core.bedrock import (JobsClient, JobStatus, create_error_kind, error_code,
                                     http_status, plan_submissions, run_prefix)
from transforms.core.metrics import counter
from transforms.core.model import JobBatch, JobSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobOutcome:
    """A job that reached a terminal status (or could not be created), ready to harvest.

    Args:
        spec: The job.
        status: Its terminal status; None when it could not be created.
        error: Why it could not be created, or None.
    """

    spec: JobSpec
    status: JobStatus | None
    error: str | None = None  # why the job could not be created at all


@dataclass(frozen=True)
class WaitRestriction:
    """Jobs of one batch already emitted, and the earliest time of the next poll.

    Args:
        job_count: Jobs in the batch.
        poll_interval: Seconds between polls (whole seconds: runners only honour those).
        emitted: Indexes of the jobs already emitted.
        next_poll_at: The earliest time (epoch seconds) of the next poll.
        closed: True for the primary half of a checkpoint: nothing more may be claimed.
    """

    job_count: int
    poll_interval: int  # whole seconds: runners only honour whole-second delays
    emitted: frozenset[int] = frozenset()
    next_poll_at: float = 0.0
    closed: bool = False  # the primary half of a checkpoint: nothing more may be claimed

    @property
    def remaining(self) -> int:
        return self.job_count - len(self.emitted)


class WaitTracker(RestrictionTracker):
    """Claims jobs of a WaitRestriction as they finish; splits only to checkpoint.

    Args:
        restriction: The restriction to track.
    """

    def __init__(self, restriction: WaitRestriction):
        self._restriction = restriction

    def current_restriction(self) -> WaitRestriction:
        return self._restriction

    def try_claim(self, job_index: int) -> bool:
        r = self._restriction
        if r.closed or job_index in r.emitted:
            return False
        self._restriction = replace(r, emitted=r.emitted | {job_index})
        return True

    def try_split(self, fraction_of_remainder: float) -> tuple[WaitRestriction, WaitRestriction] | None:
        # Only checkpoints (fraction 0): the remaining jobs move to a residual polled later.
        r = self._restriction
        if fraction_of_remainder != 0 or r.closed or r.remaining == 0:
            return None
        primary = replace(r, closed=True)
        residual = replace(r, next_poll_at=time.time() + r.poll_interval)
        self._restriction = primary
        return primary, residual

    def check_done(self) -> None:
        r = self._restriction
        if not r.closed and r.remaining:
            raise ValueError(f"{r.remaining} job(s) neither finished nor deferred")

    def current_progress(self) -> RestrictionProgress:
        r = self._restriction
        return RestrictionProgress(completed=len(r.emitted), remaining=0 if r.closed else r.remaining)

    def is_bounded(self) -> bool:
        return True


class WaitRestrictionProvider(RestrictionProvider):
    """The WaitRestriction of a JobBatch: all its jobs, none emitted."""

    def initial_restriction(self, element: JobBatch) -> WaitRestriction:
        return WaitRestriction(len(element.specs), element.poll_interval_seconds)

    def create_tracker(self, restriction: WaitRestriction) -> WaitTracker:
        return WaitTracker(restriction)

    def restriction_size(self, element: Any, restriction: WaitRestriction) -> int:
        return restriction.remaining


class AwaitJobsFn(beam.DoFn):
    """JobBatch -> JobOutcome per job, at most max_concurrent_jobs of the model in flight.

    Args:
        config: The run's settings (quotas, poll interval, AWS).
    """

    def __init__(self, config: BatchConfig):
        self._config = config
        self._submitted = counter("jobs_submitted")
        self._finished = counter("jobs_finished")
        self._polls = counter("job_polls")
        self._backoffs = counter("submit_backoffs")
        self._not_created = counter("jobs_not_created")

    def setup(self) -> None:
        self._jobs = JobsClient(self._config.aws.client("bedrock"), self._config.job)
        self._last_status: dict[str, str] = {}

    def process(self, batch: JobBatch, timestamp=beam.DoFn.TimestampParam,
                tracker=beam.DoFn.RestrictionParam(WaitRestrictionProvider()),
                watermark=beam.DoFn.WatermarkEstimatorParam(ManualWatermarkEstimator.default_provider())
                ) -> Iterator[JobOutcome]:
        # Hold the output watermark at the batch's own time until its jobs are harvested, so
        # downstream windows (the sinks) do not close before their summaries arrive. Prism keeps
        # only the last bundle's hold for the whole stage, so there a summary can still arrive
        # late: the sinks keep late rows (transforms.core.windowing.keep_late).
        watermark.set_watermark(timestamp)
        specs = batch.specs
        restriction: WaitRestriction = tracker.current_restriction()
        delay = restriction.next_poll_at - time.time()
        if delay > 0:
            time.sleep(delay)  # the runner resumed us early (local runners ignore the delay)
        statuses = self._jobs.reconcile([s.job_name for s in specs], run_prefix(self._config.run_id))
        pending: list[int] = []
        for index, spec in enumerate(specs):
            if index in restriction.emitted:
                continue
            status = statuses.get(spec.job_name)
            if status is not None:
                status = self._observe(status if status.terminal else self._poll(status))
            if status is None:
                pending.append(index)
            elif status.terminal and tracker.try_claim(index):
                self._finished.inc()
                yield JobOutcome(spec, status)

        if pending:
            in_flight = self._jobs.in_flight(batch.model_id)
            sizes = [spec.input_bytes for spec in specs]
            for index in plan_submissions(pending, sizes, in_flight,
                                          self._config.quotas.max_concurrent_jobs):
                outcome = self._submit(specs[index])
                if outcome is not None and tracker.try_claim(index):
                    yield outcome
        if tracker.current_restriction().remaining:
            tracker.defer_remainder(Duration(seconds=batch.poll_interval_seconds))

    def _poll(self, status: JobStatus) -> JobStatus:
        self._polls.inc()
        return self._jobs.get(status.arn)

    def _observe(self, status: JobStatus) -> JobStatus:
        """A log line per state change (only for this worker's view: logs, not state)."""
        if self._last_status.get(status.arn) != status.status:
            self._last_status[status.arn] = status.status
            log.info("job %s", status.progress())
        return status

    def _submit(self, spec: JobSpec) -> JobOutcome | None:
        """Create the job; a JobOutcome only when it can never be created (a refused request):
        its records become failure rows once, and no later round sends them again."""
        try:
            arn = self._jobs.create(spec)
        except ParamValidationError as exc:  # botocore refused the request before sending it
            return self._not_created_outcome(spec, f"ParamValidationError: {exc}")
        except Exception as exc:  # botocore ClientError
            code = error_code(exc)
            if code is None:  # no answer from the service (connection): the runner retries
                raise
            kind = create_error_kind(code, http_status(exc))
            if kind != "permanent":
                self._backoffs.inc()
                log.info("could not create %s yet (%s); retrying at the next poll",
                         spec.job_name, code)
                return None
            return self._not_created_outcome(spec, f"{code}: {exc}")
        self._submitted.inc()
        log.info("submitted %s as %s (%d records)", spec.job_name, arn, spec.record_count)
        return None

    def _not_created_outcome(self, spec: JobSpec, error: str) -> JobOutcome:
        self._not_created.inc()
        log.error("job %s was not created, its %d record(s) become failure rows: %s",
                  spec.job_name, spec.record_count, error)
        return JobOutcome(spec, None, error=error)


@beam.typehints.with_input_types(JobBatch)
@beam.typehints.with_output_types(JobOutcome)
class AwaitJobs(beam.PTransform):
    """PCollection[JobBatch] -> PCollection[JobOutcome].

    Building it applies ``transforms.core.beam_compat`` (the FnApiRunner metrics work-around)
    to the whole process; importing this module patches nothing.

    Args:
        config: The run's settings (quotas, poll interval, AWS).
    """

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, batches: beam.PCollection) -> beam.PCollection:
        # Built in the process that runs the pipeline: on the FnApiRunner (DirectRunner) this
        # stage's many bundles would overflow the stack when metrics are read; other runners
        # never call what is patched.
        beam_compat.apply()
        return batches | beam.ParDo(AwaitJobsFn(self._config)).with_output_types(JobOutcome)
