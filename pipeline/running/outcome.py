"""What a finished run reports: its accounting (``Report``: the counters reconciled with the
durable facts), the lines the CLI prints, the exit code and why, and report.json/report.html.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Mapping

from pipeline import exit_codes
from pipeline.flags import DEFAULT_MAX_FAILURE_RATE
from pipeline.options import BedrockBatchOptions
from pipeline.pricing import estimate_cost, estimate_on_demand_cost
from pipeline.report.data import report_data
from pipeline.report.files import write_report
from pipeline.report.reconcile import Accounting, Facts, reconcile
from pipeline.running.graph import AGGREGATE_DIR
from transforms.config import BatchConfig
from transforms.core.storage import join
from transforms.sinks.files import FORMATS

log = logging.getLogger(__name__)


_FAILURES_PREFIX = "failures."


@dataclass(frozen=True)
class Report:
    """The run's accounting: the plugin's Beam counters (``transforms.core.metrics``), summed by
    name, reconciled with the durable facts (``pipeline.report.reconcile``): the source
    ledger, the run's jobs and the rows in the file sink's folders.

    ``written`` names the destinations that hold this run's rows (nothing when none do);
    ``report_html`` is the path of the run's report.html, or why it was not written.
    """

    run_id: str
    counters: dict[str, int]
    written: tuple[str, ...] = ()
    max_failure_rate: float = DEFAULT_MAX_FAILURE_RATE
    # The overall AggregateInsights row of an insights run with a file sink (None otherwise).
    insights_aggregate: dict[str, Any] | None = None
    report_html: str | None = None
    facts: Facts = Facts()
    # What the durable facts still lacked when the CLI cancelled a run that does not end by
    # itself (``pipeline.running.drain``); empty when it was done.
    not_done: tuple[str, ...] = ()

    def get(self, name: str) -> int:
        return self.counters.get(name, 0)

    @property
    def ledger_unit(self) -> str:
        """What the source ledger's entries are: Kafka partitions or files."""
        ledger = self.facts.ledger or ()
        return "partition" if ledger and all(e.path.startswith("kafka:") for e in ledger) else "file"

    @functools.cached_property
    def accounting(self) -> Accounting:
        return reconcile(self.counters, self.facts)

    @property
    def records_in(self) -> int:
        return self.accounting.records_in  # counted at the source, one per input unit

    @property
    def summaries(self) -> int:
        return self.accounting.summaries

    @property
    def failures(self) -> int:
        return self.accounting.failures

    @property
    def unaccounted(self) -> int:
        """Records in minus rows out: > 0 lost, < 0 produced twice (or not counted in)."""
        return self.accounting.unaccounted

    def failures_by_cause(self) -> list[tuple[str, str, int]]:
        """(stage, error code, count), most frequent first."""
        causes = []
        for name, count in self.counters.items():
            if name.startswith(_FAILURES_PREFIX) and count:
                stage, _, code = name[len(_FAILURES_PREFIX):].partition(".")
                causes.append((stage, code, count))
        return sorted(causes, key=lambda c: (-c[2], c[0], c[1]))

    def failure_rate(self) -> float:
        out = self.summaries + self.failures
        return self.failures / out if out else 0.0

    def exit_code(self) -> int:
        # A failure row its table rejected was logged but is in no output: as good as lost.
        # So is a job of the run that was never harvested: its records are in no output.
        if (self.unaccounted or self.get("manifest_mismatches") or self.get("failures_rejected")
                or self.accounting.open_jobs or self.accounting.jobs_without_input()
                or self.not_done):
            return exit_codes.UNACCOUNTED
        if self.failures and (not self.summaries or self.failure_rate() > self.max_failure_rate):
            return exit_codes.FAILURES_ABOVE_THRESHOLD
        return exit_codes.OK

    def cost(self, model_id: str) -> tuple[float, float] | None:
        """Estimated (batch, on-demand) USD, or None for a model without a listed price."""
        batch = estimate_cost(model_id, self.get("input_tokens"), self.get("output_tokens"))
        on_demand = estimate_on_demand_cost(model_id, self.get("on_demand_input_tokens"),
                                            self.get("on_demand_output_tokens"))
        if batch is None or on_demand is None:
            return None
        return batch, on_demand

    def lines(self, model_id: str) -> list[str]:
        failures = self.failures
        rate = f"  ({self.failure_rate():.1%} of rows out)" if failures else ""
        books = self.accounting
        lines = [
            f"run id          {self.run_id}",
            f"records in      {self.records_in}{ledger_note(books.ledger_files, self.ledger_unit)}",
            f"summaries       {self.summaries}  ({self.get('summaries_truncated')} cut at max tokens)",
            f"failures        {failures}{rate}",
        ]
        lines += [f"  {stage:<8} {code:<32} {count}" for stage, code, count in self.failures_by_cause()]
        lines += [
            f"jobs            {self.get('jobs_planned')} planned, {self.get('jobs_submitted')} "
            f"submitted, {self.get('jobs_finished')} finished, {self.get('jobs_not_created')} "
            f"not created{listed_note(books.jobs, len(books.open_jobs))}",
            f"tokens          batch {self.get('input_tokens')} in, {self.get('output_tokens')} out; "
            f"on demand {self.get('on_demand_calls')} calls, "
            f"{self.get('on_demand_input_tokens')} in, {self.get('on_demand_output_tokens')} out",
        ]
        cost = self.cost(model_id)
        if cost is None:
            lines.append(f"estimated cost  unknown: no listed price for {model_id}")
        else:
            batch, on_demand = cost
            lines.append(f"estimated cost  ${batch + on_demand:.4f} (batch ${batch:.4f}, on demand "
                         f"${on_demand:.4f}; estimate from list prices)")
        for name, text in (("failures_rejected", "failure rows the failures table rejected "
                                                 "(logged above)"),
                           ("manifest_mismatches", "job manifests disagree with their output "
                                                   "files (logged above)")):
            if self.get(name):
                lines.append(f"NOT ACCOUNTED   {self.get(name)} {text}")
        if books.counters_differ():
            lines.append(f"counted         {books.counted_in} in, {books.counted_summaries} "
                         f"summaries, {books.counted_failures} failures by the Beam counters "
                         f"(a restarted attempt starts them from zero; the figures above are "
                         f"the durable ones)")
        lines += books.problems(model_id)
        lines += [f"NOT ACCOUNTED   cancelled before done: {gap}" for gap in self.not_done]
        if self.unaccounted > 0:
            lines.append(f"NOT ACCOUNTED   {self.unaccounted} records in are neither a summary "
                         f"nor a failure row: records were lost")
        elif self.unaccounted < 0:
            lines.append(f"NOT ACCOUNTED   {-self.unaccounted} more rows out than records in: "
                         f"rows were produced twice, or the source did not count them")
        redacted = redaction_line(self.counters)
        if redacted:
            lines.append(redacted)
        if self.insights_aggregate:
            lines.append(insights_line(self.insights_aggregate))
        lines.append(f"written to      {', '.join(self.written) if self.written else 'nothing'}")
        lines.append(self.verdict())
        if self.report_html:
            lines.append(f"report          {self.report_html}")
        return lines

    def verdict(self) -> str:
        """The exit code and why, as the report's verdict line."""
        code = self.exit_code()
        if code == exit_codes.UNACCOUNTED:
            why = "records are not accounted for (see NOT ACCOUNTED above)"
        elif code == exit_codes.FAILURES_ABOVE_THRESHOLD and not self.summaries:
            why = "every record failed (see the failure rows)"
        elif code == exit_codes.FAILURES_ABOVE_THRESHOLD:
            why = (f"failures are {self.failure_rate():.1%} of rows, above --max-failure-rate "
                   f"{self.max_failure_rate:g} (see the failure rows)")
        elif self.accounting.input_empty():
            why = "the input held no records"
        elif self.accounting.input_empty() is None:
            missing = [what for what, known in (
                ("no source ledger", self.accounting.ledger_files is not None),
                ("no job ledger", self.accounting.jobs is not None)) if not known]
            why = f"no record was counted in ({' and '.join(missing)} to confirm it)"
        else:
            why = "every record is a summary or a failure row"
        return f"exit code       {code}: {why}"


