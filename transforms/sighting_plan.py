"""A bounded file input's shards planned from its records' sightings, kept in SQLite on local disk.

    spill = SightingSpill(directory)          # one per bundle of the read
    spill.add(dedup_key(t.id), sighting, encoded_transcript)
    paths = [spill.close(), ...]
    plan = SightingPlan(db_path, quotas)
    plan.load(paths); picked = plan.pick(); ...; plan.place(buckets); plan.close()
    for encoded, verdict in spilled_verdicts(db_path, path): ...   # each spill again

The steps decide what ``WriteShardsInParallel`` and the steps before it (deduplication, colliding
recordIds, a rerun's adopted records, oversized records, bucket placement) decide from the
records, with the same functions, so the shards come out the same. Each record's outcome, its
verdict, is a row keyed by its origin.

Why SQLite: every step is a sort or a join over one row per record, which SQLite does on disk
in bounded memory, where Python sets and dicts, or a runner's shuffles, would hold every row
(the in-process runner keeps each stage's whole output for the next). Its files are local, so
the read, the planning and the pass over the spills must run on one machine: the in-process
runner's.
"""
from __future__ import annotations

import itertools
import os
import pathlib
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Tuple

from transforms.core.quotas import Quotas
from transforms.prepare.records import assign_record_ids
from transforms.shards.bucket_plan import BucketPlacement, BucketSummary, bucket_of
from transforms.shards.planning import oversized
from transforms.sources.validation import Sighting, first_sighting

# What the plan decided for one origin: (kind, transcript id, recordId, line size, more).
# ``more`` is (job, file) for PLACED, (kept origin, kept id) for DUPLICATE, else None.
Verdict = Tuple[str, str, str, int, Any]
DUPLICATE, UNBUILT, ADOPTED, OVERSIZED, UNDERSIZED, PLACED = (
    "duplicate", "unbuilt", "adopted", "oversized", "undersized", "placed")

_SIGHTINGS = "sightings(origin TEXT, key TEXT, tid TEXT, rid TEXT, size INTEGER)"
# A spill's rows: a sighting and the transcript it was made from, encoded.
_SPILLED = "spilled(origin TEXT, key TEXT, tid TEXT, rid TEXT, size INTEGER, transcript BLOB)"
# a, b: ``more``'s two halves, or NULL.
_VERDICTS = "verdicts(origin TEXT, kind TEXT, tid TEXT, rid TEXT, size INTEGER, a, b)"
_ROWS_PER_WRITE = 10_000  # rows a writer holds before it hands them to SQLite


def _connect(path: str, cache_mib: int) -> sqlite3.Connection:
    # A scratch file that the run rebuilds if it fails: no journal, no fsync.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                     f"PRAGMA cache_size=-{cache_mib * 1024}; PRAGMA temp_store=FILE;")
    return db


class _RowWriter:
    """Inserts rows into one table in batches of ``_ROWS_PER_WRITE`` (inside the caller's
    transaction: one per step, not one per row)."""

    def __init__(self, db: sqlite3.Connection, table: str, width: int):
        self._db = db
        self._sql = f"INSERT INTO {table} VALUES ({', '.join('?' * width)})"
        self._rows: list[tuple] = []

    def add(self, row: tuple) -> None:
        self._rows.append(row)
        if len(self._rows) >= _ROWS_PER_WRITE:
            self.flush()

    def flush(self) -> None:
        self._db.executemany(self._sql, self._rows)
        self._rows = []


class SightingSpill:
    """One bundle's transcripts and their sightings, written to a SQLite file of its own in
    ``directory``.

    Args:
        directory: A local directory that the planning step reads.
    """

    def __init__(self, directory: str):
        self.path = os.path.join(directory, f"sightings-{uuid.uuid4().hex}.db")
        self._db = _connect(self.path, cache_mib=4)  # only appended to: a small cache will do
        self._db.execute(f"CREATE TABLE {_SPILLED}")
        self._db.execute("BEGIN")
        self._rows = _RowWriter(self._db, "spilled", 6)

    def add(self, key: str, sighting: Sighting, transcript: bytes) -> None:
        """Keep one transcript and its sighting.

        Args:
            key: Its transcript id's ``dedup_key``.
            sighting: (origin, transcript id, recordId or None, line size).
            transcript: The transcript, encoded (``spilled_verdicts`` gives it back).
        """
        origin, tid, rid, size = sighting
        self._rows.add((origin, key, tid, rid, size, transcript))

    def close(self) -> str:
        """Write what is held and close the file; returns its path."""
        self._rows.flush()
        self._db.execute("COMMIT")
        self._db.close()
        return self.path


