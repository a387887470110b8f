"""The folder watch's checkpointed state and decisions (transforms.sources.watch_state), and its
tracker: what a job restored from a checkpoint reads again, and with which event time."""
from __future__ import annotations

import pickle
from dataclasses import replace

from transforms.sources.watch import WatchTracker, _Listed, _STOP
from transforms.sources.watch_state import (WatchRestriction, event_time, new_files,
                                            next_watermark, still_listed)


def test_new_files_are_the_unseen_ones_oldest_first():
    listed = {"b": 20.0, "a": 20.0, "c": 10.0, "seen": 5.0}
    assert new_files(listed, frozenset({"seen"})) == [("c", 10.0), ("a", 20.0), ("b", 20.0)]


def test_a_file_is_timestamped_by_its_modification_time_whatever_the_watermark():
    assert event_time(100.0, None, 50.0) == 100.0
    assert event_time(100.0, 120.0, 50.0) == 100.0, "late, but within the limit: its own time"
    assert event_time(10.0, 120.0, 50.0) == 70.0, "older than the limit: at the limit"


def test_the_watermark_never_moves_back():
    assert next_watermark(None, 100.0, 10.0) == 90.0
    assert next_watermark(95.0, 100.0, 10.0) == 95.0
    assert next_watermark(80.0, 100.0, 10.0) == 90.0


def test_the_end_is_fixed_at_the_first_listing_and_kept_on_restore():
    fresh = WatchRestriction(stop_at=0.0)
    started = fresh.started(1000.0, 60)
    assert started.stop_at == 1060.0
    assert started.started(5000.0, 60).stop_at == 1060.0, "a restored watch keeps its end"
    assert not started.ended(1059.0) and started.ended(1060.0)
    forever = WatchRestriction(stop_at=None).started(1000.0, None)
    assert forever.stop_at is None and not forever.ended(10.0**12)


def test_forgotten_paths_bound_the_state_by_what_is_listed_now():
    assert still_listed(frozenset({"a", "b"}), ["b", "c"]) == frozenset({"b"})


def test_a_checkpoint_keeps_what_was_read_and_a_replay_claims_only_the_rest():
    tracker = WatchTracker(WatchRestriction(stop_at=None))
    assert tracker.try_claim("a") and not tracker.try_claim("a")
    assert tracker.try_claim(_Listed(None, frozenset({"a", "b"}), 90.0, 101.0))
    primary, residual = tracker.try_split(0)
    assert primary.closed and not tracker.try_claim("b"), "nothing after the checkpoint"
    tracker.check_done()
    restored = WatchTracker(pickle.loads(pickle.dumps(residual)))  # as a runner stores it
    assert restored.current_restriction().watermark == 90.0
    assert not restored.try_claim("a") and restored.try_claim("b")


def test_the_watch_ends_by_claiming_stop_and_cannot_end_otherwise():
    tracker = WatchTracker(WatchRestriction(stop_at=10.0))
    try:
        tracker.check_done()
    except ValueError:
        pass
    else:
        raise AssertionError("an open watch that neither deferred nor ended must not pass")
    assert tracker.try_claim(_STOP)
    tracker.check_done()
    assert tracker.try_split(0) is None


def test_the_state_grows_with_files_not_with_time():
    tracker = WatchTracker(WatchRestriction(stop_at=None))
    paths = frozenset(f"s3://bucket/incoming/{n:06d}.jsonl" for n in range(100))
    for path in paths:
        tracker.try_claim(path)
    for poll in range(1000):  # a thousand listings of the same files
        tracker.try_claim(_Listed(None, paths, float(poll), float(poll + 1)))
    size = len(pickle.dumps(tracker.current_restriction()))
    assert size < 100 * 100, f"{size} bytes for 100 files"


def test_the_restriction_pickles_its_paths_compressed_and_back_whole():
    paths = frozenset(f"s3://bucket/incoming/2026/12/07/call-{n:06d}.jsonl" for n in range(500))
    restriction = WatchRestriction(stop_at=12.5, seen=paths, watermark=3.0, next_poll_at=4.0)
    packed = pickle.dumps(restriction)
    assert pickle.loads(packed) == restriction
    assert len(packed) < sum(len(p) for p in paths) / 5, len(packed)
    assert pickle.loads(pickle.dumps(WatchRestriction(stop_at=None))).seen == frozenset()


def test_the_last_listing_is_done_once_a_listing_came_at_or_after_the_end():
    from transforms.sources.watch_state import last_listing_done

    started = WatchRestriction(stop_at=0.0).started(100.0, 30)  # ends at 130
    assert not last_listing_done(started, 10)  # before the first listing
    assert not last_listing_done(replace(started, next_poll_at=135.0), 10)  # last at 125
    assert last_listing_done(replace(started, next_poll_at=140.0), 10)  # last at 130: the end
    assert not last_listing_done(WatchRestriction(stop_at=None, next_poll_at=1e12), 10)
