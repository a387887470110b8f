"""Reruns with the same run id are exact: a changed input loses and duplicates no record, and no
record goes into a second billed job. The public composite run twice against one local backend,
and the ShardWriter (no Beam) for what a batch run cannot show quickly: panes of a streaming
window and carried tails that group differently, and a crash between upload and submission."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter

from pipeline.local.backend import LocalBackend
from tests.pipelines import LOCAL_RUNNERS, local_config, pipeline_on, summarize, transcripts
from transforms.config import BatchConfig
from transforms.core import layout
from transforms.core.bedrock import JobsClient
from transforms.core.metrics import NAMESPACE
from transforms.core.model import BatchRecord, JobBatch, Transcript
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.jobs.results import iter_index
from transforms.prepare.records import build_record
from transforms.shards.bucket_plan import bucket_count, bucket_of
from transforms.shards.shard_writer import ShardWriter
from transforms.shards.write_shards import WriteShardsInParallel


def _jobs(backend: LocalBackend, run_id: str) -> dict[str, dict[str, Any]]:
    pages = backend.boto3_client("bedrock").get_paginator("list_model_invocation_jobs").paginate(
        nameContains=run_id)
    return {j["jobName"]: j for page in pages for j in page["invocationJobSummaries"]}


@pytest.fixture
def creates(local_backend_factory, monkeypatch) -> tuple[LocalBackend, Counter]:
    """A backend whose CreateModelInvocationJob calls are counted by job name."""
    backend = local_backend_factory(quotas=Quotas(max_records_per_job=20, min_records_per_job=5))
    calls: Counter = Counter()
    create = backend.service.create_model_invocation_job

    def counted(params: dict[str, Any]) -> dict[str, Any]:
        calls[params["jobName"]] += 1
        return create(params)

    monkeypatch.setattr(backend.service, "create_model_invocation_job", counted)
    return backend, calls


@pytest.mark.parametrize("runner", LOCAL_RUNNERS)
def test_rerun_with_changed_input_emits_each_record_once_and_bills_none_twice(creates, tmp_path,
                                                                              runner):
    backend, calls = creates
    first = transcripts(60)                       # call-0000 .. call-0059
    second = first[30:] + transcripts(50, "new")  # 30 of them again, 50 new
    config = local_config(backend, run_id="rerun-changed")

    summaries, failures = summarize(first, config, tmp_path / "one", runner=runner)
    assert not failures and len(summaries) == 60
    before = _jobs(backend, config.run_id)
    assert len(before) == 3 and set(calls) == set(before)

    counters: dict[str, int] = {}
    summaries, failures = summarize(second, config, tmp_path / "two", runner=runner,
                                    counters=counters)
    assert not failures
    ids = [r["transcript_id"] for r in summaries]
    assert Counter(ids) == Counter(t.id for t in second), "every record of the rerun exactly once"
    after = _jobs(backend, config.run_id)
    # The first run's jobs are adopted as they are, never created again.
    assert {n: after[n]["jobArn"] for n in before} == {n: j["jobArn"] for n, j in before.items()}
    assert all(calls[name] == 1 for name in before)
    new = set(after) - set(before)
    assert len(new) == 3 and all(calls[name] == 1 for name in new)
    # No record is in two jobs: the billed records are the union of the two inputs.
    assert sum(j["totalRecordCount"] for j in after.values()) == 60 + 50
    assert counters["records_adopted"] == 30
    assert counters["records_not_in_input"] == 30
    # The adopted jobs' output files still reconcile with their manifests.
    assert counters.get("manifest_mismatches", 0) == 0
    overlap = {r["transcript_id"]: r["job_arn"] for r in summaries if r["transcript_id"] < "call-9"}
    assert set(overlap.values()) <= {j["jobArn"] for j in before.values()}


# ---- ShardWriter: the same decisions without a pipeline ------------------------------------------

class _Run:
    """A ShardWriter and the clients it uses, on the test's backend."""

    def __init__(self, backend: LocalBackend):
        self.config: BatchConfig = local_config(backend)
        self.storage = Storage(self.config.aws.client("s3"))
        self.jobs = JobsClient(self.config.aws.client("bedrock"), self.config.job)
        self.writer = ShardWriter(self.config, self.storage, self.jobs)

    def records(self, items: list[Transcript]) -> list[BatchRecord]:
        cfg = self.config
        return [build_record(t, cfg.model_id, cfg.prompt, cfg.job.model_invocation_type)
                for t in items]

    def write(self, items: list[Transcript], key: str, pool: str, also_in: tuple[str, ...] = ()):
        return self.writer.write(self.records(items), key, 1, None, None, pool=pool,
                                 also_in=also_in)

    def create(self, batch: JobBatch) -> None:
        for spec in batch.specs:
            self.jobs.create(spec)

    def index_ids(self, name: str) -> set[str]:
        cfg = self.config
        return {e.record_id for uri in self.storage.list(layout.index_prefix(cfg.base_uri, cfg.run_id, name))
                for e in iter_index(self.storage.read_lines(uri))}

    def harvested_ids(self, batch: JobBatch) -> list[str]:
        """The recordIds harvest would emit for the batch's jobs (its record_ids or whole index)."""
        return [rid for spec in batch.specs
                for rid in (spec.record_ids if spec.record_ids is not None
                            else self.index_ids(spec.job_name))]