@dataclass(frozen=True)
class Picked:
    """What ``SightingPlan.pick`` found.

    Args:
        records: The kept records whose record could be built: the window's record count.
        collisions: Transcripts that got a salted recordId (another id's record had theirs).
    """

    records: int
    collisions: int


class SightingPlan:
    """The plan's steps, in order: ``load``, ``pick``, ``hold``, ``classify``, ``place``;
    then ``adopted`` and ``close``. The file at ``path`` then holds every origin's verdict.

    Args:
        path: The SQLite file to create (it must not exist).
        quotas: The run's quotas (the oversized limit).
    """

    def __init__(self, path: str, quotas: Quotas):
        self.path = path
        self._quotas = quotas
        self._db = _connect(path, cache_mib=64)  # for its sorts and joins
        self._db.executescript(
            f"CREATE TABLE {_SIGHTINGS}; CREATE TABLE {_VERDICTS};"
            "CREATE TABLE kept(origin TEXT, tid TEXT, rid TEXT, size INTEGER);"
            "CREATE TABLE held(rid TEXT, job TEXT);"
            "CREATE TABLE fresh(origin TEXT, tid TEXT, rid TEXT, size INTEGER, bucket INTEGER);")

    def load(self, spills: Iterable[str]) -> None:
        """Copy the spills' sightings in. The spill files stay: ``spilled_verdicts`` reads
        their transcripts, and a retried planning step their sightings; they go with their
        directory.

        Args:
            spills: The paths ``SightingSpill.close`` returned.
        """
        for spill in spills:
            self._db.execute("ATTACH DATABASE ? AS spill", (spill,))
            self._db.execute("INSERT INTO main.sightings "
                             "SELECT origin, key, tid, rid, size FROM spill.spilled")
            self._db.execute("DETACH DATABASE spill")

    def pick(self) -> Picked:
        """Deduplicate the ids (``first_sighting``), set aside the kept records that cannot be
        built, and salt the recordIds that collide (``assign_record_ids``)."""
        db = self._db
        db.execute("CREATE INDEX sightings_by_key ON sightings(key)")
        db.execute("BEGIN")
        verdicts = _RowWriter(db, "verdicts", 7)
        shared = _rows(db.execute(
            "SELECT key, origin, tid, rid, size FROM sightings WHERE key IN "
            "(SELECT key FROM sightings GROUP BY key HAVING count(*) > 1) ORDER BY key"))
        for _, group in itertools.groupby(shared, key=lambda row: row[0]):
            kept, duplicates = first_sighting(row[1:] for row in group)
            for origin, tid, _, _ in duplicates:
                verdicts.add((origin, DUPLICATE, tid, "", 0, kept[0], kept[1]))
        verdicts.flush()
        db.execute("COMMIT")
        db.executescript(
            "BEGIN;"
            "CREATE INDEX duplicates ON verdicts(origin);"
            "INSERT INTO verdicts SELECT origin, 'unbuilt', tid, '', 0, NULL, NULL"
            "  FROM sightings WHERE rid IS NULL AND origin NOT IN (SELECT origin FROM verdicts);"
            "INSERT INTO kept SELECT origin, tid, rid, size FROM sightings"
            "  WHERE origin NOT IN (SELECT origin FROM verdicts);"
            "DROP INDEX duplicates; DROP TABLE sightings;"
            "CREATE INDEX kept_by_rid ON kept(rid);"
            "COMMIT;")
        collisions = 0
        colliding = db.execute("SELECT rid FROM kept GROUP BY rid HAVING count(*) > 1")
        db.execute("BEGIN")
        for (rid,) in colliding.fetchall():  # a few, if any: recordIds are 60-bit hashes
            tids = [tid for (tid,) in db.execute("SELECT tid FROM kept WHERE rid = ?", (rid,))]
            collisions += len(tids) - 1
            # A salted recordId is as long as a plain one ("R" + 15 characters), so the line
            # size holds.
            for tid, new_rid in assign_record_ids(tids).items():
                db.execute("UPDATE kept SET rid = ? WHERE rid = ? AND tid = ?", (new_rid, rid, tid))
        db.execute("COMMIT")
        [(records,)] = db.execute("SELECT count(*) FROM kept").fetchall()
        return Picked(records, collisions)

    def hold(self, held: Iterable[Tuple[str, str]]) -> None:
        """Note the records the run's existing jobs hold (a rerun's).

        Args:
            held: (recordId, job) for each record an existing job's index lists.
        """
        self._db.execute("BEGIN")
        rows = _RowWriter(self._db, "held", 2)
        for pair in held:
            rows.add(pair)
        rows.flush()
        self._db.execute("COMMIT")

    def classify(self, buckets: int) -> BucketSummary:
        """Give the records an existing job holds, and the oversized, their verdicts; returns
        the summary of the others (fresh), which the placement is planned from.

        Args:
            buckets: The window's ``bucket_count``.
        """
        db = self._db
        db.execute("CREATE INDEX held_by_rid ON held(rid)")
        summary = BucketSummary()
        db.execute("BEGIN")
        verdicts = _RowWriter(db, "verdicts", 7)
        fresh = _RowWriter(db, "fresh", 5)
        # A record two jobs hold goes to the first by name, as ``shard_writer.owners`` does.
        query = db.execute("SELECT origin, tid, rid, size, "
                           "(SELECT min(job) FROM held WHERE held.rid = kept.rid) FROM kept")
        for origin, tid, rid, size, job in _rows(query):
            if job is not None:
                verdicts.add((origin, ADOPTED, tid, rid, size, job, None))
            elif oversized(size, self._quotas) is not None:
                verdicts.add((origin, OVERSIZED, tid, rid, size, None, None))
            else:
                bucket = bucket_of(rid, buckets)
                summary.add(bucket, size)
                fresh.add((origin, tid, rid, size, bucket))
        fresh.flush()
        verdicts.flush()
        db.execute("COMMIT")
        return summary

    def place(self, buckets: BucketPlacement) -> None:
        """Give each fresh record its verdict: its shard, or undersized; then index the
        verdicts by origin for ``spilled_verdicts``.

        Args:
            buckets: The window's placement, planned from ``classify``'s summary.
        """
        db = self._db
        db.execute("CREATE INDEX fresh_by_bucket ON fresh(bucket)")
        db.execute("BEGIN")
        verdicts = _RowWriter(db, "verdicts", 7)
        rows = _rows(db.execute("SELECT origin, tid, rid, size, bucket FROM fresh ORDER BY bucket"))
        for bucket, members in itertools.groupby(rows, key=lambda row: row[4]):
            ordered = sorted(members, key=lambda row: row[2])  # recordId order, as in one shot
            placements = buckets.place(bucket, [row[3] for row in ordered])
            for (origin, tid, rid, size, _), placement in zip(ordered, placements):
                if placement.job_index is None:
                    verdicts.add((origin, UNDERSIZED, tid, rid, size, None, None))
                else:
                    verdicts.add((origin, PLACED, tid, rid, size, placement.job_index,
                                  placement.file_index))
        verdicts.flush()
        db.execute("COMMIT")
        # Unique: a file read gives each record an origin of its own.
        db.executescript("DROP TABLE fresh;"
                         "CREATE UNIQUE INDEX verdicts_by_origin ON verdicts(origin);")

    def adopted(self) -> Iterator[Tuple[str, Tuple[str, int]]]:
        """(existing job, (recordId, size)) for each record an existing job holds."""
        query = self._db.execute("SELECT a, rid, size FROM verdicts WHERE kind = ?", (ADOPTED,))
        for job, rid, size in _rows(query):
            yield job, (rid, size)

    def close(self) -> None:
        """Close the plan's file; ``spilled_verdicts`` reads it."""
        self._db.close()


