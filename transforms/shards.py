"""Beam stage: stream one window's records into quota-sized JSONL shards on S3, one JobSpec per job.

The shard plan is made from record ids and sizes only (planning.py); records are then streamed
into per-shard temp files, so memory holds one record at a time, not the window. Records are
placed in recordId order, so a restarted run lays out exactly the same shards and job names.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindow

from transforms import layout
from transforms.config import BatchConfig
from transforms.jobs import JobsClient, client_token, job_name, run_prefix
from transforms.model import BatchRecord, Failure, JobBatch, JobSpec, truncate_raw
from transforms.planning import UndersizedPolicy, oversized, plan_sizes
from transforms.results import index_line
from transforms.storage import Storage

log = logging.getLogger(__name__)

FAILURES = "failures"
ON_DEMAND = "on_demand"


def window_bounds(window: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if isinstance(window, GlobalWindow) or not hasattr(window, "start"):
        return None, None
    return window.start.to_utc_datetime(has_tz=True), window.end.to_utc_datetime(has_tz=True)


class WriteShardsFn(beam.DoFn):
    """(key, records of one window) -> JobSpecs as one batch, plus Failure / on-demand records."""

    def __init__(self, config: BatchConfig, attempt: int):
        self._config = config
        self._attempt = attempt
        self._jobs_planned = Metrics.counter("bedrock", "jobs_planned")
        self._records_sharded = Metrics.counter("bedrock", "records_sharded")

    def setup(self) -> None:
        self._storage = Storage(self._config.aws.client("s3"))
        self._jobs = JobsClient(self._config.aws.client("bedrock"), self._config.job)

    def process(self, element: tuple[Any, Iterable[BatchRecord]], window=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam) -> Iterator[Any]:
        _, records = element
        cfg = self._config
        # Pass 1: ids and sizes only.
        sized, too_big = [], set()
        for record in records:
            reason = oversized(record.size_bytes, cfg.quotas)
            if reason:
                too_big.add(record.record_id)
            else:
                sized.append((record.record_id, record.size_bytes))
        sized.sort()
        plan, placements = plan_sizes([size for _, size in sized], cfg.quotas,
                                      UndersizedPolicy(cfg.undersized_policy))
        placement_of = {rid: p for (rid, _), p in zip(sized, placements)}
        # The assigner may open more jobs than planned when byte quotas force it: count from it.
        job_records: dict[int, int] = {}
        job_bytes: dict[int, int] = {}
        for (_, size), p in zip(sized, placements):
            if p.job_index is not None:
                job_records[p.job_index] = job_records.get(p.job_index, 0) + 1
                job_bytes[p.job_index] = job_bytes.get(p.job_index, 0) + size

        start, end = window_bounds(window)
        # A window fires more than once in streaming (early when a full job is ready, late for
        # resubmissions): each pane gets job names of its own.
        wkey = layout.window_key(start, pane.index if pane is not None else 0)
        names = [job_name(cfg.run_id, wkey, self._attempt, j) for j in range(len(job_records))]
        existing = self._jobs.reconcile(names, run_prefix(cfg.run_id)) if names else {}

        # Pass 2: stream each record into its shard's temp file (and index sidecar).
        with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
            handles: dict[tuple[int, int], tuple[Any, Any]] = {}
            try:
                for record in records:
                    if record.record_id in too_big:
                        yield beam.pvalue.TaggedOutput(FAILURES, self._oversized(record))
                        continue
                    placement = placement_of[record.record_id]
                    if placement.job_index is None:
                        yield from self._undersized(record, plan.undersized)
                        continue
                    if names[placement.job_index] in existing:
                        continue  # this job was created by an earlier run: its files are final
                    key = (placement.job_index, placement.file_index)
                    if key not in handles:
                        handles[key] = (
                            open(os.path.join(tmp, f"{key[0]}-{key[1]}.jsonl"), "w", encoding="utf-8"),
                            open(os.path.join(tmp, f"{key[0]}-{key[1]}.idx"), "w", encoding="utf-8"))
                    data, index = handles[key]
                    data.write(record.jsonl_line())
                    index.write(index_line(record))
                    self._records_sharded.inc()
            finally:
                for data, index in handles.values():
                    data.close()
                    index.close()
            for j, name in enumerate(names):
                if name not in existing:
                    # Files left by an earlier run that never created this job (same run id,
                    # other input) must not be mixed into it.
                    self._storage.delete_prefix(layout.job_input_prefix(cfg.base_uri, cfg.run_id, name))
                    self._storage.delete_prefix(layout.index_prefix(cfg.base_uri, cfg.run_id, name))
            for (j, f), _ in sorted(handles.items()):
                self._storage.upload(os.path.join(tmp, f"{j}-{f}.jsonl"),
                                     layout.job_input_prefix(cfg.base_uri, cfg.run_id, names[j])
                                     + layout.shard_name(f))
                self._storage.upload(os.path.join(tmp, f"{j}-{f}.idx"),
                                     layout.index_uri(cfg.base_uri, cfg.run_id, names[j], f))

        specs = tuple(
            JobSpec(job_name=name, client_request_token=client_token(name), model_id=cfg.model_id,
                    input_s3_uri=layout.job_input_prefix(cfg.base_uri, cfg.run_id, name),
                    output_s3_uri=layout.output_prefix(cfg.base_uri, cfg.run_id),
                    record_count=job_records[j], input_bytes=job_bytes[j], window_start=start,
                    window_end=end, attempt=self._attempt)
            for j, name in enumerate(names))
        self._jobs_planned.inc(len(specs))
        for spec in specs:
            log.info("planned %s: %d records, %d bytes%s", spec.job_name, spec.record_count,
                     spec.input_bytes, " (exists, not rewritten)" if spec.job_name in existing else "")
        if specs:
            yield JobBatch(cfg.model_id, specs, cfg.poll_interval_seconds)

    def _oversized(self, record: BatchRecord) -> Failure:
        return Failure(stage="validate", error_code="RecordTooLarge",
                       error_message=oversized(record.size_bytes, self._config.quotas) or "",
                       transcript_id=record.transcript_id, record_id=record.record_id,
                       attempt=record.attempt, raw=truncate_raw(record.model_input))

    def _undersized(self, record: BatchRecord, count: int) -> Iterator[Any]:
        cfg = self._config
        if cfg.undersized_policy == "on-demand":
            yield beam.pvalue.TaggedOutput(ON_DEMAND, record)
            return
        yield beam.pvalue.TaggedOutput(FAILURES, Failure(
            stage="submit", error_code="UndersizedJob",
            error_message=(f"{count} record(s) left over are fewer than the minimum of "
                           f"{cfg.quotas.min_records_per_job} records per batch job and could not be "
                           f"merged into another job (policy {cfg.undersized_policy}); rerun them "
                           f"with --undersized-policy on-demand or a lower --min-records-per-job"),
            transcript_id=record.transcript_id, record_id=record.record_id, attempt=record.attempt))
