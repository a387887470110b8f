"""One run per output folder: claim it, stage a batch run's files, publish them when it succeeds.

Layout of an output folder (local or any Beam filesystem, e.g. s3://)::

    _LOCK.<n>               the folder's lock: who holds it and until when (``transforms.sinks.lock``)
    _RUN_ID                 the run id that owns the folder (written before the pipeline starts)
    .staging-<run id>/      a batch run's files while it runs
    summaries/, failures/   the published rows
    insights_aggregate/     with --task insights: the AggregateInsights rows
    _SUCCESS                written last, holding the run id, when the run has finished

A run holds the folder for as long as it runs (``hold``): one run at a time, even with the same
run id. The decision of whether a run may use a folder is pure (``conflict``, and
``transforms.sinks.lease`` for the lock); the rest is file I/O through Beam's FileSystems, run by
the launcher before and after the pipeline.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Any, Iterable, Iterator

from apache_beam.io.filesystem import FileSystem
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

from transforms.sinks.lease import LOCK_PREFIX, held_message
# ClaimLost is raised (by the lease) from publish and mark_finished: importable from here.
from transforms.core.storage import join
from transforms.sinks.lock import ClaimLost, FolderHeld, Lease  # noqa: F401

RUN_MARKER = "_RUN_ID"
SUCCESS_MARKER = "_SUCCESS"
ROW_DIRS = ("summaries", "failures", "insights_aggregate")
_STAGING_PREFIX = ".staging-"
# The lock's files (and the temporary file a local lock is linked from) belong to no run.
_LOCK_FILES = (LOCK_PREFIX, ".lock-")
# The folders this process holds (``hold``), so publishing can check the claim still stands.
_held: dict[str, Lease] = {}


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


def conflict(output: str, entries: Iterable[str], owner: str | None, run_id: str,
             command: str = "run") -> str | None:
    """Why ``run_id`` may not write into ``output``, or None when it may.

    ``entries`` are the paths under ``output`` relative to it; ``owner`` is the run id in its
    ``_RUN_ID`` marker (None without one). A folder owned by the same run id is that run's own
    earlier attempt (crashed, or finished and rerun), so it may be resumed and replaced. The
    lock's files belong to no run.

    Args:
        output: The output folder.
        entries: Paths under ``output``, relative to it.
        owner: The run id in its ``_RUN_ID`` marker, or None.
        run_id: The run that wants the folder.
        command: ``run``, or ``collect``, which never replaces another run's rows.
    """
    if owner == run_id:
        return None
    own_staging = _STAGING_PREFIX + run_id + "/"
    others = sorted({e.split("/", 1)[0] for e in entries
                     if not e.startswith(own_staging) and not e.startswith(_LOCK_FILES)})
    if not others:
        return None
    held = f"the output of run {owner}" if owner else "files of another run or program"
    shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
    if command == "collect":
        return (f"--output {output} already holds {held} ({shown}): collect writes only into "
                f"an empty --output or one it wrote for the same job; choose an empty --output")
    unfinished = owner and SUCCESS_MARKER not in others
    resume = f"rerun with --run-id {owner} to finish that run, " if unfinished else ""
    return (f"--output {output} already holds {held} ({shown}): {resume}pass --overwrite to "
            f"replace its summaries/ and failures/, or choose an empty --output")


def _written_paths(folder: str, run_id: str | None, suffix: str, reports: bool) -> list[str]:
    """Paths of each kind a run writes into ``folder`` (their names vary only in a part's
    number): the rows and markers of ``run_id`` (none when None), and the run report."""
    paths = [join(folder, "report.json"), join(folder, "report.html")] if reports else []
    if run_id is None:
        return paths
    part = "part-00000-of-00001" + suffix
    paths += [join(folder, n) for n in (RUN_MARKER, SUCCESS_MARKER, LOCK_PREFIX + "1")]
    for row_dir in ROW_DIRS:
        paths += [join(folder, row_dir, part), join(staging_dir(folder, run_id), row_dir, part)]
    return paths


def _comparable(path: str) -> str:
    # Beam matches a local pattern against the paths it lists under the pattern's own spelling;
    # both sides are made absolute and normalised so "./in" and "in" compare equal.
    return path if "://" in path else os.path.abspath(path)


def output_in_input(input_pattern: str, output: str | None, run_id: str, suffix: str,
                    report_dir: str | None = None) -> str | None:
    """Why ``output`` (or ``report_dir``) may not be used with ``input_pattern``, or None.

    The pattern is tested, as Beam's match does, against the paths a run writes under
    ``output`` and ``report_dir``: a pattern matching any of them would read the run's own
    files back as input, on a rerun if not at once.

    Args:
        input_pattern: The --input file pattern.
        output: The --output folder of a file sink, else None.
        run_id: The run's id (its staging folder is under ``output``).
        suffix: The row files' suffix, e.g. ``.parquet``.
        report_dir: The --report-dir, if any.
    """
    pattern = input_pattern
    if pattern.endswith(("/", "\\")):  # Beam reads a trailing separator as "everything in it"
        pattern += "*"
    matches = re.compile(FileSystem.translate_pattern(_comparable(pattern))).match
    for flag, folder, paths in (
            ("--output", output, _written_paths(output or "", run_id, suffix, not report_dir)),
            ("--report-dir", report_dir, _written_paths(report_dir or "", None, suffix, True))):
        hit = next((p for p in paths if folder and matches(_comparable(p))), None)
        if hit:
            return (f"--input {input_pattern} matches {hit}, a file the run writes: the run would "
                    f"read its own output back as input; choose a {flag} outside the --input "
                    f"pattern, or narrow --input")
    return None


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


def _check(output: str, run_id: str, overwrite: bool, command: str) -> str | None:
    """Raise OutputInUse if ``run_id`` may not use ``output``; return the folder's owner."""
    owner = _read(join(output, RUN_MARKER))
    reason = conflict(output, _relative_entries(output), owner, run_id, command)
    if reason and not overwrite:
        raise OutputInUse(reason)
    return owner


