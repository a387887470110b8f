"""Who may hold an output folder: the pure rules of its lock (no I/O, no Beam).

A folder's lock is a series of generations, ``_LOCK.1``, ``_LOCK.2``, ...: the highest one is
the current lock. Its holder rewrites it to extend its lease while it runs and marks it
released when it ends. Another process takes the folder only when the highest generation is
released, its lease has lapsed, or its holder is a dead process on this host, and it does so
by creating the next generation with create-if-absent, so of two takers exactly one wins.
Generations are never reused while they may be current: only generations below the holder's
own are deleted, and a taker checks after creating its own that none above it exists.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

LOCK_PREFIX = "_LOCK."
_GENERATION = re.compile(r"_LOCK\.([1-9][0-9]*)\Z")


@dataclass(frozen=True)
class Holder:
    """What a lock generation says about the process that wrote it.

    Args:
        run_id: The run the process runs.
        token: A random token of the process's hold, unique per hold.
        host: The process's host name.
        pid: The process id on that host.
        since: When it took the folder (Unix seconds).
        expires: When its lease lapses unless renewed (Unix seconds).
        released: Whether it has ended and let the folder go.
    """

    run_id: str
    token: str
    host: str
    pid: int
    since: float
    expires: float
    released: bool = False

    def to_json(self) -> str:
        """The lock file's content (read back by ``from_json``)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Holder | None":
        """The holder a lock file names, or None when it is not one this module wrote.

        Args:
            text: The lock file's content.
        """
        try:
            data = json.loads(text)
            return cls(run_id=str(data["run_id"]), token=str(data["token"]),
                       host=str(data["host"]), pid=int(data["pid"]), since=float(data["since"]),
                       expires=float(data["expires"]), released=bool(data["released"]))
        except (ValueError, TypeError, KeyError):
            return None


def generation(name: str) -> int | None:
    """The generation a file name under the output folder is, or None if it is no lock file.

    Args:
        name: The file's name, relative to the output folder.
    """
    found = _GENERATION.match(name)
    return int(found.group(1)) if found else None


def lock_name(gen: int) -> str:
    """The file name of lock generation ``gen``.

    Args:
        gen: The generation (1 or more).
    """
    return f"{LOCK_PREFIX}{gen}"


def is_free(holder: Holder | None, now: float, host: str,
            alive: Callable[[int], bool]) -> bool:
    """Whether the folder a current lock guards may be taken.

    A lock this module cannot read was not written by it (writes are whole), so it guards
    nothing. A holder on this host whose process is gone was killed: its rerun need not wait
    for the lease to lapse.

    Args:
        holder: The current (highest) generation's content, None if unreadable.
        now: The time (Unix seconds).
        host: This host's name.
        alive: Whether a process id on this host is running.
    """
    if holder is None or holder.released or holder.expires <= now:
        return True
    return holder.host == host and not alive(holder.pid)


def next_generation(locks: Mapping[int, Holder | None], now: float, host: str,
                    alive: Callable[[int], bool]) -> tuple[int | None, Holder | None]:
    """(generation to create, None) when the folder may be taken; (None, holder) when it is held.

    Args:
        locks: The lock generations in the folder and what each holds.
        now: The time (Unix seconds).
        host: This host's name.
        alive: Whether a process id on this host is running.
    """
    if not locks:
        return 1, None
    top = max(locks)
    if is_free(locks[top], now, host, alive):
        return top + 1, None
    return None, locks[top]


def won(mine: int, generations: list[int]) -> bool:
    """Whether the generation just created is the current lock: none above it exists.

    A taker that listed the folder long ago may create a generation a holder has since
    pruned; it sees the holder's higher one here and backs off.

    Args:
        mine: The generation this process created.
        generations: The generations listed after creating it.
    """
    return max(generations, default=mine) == mine


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def held_message(output: str, holder: Holder, command: str = "run") -> str:
    """The one-line refusal naming who holds ``output`` and what to do.

    Args:
        output: The output folder.
        holder: The current lock's holder.
        command: The refused command (``run`` or ``collect``).
    """
    return (f"--output {output} is in use by run {holder.run_id} (pid {holder.pid} on "
            f"{holder.host}, since {_clock(holder.since)}; its claim is renewed while it runs "
            f"and lapses at {_clock(holder.expires)} if it stops): wait for that run to end and "
            f"{command} again, or choose another --output")