@pytest.fixture
def run(local_backend_factory) -> _Run:
    return _Run(local_backend_factory(quotas=Quotas(max_records_per_job=20, min_records_per_job=5)))


@pytest.mark.parametrize("pool,keys", [("w100", ("w100", "w100p1")), ("c", ("c1", "c2"))],
                         ids=["streaming-panes", "carried-tails"])
def test_records_are_found_in_any_group_of_their_pool(run: _Run, pool: str, keys) -> None:
    """A rerun's panes (or carried groups) need not hold the records they held the first time."""
    old, new = transcripts(30), transcripts(10, "new")
    first = run.write(old, keys[0], pool)
    run.create(first.batch)
    before = {s.job_name for s in first.batch.specs}
    # The rerun: its first group holds 10 old and 10 new records, its second the other 20 old.
    a = run.write(old[:10] + new, keys[0], pool)
    b = run.write(old[10:], keys[1], pool)
    assert (a.records_adopted, a.records_sharded, b.records_adopted, b.records_sharded) == (10, 10, 20, 0)
    assert (a.records_not_in_input, b.records_not_in_input) == (20, 10)
    fresh = [s.job_name for s in a.batch.specs if s.job_name not in before]
    assert len(fresh) == 1 and fresh[0].endswith(f"{keys[0]}-a1-g1-0000")
    assert {s.job_name for s in b.batch.specs} <= before
    emitted = run.harvested_ids(a.batch) + run.harvested_ids(b.batch)
    expected = [r.record_id for r in run.records(old + new)]
    assert sorted(emitted) == sorted(expected), "every record once, from one job"


@pytest.mark.parametrize("first,then", [(("g", "g", ()), ("c1", "c", ("g",))),
                                        (("c1", "c", ()), ("g", "g", ("c",)))],
                         ids=["full-job-then-tail", "tail-then-full-job"])
def test_records_are_found_across_window_and_carried_jobs(run: _Run, first, then) -> None:
    """Under the defer policy a rerun may carry a record the first run put in a full job, or the
    other way round; the writer is told to look in the other pool too."""
    items = transcripts(30)
    done = run.write(items, *first)
    run.create(done.batch)
    again = run.write(items[:12] + transcripts(8, "new"), *then)
    assert (again.records_adopted, again.records_sharded) == (12, 8)
    emitted = run.harvested_ids(again.batch)
    assert sorted(emitted) == sorted(r.record_id for r in run.records(items[:12] + transcripts(8, "new")))