def ledger_note(files: int | None, unit: str = "file") -> str:
    """What the records in figure rests on, beside it.

    Args:
        files: The source ledger's entries, or None without a ledger (the figure is the
            source counter's then).
        unit: What an entry is: a file, or a Kafka partition.
    """
    if files is None:
        return ""
    return f"  (source ledger: {files} {unit}{'' if files == 1 else 's'})"


def listed_note(jobs: int | None, open_jobs: int) -> str:
    """The jobs line's ending: the run's jobs as the service lists them.

    Args:
        jobs: The jobs of the run at the service, or None when not known (the verdict
            says so when it matters).
        open_jobs: How many of them the run never harvested.
    """
    if jobs is None:
        return ""
    return f"; {jobs} at the service, {open_jobs} not harvested"


def insights_line(aggregate: Mapping[str, Any]) -> str:
    """The report's one line on the overall insights aggregate.

    Args:
        aggregate: The overall AggregateInsights row.
    """
    rate, change = aggregate["resolution_rate"], aggregate["mean_sentiment_change"]
    items = sum(aggregate["open_action_items_by_owner"].values())
    return (f"insights        {aggregate['calls']} calls, "
            f"{'no resolution stated' if rate is None else f'{rate:.0%} resolved'}, mean "
            f"sentiment change {'n/a' if change is None else f'{change:+.2f}'}, {items} open "
            f"action items (see {AGGREGATE_DIR}/)")