def _rows(cursor: sqlite3.Cursor) -> Iterator[tuple]:
    """A query's rows, a thousand at a time: never all of them in memory."""
    while batch := cursor.fetchmany(1000):
        yield from batch


def spilled_verdicts(plan: str, spill: str) -> Iterator[Tuple[bytes, Verdict]]:
    """(encoded transcript, its verdict) for each transcript of a spill, in the order it was
    spilled, from a finished ``SightingPlan``; both files are only read.

    Args:
        plan: The plan's SQLite file.
        spill: A spill's path, one of those the plan loaded.
    """
    db = sqlite3.connect(_read_only(spill), uri=True)
    try:
        db.execute("ATTACH DATABASE ? AS plan", (_read_only(plan),))
        query = db.execute(
            "SELECT s.transcript, v.kind, v.tid, v.rid, v.size, v.a, v.b FROM spilled AS s "
            "JOIN plan.verdicts AS v ON v.origin = s.origin ORDER BY s.rowid")
        for transcript, kind, tid, rid, size, a, b in _rows(query):
            yield transcript, (kind, tid, rid, size, None if a is None else (a, b))
    finally:
        db.close()


def _read_only(path: str) -> str:
    # A URI, so that SQLite opens the file read-only; as_uri escapes what a path may hold.
    return f"{pathlib.Path(path).absolute().as_uri()}?mode=ro"
