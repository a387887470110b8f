"""Pacing, adaptive backoff and progress for the on-demand calls: pure logic, no Beam, no I/O.

Every function takes the current time (``now``, seconds from any monotonic clock) instead of
reading a clock, so tests drive it with a fake clock and the Beam DoFn stays a thin shell.

- ``AdaptiveRate`` paces calls at a rate that starts at the ``--on-demand-rps`` ceiling, halves
  when the service throttles and climbs back additively on successes (AIMD, as TCP does).
- ``RetryPolicy`` says which service errors are worth retrying and how long to back off.
- ``Progress`` decides when to log a progress line and what it says.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Callable

# The service is overloaded or over the account's quota: slow down, then try again.
THROTTLING_CODES = frozenset({"ThrottlingException", "TooManyRequestsException",
                              "ServiceUnavailableException", "ServiceUnavailable"})
# Transient server-side errors: try again later, no reason to slow down.
TRANSIENT_CODES = frozenset({"InternalServerException", "ModelNotReadyException"})


def is_throttling(code: str | None) -> bool:
    """Whether a service error code means slow down (``THROTTLING_CODES``).

    Args:
        code: The error code, or None when there was none.
    """
    return code in THROTTLING_CODES


def is_retriable(code: str | None) -> bool:
    """Whether a service error code is worth another attempt (throttling or transient).

    Args:
        code: The error code, or None when there was none.
    """
    return code in THROTTLING_CODES or code in TRANSIENT_CODES


class AdaptiveRate:
    """Thread-safe AIMD pacer: ``reserve(now)`` hands out call start times at the current rate.

    The rate starts at ``ceiling`` calls per second. A throttle halves it, never below ``floor``;
    calls that had started before the last halving do not halve it again, so a burst of
    throttled calls that were in flight together counts as one signal. Each success adds ``ceiling * increase_fraction`` back, up to
    the ceiling: after a halving, about ``0.5 / increase_fraction`` successes restore the ceiling.

    Args:
        ceiling: The highest rate, in calls per second.
        floor: The lowest rate; None: ``ceiling / 64``, at least 0.05.
        increase_fraction: The share of ``ceiling`` each success adds back.
        decrease_factor: What a throttle multiplies the rate by.
    """

    def __init__(self, ceiling: float, floor: float | None = None,
                 increase_fraction: float = 0.02, decrease_factor: float = 0.5) -> None:
        if ceiling <= 0:
            raise ValueError(f"rate ceiling must be > 0 calls per second, got {ceiling}")
        self.ceiling = ceiling
        self.floor = min(ceiling, floor if floor is not None else max(ceiling / 64, 0.05))
        self._step = ceiling * increase_fraction
        self._decrease = decrease_factor
        self._rate = ceiling
        self._next_slot: float | None = None
        self._last_decrease: float | None = None
        self._lock = threading.Lock()

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self, now: float) -> float:
        """The time at which the caller may start its call (``now`` or later); each call to
        ``reserve`` takes one slot, ``1 / rate`` seconds after the previous one.

        Args:
            now: The current time.
        """
        with self._lock:
            start = now if self._next_slot is None else max(now, self._next_slot)
            self._next_slot = start + 1.0 / self._rate
            return start

    def on_success(self) -> None:
        """Raise the rate by one step after a call succeeded, up to the ceiling."""
        with self._lock:
            self._rate = min(self.ceiling, self._rate + self._step)

    def on_throttle(self, now: float, started: float) -> bool:
        """Slow down after a call that started at ``started`` was throttled; False when that call
        was already in flight at the last decrease.

        Args:
            now: The current time.
            started: When the throttled call started.
        """
        with self._lock:
            if self._last_decrease is not None and started < self._last_decrease:
                return False
            self._rate = max(self.floor, self._rate * self._decrease)
            self._last_decrease = now
            # Calls already reserved at the old pace keep their slots; the next ones are spaced
            # at the new rate from now on.
            self._next_slot = max(self._next_slot or now, now + 1.0 / self._rate)
            return True


@dataclass(frozen=True)
class RetryPolicy:
    """How often a retriable error is retried, and the exponential backoff with full jitter
    between attempts (delay drawn uniformly from [0, min(cap, base * 2**(attempt - 1))]).

    Args:
        max_attempts: Attempts per call, the first included.
        base_seconds: The backoff bound after the first failed attempt.
        cap_seconds: The largest backoff bound.
    """

    max_attempts: int = 8
    base_seconds: float = 0.25
    cap_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_seconds < 0 or self.cap_seconds < 0:
            raise ValueError("backoff seconds must be >= 0")

    def should_retry(self, code: str | None, attempt: int) -> bool:
        """Whether a call that failed with ``code`` on attempt ``attempt`` (1-based) goes again.

        Args:
            code: The error code of the failed attempt.
            attempt: Which attempt failed, from 1.
        """
        return is_retriable(code) and attempt < self.max_attempts

    def backoff(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based); ``draw`` returns [0, 1).

        Args:
            attempt: Which attempt failed, from 1.
            draw: A source of uniform numbers in [0, 1).
        """
        return draw() * min(self.cap_seconds, self.base_seconds * 2 ** (attempt - 1))


class Progress:
    """Counts a bundle's calls; ``line(now)`` returns a log line when there is news: at most every
    ``interval`` seconds, and once when every record known so far is done.

    Args:
        start: The time counting starts.
        interval: The fewest seconds between two lines.
    """

    def __init__(self, start: float, interval: float = 5.0) -> None:
        self._start = start
        self._interval = interval
        self._last_log = start
        self._logged_done = 0
        self.total = 0
        self.done = 0
        self.failed = 0

    def add(self, count: int = 1) -> None:
        """Count ``count`` more calls to make.

        Args:
            count: How many.
        """
        self.total += count

    def finish(self, failed: bool = False) -> None:
        """Count one call done.

        Args:
            failed: Whether it ended as a failure.
        """
        self.done += 1
        self.failed += int(failed)

    def line(self, now: float) -> str | None:
        """The progress line to log now, or None when there is no news.

        Args:
            now: The current time.
        """
        if self.done == self._logged_done:
            return None
        if self.done < self.total and now - self._last_log < self._interval:
            return None
        self._last_log, self._logged_done = now, self.done
        rate = self.done / max(now - self._start, 1e-9)
        eta = f"{(self.total - self.done) / rate:.0f} s" if rate > 0 else "unknown"
        return (f"on-demand calls: {self.done}/{self.total} done ({self.failed} failed), "
                f"{rate:.1f} records/s, ETA {eta}")
