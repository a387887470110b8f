"""One run per output folder: claim it, stage a batch run's files, publish them when it succeeds.

Layout of an output folder (local or any Beam filesystem, e.g. s3://)::

    _RUN_ID                 the run id that owns the folder (written before the pipeline starts)
    .staging-<run id>/      a batch run's files while it runs
    summaries/, failures/   the published rows
    insights_aggregate/     with --task insights: the AggregateInsights rows
    _SUCCESS                written last, holding the run id, when the run has finished

The decision of whether a run may use a folder is pure (``conflict``); the rest is file I/O
through Beam's FileSystems, run by the launcher before and after the pipeline.
"""
from __future__ import annotations

import os
from typing import Iterable

from apache_beam.io.filesystems import FileSystems

from transforms.storage import join

RUN_MARKER = "_RUN_ID"
SUCCESS_MARKER = "_SUCCESS"
ROW_DIRS = ("summaries", "failures", "insights_aggregate")
_STAGING_PREFIX = ".staging-"


class OutputInUse(ValueError):
    """The output folder holds another run's files; the message names the flags that help."""


def staging_dir(output: str, run_id: str) -> str:
    """Where a batch run writes its rows before publishing (inside ``output``, so the move
    stays on one filesystem or bucket).

    Args:
        output: The run's output folder.
        run_id: The run id.
    """
    return join(output, _STAGING_PREFIX + run_id)


def conflict(output: str, entries: Iterable[str], owner: str | None, run_id: str) -> str | None:
    """Why ``run_id`` may not write into ``output``, or None when it may.

    ``entries`` are the paths under ``output`` relative to it; ``owner`` is the run id in its
    ``_RUN_ID`` marker (None without one). A folder owned by the same run id is that run's own
    earlier attempt (crashed, or finished and rerun), so it may be resumed and replaced.

    Args:
        output: The output folder.
        entries: Paths under ``output``, relative to it.
        owner: The run id in its ``_RUN_ID`` marker, or None.
        run_id: The run that wants the folder.
    """
    if owner == run_id:
        return None
    own_staging = _STAGING_PREFIX + run_id + "/"
    others = sorted({e.split("/", 1)[0] for e in entries if not e.startswith(own_staging)})
    if not others:
        return None
    held = f"the output of run {owner}" if owner else "files of another run or program"
    shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
    unfinished = owner and SUCCESS_MARKER not in others
    resume = f"rerun with --run-id {owner} to finish that run, " if unfinished else ""
    return (f"--output {output} already holds {held} ({shown}): {resume}pass --overwrite to "
            f"replace its summaries/ and failures/, or choose an empty --output")


def _relative_entries(output: str) -> list[str]:
    prefix = output.rstrip("/") + "/"
    matches = FileSystems.match([join(output, "**")])[0].metadata_list
    return [m.path[len(prefix):] for m in matches if m.path.startswith(prefix)]


def _read(path: str) -> str | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8").strip()


def _write(path: str, text: str) -> None:
    _ensure_parent(path)
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def _ensure_parent(path: str) -> None:
    # Object stores have no directories; a local rename or create needs its parent to exist.
    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)


def _delete(paths: list[str]) -> None:
    if paths:
        FileSystems.delete(paths)


def _remove_tree(path: str) -> None:
    if "://" in path:  # an object store: every object under the prefix
        _delete([join(path, e) for e in _relative_entries(path)])
    elif FileSystems.exists(path):  # a local directory, with its empty subdirectories
        FileSystems.delete([path])


def claim(output: str, run_id: str, overwrite: bool) -> None:
    """Make ``output`` this run's folder, or raise OutputInUse naming the flag that allows it.

    Runs before the pipeline, so a refused run creates no job. With ``overwrite`` the old rows
    stay until this run publishes its own, so a failed run leaves them readable.

    Args:
        output: The output folder (local or any Beam filesystem).
        run_id: The run that claims it.
        overwrite: Whether another run's rows may be replaced.
    """
    owner = _read(join(output, RUN_MARKER))
    reason = conflict(output, _relative_entries(output), owner, run_id)
    if reason and not overwrite:
        raise OutputInUse(reason)
    # Files staged by a crashed attempt of this run are rewritten from scratch by this one.
    _remove_tree(staging_dir(output, run_id))
    # Until this run finishes, no _SUCCESS (another run's, or an earlier attempt's) vouches
    # for the folder.
    _delete([p for p in [join(output, SUCCESS_MARKER)] if FileSystems.exists(p)])
    if owner != run_id:
        _write(join(output, RUN_MARKER), run_id)


def publish(output: str, run_id: str) -> None:
    """Replace ``output``'s row folders (``ROW_DIRS``) with the staged ones, then write _SUCCESS.

    Call only after the pipeline succeeded. Readers that must never see a half-moved folder
    wait for _SUCCESS: it is removed first and written last. Moving is a rename per file (a
    copy and delete on object stores), so a crash mid-way is repaired by rerunning with the
    same run id, which stages and publishes its rows again.

    Args:
        output: The output folder.
        run_id: The run whose staged rows are published.
    """
    staging = staging_dir(output, run_id)
    success = join(output, SUCCESS_MARKER)
    _delete([p for p in [success] if FileSystems.exists(p)])
    for row_dir in ROW_DIRS:
        _remove_tree(join(output, row_dir))
    staged = _relative_entries(staging)
    targets = [join(output, e) for e in staged]
    for target in targets:
        _ensure_parent(target)
    if staged:
        FileSystems.rename([join(staging, e) for e in staged], targets)
    _remove_tree(staging)
    mark_finished(output, run_id)


def mark_finished(output: str, run_id: str) -> None:
    """Write _SUCCESS: the run that owns ``output`` finished and its files are complete.

    Args:
        output: The output folder.
        run_id: The run that finished.
    """
    _write(join(output, SUCCESS_MARKER), run_id)


def written_dirs(output: str) -> list[str]:
    """The row directories under ``output`` that hold at least one file.

    Args:
        output: The output folder.
    """
    entries = _relative_entries(output)
    return [join(output, d) for d in ROW_DIRS if any(e.startswith(d + "/") for e in entries)]
