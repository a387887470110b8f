"""The run report's figures from durable facts, with the Beam counters beside them.

Beam counters live as long as one attempt of the pipeline: a runner that restarts the job from
a checkpoint (Flink after a lost TaskManager) starts them from zero, and a report built from
them alone can say "no records" about a run that billed a job. So the report reconciles what
outlives an attempt:

- the source ledger (``transforms.sources.source_ledger``): each input file the run's file source
  read, with its counts: the source's own count, made restart-proof;
- the job ledger: every Bedrock job of the run, as the service lists it, and whether the run
  harvested it (a marker the harvest writes);
- the rows written, as the file sinks' folders hold them.

Pure (no Beam, no AWS): the CLI gathers the facts (``pipeline.running.execute``) and hands them in.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from transforms.sources.source_ledger import LedgerEntry

# Job statuses Bedrock reports before a job has ended.
RUNNING = frozenset({"Submitted", "Validating", "Scheduled", "InProgress", "Stopping"})
# Ended statuses whose output folder holds rows to collect
# (``transforms.core.bedrock.HARVESTABLE``).
COLLECTABLE = frozenset({"Completed", "PartiallyCompleted", "Stopped", "Expired"})


@dataclass(frozen=True)
class RunJob:
    """One Bedrock job of the run.

    Args:
        name: The job's name.
        status: Its status as the service reports it now.
        harvested: Whether the run turned its output into rows (or its records into failure
            rows or retries).
        job_output: Its output folder (``<output s3Uri>/<job id>/``), or None when unknown.
    """

    name: str
    status: str
    harvested: bool
    job_output: str | None = None


@dataclass(frozen=True)
class Facts:
    """What outlives an attempt of the pipeline; None where it is not known.

    Args:
        ledger: The source ledger's entries; None when the source keeps none (Kafka).
        jobs: Every job of the run; None when the service could not be asked.
        rows: (summaries, failure rows) in the file sink's folders; None for a sink whose rows
            are not counted where they land (Kafka, BigQuery): the counters stand in.
    """

    ledger: tuple[LedgerEntry, ...] | None = None
    jobs: tuple[RunJob, ...] | None = None
    rows: tuple[int, int] | None = None


@dataclass(frozen=True)
class Accounting:
    """The report's figures, each from the most durable fact there is.

    ``records_in`` is the larger of the ledger's total and the source counter (a counter can
    only lose counts, by a restart; neither may hide a record). ``open_jobs`` are the jobs of
    the run it never harvested: still running, or ended and left.
    """

    records_in: int
    counted_in: int
    summaries: int
    failures: int
    counted_summaries: int
    counted_failures: int
    ledger_files: int | None
    open_jobs: tuple[RunJob, ...]
    jobs: int | None

    @property
    def unaccounted(self) -> int:
        """Records in minus rows out: > 0 lost, < 0 produced twice (or not counted in)."""
        return self.records_in - self.summaries - self.failures

    def counters_differ(self) -> bool:
        """Whether the counters disagree with the durable figures (e.g. a restarted attempt)."""
        return (self.counted_in, self.counted_summaries, self.counted_failures) != (
            self.records_in, self.summaries, self.failures)

    def jobs_without_input(self) -> bool:
        """Jobs of the run exist, but no record was read in."""
        return not self.records_in and bool(self.jobs)

    def input_empty(self) -> bool | None:
        """True when the ledger, the counters and the job ledger agree the input held no
        record; False when any says otherwise; None when a fact is missing to tell."""
        if self.records_in or self.jobs or self.summaries or self.failures:
            return False
        if self.ledger_files is None or self.jobs is None:
            return None
        return True

    def problems(self, model_id: str) -> list[str]:
        """The NOT ACCOUNTED lines the durable facts add (the counts' own are the Report's).

        Args:
            model_id: The run's model, for the collect command.
        """
        lines = [f"NOT ACCOUNTED   {open_job_text(job, model_id)}" for job in self.open_jobs]
        if self.jobs_without_input():
            lines.append(f"NOT ACCOUNTED   {self.jobs} job(s) of the run exist, but no record "
                         f"was read in")
        return lines


def collect_command(job: RunJob, model_id: str) -> str:
    """The command that writes a job's rows into a folder of their own.

    Args:
        job: A job with a known output folder.
        model_id: The run's model.
    """
    job_id = job.job_output.rstrip("/").rsplit("/", 1)[-1]
    return (f"python -m pipeline collect --job-output {job.job_output} --output "
            f"collected-{job_id} --model-id {model_id}")


def open_job_text(job: RunJob, model_id: str) -> str:
    """Why a job the run never harvested is not accounted for, and what collects it.

    Args:
        job: The job.
        model_id: The run's model.
    """
    if job.job_output is None or not (job.status in RUNNING or job.status in COLLECTABLE):
        return (f"job {job.name} ended {job.status} and was never harvested: its records are "
                f"in no output; rerun with the same --run-id to summarize them")
    command = collect_command(job, model_id)
    if job.status in RUNNING:
        return (f"job {job.name} is still {job.status} and was never harvested: once it "
                f"has ended, collect its rows with {command}")
    return f"job {job.name} ended {job.status} but was never harvested: collect its rows with {command}"


def _by_path(entries: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    # A file is one input unit whatever number of times it was read: a replay counts once.
    return {entry.path: entry for entry in entries}


def reconcile(counters: Mapping[str, int], facts: Facts) -> Accounting:
    """The report's figures from the durable facts and the counters.

    Args:
        counters: The run's Beam counters, summed by name (those of the last attempt only, when
            the runner restarted the job).
        facts: What outlives an attempt.
    """
    counted_in = counters.get("records_in", 0)
    # A summary its table rejected (BigQuery) was written again as a failure row.
    counted_summaries = counters.get("summaries_written", 0) - counters.get("summaries_rejected", 0)
    counted_failures = counters.get("failures_written", 0)
    ledger = None if facts.ledger is None else _by_path(facts.ledger)
    records_in = counted_in
    if ledger is not None:
        records_in = max(records_in, sum(entry.records for entry in ledger.values()))
    summaries, failures = facts.rows if facts.rows is not None else (counted_summaries,
                                                                     counted_failures)
    jobs = facts.jobs
    return Accounting(
        records_in=records_in, counted_in=counted_in, summaries=summaries, failures=failures,
        counted_summaries=counted_summaries, counted_failures=counted_failures,
        ledger_files=None if ledger is None else len(ledger),
        open_jobs=tuple(job for job in jobs or () if not job.harvested),
        jobs=None if jobs is None else len(jobs))
