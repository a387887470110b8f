"""Beam stage: read a finished job's output files and manifest into Summary / Failure / retries."""
from __future__ import annotations

import json
import logging
from typing import Any, Iterator

import apache_beam as beam

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import HARVESTABLE
from transforms.core.metrics import counter
from transforms.core.storage import Storage, join
from transforms.jobs.await_jobs import JobOutcome
from transforms.jobs.results import (MANIFEST_NAME, OUTPUT_SUFFIX, Harvest, JobContext, Manifest,
                                     harvest_lines, iter_index, read_input_models, unanswered)

log = logging.getLogger(__name__)

FAILURES = "failures"
RETRIES = "retries"


class RecordMetrics:
    """Beam counters for what a harvest produced (shared by the pipeline and `collect`)."""

    def __init__(self) -> None:
        self.succeeded = counter("records_succeeded")
        self.failed = counter("records_failed")
        self.retried = counter("records_retried")
        self.truncated = counter("summaries_truncated")
        self.repairs = counter("insights_repair_requests")
        self.tokens_in = counter("input_tokens")
        self.tokens_out = counter("output_tokens")

    def emit(self, harvest: Harvest) -> Iterator[Any]:
        """Count what ``harvest`` holds, then yield its summaries (main output), failures
        (``failures``) and retries (``retries``).

        Args:
            harvest: What one job's output produced.
        """
        self.succeeded.inc(len(harvest.summaries))
        self.failed.inc(len(harvest.failures))
        self.retried.inc(len(harvest.retries))
        self.truncated.inc(harvest.truncated)
        self.repairs.inc(harvest.repairs)
        self.tokens_in.inc(harvest.input_tokens)
        self.tokens_out.inc(harvest.output_tokens)
        yield from harvest.summaries
        for failure in harvest.failures:
            yield beam.pvalue.TaggedOutput(FAILURES, failure)
        for retry in harvest.retries:
            yield beam.pvalue.TaggedOutput(RETRIES, retry)


class HarvestJobFn(beam.DoFn):
    """JobOutcome -> Summary (main), Failure (``failures``), BatchRecord to resubmit (``retries``).

    Args:
        config: The run's configuration (AWS clients, retry limit, task).
    """

    def __init__(self, config: BatchConfig):
        self._config = config
        self._mismatches = counter("manifest_mismatches")
        self._unreadable = counter("output_lines_unreadable")

    def setup(self) -> None:
        self._storage = Storage(self._config.aws.client("s3"))
        self._metrics = RecordMetrics()

    def process(self, outcome: JobOutcome) -> Iterator[Any]:
        cfg, spec, status = self._config, outcome.spec, outcome.status
        ctx = JobContext(model_id=spec.model_id, job_arn=status.arn if status else None,
                         job_status=status.status if status else "NotCreated",
                         job_message=status.message if status else outcome.error,
                         invocation_type=cfg.job.model_invocation_type,
                         window_start=spec.window_start, window_end=spec.window_end,
                         max_attempts=cfg.max_attempts if outcome.error is None else 0,
                         output_schema=cfg.output_schema)
        output_dir = status.job_output_uri if status and status.status in HARVESTABLE else None
        # Rows go out file by file (memory holds one shard's rows); counts add up for the job.
        answered = model_errors = unreadable = summaries = failures = retries = 0
        for index_uri in self._storage.list(layout.index_prefix(cfg.base_uri, cfg.run_id, spec.job_name)):
            shard = index_uri.rsplit("/", 1)[-1][: -len(layout.INDEX_SUFFIX)]
            index = {e.record_id: e for e in iter_index(self._storage.read_lines(index_uri))}
            others: set[str] = set()
            if spec.record_ids is not None:  # an earlier run's job: emit this input's records only
                others = set(index) - spec.record_ids
                index = {rid: e for rid, e in index.items() if rid in spec.record_ids}
            harvest, seen = Harvest(), set()
            if output_dir is not None:
                out_uri = join(output_dir, shard + OUTPUT_SUFFIX)
                if self._storage.exists(out_uri):
                    harvest, seen = harvest_lines(self._storage.read_lines(out_uri), index, ctx,
                                                  others)
            answered += (len(harvest.summaries) + sum(f.stage == "parse" for f in harvest.failures)
                         + harvest.others_answered + harvest.repairs)
            model_errors += harvest.model_errors + harvest.others_errored
            if harvest.unreadable:
                log.warning("job %s: %d line(s) of %s are no JSON record (a torn line?); their "
                            "records are retried", spec.job_name, harvest.unreadable,
                            join(output_dir, shard + OUTPUT_SUFFIX))
            unreadable += harvest.unreadable
            self._unreadable.inc(harvest.unreadable)
            missing = set(index) - seen
            inputs = (read_input_models(self._storage.read_lines(spec.input_s3_uri + shard), missing)
                      if missing else {})
            harvest.merge(unanswered(index, seen, inputs, ctx))
            summaries += len(harvest.summaries)
            failures += len(harvest.failures)
            retries += len(harvest.retries)
            yield from self._metrics.emit(harvest)
        if output_dir is not None:
            self._reconcile(output_dir, answered, model_errors, unreadable, spec.job_name,
                            status.status)
        if status is not None:
            # Durable, unlike the counters: the run report names every job of the run without
            # this marker as never harvested. Named by the job, so a harvest done again (a
            # replay, a rerun) overwrites it.
            self._storage.write_text(
                layout.harvested_uri(cfg.base_uri, cfg.run_id, spec.job_name),
                json.dumps({"status": status.status, "summaries": summaries,
                            "failures": failures, "retries": retries}))
        log.info("harvested %s: %d summaries, %d failures, %d to retry", spec.job_name,
                 summaries, failures, retries)

    def _reconcile(self, output_dir: str, answered: int, model_errors: int, unreadable: int,
                   job_name: str, status: str) -> None:
        manifest_uri = join(output_dir, MANIFEST_NAME)
        if not self._storage.exists(manifest_uri):
            # A job that completed always writes one: its absence is a mismatch too.
            if status in ("Completed", "PartiallyCompleted"):
                self._mismatches.inc()
            log.warning("job %s (%s) has no %s; counts not reconciled", job_name, status,
                        MANIFEST_NAME)
            return
        manifest = Manifest.parse(self._storage.read_text(manifest_uri))
        # An unreadable line is one the manifest counts as succeeded or errored: it must make up
        # the difference exactly, or the files hold other records than the manifest says.
        if (manifest.success + manifest.error != answered + model_errors + unreadable
                or manifest.success < answered or manifest.error < model_errors):
            self._mismatches.inc()
            log.warning("job %s: manifest says %d succeeded / %d errored, output files hold %d / "
                        "%d (and %d unreadable lines)", job_name, manifest.success,
                        manifest.error, answered, model_errors, unreadable)

