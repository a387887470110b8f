"""The source ledger: what a run's file sources read, kept where a restarted attempt finds it.

Beam counters live as long as one attempt of a pipeline: a runner that restarts the job from a
checkpoint (Flink after a lost TaskManager) starts them again from zero. The ledger is the
source's own count made durable: one entry per input file, written when the file has been read
whole, named by a hash of the file's identity (``file_identity``), so a replayed read overwrites
its entry instead of adding one, however the rerun spells the file's path. Pure: names and
contents only; the source writes the entries, the CLI reads them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transforms.core.aws import AwsConfig

SUFFIX = ".json"


@dataclass(frozen=True)
class SourceLedger:
    """Where a file source keeps its ledger.

    Args:
        prefix: A local folder or an ``s3://`` prefix
            (``transforms.core.layout.source_ledger_prefix``).
        aws: The S3 settings for an ``s3://`` prefix (workers build their client from them, as
            every stage does); None for a local folder.
    """

    prefix: str
    aws: AwsConfig | None = None


@dataclass(frozen=True)
class LedgerEntry:
    """One input file as its source read it.

    Args:
        path: The file's identity (``file_identity``).
        records: Input units read from it: records, plus one for a file that could only become
            one failure row (what the ``records_in`` counter counts).
        failures: How many of them became failure rows at the source.
    """

    path: str
    records: int
    failures: int


def file_identity(path: str) -> str:
    """The one name of the file ``path`` names, however it is spelled.

    A local path is made absolute, with ``.``, ``..``, repeated slashes and symbolic links
    resolved: ``in.jsonl``, ``./in.jsonl`` and the full path are one file to the ledger. A URI
    (``s3://...``) is kept as it is: an object store's keys are names, not paths.

    Args:
        path: The input file's path or URI, as the source matched it.
    """
    return path if "://" in path else os.path.realpath(path)


def entry_name(path: str) -> str:
    """The entry's object name: the same for every read of ``path``.

    Args:
        path: The input file's identity (``file_identity``).
    """
    return hashlib.sha256(path.encode("utf-8")).hexdigest()[:32] + SUFFIX


def entry_text(entry: LedgerEntry) -> str:
    """The entry as stored (one JSON object).

    Args:
        entry: What was read.
    """
    return json.dumps({"path": entry.path, "records": entry.records,
                       "failures": entry.failures}, sort_keys=True)


def parse_entry(text: str) -> LedgerEntry:
    """An entry as ``entry_text`` stored it.

    Args:
        text: The stored JSON.

    Raises:
        ValueError: ``text`` is no ledger entry.
    """
    data = json.loads(text)
    if (not isinstance(data, dict) or not isinstance(data.get("path"), str)
            or any(type(data.get(k)) is not int or data[k] < 0 for k in ("records", "failures"))):
        raise ValueError(f"not a source ledger entry: {text[:200]!r}")
    return LedgerEntry(data["path"], data["records"], data["failures"])


# Written by a bounded folder watch when it ends. No ``SUFFIX``: it is no file's entry.
WATCH_END_NAME = "_WATCH_END"


@dataclass(frozen=True)
class WatchEnd:
    """What a bounded folder watch had listed when it ended: the files whose entries the ledger
    must hold before the run is done. Written by the watch itself, so it names exactly the files
    the watch read (a file moved in just after the watch's last listing is not among them),
    and a watch restored from a checkpoint that ends again writes it again.

    Args:
        stop_at: When the watch ended (epoch seconds, fixed at its first listing).
        paths: The identities (``file_identity``) of the files under the pattern at its last
            listing, every one of which it emitted.
    """

    stop_at: float
    paths: frozenset[str]


def watch_end_text(end: WatchEnd) -> str:
    """The record as stored (one JSON object, paths sorted).

    Args:
        end: What the watch had listed.
    """
    return json.dumps({"stop_at": end.stop_at, "paths": sorted(end.paths)})


def parse_watch_end(text: str) -> WatchEnd:
    """The record as ``watch_end_text`` stored it.

    Args:
        text: The stored JSON.

    Raises:
        ValueError: ``text`` is no watch end record.
    """
    data = json.loads(text)
    if (not isinstance(data, dict) or type(data.get("stop_at")) not in (int, float)
            or not isinstance(data.get("paths"), list)
            or not all(isinstance(p, str) for p in data["paths"])):
        raise ValueError(f"not a watch end record: {text[:200]!r}")
    return WatchEnd(float(data["stop_at"]), frozenset(data["paths"]))
