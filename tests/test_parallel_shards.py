"""Parallel shard preparation: the bucket planner (transforms/shards/bucket_plan.py, no Beam) and the
pipeline that uses it, whose placement must not depend on bundle order or parallelism."""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from tests.pipelines import local_config
from transforms.core import layout
from transforms.core.model import Transcript
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.prepare.records import build_record
from transforms.shards.bucket_plan import (MIN_BUCKETS, RECORDS_PER_BUCKET, BucketPlacement,
                                           BucketSummary, bucket_count, bucket_of)
from transforms.shards.planning import UndersizedPolicy, plan_window
from transforms.shards.shard_writer import ShardWriter, slice_line
from transforms.shards.write_shards import WriteShardsInParallel

QUOTAS = Quotas(max_records_per_file=40, max_records_per_job=100, min_records_per_job=30,
                max_file_bytes=10_000, max_job_bytes=20_000)


BUCKETS = 16


def _records(sizes: list[int]) -> list[tuple[str, int]]:
    return [(f"R{i:06d}", size) for i, size in enumerate(sizes)]


def _summary(records: list[tuple[str, int]], parts: int) -> BucketSummary:
    """The summary as a combiner makes it: partial summaries of arbitrary slices, merged."""
    partials = [BucketSummary() for _ in range(parts)]
    for i, (rid, size) in enumerate(records):
        partials[i % parts].add(bucket_of(rid, BUCKETS), size)
    total = BucketSummary()
    for partial in reversed(partials):
        total.merge(partial)
    return total


def _placed(records: list[tuple[str, int]], policy: UndersizedPolicy, seed: int,
            parts: int) -> dict[str, tuple]:
    """recordId -> placement, with buckets placed in a shuffled order."""
    placement = BucketPlacement.of(_summary(records, parts), QUOTAS, policy)
    buckets: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for rid, size in records:
        buckets[bucket_of(rid, BUCKETS)].append((rid, size))
    order = list(buckets)
    random.Random(seed).shuffle(order)
    placed = {}
    for bucket in order:
        members = sorted(buckets[bucket])
        for (rid, _), p in zip(members, placement.place(bucket, [s for _, s in members])):
            placed[rid] = (p.disposition, p.job_index, p.file_index)
    return placed


@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 900), min_size=0, max_size=400),
       policy=st.sampled_from(list(UndersizedPolicy)), seed=st.integers(0, 1000))
def test_bucket_placement_keeps_quotas_and_ignores_order(sizes, policy, seed) -> None:
    records = _records(sizes)
    placed = _placed(records, policy, seed, parts=3)
    assert placed == _placed(records, policy, seed + 1, parts=1), "order or slicing changed it"
    plan = plan_window(_summary(records, 1).stats(), QUOTAS, policy)
    jobs: dict = defaultdict(lambda: [0, 0])
    files: dict = defaultdict(lambda: [0, 0])
    undersized = 0
    for rid, size in records:
        disposition, job, file = placed[rid]
        if disposition == "undersized":
            undersized += 1
            continue
        for load in (jobs[job], files[(job, file)]):
            load[0] += 1
            load[1] += size
    assert undersized == plan.undersized
    assert sorted(jobs) == list(range(len(plan.jobs)))
    for j, job in enumerate(plan.jobs):
        assert jobs[j][0] == job.records
        assert [files[(j, f)][0] for f in range(len(job.files))] == list(job.files)
    assert all(QUOTAS.min_records_per_job <= r <= QUOTAS.max_records_per_job
               and b <= QUOTAS.max_job_bytes for r, b in jobs.values())
    assert all(r <= QUOTAS.max_records_per_file and b <= QUOTAS.max_file_bytes
               for r, b in files.values())


def test_a_record_the_summary_did_not_count_is_refused() -> None:
    placement = BucketPlacement.of(_summary(_records([100] * 40), 1), QUOTAS, UndersizedPolicy.FAIL)
    bucket = bucket_of("R000000", BUCKETS)
    with pytest.raises(ValueError, match="did not count"):
        placement.place(bucket, [5000])


@settings(max_examples=20, deadline=None)
@given(records=st.integers(0, 10_000_000))
def test_bucket_count_keeps_buckets_small_and_depends_on_the_count_only(records) -> None:
    buckets = bucket_count(records)
    assert buckets == bucket_count(records) >= MIN_BUCKETS
    assert records / buckets <= RECORDS_PER_BUCKET


