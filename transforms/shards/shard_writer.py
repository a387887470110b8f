"""Stream records into quota-sized JSONL shards on S3 and describe the jobs that will read them.

No Beam here. ``ShardWriter.write`` is the engine of one group of records (a window pane in
``write_shards.WriteShardsFn``, a carried group in ``carry.py``): the plan is made from record
ids and sizes only (planning.py); records are then streamed into per-shard temp files, so memory
holds the group's ids, sizes and placements but no record's text, except the records too few
for a job, which are returned to the caller. Records are placed in recordId order, so a
restarted run lays out exactly the same shards and job names.

``WriteShardsInParallel`` places the global window's records by hash bucket instead
(bucket_plan.py) and writes its shards as slices joined per shard (``upload_part``,
``join_parts``, ``delete_parts``). What both engines share is the rest of the writer: the
existing jobs a rerun adopts (``existing``, ``indexed_ids``, ``owners``, ``adopted_load``), new
job names and prefixes (``new_names``, ``prepare_jobs``) and the group's JobBatch (``batch``).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Iterator, Mapping, Optional, Tuple

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import JobsClient, client_token, job_name, run_prefix
from transforms.core.model import (BatchRecord, Failure, JobBatch, JobSpec, encode_jsonl_bytes,
                                   truncate_raw)
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.jobs.results import index_line, iter_index
from transforms.shards.planning import Placement, UndersizedPolicy, oversized, plan_sizes

log = logging.getLogger(__name__)


@dataclass
class ShardResult:
    """What one group became: a batch of jobs, records too few for a job, records too big.

    Args:
        batch: The group's new jobs; None when it made none.
        undersized: Records too few to make a job: they go to the undersized policy.
        oversized: RecordTooLarge failure rows of records no job can take.
        records_sharded: Records written to new jobs' shards.
        records_adopted: Records found in jobs an earlier run created: harvested from those.
        records_not_in_input: Records those jobs hold that are not among this group's records.
    """

    batch: JobBatch | None = None
    undersized: list[BatchRecord] = field(default_factory=list)
    oversized: list[Failure] = field(default_factory=list)
    records_sharded: int = 0
    records_adopted: int = 0  # found in jobs an earlier run created: harvested from those
    records_not_in_input: int = 0  # held by those jobs but not among this group's records


# What a job reads for a group: (job name, records, bytes of their lines, the only recordIds to
# harvest from it, sorted; None: every record it holds). Plain values, as Beam codes them natively.
JobLoad = Tuple[str, int, int, Optional[Tuple[str, ...]]]


@dataclass(frozen=True)
class ExistingJobs:
    """What a run already created, as a rerun must know it before naming new jobs: names only;
    which records the jobs hold is read from their indexes (``indexed_ids``) where it is needed.

    Args:
        run_jobs: The names of every job of the run.
        pool_jobs: The existing jobs of the pools looked in, in name order: the jobs that may
            hold the records.
    """

    run_jobs: frozenset[str]
    pool_jobs: tuple[str, ...]


class ShardWriter:
    """Writes a group's records into quota-sized shards of new jobs, and finds the jobs an earlier
    run of the same run id already created for them (the work behind the sharding DoFns).

    Args:
        config: The run's configuration (run id, quotas, S3 locations, model).
        storage: The S3 storage the shards and indexes are written to (and existing indexes
            read from).
        jobs: The Bedrock jobs client, to list the run's existing jobs.
        parts_base: Where the shards' slices go until each shard is joined: the run's
            ``base_uri`` when None; a local folder when every worker shares its disk.
    """

    def __init__(self, config: BatchConfig, storage: Storage, jobs: JobsClient,
                 parts_base: str | None = None):
        self._config = config
        self._storage = storage
        self._jobs = jobs
        self._parts_base = parts_base or config.base_uri

    def write(self, records: Iterable[BatchRecord], group_key: str, attempt: int,
              window_start: dt.datetime | None, window_end: dt.datetime | None,
              pool: str, also_in: tuple[str, ...] = ()) -> ShardResult:
        """``records`` is iterated three times (Beam's grouped values are re-iterable); ``group_key``
        names the jobs (window and pane), so it must be unique per group within the run;
        ``pool`` groups the keys whose jobs a rerun may find its records in (a window's panes);
        ``also_in`` names other pools whose jobs may hold them too.

        Each existing job's index is the truth: a record an existing job of the pool holds is
        harvested from that job, never placed again; only the others get new jobs, whose names
        no existing job has. So a rerun with the same run id creates no job twice, and a changed
        input loses or duplicates no record.
        """
        cfg = self._config
        result = ShardResult()
        existing = self.existing((pool, *also_in), attempt)
        owner, totals = self._held(existing.pool_jobs, {r.record_id for r in records})
        adopted, fresh = _split_by_owner(records, owner, cfg.quotas)
        placement_of, job_records, job_bytes = _place(fresh, cfg)
        names = self.new_names(group_key, attempt, len(job_records), existing.run_jobs)
        with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
            shards = _stream_into_shards(records, owner, placement_of, cfg.quotas, tmp, result)
            self._upload(tmp, names, pool, attempt, shards)
        result.batch = self.batch(
            [(name, job_records[j], job_bytes[j]) for j, name in enumerate(names)],
            [self.adopted_load(name, placed, totals[name], result)
             for name, placed in sorted(adopted.items())],
            window_start, window_end, attempt)
        return result

    def batch(self, new_jobs: Iterable[tuple[str, int, int]], adopted: Iterable[JobLoad],
              window_start: dt.datetime | None, window_end: dt.datetime | None,
              attempt: int) -> JobBatch | None:
        """A group's JobBatch: its new jobs, then the existing jobs it adopts; None when it has
        neither. Logs one "planned" line per job (the CLI's progress display counts them).

        Args:
            new_jobs: (name, records, bytes) of each new job, in job order.
            adopted: The adopted jobs' loads (``adopted_load``), in name order.
            window_start: Start of the group's window, or None.
            window_end: End of that window, or None.
            attempt: The submission round.
        """
        specs = [self._spec(name, records, size, window_start, window_end, attempt, None)
                 for name, records, size in new_jobs]
        adopted_specs = [self._spec(name, records, size, window_start, window_end, attempt, ids)
                         for name, records, size, ids in adopted]
        # One format for both: the progress display matches it (pipeline.progress.LOG_EVENTS).
        for spec, note in [(spec, "") for spec in specs] + \
                [(spec, " (exists, adopted)") for spec in adopted_specs]:
            log.info("planned %s: %d records, %d bytes%s", spec.job_name, spec.record_count,
                     spec.input_bytes, note)
        specs += adopted_specs
        if not specs:
            return None
        cfg = self._config
        return JobBatch(cfg.model_id, tuple(specs), cfg.poll_interval_seconds)

    def adopted_load(self, name: str, placed: Iterable[tuple[str, int]], total: int,
                     result: ShardResult) -> JobLoad:
        """What job ``name``, which an earlier run created, reads for our records; counts the
        adopted records, and those the job holds that are not ours, on ``result``.

        Args:
            name: The existing job.
            placed: (recordId, line size) of each of our records it holds.
            total: How many records it holds in all.
            result: Where the adopted and left-out counts are added.
        """
        placed = list(placed)
        ids = frozenset(rid for rid, _ in placed)
        left_out = total - len(ids)
        result.records_adopted += len(ids)
        result.records_not_in_input += left_out
        if left_out:
            log.warning("job %s (created earlier with this run id) holds %d record(s) that are "
                        "not among these records: they are not emitted from it", name, left_out)
        return (name, len(ids), sum(size for _, size in placed),
                tuple(sorted(ids)) if left_out else None)

    def _spec(self, name: str, records: int, size: int, window_start: dt.datetime | None,
              window_end: dt.datetime | None, attempt: int,
              record_ids: Collection[str] | None) -> JobSpec:
        """The JobSpec of job ``name``; ``record_ids`` are the only ones to harvest from it
        (None: all it holds)."""
        cfg = self._config
        return JobSpec(job_name=name, client_request_token=client_token(name), model_id=cfg.model_id,
                       input_s3_uri=layout.job_input_prefix(cfg.base_uri, cfg.run_id, name),
                       output_s3_uri=layout.output_prefix(cfg.base_uri, cfg.run_id),
                       record_count=records, input_bytes=size, window_start=window_start,
                       window_end=window_end, attempt=attempt,
                       record_ids=None if record_ids is None else frozenset(record_ids))

    def existing(self, pools: tuple[str, ...], attempt: int) -> ExistingJobs:
        """The run's jobs, and those of them marked as the pools' (see ``write``).

        A marker whose job does not exist is a job never created (a crash before its submission,
        or a create the service refused): it holds no record.

        Args:
            pools: The pools whose jobs may hold records.
            attempt: The submission round.
        """
        cfg = self._config
        run_jobs = frozenset(j.name for j in self._jobs.list(name_contains=run_prefix(cfg.run_id)))
        marked = {uri.rsplit("/", 1)[-1] for pool in pools for uri in self._storage.list(
            layout.pool_prefix(cfg.base_uri, cfg.run_id, attempt, pool))}
        return ExistingJobs(run_jobs, tuple(sorted(marked & run_jobs)))

    def indexed_ids(self, name: str) -> Iterator[str]:
        """The recordId of every record job ``name`` holds, read from its index, one at a time.

        Args:
            name: The job.
        """
        cfg = self._config
        for uri in self._storage.list(layout.index_prefix(cfg.base_uri, cfg.run_id, name)):
            for entry in iter_index(self._storage.read_lines(uri)):
                yield entry.record_id

    def held_by(self, jobs: Iterable[str], totals: dict[str, int]) -> Iterator[tuple[str, str]]:
        """(recordId, job) for every record each of ``jobs`` holds, read from their indexes;
        ``totals`` gets how many records each job holds, once its index is read.

        Args:
            jobs: The existing jobs.
            totals: Filled in: job -> how many records it holds.
        """
        for name in jobs:
            totals[name] = 0
            for rid in self.indexed_ids(name):
                totals[name] += 1
                yield rid, name

    def _held(self, jobs: Iterable[str], wanted: Collection[str]
              ) -> tuple[dict[str, str], dict[str, int]]:
        """The owners (``owners``) of the ``wanted`` recordIds among ``jobs``, and how many records
        each job holds in all. Only wanted ids are kept, so memory is bounded by the group, not
        by the jobs."""
        totals: dict[str, int] = {}
        held = [pair for pair in self.held_by(jobs, totals) if pair[0] in wanted]
        return owners(held), totals

    def new_names(self, group_key: str, attempt: int, count: int,
                  run_jobs: Collection[str]) -> list[str]:
        """Names for ``count`` new jobs: the first generation none of whose names exists yet, so
        an unchanged first run gets generation 0 and a rerun never reuses a created job's name.

        Args:
            group_key: The window (and pane) key the names carry.
            attempt: The submission round.
            count: How many jobs.
            run_jobs: Names of every job the run already has.
        """
        run_id = self._config.run_id
        generation = 0
        while any(job_name(run_id, group_key, attempt, j, generation) in run_jobs
                  for j in range(count)):
            generation += 1
        return [job_name(run_id, group_key, attempt, j, generation) for j in range(count)]

    def _upload(self, tmp: str, names: list[str], pool: str, attempt: int,
                shards: list[tuple[int, int]]) -> None:
        self.prepare_jobs(names, pool, attempt)
        for j, f in shards:
            self.upload_shard(os.path.join(tmp, f"{j}-{f}"), names[j], f)

    def prepare_jobs(self, names: list[str], pool: str, attempt: int) -> None:
        """Empty the input and index prefixes of new jobs and mark them as the pool's; before
        any of their shards is uploaded.

        Args:
            names: The new jobs' names (none of them created yet).
            pool: The pool the jobs belong to.
            attempt: The submission round.
        """
        cfg = self._config
        for name in names:
            # Files left by an earlier run that never created this job (same run id, other
            # input, or a crash mid-upload) must not be mixed into it.
            self._storage.delete_prefix(layout.job_input_prefix(cfg.base_uri, cfg.run_id, name))
            self._storage.delete_prefix(layout.index_prefix(cfg.base_uri, cfg.run_id, name))
            self._storage.delete_prefix(layout.part_prefix(self._parts_base, cfg.run_id, name))
            self._storage.write_text(
                layout.pool_prefix(cfg.base_uri, cfg.run_id, attempt, pool) + name, "")

    def upload_shard(self, base: str, name: str, file_index: int) -> None:
        """Upload one shard (``base``.jsonl) and then its index (``base``.idx) of job ``name``.

        Args:
            base: Local path of the two files, without suffix.
            name: The job the shard is for.
            file_index: The shard's number within the job.
        """
        cfg = self._config
        self._storage.upload(base + ".jsonl", layout.job_input_prefix(
            cfg.base_uri, cfg.run_id, name) + layout.shard_name(file_index))
        self._storage.upload(base + ".idx", layout.index_uri(cfg.base_uri, cfg.run_id, name,
                                                             file_index))

    def upload_part(self, name: str, file_index: int, part: str, lines: list[bytes]) -> None:
        """Upload a slice of a shard: lines of ``slice_line``, in recordId order.

        Args:
            name: The job the shard is for.
            file_index: The shard's number within the job.
            part: The slice's unique name.
            lines: The slice's lines, sorted.
        """
        cfg = self._config
        self._storage.write_bytes(
            layout.part_uri(self._parts_base, cfg.run_id, name, file_index, part), b"".join(lines))

    def join_parts(self, name: str, file_index: int, parts: Iterable[str]) -> None:
        """Join a shard from its slices and upload it with its index. The slices are merged in
        recordId order, so the file is the same however the records were sliced; each slice is
        read from a local copy (in place when it is local), one line at a time.

        Args:
            name: The job the shard is for.
            file_index: The shard's number within the job.
            parts: The names of its slices.
        """
        cfg = self._config
        with tempfile.TemporaryDirectory(prefix="shard-") as tmp, contextlib.ExitStack() as files:
            slices = []
            for number, part in enumerate(parts):
                path = layout.part_uri(self._parts_base, cfg.run_id, name, file_index, part)
                if path.startswith("s3://"):  # else a local slice, read where it is
                    path, uri = os.path.join(tmp, f"{number}.part"), path
                    self._storage.download(uri, path)
                slices.append(files.enter_context(open(path, "rb")))
            base = os.path.join(tmp, "shard")
            with open(base + ".jsonl", "wb") as data, open(base + ".idx", "wb") as index:
                for line in heapq.merge(*slices):
                    _, shard_line, index_line_ = line.split(b"\t", 2)
                    data.write(shard_line + b"\n")
                    index.write(index_line_)  # the slice's line ends with the index's newline
            self.upload_shard(base, name, file_index)

    def delete_parts(self, names: Iterable[str]) -> None:
        """Remove the slices the shards of jobs ``names`` were joined from.

        Args:
            names: The jobs' names.
        """
        cfg = self._config
        for name in names:
            self._storage.delete_prefix(layout.part_prefix(self._parts_base, cfg.run_id, name))


def slice_line(record: BatchRecord) -> bytes:
    """The record's line of a shard slice, as UTF-8: its recordId, its shard line and its index
    line, tab-separated (compact JSON holds no raw tab or newline). Lines sort in recordId
    order: a tab sorts before any recordId character. Bytes, as the shard is written: UTF-8
    sorts as its text does.

    Args:
        record: The record.
    """
    return b"\t".join((record.record_id.encode("utf-8"),
                       encode_jsonl_bytes(record.record_id, record.model_input)[:-1],
                       index_line(record).encode("utf-8")))


def oversized_failure(record: BatchRecord, quotas: Quotas) -> Failure:
    """The RecordTooLarge failure row of a record no job can take.

    Args:
        record: The oversized record.
        quotas: The quotas it exceeds.
    """
    return Failure(stage="validate", error_code="RecordTooLarge",
                   error_message=oversized(record.size_bytes, quotas) or "",
                   transcript_id=record.transcript_id, record_id=record.record_id,
                   attempt=record.attempt, raw=truncate_raw(record.model_input))


def owners(held: Iterable[tuple[str, str]]) -> dict[str, str]:
    """recordId -> the existing job that holds it, from (recordId, job) pairs read from the jobs'
    indexes (a record two jobs hold, which no run of this code makes, goes to the first by name).

    Args:
        held: (recordId, job name) for each record an existing job holds.
    """
    owner: dict[str, str] = {}
    for rid, name in held:
        current = owner.get(rid)
        if current is None or name < current:
            owner[rid] = name
    return owner


def _split_by_owner(records: Iterable[BatchRecord], owner: Mapping[str, str], quotas: Quotas
                    ) -> tuple[dict[str, list[tuple[str, int]]], list[tuple[str, int]]]:
    """Pass 1, ids and sizes only: (per existing job, the (recordId, size) of the records it
    holds; the (recordId, size) of the records that fit a new job, in recordId order)."""
    adopted: dict[str, list[tuple[str, int]]] = {}
    fresh: list[tuple[str, int]] = []
    for r in records:
        if r.record_id in owner:
            adopted.setdefault(owner[r.record_id], []).append((r.record_id, r.size_bytes))
        elif oversized(r.size_bytes, quotas) is None:
            fresh.append((r.record_id, r.size_bytes))
    fresh.sort()
    return adopted, fresh


def _place(fresh: list[tuple[str, int]], cfg: BatchConfig
           ) -> tuple[dict[str, Placement], dict[int, int], dict[int, int]]:
    """The plan of the fresh records: (recordId -> placement, records per new job, bytes per
    new job)."""
    _, placements = plan_sizes([size for _, size in fresh], cfg.quotas,
                                  UndersizedPolicy(cfg.undersized_policy))
    placement_of = {rid: p for (rid, _), p in zip(fresh, placements)}
    # The assigner may open more jobs than planned when byte quotas force it: count from it.
    job_records: dict[int, int] = {}
    job_bytes: dict[int, int] = {}
    for (_, size), p in zip(fresh, placements):
        if p.job_index is not None:
            job_records[p.job_index] = job_records.get(p.job_index, 0) + 1
            job_bytes[p.job_index] = job_bytes.get(p.job_index, 0) + size
    return placement_of, job_records, job_bytes


def _stream_into_shards(records: Iterable[BatchRecord], owner: Mapping[str, str],
                        placement_of: Mapping[str, Placement], quotas: Quotas, tmp: str,
                        result: ShardResult) -> list[tuple[int, int]]:
    """Pass 2: each new record into its shard's temp file (and index sidecar) under ``tmp``;
    the undersized and oversized ones onto ``result``. Returns the (job, file) shards written."""
    handles: dict[tuple[int, int], tuple[Any, Any]] = {}
    try:
        for record in records:
            if record.record_id in owner:
                continue
            placement = placement_of.get(record.record_id)
            if placement is None:
                result.oversized.append(oversized_failure(record, quotas))
            elif placement.job_index is None:
                result.undersized.append(record)
            else:
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
    return sorted(handles)


def undersized_failure(record: BatchRecord, count: int, config: BatchConfig, why: str) -> Failure:
    """The UndersizedJob failure row of a record too few for a job, naming the flags that help.

    Args:
        record: The record.
        count: How many records of its group went this way.
        config: The run's config (quotas and policy).
        why: How the records came to be too few.
    """
    return Failure(
        stage="submit", error_code="UndersizedJob",
        error_message=(f"{count} record(s) {why} are fewer than the minimum of "
                       f"{config.quotas.min_records_per_job} records per batch job (policy "
                       f"{config.undersized_policy}); rerun them with --undersized-policy on-demand "
                       f"or a lower --min-records-per-job"),
        transcript_id=record.transcript_id, record_id=record.record_id, attempt=record.attempt)

