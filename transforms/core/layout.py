"""Where a run keeps its files on S3. Deterministic, so a restarted run finds its own work."""
from __future__ import annotations

import datetime as dt

from transforms.core.storage import join

INDEX_SUFFIX = ".index.jsonl"


def window_key(start: dt.datetime | None, pane: int = 0) -> str:
    """Short, S3- and job-name-safe key of a window pane: 'g' for the global window.

    Args:
        start: The window's start; None for the global window.
        pane: The pane's index within the window (0: the first, which gets no suffix).
    """
    key = "g" if start is None else f"w{int(start.timestamp())}"
    return key if pane == 0 else f"{key}p{pane}"


def run_root(base_uri: str, run_id: str) -> str:
    """The prefix holding every file of one run.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
    """
    return join(base_uri, run_id)


def job_input_prefix(base_uri: str, run_id: str, job_name: str) -> str:
    """Bedrock reads every .jsonl under this prefix, so it holds one job's shards and nothing else.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
    """
    return join(run_root(base_uri, run_id), "input", job_name) + "/"


def shard_name(file_index: int) -> str:
    """The file name of a job's shard.

    Args:
        file_index: The shard's index within its job.
    """
    return f"shard-{file_index:05d}.jsonl"


def index_prefix(base_uri: str, run_id: str, job_name: str) -> str:
    """Sidecars that map recordIds back to transcripts; outside the input prefix on purpose.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
    """
    return join(run_root(base_uri, run_id), "index", job_name) + "/"


def index_uri(base_uri: str, run_id: str, job_name: str, file_index: int) -> str:
    """The index sidecar of one shard (see ``index_prefix``).

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
        file_index: The shard's index within its job.
    """
    return index_prefix(base_uri, run_id, job_name) + shard_name(file_index) + INDEX_SUFFIX


def part_prefix(base_uri: str, run_id: str, job_name: str) -> str:
    """Where the placing workers put their slices of a new job's shards until each shard is
    joined from them; outside the input prefix, so Bedrock never reads a slice.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
    """
    return join(run_root(base_uri, run_id), "parts", job_name) + "/"


def part_uri(base_uri: str, run_id: str, job_name: str, file_index: int, part: str) -> str:
    """One slice of one shard (see ``part_prefix``).

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
        file_index: The shard's index within its job.
        part: The slice's unique name.
    """
    return part_prefix(base_uri, run_id, job_name) + f"shard-{file_index:05d}-{part}.part"


def pool_prefix(base_uri: str, run_id: str, attempt: int, pool: str) -> str:
    """Markers naming every job planned for a pool at one attempt: the panes of one window, or
    the carried tails (a pool is the jobs a rerun may find a record in). A rerun reads them to find the jobs that may already hold its records,
    whatever generation or pane their names carry.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        attempt: The submission attempt (1 for the first, +1 per retry).
        pool: The pool's name.
    """
    # The folder keeps its first name, "families", so a rerun finds the markers of runs
    # started before the pools were renamed.
    return join(run_root(base_uri, run_id), "families", f"a{attempt}", pool) + "/"


def output_prefix(base_uri: str, run_id: str) -> str:
    """outputDataConfig.s3Uri; Bedrock writes <this>/<job id>/<input file>.out.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
    """
    return join(run_root(base_uri, run_id), "output") + "/"


def source_ledger_prefix(base_uri: str, run_id: str) -> str:
    """The source ledger: one entry per input file the run read, with its record counts.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
    """
    return join(run_root(base_uri, run_id), "sources") + "/"


def harvested_prefix(base_uri: str, run_id: str) -> str:
    """One marker per job whose output the run turned into rows (``harvested_uri``).

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
    """
    return join(run_root(base_uri, run_id), "harvested") + "/"


def harvested_uri(base_uri: str, run_id: str, job_name: str) -> str:
    """The marker of one harvested job, named by the job: a harvest done again overwrites it.

    Args:
        base_uri: The S3 URI under which runs keep their files.
        run_id: The run's id.
        job_name: The job's name.
    """
    return harvested_prefix(base_uri, run_id) + job_name
