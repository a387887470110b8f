"""Why an --input cannot be read as given: one line naming the input and the fix.

Pure checks on the pattern and on what it matched (the matching itself is Beam's
``FileSystems.match``, in the commands), so `run` refuses such an input before it claims its
output folder, and `plan` says the same.
"""
from __future__ import annotations

import os
from typing import Sequence


def _local(path: str) -> bool:
    return "://" not in path


def _no_match_hint(pattern: str) -> str:
    if pattern == "-":
        return ("--input reads files, not standard input: save the transcripts to a file and "
                "pass its path")
    if "," in pattern and _local(pattern):
        return ("--input takes one path or glob, not a comma-separated list: put the files in "
                "one folder and pass a glob such as 'calls/*.jsonl'")
    if _local(pattern) and os.path.islink(pattern):
        # islink but not matched: the link leads nowhere (a loop, or its target is gone).
        return (f"{pattern} is a symbolic link that leads to no file (a loop, or a missing "
                f"target): name the file itself")
    folder = os.path.dirname(pattern)
    if _local(pattern) and folder and not any(c in folder for c in "*?[") \
            and not os.path.isdir(folder):
        return f"the folder {folder} does not exist: check the path"
    return "check the path, or give a glob such as 'calls/*.jsonl'"


def input_problem(pattern: str, matches: Sequence[str]) -> str | None:
    """Why ``pattern`` cannot be read as the input, or None when it can.

    Args:
        pattern: The --input path, glob or s3:// pattern.
        matches: The paths it matched.

    Returns:
        One line naming the input and the fix (the usage error's message), or None.
    """
    if not matches:
        return f"--input {pattern!r} matches no files; {_no_match_hint(pattern)}"
    local = [path for path in matches if _local(path)]
    if all(_local(path) and os.path.isdir(path) for path in matches):
        return (f"--input {pattern!r} names a folder, not files: give a glob of its files, "
                f"e.g. {os.path.join(matches[0], '*')!r}")
    unreadable = [path for path in local if not os.path.isdir(path)
                  and not os.access(path, os.R_OK)]
    if unreadable:
        others = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        return (f"--input {pattern!r}: {unreadable[0]}{others} cannot be read (permission "
                f"denied); make it readable, or narrow --input to leave it out")
    return None
