"""The on-demand pacing, backoff and progress logic, driven directly with a fake clock."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.rate_control import (AdaptiveRate, Progress, RetryPolicy, is_retriable,
                                          is_throttling)


def test_calls_are_spaced_at_the_ceiling_rate():
    rate = AdaptiveRate(ceiling=4.0)
    starts = [rate.reserve(now=10.0) for _ in range(5)]  # five threads asking at once
    assert starts == [10.0, 10.25, 10.5, 10.75, 11.0]


def test_a_caller_arriving_late_starts_at_once():
    rate = AdaptiveRate(ceiling=2.0)
    assert rate.reserve(now=0.0) == 0.0
    assert rate.reserve(now=5.0) == 5.0  # no burst of saved-up slots either
    assert rate.reserve(now=5.0) == 5.5


def test_throttling_halves_the_rate_and_spaces_the_next_calls_at_the_new_rate():
    rate = AdaptiveRate(ceiling=10.0)
    rate.reserve(now=0.0)
    assert rate.on_throttle(now=1.0, started=0.0)
    assert rate.rate == 5.0
    assert rate.reserve(now=1.0) == pytest.approx(1.2)
    assert rate.reserve(now=1.0) == pytest.approx(1.4)


def test_a_burst_of_throttles_from_calls_already_in_flight_is_one_signal():
    rate = AdaptiveRate(ceiling=10.0)
    assert rate.on_throttle(now=2.0, started=0.5)
    assert not rate.on_throttle(now=2.5, started=1.9)  # was in flight when the rate halved
    assert rate.rate == 5.0
    assert rate.on_throttle(now=3.0, started=2.1)  # sent at the new pace, still throttled
    assert rate.rate == 2.5


def test_rate_never_drops_below_the_floor():
    rate = AdaptiveRate(ceiling=1.0, floor=0.3)
    for step in range(20):
        rate.on_throttle(now=float(step + 1), started=float(step + 1))
    assert rate.rate == 0.3


def test_successes_climb_back_additively_up_to_the_ceiling():
    rate = AdaptiveRate(ceiling=10.0, increase_fraction=0.05)
    rate.on_throttle(now=0.0, started=0.0)
    assert rate.rate == 5.0
    for _ in range(4):
        rate.on_success()
    assert rate.rate == pytest.approx(7.0)  # + 0.5 per success
    for _ in range(100):
        rate.on_success()
    assert rate.rate == 10.0


def test_bad_ceiling_is_refused():
    with pytest.raises(ValueError, match="ceiling"):
        AdaptiveRate(ceiling=0)


@pytest.mark.parametrize("code", ["ThrottlingException", "TooManyRequestsException",
                                  "ServiceUnavailableException", "ServiceUnavailable"])
def test_throttling_codes_slow_down_and_retry(code):
    assert is_throttling(code) and is_retriable(code)


@pytest.mark.parametrize("code", ["ValidationException", "AccessDeniedException",
                                  "ResourceNotFoundException", None])
def test_other_errors_are_not_retried(code):
    assert not is_retriable(code)
    assert not RetryPolicy().should_retry(code, attempt=1)


def test_transient_server_errors_are_retried_without_slowing_down():
    assert is_retriable("InternalServerException") and not is_throttling("InternalServerException")


def test_retries_stop_at_max_attempts():
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry("ThrottlingException", a) for a in (1, 2, 3)] == [True, True, False]


def test_backoff_grows_exponentially_with_full_jitter_and_a_cap():
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=3.0)
    assert [policy.backoff(a, draw=lambda: 0.999999) for a in (1, 2, 3, 4, 5)] == pytest.approx(
        [0.5, 1.0, 2.0, 3.0, 3.0], rel=1e-5)
    assert policy.backoff(4, draw=lambda: 0.5) == 1.5
    assert policy.backoff(1, draw=lambda: 0.0) == 0.0


def test_progress_logs_at_the_interval_and_once_when_done():
    progress = Progress(start=0.0, interval=5.0)
    progress.add(100)
    for _ in range(10):
        progress.finish()
    assert progress.line(now=2.0) is None  # too soon
    line = progress.line(now=5.0)
    assert line == "on-demand calls: 10/100 done (0 failed), 2.0 records/s, ETA 45 s"
    for _ in range(89):
        progress.finish()
    progress.finish(failed=True)
    assert progress.line(now=6.0) == "on-demand calls: 100/100 done (1 failed), 16.7 records/s, ETA 0 s"
    assert progress.line(now=60.0) is None  # nothing new since


def test_progress_without_news_says_nothing():
    progress = Progress(start=0.0, interval=1.0)
    progress.add(3)
    assert progress.line(now=30.0) is None


@settings(max_examples=50, deadline=None)
@given(ceiling=st.floats(min_value=0.1, max_value=100.0),
       events=st.lists(st.tuples(st.sampled_from(["reserve", "success", "throttle"]),
                                 st.floats(min_value=0.0, max_value=5.0)), max_size=60))
def test_pace_stays_between_floor_and_ceiling_and_slots_never_crowd(ceiling, events):
    rate = AdaptiveRate(ceiling=ceiling)
    now, starts = 0.0, []
    for kind, advance in events:
        now += advance
        if kind == "reserve":
            starts.append(rate.reserve(now))
            assert starts[-1] >= now
        elif kind == "success":
            rate.on_success()
        else:
            rate.on_throttle(now, started=starts[-1] if starts else now)
        assert rate.floor <= rate.rate <= rate.ceiling
    # Never faster than the ceiling, whatever happened in between.
    assert all(b - a >= 1.0 / ceiling - 1e-9 for a, b in zip(starts, starts[1:]))
