"""The await stage's restriction, tracker and provider, driven directly (no pipeline, no runner)."""
from __future__ import annotations

import pickle
import time

import pytest
from apache_beam.internal import pickler
from apache_beam.runners.sdf_utils import ThreadsafeRestrictionTracker
from apache_beam.utils.timestamp import Duration

from transforms.core.bedrock import client_token
from transforms.core.model import JobBatch, JobSpec
from transforms.jobs.await_jobs import WaitRestriction, WaitRestrictionProvider, WaitTracker


def spec(i: int) -> JobSpec:
    name = f"bb-run-g-a1-{i:04d}"
    return JobSpec(name, client_token(name), "anthropic.claude-3-haiku-20240307-v1:0",
                   f"s3://b/run/input/{name}/", "s3://b/run/output/", 100, 1000)


def batch(jobs: int = 3, interval: int = 30) -> JobBatch:
    return JobBatch("anthropic.claude-3-haiku-20240307-v1:0", tuple(spec(i) for i in range(jobs)), interval)


def test_initial_restriction_covers_every_job_of_the_batch() -> None:
    provider = WaitRestrictionProvider()
    r = provider.initial_restriction(batch(4, 45))
    assert r == WaitRestriction(job_count=4, poll_interval=45)
    assert (r.emitted, r.next_poll_at, r.closed, r.remaining) == (frozenset(), 0.0, False, 4)
    assert provider.restriction_size(batch(4, 45), r) == 4
    assert isinstance(provider.create_tracker(r), WaitTracker)
    assert provider.create_tracker(r).current_restriction() is r


def test_a_job_is_claimed_once() -> None:
    tracker = WaitTracker(WaitRestriction(3, 10))
    assert tracker.try_claim(1)
    assert not tracker.try_claim(1)
    assert tracker.try_claim(0)
    r = tracker.current_restriction()
    assert r.emitted == {0, 1} and r.remaining == 1


def test_claim_in_any_order_and_done_when_all_emitted() -> None:
    tracker = WaitTracker(WaitRestriction(3, 10))
    assert [tracker.try_claim(i) for i in (2, 0, 1)] == [True, True, True]
    tracker.check_done()  # nothing left: no deferral needed
    assert tracker.try_split(0) is None  # nothing left to defer either
    progress = tracker.current_progress()
    assert (progress.completed_work, progress.remaining_work) == (3, 0)


def test_checkpoint_splits_into_closed_primary_and_later_residual() -> None:
    tracker = WaitTracker(WaitRestriction(4, 30))
    tracker.try_claim(2)
    before = time.time()
    primary, residual = tracker.try_split(0)
    after = time.time()
    assert primary.closed and primary.emitted == {2}
    assert not residual.closed and residual.emitted == {2} and residual.remaining == 3
    assert before + 30 <= residual.next_poll_at <= after + 30
    assert (residual.job_count, residual.poll_interval) == (4, 30)
    assert tracker.current_restriction() == primary


def test_no_claim_after_the_checkpoint() -> None:
    tracker = WaitTracker(WaitRestriction(3, 5))
    tracker.try_split(0)
    assert not tracker.try_claim(0)
    assert tracker.current_restriction().emitted == frozenset()
    tracker.check_done()  # the primary is closed: the remaining jobs are the residual's
    assert tracker.try_split(0) is None  # a closed primary does not split again


@pytest.mark.parametrize("fraction", [0.5, 0.25, 1.0, 1e-9])
def test_only_checkpoints_split(fraction: float) -> None:
    tracker = WaitTracker(WaitRestriction(3, 5, frozenset({0})))
    assert tracker.try_split(fraction) is None
    assert tracker.current_restriction() == WaitRestriction(3, 5, frozenset({0}))


def test_check_done_raises_when_jobs_are_neither_emitted_nor_deferred() -> None:
    tracker = WaitTracker(WaitRestriction(3, 5))
    tracker.try_claim(0)
    with pytest.raises(ValueError, match="2 job\\(s\\) neither finished nor deferred"):
        tracker.check_done()


def test_progress_counts_emitted_and_open_jobs() -> None:
    tracker = WaitTracker(WaitRestriction(5, 5))
    assert (tracker.current_progress().completed_work, tracker.current_progress().remaining_work) == (0, 5)
    tracker.try_claim(3)
    tracker.try_claim(4)
    progress = tracker.current_progress()
    assert (progress.completed_work, progress.remaining_work) == (2, 3)
    assert progress.fraction_completed == pytest.approx(0.4)
    tracker.try_split(0)
    closed = tracker.current_progress()
    assert (closed.completed_work, closed.remaining_work) == (2, 0)
    assert tracker.is_bounded()


def test_restriction_size_is_the_remaining_jobs() -> None:
    provider = WaitRestrictionProvider()
    assert provider.restriction_size(None, WaitRestriction(5, 5, frozenset({1, 2}))) == 3
    assert provider.restriction_size(None, WaitRestriction(2, 5, frozenset({0, 1}))) == 0


def test_defer_remainder_through_beams_threadsafe_wrapper() -> None:
    """What the SDK harness does on ``tracker.defer_remainder``: split at 0, keep the residual."""
    inner = WaitTracker(WaitRestriction(3, 20))
    tracker = ThreadsafeRestrictionTracker(inner)
    assert tracker.try_claim(0)
    tracker.defer_remainder(Duration(seconds=20))
    residual, delay = tracker.deferred_status()
    assert residual.emitted == {0} and residual.remaining == 2 and not residual.closed
    assert Duration(seconds=19) <= delay <= Duration(seconds=20)
    tracker.check_done()
    # The runner resumes the residual in a new tracker, which may claim what is left.
    resumed = WaitTracker(residual)
    assert not resumed.try_claim(0)
    assert resumed.try_claim(1) and resumed.try_claim(2)
    resumed.check_done()


@pytest.mark.parametrize("restriction", [
    WaitRestriction(3, 60),
    WaitRestriction(7, 5, frozenset({0, 4, 6}), next_poll_at=1_700_000_123.5, closed=True),
])
def test_restrictions_survive_pickling_and_the_restriction_coder(restriction: WaitRestriction) -> None:
    assert pickle.loads(pickle.dumps(restriction)) == restriction
    assert pickler.loads(pickler.dumps(restriction)) == restriction
    coder = WaitRestrictionProvider().restriction_coder()
    assert coder.decode(coder.encode(restriction)) == restriction


def test_provider_and_split_halves_pickle() -> None:
    tracker = WaitTracker(WaitRestriction(2, 5))
    tracker.try_claim(1)
    primary, residual = tracker.try_split(0)
    assert pickle.loads(pickle.dumps((primary, residual))) == (primary, residual)
    provider = pickler.loads(pickler.dumps(WaitRestrictionProvider()))
    assert provider.restriction_size(None, residual) == 1
