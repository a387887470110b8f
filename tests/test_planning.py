"""Shard/job planning and streamed placement (transforms/shards/planning.py), and price
estimates."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.pricing import batch_price, estimate_cost
from transforms.core.quotas import GB, Quotas, profile
from transforms.shards.planning import (JobPlan, Placement, ShardAssigner, UndersizedPolicy,
                                        WindowStats, class_bounds, estimate_tokens,
                                        lower_bound_jobs, oversized, plan_sizes, plan_window,
                                        size_class)

PAD, DEFER, ON_DEMAND, FAIL = (UndersizedPolicy.PAD_MERGE, UndersizedPolicy.DEFER,
                               UndersizedPolicy.ON_DEMAND, UndersizedPolicy.FAIL)
SMALL = Quotas(max_concurrent_jobs=2, max_records_per_file=40, max_records_per_job=100,
               min_records_per_job=60, max_file_bytes=10_000, max_job_bytes=20_000)


def shards(placements: list[Placement], sizes: list[int]) -> tuple[dict, dict]:
    """(job -> [records, bytes], (job, file) -> [records, bytes]) of the batch placements."""
    jobs: dict = defaultdict(lambda: [0, 0])
    files: dict = defaultdict(lambda: [0, 0])
    for p, size in zip(placements, sizes):
        if p.disposition == "batch":
            for bucket in (jobs[p.job_index], files[(p.job_index, p.file_index)]):
                bucket[0] += 1
                bucket[1] += size
    return dict(jobs), dict(files)


def test_250_records_max_100_min_60_pad_merge_is_three_even_jobs() -> None:
    plan, placements = plan_sizes([50] * 250, SMALL, PAD)
    assert [j.records for j in plan.jobs] == [84, 83, 83]
    assert plan.undersized == 0 and plan.undersized_reason is None
    assert [j.files for j in plan.jobs] == [(28, 28, 28), (28, 28, 27), (28, 28, 27)]
    jobs, _ = shards(placements, [50] * 250)
    assert {j: r for j, (r, _) in jobs.items()} == {0: 84, 1: 83, 2: 83}


@pytest.mark.parametrize("policy", [DEFER, ON_DEMAND, FAIL])
def test_other_policies_keep_jobs_full_and_hand_over_the_tail(policy: UndersizedPolicy) -> None:
    plan, placements = plan_sizes([50] * 250, SMALL, policy)
    assert [j.records for j in plan.jobs] == [100, 100]
    assert plan.undersized == 50 and plan.policy is policy
    assert "50 records are fewer than the minimum of 60" in plan.undersized_reason
    # The last records of the stream take the undersized path.
    assert [p.disposition for p in placements[200:]] == ["undersized"] * 50
    assert all(p.disposition == "batch" for p in placements[:200])


@pytest.mark.parametrize("policy", list(UndersizedPolicy))
def test_a_tail_of_at_least_the_minimum_is_its_own_job(policy: UndersizedPolicy) -> None:
    plan = plan_window(WindowStats.of([50] * 270), SMALL, policy)
    assert [j.records for j in plan.jobs] == [90, 90, 90] and plan.undersized == 0


def test_pad_merge_leftover_when_the_tail_does_not_fit() -> None:
    quotas = Quotas(max_records_per_job=100, min_records_per_job=90)
    plan = plan_window(WindowStats.of([10] * 150), quotas, PAD)
    assert [j.records for j in plan.jobs] == [100] and plan.undersized == 50
    assert "do not fit into the previous jobs" in plan.undersized_reason


def test_tail_goes_to_the_policy_only_when_the_other_jobs_can_be_full() -> None:
    # Found by the property test: job bytes keep one job from holding 9 of these, so "full jobs
    # plus a tail" would strand 2 records; spreading all 10 over 2 jobs fits.
    quotas = Quotas(max_records_per_file=1, max_records_per_job=9, min_records_per_job=2,
                    max_file_bytes=152, max_job_bytes=76)
    plan, _ = plan_sizes([1, 1, 1, 1, 1, 1, 15, 19, 19, 19], quotas, DEFER)
    assert [j.records for j in plan.jobs] == [5, 5] and plan.undersized == 0


@pytest.mark.parametrize("policy", list(UndersizedPolicy))
def test_fewer_records_than_the_minimum_are_all_undersized(policy: UndersizedPolicy) -> None:
    plan = plan_window(WindowStats.of([10] * 59), SMALL, policy)
    assert plan.jobs == () and plan.undersized == 59 and plan.batched == 0
    assert "fewer than the minimum of 60" in plan.undersized_reason


def test_empty_window() -> None:
    plan = plan_window(WindowStats(), SMALL, PAD)
    assert plan.jobs == () and plan.undersized == 0


def test_policy_given_as_its_flag_value() -> None:
    assert plan_window(WindowStats.of([50] * 250), SMALL, "defer").policy is DEFER


def test_aws_default_profile() -> None:
    stats = WindowStats(records=120_000, total_bytes=120_000 * 3_000, max_record_bytes=6_000,
                        min_record_bytes=800)
    plan = plan_window(stats, profile("aws-default"), PAD)
    assert [j.records for j in plan.jobs] == [40_000] * 3
    assert all(j.files == (40_000,) for j in plan.jobs)


def test_article_profile_splits_files_by_bytes() -> None:
    # 20 kB transcripts: a 40,000-record job is 800 MB (under 1 GB) but needs 4 files of 200 MB.
    stats = WindowStats(records=120_000, total_bytes=120_000 * 20_000, max_record_bytes=20_000,
                        min_record_bytes=20_000)
    plan = plan_window(stats, profile("article"), PAD)
    assert len(plan.jobs) == lower_bound_jobs(stats, profile("article")) == 3
    assert all(j == JobPlan(40_000, (10_000,) * 4) for j in plan.jobs)
    assert plan_window(WindowStats.of([1_000] * 999), profile("article"), FAIL).undersized == 999


def test_byte_bound_plan_uses_the_byte_lower_bound() -> None:
    quotas = Quotas(max_records_per_file=1_000, max_records_per_job=1_000, min_records_per_job=10,
                    max_file_bytes=100, max_job_bytes=300)
    plan, placements = plan_sizes([10] * 100, quotas, PAD)
    assert lower_bound_jobs(WindowStats.of([10] * 100), quotas) == 4
    assert [j.records for j in plan.jobs] == [25] * 4
    assert [j.files for j in plan.jobs] == [(9, 8, 8)] * 4
    jobs, files = shards(placements, [10] * 100)
    assert max(b for _, b in jobs.values()) <= 300 and max(b for _, b in files.values()) <= 100


def test_one_large_record_among_small_ones_keeps_the_lower_bound() -> None:
    # Knowing the smallest size bounds any 100 records to 150 + 99 bytes: one job suffices.
    quotas = Quotas(max_records_per_job=100, min_records_per_job=1, max_file_bytes=300,
                    max_job_bytes=300)
    plan, _ = plan_sizes([1] * 50 + [150] + [1] * 49, quotas, PAD)
    assert [j.records for j in plan.jobs] == [100]


def test_large_records_are_dealt_across_jobs() -> None:
    # Filled in stream order, one job could get all five 100-byte records plus small ones (> 500
    # bytes); dealt by size class, each job gets two or three of them.
    quotas = Quotas(max_records_per_job=100, min_records_per_job=1, max_file_bytes=500,
                    max_job_bytes=500)
    sizes = [100] * 5 + [5] * 50
    plan, placements = plan_sizes(sizes, quotas, PAD)
    assert lower_bound_jobs(WindowStats.of(sizes), quotas) == len(plan.jobs) == 2
    jobs, _ = shards(placements, sizes)
    assert sorted(jobs.values()) == [[27, 325], [28, 425]]


def test_jobs_near_the_byte_quota_may_exceed_the_lower_bound() -> None:
    # Sizes 96..104 share size classes known only as "<= 103" (and "<= 104"): two jobs of five
    # records would hold 500 bytes each, but could be up to 516 by what the planner knows.
    quotas = Quotas(max_records_per_job=5, min_records_per_job=1, max_file_bytes=505,
                    max_job_bytes=505)
    sizes = [96, 97, 98, 99, 100, 101, 102, 103, 100, 104]
    assert lower_bound_jobs(WindowStats.of(sizes), quotas) == 2
    plan, placements = plan_sizes(sizes, quotas, PAD)
    assert [j.records for j in plan.jobs] == [4, 3, 3]
    jobs, _ = shards(placements, sizes)
    assert all(b <= 505 for _, b in jobs.values())


def test_planning_without_a_histogram_uses_the_extremes() -> None:
    quotas = Quotas(max_records_per_job=100, min_records_per_job=1, max_file_bytes=300,
                    max_job_bytes=300)
    sizes = [100] * 3 + [1] * 37
    bare = WindowStats(records=40, total_bytes=337, max_record_bytes=100, min_record_bytes=1)
    # Knowing only the extremes, any 4 records might include the three 100-byte ones (301 bytes).
    plan = plan_window(bare, quotas, PAD)
    assert len(plan.jobs) == 14 and max(j.records for j in plan.jobs) == 3
    assigner = ShardAssigner(plan, quotas)
    jobs, _ = shards([assigner.assign(s) for s in sizes], sizes)
    assert sorted(jobs) == list(range(14)) and all(b <= 300 for _, b in jobs.values())
    # With the histogram the three large records are dealt apart: the lower bound of 2 holds.
    assert len(plan_window(WindowStats.of(sizes), quotas, PAD).jobs) == 2


def test_oversized_records() -> None:
    assert oversized(10_000, SMALL) is None
    reason = oversized(10_001, SMALL)
    assert "10001 bytes" in reason and "--max-file-bytes" in reason
    sizes = [50] * 100 + [10_001]
    plan, placements = plan_sizes(sizes, SMALL, PAD)
    assert placements[-1].disposition == "oversized" and plan.batched == 100
    with pytest.raises(ValueError, match="oversized"):
        plan_window(WindowStats.of(sizes), SMALL, PAD)


def test_window_stats_combine() -> None:
    a, b = WindowStats.of([5, 9, 20]), WindowStats.of([1, 20, 3])
    merged = a.merge(b)
    assert merged == b.merge(a) == WindowStats.of([1, 3, 5, 9, 20, 20])
    assert (merged.records, merged.total_bytes, merged.max_record_bytes, merged.min_record_bytes) \
        == (6, 58, 20, 1)
    assert merged.histogram == ((1, 1), (3, 1), (5, 1), (size_class(9), 1), (size_class(20), 2))
    assert WindowStats().merge(a) == a.merge(WindowStats()) == a
    # Stats from a source without a histogram still plan (with the extremes only).
    bare = WindowStats(records=3, total_bytes=30, max_record_bytes=12)
    assert bare.merge(a).histogram == () and bare.classes() == ((-1, 3, 0, 12),)


@pytest.mark.parametrize("size", [1, 7, 8, 15, 16, 17, 100, 1023, 1024, 20_000, 5 * GB])
def test_size_classes_hold_their_sizes_within_an_eighth(size: int) -> None:
    lo, hi = class_bounds(size_class(size))
    assert lo <= size <= hi and hi - lo <= lo // 8


def test_assigner_never_breaks_a_quota_when_stats_understate_sizes() -> None:
    """Stats that lie (sizes the histogram never announced) go to overflow jobs, within quota."""
    quotas = Quotas(max_records_per_file=10, max_records_per_job=20, min_records_per_job=1,
                    max_file_bytes=100, max_job_bytes=150)
    plan = plan_window(WindowStats.of([5] * 40), quotas, PAD)
    assert [j.records for j in plan.jobs] == [20, 20]
    sizes = [5] * 10 + [90] * 4 + [5] * 26
    assigner = ShardAssigner(plan, quotas)
    placements = [assigner.assign(s) for s in sizes]
    assert all(p.disposition == "batch" for p in placements)
    jobs, files = shards(placements, sizes)
    assert all(r <= 20 and b <= 150 for r, b in jobs.values())
    assert all(r <= 10 and b <= 100 for r, b in files.values())
    assert len(jobs) > 2 and sum(r for r, _ in jobs.values()) == 40
    extra = [assigner.assign(5) for _ in range(5)]  # more records than the stats announced
    assert [p.disposition for p in extra] == ["batch"] * 5 and extra[-1].job_index >= 2


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 25) == 25
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("日本語".encode("utf-8")) == 1


def test_batch_price_estimates() -> None:
    price = batch_price("us.anthropic.claude-3-haiku-20240307-v1:0")
    assert (price.input_per_million, price.output_per_million) == (0.125, 0.625)
    assert estimate_cost("anthropic.claude-3-haiku-20240307-v1:0", 2_000_000, 1_000_000) \
        == pytest.approx(0.875)
    assert batch_price("cohere.command-r-v1:0") is None
    assert estimate_cost("cohere.command-r-v1:0", 1, 1) is None


# ---- properties -----------------------------------------------------------------------------------

@st.composite
def windows(draw: st.DrawFn) -> tuple[Quotas, list[int], UndersizedPolicy]:
    per_job = draw(st.integers(1, 40))
    file_bytes = draw(st.integers(10, 200))
    quotas = Quotas(max_records_per_file=draw(st.integers(1, 20)), max_records_per_job=per_job,
                    min_records_per_job=draw(st.integers(1, max(1, per_job // 3)) | st.integers(1, per_job)),
                    max_file_bytes=file_bytes, max_job_bytes=draw(st.integers(file_bytes // 2, 1_000)))
    # Mostly small records, some near or over the file limit, a few outliers.
    small = st.integers(1, max(1, file_bytes // 8))
    sizes = draw(st.lists(small | small | st.integers(1, file_bytes + 20), max_size=150))
    return quotas, sizes, draw(st.sampled_from(list(UndersizedPolicy)))


@settings(max_examples=50, deadline=None)
@given(windows())
def test_every_record_placed_once_within_quotas(window: tuple) -> None:
    quotas, sizes, policy = window
    plan, placements = plan_sizes(sizes, quotas, policy)
    assert len(placements) == len(sizes)
    for p, size in zip(placements, sizes):
        assert (p.disposition == "oversized") == (oversized(size, quotas) is not None)
    batched = [p for p in placements if p.disposition == "batch"]
    assert len(batched) == plan.batched
    assert sum(p.disposition == "undersized" for p in placements) == plan.undersized
    jobs, files = shards(placements, sizes)
    assert sorted(jobs) == list(range(len(plan.jobs)))
    for index, (records, size) in jobs.items():
        assert quotas.min_records_per_job <= records <= quotas.max_records_per_job
        assert size <= quotas.max_job_bytes
        assert records == plan.jobs[index].records
        planned_files = plan.jobs[index].files
        assert [files[(index, f)][0] for f in range(len(planned_files))] == list(planned_files)
    for records, size in files.values():
        assert records <= quotas.max_records_per_file and size <= quotas.max_file_bytes
    if plan.jobs:
        assert plan.undersized < quotas.min_records_per_job


@settings(max_examples=50, deadline=None)
@given(windows())
def test_job_count_is_the_lower_bound_when_bytes_allow(window: tuple) -> None:
    quotas, sizes, policy = window
    kept = [s for s in sizes if oversized(s, quotas) is None]
    plan = plan_window(WindowStats.of(kept), quotas, policy)
    if not kept:
        return
    stats = WindowStats.of(kept)
    bound = lower_bound_jobs(stats, quotas)
    even_max = math.ceil(len(kept) / bound)
    fits = even_max * stats.max_record_bytes <= quotas.max_job_bytes
    spreads = len(kept) // bound >= quotas.min_records_per_job
    if policy is PAD and fits and spreads:
        assert plan.undersized == 0 and len(plan.jobs) == bound
    if plan.undersized == 0 and fits:
        assert len(plan.jobs) == bound


@settings(max_examples=50, deadline=None)
@given(windows(), st.lists(st.integers(1, 250), max_size=150))
def test_assigner_keeps_quotas_whatever_the_stream(window: tuple, streamed: list[int]) -> None:
    """Plan for one list of sizes, stream another: quotas hold and every record has one place."""
    quotas, sizes, policy = window
    plan = plan_window(WindowStats.of(s for s in sizes if oversized(s, quotas) is None), quotas, policy)
    assigner = ShardAssigner(plan, quotas)
    placements = [assigner.assign(s) for s in streamed]
    for p, size in zip(placements, streamed):
        assert (p.disposition == "oversized") == (oversized(size, quotas) is not None)
        assert (p.job_index is None) == (p.disposition != "batch")
    jobs, files = shards(placements, streamed)
    assert all(r <= quotas.max_records_per_job and b <= quotas.max_job_bytes for r, b in jobs.values())
    assert all(r <= quotas.max_records_per_file and b <= quotas.max_file_bytes
               for r, b in files.values())
