"""Bounded file input summarized from a plan on local disk, so that no step holds the records.

    result = pipeline | SummarizeTranscriptFiles(config, ReadTranscripts("calls/*.jsonl"))

The read keeps each transcript in a spill file on local disk with its sighting (origin, id,
recordId, line size), and one step plans from all the sightings (``sighting_plan``): which copy
of an id is kept, the recordIds of ids whose recordIds collide, which records the run's existing
jobs already hold (a rerun), which are too large for any job, and where each other record goes.
It plans with the same bucket placement as ``WriteShardsInParallel``, so the shards and job
names are the same as from the records themselves. Then each spill is read back with its
transcripts' verdicts, and each record is built again and written straight into a slice of its
shard.

Why: a runner that keeps each stage's whole output for the next (the in-process FnApiRunner)
would hold the records, or even one small tuple per record, in memory; the spills and the plan's
SQLite file hold them on disk (docs/architecture.md, "Shard preparation"). So the read, the plan
and the pass over the spills must share a local disk: the in-process runner's.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import GlobalWindows
from apache_beam.utils.windowed_value import WindowedValue

from transforms.config import BatchConfig
from transforms.core.coders import BatchRecordCoder, TranscriptCoder, typed_output
from transforms.core.metrics import counter
from transforms.core.model import BatchRecord, Failure, Transcript
from transforms.core.processes import process_alive
from transforms.prepare.records import render_transcript
from transforms.prepare.redact import RedactTranscripts
from transforms.shards import write_shards as shards
from transforms.shards.bucket_plan import bucket_count
from transforms.shards.planning import Placement
from transforms.shards.shard_writer import oversized_failure
from transforms.sighting_plan import (ADOPTED, DUPLICATE, OVERSIZED, UNBUILT, UNDERSIZED,
                                      SightingPlan, SightingSpill, spilled_verdicts)
from transforms.sources.files import ReadTranscripts
from transforms.sources.validation import dedup_key, duplicate_failure
from transforms.summarize import build_or_failure, every_round, run_jobs

FAILURES = shards.FAILURES
_TRANSCRIPT_CODER = TranscriptCoder()


@dataclass(frozen=True)
class FilePlan:
    """The read's plan: the window's ShardPlacement, the SQLite file of its verdicts, and the
    spill files of its transcripts.

    Args:
        placement: Where the placed records go, and the new jobs' names.
        verdicts: The ``SightingPlan`` file that holds each origin's verdict.
        spills: The spill files the plan was made from.
    """

    placement: shards.ShardPlacement
    verdicts: str
    spills: Tuple[str, ...]


class _SpillFn(beam.DoFn):
    """Transcript -> kept with its sighting in its bundle's spill file; the spill file's path at
    the end of each bundle. The record is built to learn its recordId and size."""

    def __init__(self, config: BatchConfig, directory: str):
        self._config = config
        self._directory = directory

    def setup(self) -> None:
        if not os.path.isdir(self._directory):
            raise RuntimeError(
                f"the plan's folder {self._directory} is not on this worker: "
                f"SummarizeTranscriptFiles plans on the launching machine's disk, which its "
                f"workers must share (the in-process FnApiRunner's do); on a runner whose "
                f"workers do not, use read | SummarizeTranscripts(config)")

    def start_bundle(self) -> None:
        self._spill: Optional[SightingSpill] = None

    def process(self, transcript: Transcript) -> None:
        if not transcript.origin:
            raise ValueError(f"transcript {transcript.id!r} has no origin: a file read gives "
                             f"each record one, which its verdict is found by")
        built = build_or_failure(transcript, self._config)
        sighting = ((transcript.origin, transcript.id, None, 0) if isinstance(built, Failure)
                    else (transcript.origin, transcript.id, built.record_id, built.size_bytes))
        if self._spill is None:
            self._spill = SightingSpill(self._directory)
        self._spill.add(dedup_key(transcript.id), sighting, _spilled(transcript))

    def finish_bundle(self) -> Iterator[WindowedValue]:
        if self._spill is not None:  # a retried bundle's spill is never listed, so never read
            yield GlobalWindows.windowed_value(self._spill.close())


def _spilled(transcript: Transcript) -> bytes:
    """The transcript as its spill keeps it: encoded as a shuffle would carry it, without its
    turns when its text is the prompt text they render to (a read of turns alone gives that
    text). Its record is built from that text, and its failure rows show it, so both come out
    the same, from half the bytes, decoded five times faster."""
    if transcript.turns and transcript.text == render_transcript(transcript):
        transcript = dataclasses.replace(transcript, turns=())
    return _TRANSCRIPT_CODER.encode(transcript)


class _PlanFn(shards.ShardingDoFn):
    """Every spill file's path -> the FilePlan; (job, (recordId, size)) on ADOPTED per record an
    existing job holds, (job, its record count) on TOTALS per existing job of the pool."""

    def __init__(self, config: BatchConfig, directory: str):
        super().__init__(config, 1)
        self._directory = directory
        self._collisions = counter("record_id_collisions")

    def process(self, spills: List[str]) -> Iterator[Any]:
        plan = SightingPlan(os.path.join(self._directory, f"plan-{uuid.uuid4().hex}.db"),
                            self._config.quotas)
        plan.load(spills)
        picked = plan.pick()
        self._collisions.inc(picked.collisions)
        existing = self._existing(picked.records)
        totals: dict[str, int] = {}
        plan.hold(self._writer.held_by(existing.pool_jobs, totals))
        summary = plan.classify(bucket_count(picked.records))
        placement = self._placement(summary, existing)
        plan.place(placement.buckets)
        for adopted in plan.adopted():
            yield TaggedOutput(shards.ADOPTED, adopted)
        plan.close()
        for total in totals.items():
            yield TaggedOutput(shards.TOTALS, total)
        yield FilePlan(placement, plan.path, tuple(spills))


class _ApplyFn(shards.SliceWriterFn):
    """A spill file's path -> what each of its transcripts' verdicts says: a failure row, an
    undersized record, or the record's line held for the slice of its shard (written as
    ``SliceWriterFn`` does)."""

    def __init__(self, config: BatchConfig, directory: str):
        super().__init__(config, 1, parts_base=directory)
        self._duplicates = counter("duplicate_ids")

    def process(self, spill: str, plan: FilePlan) -> Iterator[Any]:
        for encoded, (kind, _, rid, _, more) in spilled_verdicts(plan.verdicts, spill):
            transcript = _TRANSCRIPT_CODER.decode(encoded)
            if kind == DUPLICATE:
                self._duplicates.inc()
                yield TaggedOutput(FAILURES, duplicate_failure(transcript, *more))
            elif kind == UNBUILT:  # its RecordNotBuilt failure, made again
                yield TaggedOutput(FAILURES, build_or_failure(transcript, self._config))
            elif kind != ADOPTED:  # an adopted record's job holds it: counted from its sighting
                yield from self._planned(transcript, kind, rid, more, plan.placement)

    def _planned(self, transcript: Transcript, kind: str, rid: str, more: Any,
                 shard_placement: shards.ShardPlacement) -> Iterator[Any]:
        """An oversized, undersized or placed record: built again, under its planned recordId."""
        built = _as_shuffled(build_or_failure(transcript, self._config, rid))
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


_SCRATCH = "bedrock-batch-plan-"


def _scratch_directory() -> str:
    """A new local directory for the plan's files and the shards' slices: removed once the
    shards are joined (``_forget``), or else when this process exits (a run that failed). A
    killed run's directory (its slices about the size of its shards) is removed by the next
    run that starts on the machine: the name holds the process id."""
    root = tempfile.gettempdir()
    for name in os.listdir(root):
        pid = name[len(_SCRATCH):].split("-", 1)[0] if name.startswith(_SCRATCH) else ""
        if pid.isdigit() and not process_alive(int(pid)):  # else not a name this code gives
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    directory = tempfile.mkdtemp(prefix=f"{_SCRATCH}{os.getpid()}-")
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def _forget(directory: str, joined: List[Any]) -> List[Any]:
    """Removes the plan's directory; ``joined``, the window's JobBatch, makes this wait until
    every shard is joined from its slices."""
    shutil.rmtree(directory, ignore_errors=True)
    return []


class _OfFiles(beam.PTransform):
    """A PTransform of the run's files.

    Args:
        config: The run's configuration.
        read: The files' read (``ReadTranscripts``), not applied yet.
    """

    def __init__(self, config: BatchConfig, read: ReadTranscripts):
        super().__init__()
        self._config = config
        self._read = read


class PrepareOnDisk(_OfFiles):
    """PBegin -> the first round's shards written, as ``WriteShards`` returns them, plus
    "source_failures" (the read's, and redaction's).

    Args:
        config: The run's configuration.
        read: The files' read (``ReadTranscripts``), not applied yet.
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self._config
        read = pbegin | "Read" >> self._read
        transcripts, source_failures = read["transcripts"], [read["failures"]]
        if cfg.redactor is not None:  # spilled redacted: the sizes are those of the redacted text
            redacted = transcripts | "Redact" >> RedactTranscripts(cfg.redactor)
            transcripts = redacted["transcripts"]
            source_failures.append(redacted["failures"])
        directory = _scratch_directory()
        planned = (transcripts
                   | "Spill" >> beam.ParDo(_SpillFn(cfg, directory))
                   | "Spills" >> beam.combiners.ToList()
                   | "Plan" >> beam.ParDo(_PlanFn(cfg, directory)).with_outputs(
                       shards.ADOPTED, shards.TOTALS, main="plan"))
        shard_placement = beam.pvalue.AsSingleton(
            planned.plan | "Placement" >> beam.Map(lambda planned: planned.placement))
        applied = (planned.plan
                   | "EachSpill" >> beam.FlatMap(lambda planned: planned.spills)
                   | "SpreadSpills" >> beam.Reshuffle()
                   | "Apply" >> beam.ParDo(
                       _ApplyFn(cfg, directory), plan=beam.pvalue.AsSingleton(planned.plan)
                   ).with_outputs(shards.UNDERSIZED, FAILURES, main="placed"))
        # The slices are on the same local disk as the plan: no S3 round trip before the join.
        written = shards.join_shards(
            cfg, 1, applied, shard_placement,
            typed_output(planned, shards.ADOPTED, Tuple[str, Tuple[str, int]]),
            typed_output(planned, shards.TOTALS, Tuple[str, int]),
            typed_output(applied, FAILURES, Failure), parts_base=directory)
        _ = (pbegin
             | "Scratch" >> beam.Create([directory])
             | "Forget" >> beam.FlatMap(_forget, joined=beam.pvalue.AsList(written["batches"])))
        return {**written, "source_failures": (tuple(source_failures)
                                               | "SourceFailures" >> beam.Flatten())}


class SummarizeTranscriptFiles(_OfFiles):
    """PBegin -> {"summaries", "failures"}, as ``read | SummarizeTranscripts(config)`` gives for
    a bounded file read (the failures include the read's), from a plan on local disk (see the
    module's docstring).

    Args:
        config: The run's configuration.
        read: The files' read (``ReadTranscripts``), not applied yet.
    """

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        cfg = self._config
        prepared = pbegin | "Prepare" >> PrepareOnDisk(cfg, self._read)
        first = prepared | "Round1" >> _RunJobs(cfg, 1)
        return every_round(cfg, None, first, [prepared["source_failures"]],
                           prepared["source_failures"].windowing)


class _RunJobs(shards.RoundTransform):
    """The written shards of a round -> ``run_jobs``'s outputs."""

    def expand(self, sharded: dict[str, beam.PCollection]) -> dict[str, beam.PCollection]:
        return run_jobs(self._config, self._attempt, sharded)
