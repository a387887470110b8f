"""SummarizeTranscripts: the public composite. Transcripts in; summaries and failures out.

    result = transcripts | SummarizeTranscripts(config)
    result["summaries"], result["failures"]

Stages: records (prompt + recordId) -> per window: shards on S3 -> jobs submitted and awaited
-> output harvested. Records that a job did not answer go round again, up to
``max_record_retries`` more rounds; what is still unanswered then becomes a Failure row.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from transforms import harvest, shards
from transforms.await_jobs import AwaitJobs
from transforms.carry import CarryTails
from transforms.config import BatchConfig
from transforms.on_demand import InvokeOnDemand
from transforms.model import BatchRecord, Failure, Transcript, encode_jsonl_line, truncate_raw
from transforms.records import assign_record_ids, build_record, record_id_for
from transforms.redaction_stage import RedactTranscripts

FAILURES = "failures"
# Longest a job may take (168 h timeout) plus a day of queueing: resubmissions arriving this late
# still form jobs.
ALLOWED_LATENESS = Duration(seconds=8 * 24 * 3600)


class _BuildRecordFn(beam.DoFn):
    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, transcript: Transcript) -> Iterator[Any]:
        cfg = self._config
        try:
            yield record_id_for(transcript.id), build_record(
                transcript, cfg.model_id, cfg.prompt, cfg.job.model_invocation_type)
        except ValueError as exc:
            yield beam.pvalue.TaggedOutput(FAILURES, Failure(
                stage="validate", error_code="RecordNotBuilt", error_message=str(exc),
                transcript_id=transcript.id, raw=truncate_raw(transcript.text),
                origin=transcript.origin))


class _ResolveCollisionsFn(beam.DoFn):
    """Transcripts whose recordIds collide get distinct salted ids (deterministically)."""

    def __init__(self) -> None:
        self._collisions = Metrics.counter("bedrock", "record_id_collisions")

    def process(self, element: tuple[str, Iterable[BatchRecord]]) -> Iterator[BatchRecord]:
        record_id, records = element
        records = list(records)  # a group is one record unless ids collide
        if len(records) == 1:
            yield records[0]
            return
        self._collisions.inc(len(records) - 1)
        assigned = assign_record_ids(r.transcript_id for r in records)
        for record in records:
            new_id = assigned[record.transcript_id]
            size = len(encode_jsonl_line(new_id, record.model_input).encode("utf-8"))
            yield BatchRecord(new_id, record.transcript_id, record.model_input, size,
                              record.metadata, record.attempt)


class PrepareRecords(beam.PTransform):
    """Transcript -> BatchRecord with a recordId unique in the run; Failure rows on the side."""

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        built = transcripts | "Build" >> beam.ParDo(_BuildRecordFn(self._config)).with_outputs(
            FAILURES, main="records")
        records = (built.records
                   | "ByRecordId" >> beam.GroupByKey()
                   | "Resolve" >> beam.ParDo(_ResolveCollisionsFn()))
        return {"records": records, "failures": built[FAILURES]}


class BatchRound(beam.PTransform):
    """One submission round: shard, submit and await, harvest. Returns summaries/failures/retries."""

    def __init__(self, config: BatchConfig, attempt: int):
        super().__init__()
        self._config = config
        self._attempt = attempt

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self._config
        windowfn = records.windowing.windowfn
        if not isinstance(windowfn, window.GlobalWindows):
            # Streaming windows: a window becomes jobs when it closes, or early as soon as a full
            # job's worth of records is there; records that come late (resubmissions) still form
            # jobs of their own instead of being dropped.
            records = records | "SizeTrigger" >> beam.WindowInto(
                windowfn, trigger=trigger.AfterWatermark(
                    early=trigger.AfterCount(cfg.quotas.max_records_per_job),
                    late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=ALLOWED_LATENESS)
        sharded = (records
                   | "ByModel" >> beam.Map(lambda r, model=cfg.model_id: (model, r))
                   | "Group" >> beam.GroupByKey()
                   | "WriteShards" >> beam.ParDo(shards.WriteShardsFn(cfg, self._attempt))
                   .with_outputs(shards.FAILURES, shards.ON_DEMAND, shards.DEFERRED, main="batches"))
        carried = sharded[shards.DEFERRED] | "CarryTails" >> CarryTails(cfg, self._attempt)
        harvested = ((sharded.batches, carried["batches"]) | "AllBatches" >> beam.Flatten()
                     | "AwaitJobs" >> AwaitJobs(cfg)
                     | "Spread" >> beam.Reshuffle()
                     | "Harvest" >> beam.ParDo(harvest.HarvestJobFn(cfg)).with_outputs(
                         harvest.FAILURES, harvest.RETRIES, main="summaries"))
        failures = ((sharded[shards.FAILURES], carried["failures"], harvested[harvest.FAILURES])
                    | "Failures" >> beam.Flatten())
        return {"summaries": harvested.summaries, "failures": failures,
                "retries": harvested[harvest.RETRIES], "on_demand": sharded[shards.ON_DEMAND]}


class SummarizeTranscripts(beam.PTransform):
    """PCollection[Transcript] -> {"summaries": PCollection[Summary], "failures": PCollection[Failure]}.

    Every input ends up in exactly one of the two. Windowing is the caller's: each window's
    records are submitted as that window's jobs.
    """

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self._config
        windowfn = transcripts.windowing.windowfn
        if not transcripts.is_bounded and isinstance(windowfn, window.GlobalWindows):
            raise ValueError("SummarizeTranscripts got an unbounded PCollection in the global "
                             "window, which never closes: apply beam.WindowInto("
                             "window.FixedWindows(seconds)) first (the CLI: --window-seconds)")
        redaction_failures = []
        if cfg.redactor is not None:  # before the records: unredacted text never reaches a shard
            redacted = transcripts | "Redact" >> RedactTranscripts(cfg.redactor)
            transcripts, redaction_failures = redacted["transcripts"], [redacted["failures"]]
        prepared = transcripts | "Prepare" >> PrepareRecords(cfg)
        summaries, failures = [], [prepared["failures"]]
        failures += redaction_failures
        records = prepared["records"]
        for attempt in range(1, cfg.max_attempts + 1):
            result = records | f"Round{attempt}" >> BatchRound(cfg, attempt)
            summaries.append(result["summaries"])
            failures.append(result["failures"])
            on_demand = result["on_demand"] | f"OnDemand{attempt}" >> InvokeOnDemand(cfg)
            summaries.append(on_demand["summaries"])
            failures.append(on_demand["failures"])
            records = result["retries"]
        # Hand the caller back its own windowing (the rounds used their own triggers).
        return {"summaries": (tuple(summaries) | "AllSummaries" >> beam.Flatten()
                              | "SummaryWindows" >> beam.WindowInto(windowfn)),
                "failures": (tuple(failures) | "AllFailures" >> beam.Flatten()
                             | "FailureWindows" >> beam.WindowInto(windowfn))}
