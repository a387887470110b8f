"""What a folder watch remembers between polls, and what it decides at each one. No Beam here.

The watch (``transforms.sources.watch``) is a splittable DoFn whose restriction is a
``WatchRestriction``: the paths it has emitted and when it stops. The restriction is what a
runner checkpoints, so a job restored from a checkpoint (Flink after a lost TaskManager) knows
exactly the files it had read by then, and reads the others again with the same event time
(``event_time``). Its size grows with the files under the pattern, never with elapsed time: a
path no longer listed is forgotten.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, fields, replace
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class WatchRestriction:
    """The watch's state, as checkpointed.

    Args:
        stop_at: When the watch ends (epoch seconds), fixed at its first poll so a restored
            watch does not start its clock again; None watches until cancelled, 0 until the
            first poll fixes it.
        seen: The paths already emitted.
        watermark: Epoch seconds no later file is expected to be timestamped before.
        next_poll_at: The earliest time of the next listing (epoch seconds).
        closed: True once nothing more may be claimed (the primary half of a checkpoint, or
            the watch has ended).
    """

    stop_at: float | None
    seen: frozenset[str] = frozenset()
    watermark: float | None = None
    next_poll_at: float = 0.0
    closed: bool = False

    def __getstate__(self) -> dict[str, Any]:
        # The runner stores this restriction at every deferral, and Beam's Flink runner keeps
        # many of those copies in each checkpoint: the paths go in sorted and compressed (names
        # under one folder share most of their characters), about a tenth of their plain size.
        state = {f.name: getattr(self, f.name) for f in fields(self)}
        state["seen"] = zlib.compress("\n".join(sorted(self.seen)).encode(), 9)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        packed = zlib.decompress(state.pop("seen")).decode()
        for name, value in state.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "seen", frozenset(packed.split("\n")) if packed else frozenset())

    def started(self, now: float, stop_after_seconds: float | None) -> "WatchRestriction":
        """The restriction with its end fixed from the first listing's time.

        Args:
            now: The listing's time (epoch seconds).
            stop_after_seconds: The watch's length; None or 0 watches until cancelled.
        """
        if self.stop_at != 0:
            return self
        return replace(self, stop_at=now + stop_after_seconds if stop_after_seconds else None)

    def ended(self, now: float) -> bool:
        """Whether the watch is over at ``now`` (epoch seconds).

        Args:
            now: The time to check.
        """
        return self.stop_at is not None and self.stop_at != 0 and now >= self.stop_at


def new_files(listed: Mapping[str, float], seen: frozenset[str]) -> list[tuple[str, float]]:
    """(path, modification time) of the listed files not seen yet, oldest first (ties by
    path), so the order is the same on every replay.

    Args:
        listed: Path -> modification time of every file the listing found.
        seen: The paths already emitted.
    """
    return sorted(((path, mtime) for path, mtime in listed.items() if path not in seen),
                  key=lambda item: (item[1], item[0]))


def still_listed(seen: frozenset[str], listed: Iterable[str]) -> frozenset[str]:
    """The seen paths that are still listed: a removed file is forgotten, so the state is
    bounded by what the pattern matches now (a file written again under a removed file's name
    is a new file).

    Args:
        seen: The paths already emitted.
        listed: The paths the latest listing found.
    """
    return seen & frozenset(listed)


def event_time(mtime: float, watermark: float | None, late_limit_seconds: float) -> float:
    """A file's event time: its modification time, the same on every replay. A file older than
    the watermark by more than ``late_limit_seconds`` (moved in with an old time) is timestamped
    at that limit instead: later windows would drop its records without a trace.

    Args:
        mtime: The file's modification time (epoch seconds).
        watermark: The watch's watermark when the file was found; None before the first poll.
        late_limit_seconds: How far behind the watermark a file may still be timestamped.
    """
    if watermark is None:
        return mtime
    return max(mtime, watermark - late_limit_seconds)


def next_watermark(previous: float | None, poll_started: float, interval_seconds: float) -> float:
    """The watermark after a poll that started at ``poll_started``: a file not listed by then
    but modified more than an interval before it is unexpected (it comes late, in a late pane).
    Never moves back.

    Args:
        previous: The watermark before the listing; None before the first.
        poll_started: When the listing started (epoch seconds).
        interval_seconds: The time between listings.
    """
    candidate = poll_started - interval_seconds
    return candidate if previous is None else max(previous, candidate)


def last_listing_done(restriction: WatchRestriction, interval_seconds: float) -> bool:
    """Whether the watch's last listing is behind it: the listing before this resumption came
    at or after the watch's end.

    Args:
        restriction: The watch's state at a resumption (``next_poll_at`` set by the listing
            before it).
        interval_seconds: The time between listings.
    """
    return restriction.ended(restriction.next_poll_at - interval_seconds)
