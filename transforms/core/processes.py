"""Whether a process on this machine is still running: a folder's lock (``sinks/lock.py``) and
a run's scratch folder (``summarize_files.py``) name the process that holds them."""
from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running on this machine: True when unsure.

    Args:
        pid: The process id.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    # A killed process its parent has not waited for yet (a zombie) still answers the signal.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (macOS): the signal's answer stands
        return True
    return state != "Z"
