"""The plan from sightings (transforms/sighting_plan.py), on SQLite, against the same decisions
made in memory with the same functions: deduplication, colliding recordIds, records existing
jobs hold, oversized records and bucket placement, for generated sightings. Colliding recordIds
and existing jobs are generated here directly: a file input cannot make a 60-bit hash collide,
and the rerun tests drive existing jobs through the CLI."""
from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.quotas import Quotas
from transforms.prepare.records import assign_record_ids
from transforms.shards.bucket_plan import (BucketPlacement, BucketSummary, bucket_count,
                                           bucket_of)
from transforms.shards.planning import UndersizedPolicy, oversized
from transforms.shards.shard_writer import owners
from transforms.sighting_plan import (ADOPTED, DUPLICATE, OVERSIZED, PLACED, UNBUILT, UNDERSIZED,
                                      SightingPlan, SightingSpill, spilled_verdicts)
from transforms.sources.validation import first_sighting

QUOTAS = Quotas(max_records_per_file=3, max_records_per_job=8, min_records_per_job=2,
                max_file_bytes=4_000, max_job_bytes=9_000)

# One record read: its id (few, so they repeat), its recordId (few, so different ids collide;
# None: its record cannot be built), its size (some too large for any job).
SIGHTED = st.tuples(st.integers(0, 30), st.one_of(st.none(), st.integers(0, 25)),
                    st.integers(100, 5_000))


def _sightings(drawn: list[tuple[int, int | None, int]]) -> list[tuple[str, str, str | None, int]]:
    return [(f"calls-{n % 3}.jsonl:{n}", f"call-{tid}",
             None if rid is None else f"R{rid:015d}", size)
            for n, (tid, rid, size) in enumerate(drawn)]


def _in_memory(sightings, held, policy):
    """The same decisions with the same functions, every record in memory."""
    verdicts = {}
    kept = []
    for _, group in itertools.groupby(sorted(sightings, key=lambda s: s[1]), key=lambda s: s[1]):
        first, duplicates = first_sighting(group)
        for origin, tid, _, _ in duplicates:
            verdicts[origin] = (DUPLICATE, tid, "", 0, (first[0], first[1]))
        if first[2] is None:
            verdicts[first[0]] = (UNBUILT, first[1], "", 0, None)
        else:
            kept.append(first)
    by_rid: dict[str, list[str]] = {}
    for _, tid, rid, _ in kept:
        by_rid.setdefault(rid, []).append(tid)
    salted = {tid: new for tids in by_rid.values() if len(tids) > 1
              for tid, new in assign_record_ids(tids).items()}
    kept = [(o, tid, salted.get(tid, rid), size) for o, tid, rid, size in kept]
    owner = owners(held)
    buckets = bucket_count(len(kept))
    summary, fresh = BucketSummary(), {}
    for origin, tid, rid, size in kept:
        if rid in owner:
            verdicts[origin] = (ADOPTED, tid, rid, size, (owner[rid], None))
        elif oversized(size, QUOTAS):
            verdicts[origin] = (OVERSIZED, tid, rid, size, None)
        else:
            summary.add(bucket_of(rid, buckets), size)
            fresh.setdefault(bucket_of(rid, buckets), []).append((origin, tid, rid, size))
    placement = BucketPlacement.of(summary, QUOTAS, UndersizedPolicy(policy))
    for bucket, members in fresh.items():
        ordered = sorted(members, key=lambda s: s[2])
        places = placement.place(bucket, [s[3] for s in ordered])
        for (origin, tid, rid, size), at in zip(ordered, places):
            verdicts[origin] = ((UNDERSIZED, tid, rid, size, None) if at.job_index is None else
                                (PLACED, tid, rid, size, (at.job_index, at.file_index)))
    return verdicts, len(kept), sum(len(t) - 1 for t in by_rid.values()), summary


@settings(max_examples=60, deadline=None)
@given(drawn=st.lists(SIGHTED, min_size=30, max_size=150), spills=st.integers(1, 4),
       held=st.lists(st.tuples(st.integers(0, 25), st.sampled_from(["job-b", "job-a"])),
                     max_size=10),
       policy=st.sampled_from(["pad-merge", "fail", "on-demand", "defer"]))
def test_the_plan_decides_what_the_same_functions_decide_in_memory(tmp_path_factory, drawn,
                                                                     spills, held, policy):
    tmp = tmp_path_factory.mktemp("plan")
    sightings = _sightings(drawn)
    held_pairs = [(f"R{rid:015d}", job) for rid, job in held]
    writers = [SightingSpill(str(tmp)) for _ in range(spills)]
    spilled: list[list[str]] = [[] for _ in range(spills)]  # each spill's origins, in order
    for n, sighting in enumerate(sightings):  # records of one id may be in different bundles
        writers[n % spills].add(sighting[1], sighting, f"transcript at {sighting[0]}".encode())
        spilled[n % spills].append(sighting[0])
    paths = [writer.close() for writer in writers]
    plan = SightingPlan(str(tmp / "plan.db"), QUOTAS)
    plan.load(paths)
    picked = plan.pick()
    plan.hold(held_pairs)
    summary = plan.classify(bucket_count(picked.records))
    plan.place(BucketPlacement.of(summary, QUOTAS, UndersizedPolicy(policy)))
    adopted = sorted(plan.adopted())
    plan.close()

    expected, records, collisions, expected_summary = _in_memory(sightings, held_pairs, policy)
    assert (picked.records, picked.collisions) == (records, collisions)
    assert summary == expected_summary
    # Each spill read back: its transcripts in the order spilled, each with its verdict.
    for path, origins in zip(paths, spilled):
        assert list(spilled_verdicts(plan.path, path)) == [
            (f"transcript at {origin}".encode(), expected[origin]) for origin in origins]
    assert adopted == sorted((v[4][0], (v[2], v[3])) for v in expected.values()
                             if v[0] == ADOPTED)