def redaction_line(counters: dict[str, int]) -> str | None:
    """What --redact masked, or None when no redaction ran."""
    kinds = {name[len("redacted_"):]: n for name, n in sorted(counters.items())
             if name.startswith("redacted_")}
    if not counters.get("redaction_transcripts") and not kinds:
        return None
    labels = {"ssns": "SSNs"}
    found = ", ".join(f"{n} {labels.get(kind, kind.replace('_', ' '))}" for kind, n in kinds.items())
    return (f"redacted        {found or 'nothing'} in {counters.get('redaction_transcripts', 0)} "
            f"transcripts (best-effort)")


def report_dir(opts: BedrockBatchOptions, run_id: str) -> str:
    """Where report.json and report.html go: --report-dir, else the --output of a file sink,
    else reports/<run id> in the current directory (Kafka and BigQuery have no folder).

    Args:
        opts: The run's options.
        run_id: The run's id.
    """
    if opts.report_dir:
        return opts.report_dir
    return opts.output if opts.sink in FORMATS else join("reports", run_id)


def write_run_report(report: Report, opts: BedrockBatchOptions, config: BatchConfig,
                     streaming: bool, jobs: list[dict[str, Any]] | None,
                     jobs_note: str | None) -> str:
    """Write report.json and report.html.

    The rows are written by then, so a report that cannot be written is logged and named in
    the returned text; it does not change the exit code.

    Args:
        report: The run's accounting.
        opts: The run's options (where the report goes).
        config: The run's settings (AWS endpoints, model).
        streaming: Whether the run was a streaming one.
        jobs: The run's jobs (``run_jobs``), or None when the service could not be asked.
        jobs_note: Why ``jobs`` may be incomplete, or None.

    Returns:
        The path of report.html, or why it was not written.
    """
    directory = report_dir(opts, config.run_id)
    harvested = {job.name for job in report.facts.jobs or () if job.harvested}
    try:
        entries = [{**job, "harvested": job["name"] in harvested} for job in jobs or ()]
        data = report_data(report, config.model_id, entries, streaming=streaming,
                           jobs_note=jobs_note, insights_aggregate=report.insights_aggregate)
        return write_report(directory, data)
    except Exception as exc:  # e.g. a read-only folder: the rows are written all the same
        log.error("the run report could not be written to %s: %s", directory, exc)
        return f"not written to {directory}: {type(exc).__name__}: {exc}"
