"""Bounded file input summarized from two reads of its files, so that no step holds the records.

    result = pipeline | SummarizeTranscriptFiles(config, ReadTranscripts("calls/*.jsonl"))

The first read keeps about a hundred bytes of each transcript, its sighting (origin, id, recordId,
line size), and decides everything from those alone: which copy of an id is kept, the recordIds
of ids whose recordIds collide, which records the run's existing jobs already hold (a rerun),
which are too large for any job, and where each other record goes. It plans with the same
bucket placement as ``WriteShardsInParallel``, so the shards and job names are the same as from
the records themselves. Its verdicts, one per origin, are a side input of the second read, which
builds each record again and writes it straight into a slice of its shard.

Why: a runner that keeps each stage's whole output for the next (the in-process FnApiRunner)
then holds the sightings and the verdicts, not the records, whose grouping made its memory grow
with the input (docs/architecture.md, "Shard preparation"). The files must not change between
the two reads: a record the second read finds unlike its sighting fails the run, naming it.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, List, Mapping, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.config import BatchConfig
from transforms.core.coders import BatchRecordCoder, typed_output
from transforms.core.metrics import PLANNING_NAMESPACE, counter
from transforms.core.model import BatchRecord, Failure, Transcript
from transforms.prepare.redact import RedactTranscripts
from transforms.shards import write_shards as shards
from transforms.shards.bucket_plan import bucket_count, bucket_of
from transforms.shards.planning import Placement, oversized
from transforms.shards.shard_writer import oversized_failure, owners
from transforms.sources.files import ReadTranscripts
from transforms.sources.validation import (Sighting, dedup_key, duplicate_failure,
                                           first_sighting)
from transforms.summarize import SaltedIdsFn, build_or_failure, every_round, run_jobs

FAILURES = shards.FAILURES
VERDICTS = "verdicts"

# What the first read decided for one origin: (kind, transcript id, recordId, line size, more).
# ``more`` is (job, file) for PLACED, (kept origin, kept id) for DUPLICATE, else None.
Verdict = Tuple[str, str, str, int, Any]
DUPLICATE, UNBUILT, ADOPTED, OVERSIZED, UNDERSIZED, PLACED = (
    "duplicate", "unbuilt", "adopted", "oversized", "undersized", "placed")


class InputChangedError(RuntimeError):
    """The second read of the files found a record unlike what the first read planned."""


class _SightFn(beam.DoFn):
    """Transcript -> (its dedup key, its sighting): the record is built to learn its size."""

    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, transcript: Transcript) -> Iterator[Tuple[str, Sighting]]:
        if not transcript.origin:
            raise ValueError(f"transcript {transcript.id!r} has no origin: a file read gives "
                             f"each record one, which the second read looks it up by")
        built = build_or_failure(transcript, self._config)
        sighting = ((transcript.origin, transcript.id, None, 0) if isinstance(built, Failure)
                    else (transcript.origin, transcript.id, built.record_id, built.size_bytes))
        yield dedup_key(transcript.id), sighting


class _PickFn(beam.DoFn):
    """(dedup key, sightings) -> the kept sighting if its record could be built; the verdicts of
    the duplicates and of a kept record that cannot be built."""

    def process(self, element: Tuple[str, Iterable[Sighting]]) -> Iterator[Any]:
        kept, duplicates = first_sighting(element[1])
        for origin, tid, _, _ in duplicates:
            yield TaggedOutput(VERDICTS, (origin, (DUPLICATE, tid, "", 0, (kept[0], kept[1]))))
        if kept[2] is None:
            yield TaggedOutput(VERDICTS, (kept[0], (UNBUILT, kept[1], "", 0, None)))
        else:
            yield kept


def _salt(sighting: Sighting, salted: Mapping[str, str]) -> Sighting:
    # A salted recordId is as long as a plain one ("R" + 15 characters), so the line size holds;
    # the second read checks it.
    new_id = salted.get(sighting[1])
    return sighting if new_id is None else (sighting[0], sighting[1], new_id, sighting[3])


# A bucket's member: a kept sighting, or (recordId, job) for a record an existing job holds.
Member = Tuple[Optional[Sighting], Optional[Tuple[str, str]]]


class _ClassifyFn(beam.DoFn):
    """(bucket, its members) -> the verdicts of its adopted and oversized records, (job,
    (recordId, size)) per adopted record, and (bucket, the fresh sightings) to place."""

    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, element: Tuple[int, Iterable[Member]]) -> Iterator[Any]:
        bucket, members = element
        owner = owners(held for _, held in members if held is not None)
        fresh = []
        for sighting, _ in members:
            if sighting is None:
                continue
            origin, tid, rid, size = sighting
            job = owner.get(rid)
            if job is not None:
                yield TaggedOutput(shards.ADOPTED, (job, (rid, size)))
                yield TaggedOutput(VERDICTS, (origin, (ADOPTED, tid, rid, size, None)))
            elif oversized(size, self._config.quotas) is not None:
                yield TaggedOutput(VERDICTS, (origin, (OVERSIZED, tid, rid, size, None)))
            else:
                fresh.append(sighting)
        if fresh:
            yield bucket, fresh


def _place(element: Tuple[int, List[Sighting]], shard_placement: shards.ShardPlacement
           ) -> Iterator[Tuple[str, Verdict]]:
    """(bucket, its fresh sightings) -> the verdict of each: its shard, or undersized."""
    bucket, fresh = element
    ordered = sorted(fresh, key=lambda s: s[2])  # recordId order, as WriteShardsInParallel
    placements = shard_placement.buckets.place(bucket, [s[3] for s in ordered])
    for (origin, tid, rid, size), placement in zip(ordered, placements):
        if placement.job_index is None:
            yield origin, (UNDERSIZED, tid, rid, size, None)
        else:
            yield origin, (PLACED, tid, rid, size, (placement.job_index, placement.file_index))


class _SecondReadFn(shards.SliceWriterFn):
    """Transcript (read again) -> what its verdict says: a failure row, an undersized record, or
    its line held for the slice of its shard (written as ``SliceWriterFn`` does)."""

    def __init__(self, config: BatchConfig):
        super().__init__(config, 1)
        self._duplicates = counter("duplicate_ids")

    def process(self, transcript: Transcript, verdicts: Mapping[str, Verdict],
                shard_placement: shards.ShardPlacement) -> Iterator[Any]:
        verdict = verdicts.get(transcript.origin)
        if verdict is None:
            raise _changed(transcript, "the first read did not see it")
        if verdict[1] != transcript.id:
            raise _changed(transcript, "the first read saw another transcript there")
        kind, _, rid, size, more = verdict
        if kind == DUPLICATE:
            self._duplicates.inc()
            yield TaggedOutput(FAILURES, duplicate_failure(transcript, *more))
        elif kind == UNBUILT:
            built = build_or_failure(transcript, self._config)
            if not isinstance(built, Failure):
                raise _changed(transcript, "its record can be built now")
            yield TaggedOutput(FAILURES, built)
        elif kind != ADOPTED:  # an adopted record's job holds it: counted from its sighting
            yield from self._planned(transcript, kind, rid, size, more, shard_placement)

    def _planned(self, transcript: Transcript, kind: str, rid: str, size: int, more: Any,
                 shard_placement: shards.ShardPlacement) -> Iterator[Any]:
        """An oversized, undersized or placed record: built again, as planned."""
        built = build_or_failure(transcript, self._config, rid)
        if isinstance(built, Failure) or built.size_bytes != size:
            raise _changed(transcript, "its record is not the one planned")
        built = _as_shuffled(built)
        if kind == OVERSIZED:
            yield TaggedOutput(FAILURES, oversized_failure(built, self._config.quotas))
        elif kind == UNDERSIZED:
            yield TaggedOutput(shards.UNDERSIZED, built)
        else:
            yield from self._hold(built, Placement(*more), shard_placement.names)


_RECORD_CODER = BatchRecordCoder()


def _as_shuffled(record: BatchRecord) -> BatchRecord:
    """The record as it comes out of a shuffle, which ``WriteShardsInParallel``'s records cross:
    its coder writes mappings in sorted key order, so their shard lines are byte for byte the
    same."""
    return _RECORD_CODER.decode(_RECORD_CODER.encode(record))


def _changed(transcript: Transcript, why: str) -> InputChangedError:
    return InputChangedError(
        f"{transcript.origin} (transcript {transcript.id!r}) changed between the run's two reads "
        f"of its files ({why}): leave the input files unchanged while a run reads them, then "
        f"run again with the same --run-id")


class _OfFiles(beam.PTransform):
    """A PTransform of the run's files, read twice.

    Args:
        config: The run's configuration.
        read: The files' read, not applied yet; its ``for_planning`` copy is the first read.
    """

    def __init__(self, config: BatchConfig, read: ReadTranscripts):
        super().__init__()
        self._config = config
        self._read = read


class PrepareInTwoReads(_OfFiles):
    """PBegin -> the first round's shards written, as ``WriteShards`` returns them, plus
    "source_failures" (the second read's, and redaction's).

    Args:
        config: The run's configuration.
        read: The files' read (``ReadTranscripts``), not applied yet.
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self._config
        first = (pbegin | "FirstRead" >> self._read.for_planning())["transcripts"]
        if cfg.redactor is not None:  # the sizes are those of the redacted text
            first = (first | "FirstRedact" >> RedactTranscripts(
                cfg.redactor, PLANNING_NAMESPACE))["transcripts"]
        picked = (first
                  | "Sight" >> beam.ParDo(_SightFn(cfg))
                  | "ById" >> beam.GroupByKey()
                  | "Pick" >> beam.ParDo(_PickFn()).with_outputs(VERDICTS, main="kept"))
        salted = beam.pvalue.AsDict(
            picked.kept
            | "Ids" >> beam.Map(lambda s: (s[2], s[1]))
            | "IdsByRecordId" >> beam.GroupByKey()
            | "Collided" >> beam.ParDo(SaltedIdsFn()))
        kept = picked.kept | "Resolve" >> beam.Map(_salt, salted=salted)
        counted = kept | "Count" >> beam.combiners.Count.Globally()
        buckets = beam.pvalue.AsSingleton(counted | "Buckets" >> beam.Map(bucket_count))
        existing_jobs = counted | "Existing" >> beam.ParDo(shards.ExistingJobsFn(cfg, 1))
        indexed = (existing_jobs
                   | "PoolJobs" >> beam.FlatMap(lambda existing: existing.pool_jobs)
                   | "SpreadJobs" >> beam.Reshuffle()
                   | "ReadIndexes" >> beam.ParDo(shards.ReadIndexFn(cfg, 1), buckets=buckets)
                   .with_outputs(shards.TOTALS, main="held"))
        keyed = kept | "KeyByBucket" >> beam.Map(
            lambda s, n: (bucket_of(s[2], n), (s, None)), n=buckets)
        classified = ((keyed, indexed.held)
                      | "Members" >> beam.Flatten()
                      | "ByBucket" >> beam.GroupByKey()
                      | "Classify" >> beam.ParDo(_ClassifyFn(cfg)).with_outputs(
                          shards.ADOPTED, VERDICTS, main="fresh"))
        shard_placement = beam.pvalue.AsSingleton(
            classified.fresh
            | "Sizes" >> beam.FlatMap(lambda kv: ((kv[0], s[3]) for s in kv[1]))
            | "Summarize" >> beam.CombineGlobally(shards.SummarizeBucketsFn())
            | "Placement" >> beam.ParDo(shards.PlacementFn(cfg, 1),
                                        existing=beam.pvalue.AsSingleton(existing_jobs)))
        placed_verdicts = classified.fresh | "Place" >> beam.FlatMap(
            _place, shard_placement=shard_placement).with_output_types(Tuple[str, Verdict])
        verdicts = beam.pvalue.AsDict(
            (typed_output(picked, VERDICTS, Tuple[str, Verdict]),
             typed_output(classified, VERDICTS, Tuple[str, Verdict]), placed_verdicts)
            | "Verdicts" >> beam.Flatten())

        second = pbegin | "Read" >> self._read
        transcripts, source_failures = second["transcripts"], [second["failures"]]
        if cfg.redactor is not None:
            redacted = transcripts | "Redact" >> RedactTranscripts(cfg.redactor)
            transcripts = redacted["transcripts"]
            source_failures.append(redacted["failures"])
        applied = transcripts | "Write" >> beam.ParDo(
            _SecondReadFn(cfg), verdicts=verdicts, shard_placement=shard_placement).with_outputs(
            shards.UNDERSIZED, FAILURES, main="placed")
        written = shards.join_shards(
            cfg, 1, applied, shard_placement,
            typed_output(classified, shards.ADOPTED, Tuple[str, Tuple[str, int]]),
            typed_output(indexed, shards.TOTALS, Tuple[str, int]),
            typed_output(applied, FAILURES, Failure))
        return {**written, "source_failures": (tuple(source_failures)
                                               | "SourceFailures" >> beam.Flatten())}


class SummarizeTranscriptFiles(_OfFiles):
    """PBegin -> {"summaries", "failures"}, as ``read | SummarizeTranscripts(config)`` gives for
    a bounded file read (the failures include the read's), from two reads of the files (see the
    module's docstring). The files must not change while the run reads them.

    Args:
        config: The run's configuration.
        read: The files' read (``ReadTranscripts``), not applied yet.
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self._config
        prepared = pbegin | "Prepare" >> PrepareInTwoReads(cfg, self._read)
        first = prepared | "Round1" >> _RunJobs(cfg, 1)
        return every_round(cfg, None, first, [prepared["source_failures"]],
                           prepared["source_failures"].windowing)


class _RunJobs(shards.RoundTransform):
    """The written shards of a round -> ``run_jobs``'s outputs."""

    def expand(self, sharded: Mapping[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        return run_jobs(self._config, self._attempt, sharded)