def claim(output: str, run_id: str, overwrite: bool, command: str = "run") -> None:
    """Make ``output`` this run's folder, or raise OutputInUse naming the flag that allows it.

    Runs before the pipeline, so a refused run creates no job. With ``overwrite`` the old rows
    stay until this run publishes its own, so a failed run leaves them readable. It takes no
    lock: call it through ``hold``, which keeps other processes out while the run lasts.

    Args:
        output: The output folder (local or any Beam filesystem).
        run_id: The run that claims it.
        overwrite: Whether another run's rows may be replaced.
        command: ``run`` or ``collect`` (named in the refusal's hint).
    """
    owner = _check(output, run_id, overwrite, command)
    # Files staged by a crashed attempt of this run are rewritten from scratch by this one.
    _remove_tree(staging_dir(output, run_id))
    # Until this run finishes, no _SUCCESS (another run's, or an earlier attempt's) vouches
    # for the folder.
    _delete([p for p in [join(output, SUCCESS_MARKER)] if FileSystems.exists(p)])
    if owner != run_id:
        _write(join(output, RUN_MARKER), run_id)


def _s3_client(options: PipelineOptions | None) -> Any:
    """A boto3 S3 client with the settings Beam's S3 filesystem uses (``S3Options``)."""
    import boto3
    from botocore.config import Config

    s3 = (options or PipelineOptions([])).view_as(S3Options)
    settings = {"endpoint_url": s3.s3_endpoint_url, "region_name": s3.s3_region_name,
                "aws_access_key_id": s3.s3_access_key_id,
                "aws_secret_access_key": s3.s3_secret_access_key,
                "aws_session_token": s3.s3_session_token}
    return boto3.session.Session().client(
        "s3", config=Config(retries={"mode": "standard", "max_attempts": 10}),
        **{name: value for name, value in settings.items() if value})


@contextlib.contextmanager
def hold(output: str, run_id: str, overwrite: bool, options: PipelineOptions | None = None,
         command: str = "run") -> Iterator[Lease]:
    """Hold ``output`` for ``run_id`` while the block runs: lock it, then ``claim`` it.

    Raises OutputInUse, before anything in the folder changes, when another process holds
    it (even one with the same run id) or it holds another run's files. The lock is released
    when the block ends, however it ends (an exception, Ctrl-C); a process killed outright
    leaves a lock that lapses after ``transforms.sinks.lock.LEASE_SECONDS``, or at once for a
    rerun on the same host.

    Args:
        output: The output folder (local or any Beam filesystem).
        run_id: The run that holds it.
        overwrite: Whether another run's rows may be replaced.
        options: The pipeline's options: an s3:// folder's lock uses their ``S3Options``.
        command: ``run`` or ``collect`` (which never replaces another run's rows).

    Yields:
        The lease; while it is held, ``publish`` and ``mark_finished`` check that no other
        process took the folder (its claim lapsed) before they write.
    """
    lease = Lease(output, run_id, _s3_client(options) if output.startswith("s3://") else None)
    try:
        # Who holds it, then what it holds, before writing anything: a refused run leaves the
        # folder as it was.
        current = lease.holder()
        if current is not None:
            raise FolderHeld(current)
        _check(output, run_id, overwrite, command)
        lease.acquire()
    except FolderHeld as held:
        raise OutputInUse(held_message(output, held.holder, command)) from None
    _held[output] = lease
    try:
        claim(output, run_id, overwrite, command)
        yield lease
    finally:
        del _held[output]
        lease.release()


def _still_held(output: str) -> None:
    # Raises ClaimLost if this process holds ``output`` (``hold``) but another took it since.
    if output in _held:
        _held[output].check()


def publish(output: str, run_id: str) -> None:
    """Replace ``output``'s row folders (``ROW_DIRS``) with the staged ones, then write _SUCCESS.

    Call only after the pipeline succeeded. Readers that must never see a half-moved folder
    wait for _SUCCESS: it is removed first and written last. Moving is a rename per file (a
    copy and delete on object stores), so a crash mid-way is repaired by rerunning with the
    same run id, which stages and publishes its rows again.

    Args:
        output: The output folder.
        run_id: The run whose staged rows are published.

    Raises:
        ClaimLost: Inside ``hold``, when another process took the folder after this one's
            claim lapsed; nothing is published.
    """
    _still_held(output)
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

    Raises:
        ClaimLost: Inside ``hold``, when another process took the folder meanwhile.
    """
    _still_held(output)
    _write(join(output, SUCCESS_MARKER), run_id)


def written_dirs(output: str) -> list[str]:
    """The row directories under ``output`` that hold at least one file.

    Args:
        output: The output folder.
    """
    entries = _relative_entries(output)
    return [join(output, d) for d in ROW_DIRS if any(e.startswith(d + "/") for e in entries)]
