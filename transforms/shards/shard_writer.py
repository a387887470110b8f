"""Stream records into quota-sized JSONL shards on S3 and describe the jobs that will read them.

No Beam here. ``ShardWriter.write`` is the engine of one group of records (a window pane in
``write_shards.WriteShardsFn``, a carried group in ``carry.py``): the plan is made from record
ids and sizes only (planning.py); records are then streamed into per-shard temp files, so memory
holds the group's ids, sizes and placements but no record's text, except the records too few
for a job, which are returned to the caller. Records are placed in recordId order, so a
restarted run lays out exactly the same shards and job names. ``WriteShardsInParallel`` places
records by bucket instead and uses the writer's parts (``existing``, ``new_names``,
``prepare_jobs``, ``upload_part``, ``join_parts``, ``delete_parts``, ``adopted_specs``,
``batch``); the two engines share those parts and nothing else.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import heapq
import logging
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping

from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import JobsClient, client_token, job_name, run_prefix
from transforms.core.model import BatchRecord, Failure, JobBatch, JobSpec, truncate_raw
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


@dataclass(frozen=True)
class ExistingJobs:
    """What a run already created, as a rerun must know it before placing records.

    Args:
        run_jobs: The names of every job of the run.
        owner: recordId -> the existing job that holds it.
        totals: Existing job -> how many records it holds in all.
    """

    run_jobs: frozenset[str]  # names of every job of the run
    owner: Mapping[str, str]  # recordId -> the existing job that holds it
    totals: Mapping[str, int]  # existing job -> how many records it holds in all


class ShardWriter:
    """Writes a group's records into quota-sized shards of new jobs, and finds the jobs an earlier
    run of the same run id already created for them (the work behind the sharding DoFns).

    Args:
        config: The run's configuration (run id, quotas, S3 locations, model).
        storage: The S3 storage the shards and indexes are written to (and existing indexes
            read from).
        jobs: The Bedrock jobs client, to list the run's existing jobs.
    """

    def __init__(self, config: BatchConfig, storage: Storage, jobs: JobsClient):
        self._config = config
        self._storage = storage
        self._jobs = jobs

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
        run_jobs = {j.name for j in self._jobs.list(name_contains=run_prefix(cfg.run_id))}
        held = self._held_records((pool, *also_in), attempt, run_jobs,
                                  {r.record_id for r in records})
        owner = _owners(held)
        adopted, fresh = _split_by_owner(records, owner, cfg.quotas)
        placement_of, job_records, job_bytes = _place(fresh, cfg)
        names = self.new_names(group_key, attempt, len(job_records), run_jobs)
        with tempfile.TemporaryDirectory(prefix="shards-") as tmp:
            shards = _stream_into_shards(records, owner, placement_of, cfg.quotas, tmp, result)
            self._upload(tmp, names, pool, attempt, shards)
        result.batch = self.batch(
            [(name, job_records[j], job_bytes[j]) for j, name in enumerate(names)],
            self.adopted_specs(adopted, {name: held[name][1] for name in adopted}, result,
                               window_start, window_end, attempt),
            window_start, window_end, attempt)
        return result

    def batch(self, new_jobs: Iterable[tuple[str, int, int]], adopted: list[JobSpec],
              window_start: dt.datetime | None, window_end: dt.datetime | None,
              attempt: int) -> JobBatch | None:
        """A group's JobBatch: its new jobs, then the existing jobs it adopts; None when it has
        neither. Logs one "planned" line per job (the CLI's progress display counts them).

        Args:
            new_jobs: (name, records, bytes) of each new job, in job order.
            adopted: The adopted jobs' specs (``adopted_specs``).
            window_start: Start of the group's window, or None.
            window_end: End of that window, or None.
            attempt: The submission round.
        """
        specs = [self.spec(name, records, size, window_start, window_end, attempt)
                 for name, records, size in new_jobs] + adopted
        adopted_names = {spec.job_name for spec in adopted}
        for spec in specs:
            log.info("planned %s: %d records, %d bytes%s", spec.job_name, spec.record_count,
                     spec.input_bytes,
                     " (exists, adopted)" if spec.job_name in adopted_names else "")
        if not specs:
            return None
        cfg = self._config
        return JobBatch(cfg.model_id, tuple(specs), cfg.poll_interval_seconds)

    def adopted_specs(self, adopted: dict[str, list[tuple[str, int]]], totals: dict[str, int],
                      result: ShardResult, window_start: dt.datetime | None,
                      window_end: dt.datetime | None, attempt: int) -> list[JobSpec]:
        """The JobSpecs of jobs an earlier run created, for the records of ours they hold; counts
        the adopted records, and those the jobs hold that are not ours, on ``result``.

        Args:
            adopted: Per existing job name, (recordId, line size) of each of our records in it.
            totals: Per existing job name, the records it holds in all.
            result: Where the adopted and left-out counts are added.
            window_start: Start of the records' window, or None.
            window_end: End of the records' window, or None.
            attempt: The submission round.
        """
        specs = []
        for name, placed in sorted(adopted.items()):
            ids = frozenset(rid for rid, _ in placed)
            left_out = totals[name] - len(ids)
            result.records_adopted += len(ids)
            result.records_not_in_input += left_out
            if left_out:
                log.warning("job %s (created earlier with this run id) holds %d record(s) that are "
                            "not among these records: they are not emitted from it",
                            name, left_out)
            specs.append(self.spec(name, len(ids), sum(size for _, size in placed), window_start,
                                   window_end, attempt, ids if left_out else None))
        return specs

    def spec(self, name: str, records: int, size: int, window_start: dt.datetime | None,
             window_end: dt.datetime | None, attempt: int,
             record_ids: frozenset[str] | None = None) -> JobSpec:
        """The JobSpec of job ``name``.

        Args:
            name: The job name.
            records: How many records the job reads.
            size: The bytes of those records' JSONL lines.
            window_start: Start of the window the job is for (None: the global window).
            window_end: End of that window.
            attempt: The submission round.
            record_ids: The only recordIds to harvest from the job (None: all it holds).
        """
        cfg = self._config
        return JobSpec(job_name=name, client_request_token=client_token(name), model_id=cfg.model_id,
                       input_s3_uri=layout.job_input_prefix(cfg.base_uri, cfg.run_id, name),
                       output_s3_uri=layout.output_prefix(cfg.base_uri, cfg.run_id),
                       record_count=records, input_bytes=size, window_start=window_start,
                       window_end=window_end, attempt=attempt, record_ids=record_ids)

    def existing(self, pools: tuple[str, ...], attempt: int) -> "ExistingJobs":
        """The run's jobs, and which of them holds which record, in the pools' jobs.

        Args:
            pools: The pools whose jobs may hold records (see ``write``).
            attempt: The submission round.
        """
        listed = self._jobs.list(name_contains=run_prefix(self._config.run_id))
        run_jobs = frozenset(j.name for j in listed)
        held = self._held_records(pools, attempt, run_jobs, None)
        return ExistingJobs(run_jobs, _owners(held), {name: total for name, (_, total) in held.items()})

    def _held_records(self, pools: tuple[str, ...], attempt: int, run_jobs: Collection[str],
                      wanted: set[str] | None) -> dict[str, tuple[set[str], int]]:
        """For every existing job of the pools that holds some of the ``wanted`` recordIds
        (None: any): those ids and how many records it holds in all, from its index (only wanted
        ids are kept, so memory is bounded by the group, not by the pools).

        A marker whose job does not exist is a job never created (a crash before its submission,
        or a create the service refused): it holds no record."""
        cfg = self._config
        held: dict[str, tuple[set[str], int]] = {}
        markers = [uri for pool in pools for uri in self._storage.list(
            layout.pool_prefix(cfg.base_uri, cfg.run_id, attempt, pool))]
        for marker in markers:
            name = marker.rsplit("/", 1)[-1]
            if name not in run_jobs:
                continue
            found: set[str] = set()
            total = 0
            for uri in self._storage.list(layout.index_prefix(cfg.base_uri, cfg.run_id, name)):
                for entry in iter_index(self._storage.read_lines(uri)):
                    total += 1
                    if wanted is None or entry.record_id in wanted:
                        found.add(entry.record_id)
            if found:
                held[name] = (found, total)
        return held

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
            self._storage.delete_prefix(layout.part_prefix(cfg.base_uri, cfg.run_id, name))
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

    def upload_part(self, name: str, file_index: int, part: str, lines: list[str]) -> None:
        """Upload a slice of a shard: lines of ``slice_line``, in recordId order.

        Args:
            name: The job the shard is for.
            file_index: The shard's number within the job.
            part: The slice's unique name.
            lines: The slice's lines, sorted.
        """
        cfg = self._config
        self._storage.write_text(
            layout.part_uri(cfg.base_uri, cfg.run_id, name, file_index, part), "".join(lines))

    def join_parts(self, name: str, file_index: int, parts: Iterable[str]) -> None:
        """Join a shard from its slices and upload it with its index. The slices are merged in
        recordId order, so the file is the same however the records were sliced; each slice is
        read from a local copy, one line at a time.

        Args:
            name: The job the shard is for.
            file_index: The shard's number within the job.
            parts: The names of its slices.
        """
        cfg = self._config
        with tempfile.TemporaryDirectory(prefix="shard-") as tmp, contextlib.ExitStack() as files:
            slices = []
            for number, part in enumerate(parts):
                path = os.path.join(tmp, f"{number}.part")
                self._storage.download(
                    layout.part_uri(cfg.base_uri, cfg.run_id, name, file_index, part), path)
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
            self._storage.delete_prefix(layout.part_prefix(cfg.base_uri, cfg.run_id, name))


def slice_line(record: BatchRecord) -> str:
    """The record's line of a shard slice: its recordId, its shard line and its index line,
    tab-separated (compact JSON holds no raw tab or newline). Lines sort in recordId order: a
    tab sorts before any recordId character.

    Args:
        record: The record.
    """
    return f"{record.record_id}\t{record.jsonl_line()[:-1]}\t{index_line(record)}"


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


def _owners(held: Mapping[str, tuple[Collection[str], int]]) -> dict[str, str]:
    """recordId -> the existing job that holds it (a record two jobs hold, which no run of this
    code makes, goes to the first by name)."""
    return {rid: name for name in sorted(held, reverse=True) for rid in held[name][0]}


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

