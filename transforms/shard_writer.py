"""Stream records into quota-sized JSONL shards on S3 and describe the jobs that will read them.

No Beam here: the Beam stages (shards.py, carry.py) call ``ShardWriter.write`` with one group of
records. The plan is made from record ids and sizes only (planning.py); records are then streamed
into per-shard temp files, so memory holds one record at a time, not the group. Records are
placed in recordId order, so a restarted run lays out exactly the same shards and job names.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable

from transforms import layout
from transforms.config import BatchConfig
from transforms.jobs import JobsClient, client_token, job_name, run_prefix
from transforms.model import BatchRecord, Failure, JobBatch, JobSpec, truncate_raw
from transforms.planning import UndersizedPolicy, oversized, plan_sizes
from transforms.results import index_line
from transforms.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    """What one group became: a batch of jobs, records too few for a job, records too big."""

    batch: JobBatch | None = None
    undersized: list[BatchRecord] = field(default_factory=list)
    oversized: list[Failure] = field(default_factory=list)
    records_sharded: int = 0


class ShardWriter:
    def __init__(self, config: BatchConfig, storage: Storage, jobs: JobsClient):
        self._config = config
        self._storage = storage
        self._jobs = jobs

    def write(self, records: Iterable[BatchRecord], group_key: str, attempt: int,
              window_start: dt.datetime | None, window_end: dt.datetime | None) -> ShardResult:
        """``records`` is iterated twice (Beam's grouped values are re-iterable); ``group_key``
        names the jobs (window and pane), so it must be unique per group within the run."""
        cfg = self._config
        result = ShardResult()
        # Pass 1: ids and sizes only.
        sized = sorted((r.record_id, r.size_bytes) for r in records
                       if oversized(r.size_bytes, cfg.quotas) is None)
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
        names = [job_name(cfg.run_id, group_key, attempt, j) for j in range(len(job_records))]
        existing = self._jobs.reconcile(names, run_prefix(cfg.run_id)) if names else {}

        # Pass 2: stream each record into its shard's temp file (and index sidecar).
        with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
            handles: dict[tuple[int, int], tuple[Any, Any]] = {}
            try:
                for record in records:
                    placement = placement_of.get(record.record_id)
                    if placement is None:
                        result.oversized.append(self._oversized(record))
                    elif placement.job_index is None:
                        result.undersized.append(record)
                    elif names[placement.job_index] not in existing:
                        # (a job an earlier run created keeps the files it was created with)
                        key = (placement.job_index, placement.file_index)
                        if key not in handles:
                            base = os.path.join(tmp, f"{key[0]}-{key[1]}")
                            handles[key] = (open(base + ".jsonl", "w", encoding="utf-8"),
                                            open(base + ".idx", "w", encoding="utf-8"))
                        data, index = handles[key]
                        data.write(record.jsonl_line())
                        index.write(index_line(record))
                        result.records_sharded += 1
            finally:
                for data, index in handles.values():
                    data.close()
                    index.close()
            self._upload(tmp, names, existing, sorted(handles))

        specs = tuple(
            JobSpec(job_name=name, client_request_token=client_token(name), model_id=cfg.model_id,
                    input_s3_uri=layout.job_input_prefix(cfg.base_uri, cfg.run_id, name),
                    output_s3_uri=layout.output_prefix(cfg.base_uri, cfg.run_id),
                    record_count=job_records[j], input_bytes=job_bytes[j],
                    window_start=window_start, window_end=window_end, attempt=attempt)
            for j, name in enumerate(names))
        for spec in specs:
            log.info("planned %s: %d records, %d bytes%s", spec.job_name, spec.record_count,
                     spec.input_bytes, " (exists, not rewritten)" if spec.job_name in existing else "")
        if specs:
            result.batch = JobBatch(cfg.model_id, specs, cfg.poll_interval_seconds)
        return result

    def _upload(self, tmp: str, names: list[str], existing: dict, shards: list[tuple[int, int]]) -> None:
        cfg = self._config
        for name in names:
            if name not in existing:
                # Files left by an earlier run that never created this job (same run id, other
                # input) must not be mixed into it.
                self._storage.delete_prefix(layout.job_input_prefix(cfg.base_uri, cfg.run_id, name))
                self._storage.delete_prefix(layout.index_prefix(cfg.base_uri, cfg.run_id, name))
        for j, f in shards:
            base = os.path.join(tmp, f"{j}-{f}")
            self._storage.upload(base + ".jsonl", layout.job_input_prefix(
                cfg.base_uri, cfg.run_id, names[j]) + layout.shard_name(f))
            self._storage.upload(base + ".idx", layout.index_uri(cfg.base_uri, cfg.run_id, names[j], f))

    def _oversized(self, record: BatchRecord) -> Failure:
        return Failure(stage="validate", error_code="RecordTooLarge",
                       error_message=oversized(record.size_bytes, self._config.quotas) or "",
                       transcript_id=record.transcript_id, record_id=record.record_id,
                       attempt=record.attempt, raw=truncate_raw(record.model_input))


def undersized_failure(record: BatchRecord, count: int, config: BatchConfig, why: str) -> Failure:
    return Failure(
        stage="submit", error_code="UndersizedJob",
        error_message=(f"{count} record(s) {why} are fewer than the minimum of "
                       f"{config.quotas.min_records_per_job} records per batch job (policy "
                       f"{config.undersized_policy}); rerun them with --undersized-policy on-demand "
                       f"or a lower --min-records-per-job"),
        transcript_id=record.transcript_id, record_id=record.record_id, attempt=record.attempt)