def test_unchanged_rerun_adopts_every_job_and_writes_nothing(run: _Run) -> None:
    items = transcripts(45)
    first = run.write(items, "g", "g")
    run.create(first.batch)
    again = run.write(items, "g", "g")
    assert [s.job_name for s in again.batch.specs] == sorted(s.job_name for s in first.batch.specs)
    assert all(s.record_ids is None for s in again.batch.specs)
    assert (again.records_sharded, again.records_adopted, again.records_not_in_input) == (0, 45, 0)


def test_files_of_a_job_never_created_are_replaced(run: _Run) -> None:
    """A crash after the upload, before the submission: the rerun (other input) reuses the names
    and nothing of the first upload stays under them."""
    first = run.write(transcripts(30), "g", "g")
    name = first.batch.specs[0].job_name
    stray = layout.job_input_prefix(run.config.base_uri, run.config.run_id, name) + "shard-00009.jsonl"
    run.storage.write_text(stray, "{}\n")  # as if an upload of more files had been cut short
    items = transcripts(25, "other")
    again = run.write(items, "g", "g")
    assert [s.job_name for s in again.batch.specs] == [s.job_name for s in first.batch.specs]
    assert stray not in run.storage.list(layout.job_input_prefix(
        run.config.base_uri, run.config.run_id, name))
    assert sorted(run.harvested_ids(again.batch)) == sorted(r.record_id for r in run.records(items))


# ---- WriteShardsInParallel: existing owners found per hash bucket --------------------------------

def _write_in_parallel(run: _Run, items: list[Transcript], out: Path, create: bool
                       ) -> tuple[dict[str, list[str] | None], Counter]:
    """The global window's shards written by the parallel engine: its jobs (name -> the only
    recordIds to harvest from it, None: all) and counters. ``create``: the jobs are also
    created, as a first run does."""
    config = run.config

    def planned(batch: JobBatch) -> str:
        if create:
            jobs = JobsClient(config.aws.client("bedrock"), config.job)
            for spec in batch.specs:
                jobs.create(spec)
        return json.dumps({s.job_name: None if s.record_ids is None else sorted(s.record_ids)
                           for s in batch.specs})

    with pipeline_on("FnApiRunner") as p:
        (p | beam.Create(run.records(items))
         | WriteShardsInParallel(config, attempt=1)
         )["batches"] | beam.Map(planned) | beam.io.WriteToText(str(out / "batch"))
    [batch] = [json.loads(line) for path in out.glob("batch*")
               for line in path.read_text().splitlines()]
    counters: Counter = Counter()
    for counter in p.result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        counters[counter.key.metric.name] += counter.committed  # summed over the steps
    return batch, counters


def test_a_rerun_finds_its_records_owners_in_each_hash_bucket(run: _Run, tmp_path) -> None:
    """The rerun's records and the first run's jobs' recordIds meet per hash bucket: records of
    every bucket are harvested from the jobs that hold them, none placed again; the new ones,
    and only they, get new jobs."""
    old, new = transcripts(90), transcripts(30, "new")
    first, _ = _write_in_parallel(run, old, tmp_path / "one", create=True)
    kept = old[::3] + old[1::3]  # 60 of the 90, so every first-run job holds records left out
    again, counters = _write_in_parallel(run, kept + new, tmp_path / "two", create=False)

    kept_ids = {r.record_id for r in run.records(kept)}
    buckets = bucket_count(len(kept) + len(new))
    assert len({bucket_of(rid, buckets) for rid in kept_ids}) == buckets > 1
    assert set(first) <= set(again), "every first-run job is adopted"
    harvested = [rid for name in first for rid in again[name]]
    assert sorted(harvested) == sorted(kept_ids), "each kept record from the job that holds it"
    placed = [rid for name in set(again) - set(first) for rid in run.index_ids(name)]
    assert sorted(placed) == sorted(r.record_id for r in run.records(new)), "only new ones placed"
    assert (counters["records_adopted"], counters["records_not_in_input"],
            counters["records_sharded"]) == (60, 30, 30)