def test_hash_buckets_of_real_ids_stay_near_their_mean() -> None:
    """A bucket's records are one grouped value on Flink: none may be far above the mean."""
    ids = [f"{i:08x}-call" for i in range(20_000)]
    buckets = bucket_count(len(ids))
    sizes = defaultdict(int)
    for rid in ids:
        sizes[bucket_of(rid, buckets)] += 1
    assert len(sizes) == buckets
    assert max(sizes.values()) <= 1.5 * RECORDS_PER_BUCKET


def test_a_shard_joined_from_slices_is_in_record_id_order_whatever_the_slicing(
        local_backend_factory) -> None:
    """Slices as placing workers write them (each sorted, recordIds interleaved across slices):
    the shard and its index come out in one recordId order, the same for any slicing."""
    config = local_config(local_backend_factory())
    storage = Storage(config.aws.client("s3"))
    writer = ShardWriter(config, storage, jobs=None)
    records = [build_record(Transcript(id=f"call-{i}", text=f"call {i}\twith a tab"),
                            config.model_id, config.prompt) for i in range(40)]
    shards = []
    for slicing in (1, 3, 7):
        parts = []
        for number in range(slicing):
            part = f"p{slicing}-{number}"
            writer.upload_part("job", 0, part, sorted(slice_line(r) for r in records[number::slicing]))
            parts.append(part)
        writer.join_parts("job", 0, parts[::-1])
        root = layout.job_input_prefix(config.base_uri, config.run_id, "job")
        data = storage.read_text(root + layout.shard_name(0))
        index = storage.read_text(layout.index_uri(config.base_uri, config.run_id, "job", 0))
        shards.append((data, index))
    ordered = sorted(records, key=lambda r: r.record_id)
    assert shards[0] == shards[1] == shards[2]
    assert shards[0][0] == "".join(r.jsonl_line() for r in ordered).rstrip("\n")
    assert [json.loads(line)["recordId"] for line in shards[0][1].splitlines()] == \
        [r.record_id for r in ordered]


def _write_shards(config, items, runner_args: list[str], out: Path) -> None:
    with beam.Pipeline(options=PipelineOptions(runner_args)) as p:
        records = (p | beam.Create(items)
                   | beam.Map(lambda t: build_record(t, config.model_id, config.prompt)))
        sharded = records | WriteShardsInParallel(config, attempt=1)
        (sharded["batches"] | beam.Map(lambda b: json.dumps([s.job_name for s in b.specs]))
         | beam.io.WriteToText(str(out / "names")))


def _uploaded(storage: Storage, config) -> dict[str, str]:
    """Every object under the run's input and index prefixes, path (run id cut out) -> content."""
    root = layout.run_root(config.base_uri, config.run_id)
    found = {}
    for part in ("input", "index"):
        for uri in storage.list(f"{root}/{part}/"):
            found[uri[len(root):].replace(config.run_id, "RUN")] = storage.read_text(uri)
    return found


def test_two_runs_lay_out_identical_shards_and_job_names(local_backend_factory, tmp_path) -> None:
    """Other input order, bundling and parallelism (DirectRunner with 1 worker, then 3 threads
    on the reversed input): the same jobs, the same shards, line for line."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_file=7, max_records_per_job=20,
                                                  min_records_per_job=5))
    items = [Transcript(id=f"call-{i:03d}", text="word " * (20 + (i * 37) % 300))
             for i in range(93)]
    layouts = []
    for name, args, order in [("one", ["--direct_num_workers=1"], items),
                              ("two", ["--direct_num_workers=3",
                                       "--direct_running_mode=multi_threading"], items[::-1])]:
        config = local_config(backend, run_id=f"det-{name}")
        _write_shards(config, order, args, tmp_path / name)
        storage = Storage(config.aws.client("s3"))
        layouts.append(_uploaded(storage, config))
        # The buckets' slices the shards were joined from are gone before any job is created.
        assert storage.list(layout.run_root(config.base_uri, config.run_id) + "/parts/") == []
        [batch] = [json.loads(line) for path in (tmp_path / name).glob("names*")
                   for line in path.read_text().splitlines()]
        # The one JobBatch names exactly the jobs whose shards were uploaded.
        assert {f"/input/{n.replace(config.run_id, 'RUN')}" for n in batch} == {
            path.rsplit("/", 1)[0] for path in layouts[-1] if path.startswith("/input/")}
    first, second = layouts
    assert first == second
    assert sum(1 for p in first if p.startswith("/input/")) >= 5 * 3  # jobs x files: really sharded
    lines = [line for path, text in first.items() if path.startswith("/input/")
             for line in text.splitlines()]
    assert len(lines) == len(set(lines)) == 93
