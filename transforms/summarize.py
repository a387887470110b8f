"""SummarizeTranscripts: the public composite. Transcripts in; summaries and failures out.

    result = transcripts | SummarizeTranscripts(config)
    result["summaries"], result["failures"]

Stages: records (prompt + recordId) -> per window: shards on S3 -> jobs submitted and awaited
-> output harvested. Records that a job did not answer go round again, up to
``max_record_retries`` more rounds; what is still unanswered then becomes a Failure row.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Tuple

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.utils.timestamp import Duration

from transforms.config import BatchConfig
from transforms.core.coders import typed_output
from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.model import (BatchRecord, Failure, Summary, Transcript, jsonl_line_size,
                                   truncate_raw)
from transforms.core.windowing import restore_windowing
from transforms.jobs import harvest
from transforms.jobs.await_jobs import AwaitJobs
from transforms.prepare.records import assign_record_ids, build_record, record_id_for
from transforms.prepare.redact import RedactTranscripts
from transforms.shards import write_shards as shards
from transforms.shards.carry import CarryTails
from transforms.shards.invoke_on_demand import InvokeOnDemand
from transforms.sinks.schema import row_problem
from transforms.sources import DeduplicateTranscripts
from transforms.sources.common import DEFAULT_INPUT_LATENESS_SECONDS

FAILURES = "failures"


def fixed_windows_with_lateness(window_seconds: int,
                                allowed_lateness_seconds: float = DEFAULT_INPUT_LATENESS_SECONDS
                                ) -> beam.WindowInto:
    """Fixed windows for unbounded input that keep records arriving behind the watermark.

    Plain ``WindowInto(FixedWindows(n))`` has no allowed lateness, so the first GroupByKey drops
    every record whose window already closed, without a trace. Here each window fires when it
    closes and again for every record arriving up to ``allowed_lateness_seconds`` later (its own
    late pane, so its own jobs). Records later still are dropped by Beam: sources that can see
    them (``ReadTranscriptsFromKafka``) turn them into ``LateRecord`` failure rows first.

    Args:
        window_seconds: The window length in seconds (> 0).
        allowed_lateness_seconds: How long after a window closes its late records are still
            taken (>= 0).

    Raises:
        ConfigError: either value is out of range.
    """
    if window_seconds <= 0:
        raise ConfigError(f"window_seconds must be > 0, got {window_seconds}", "window_seconds")
    if allowed_lateness_seconds < 0:
        raise ConfigError(f"allowed_lateness_seconds must be >= 0, got {allowed_lateness_seconds}",
                          "allowed_lateness_seconds")
    return beam.WindowInto(window.FixedWindows(window_seconds),
                           trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
                           accumulation_mode=trigger.AccumulationMode.DISCARDING,
                           allowed_lateness=Duration(seconds=allowed_lateness_seconds))


def build_or_failure(transcript: Transcript, config: BatchConfig,
                     record_id: str | None = None) -> BatchRecord | Failure:
    """The transcript's batch record, or the RecordNotBuilt failure saying why it has none.

    Args:
        transcript: The transcript.
        config: The run's configuration (model, prompt, task).
        record_id: Its recordId (default: ``record_id_for(transcript.id)``).
    """
    try:
        return build_record(transcript, config.model_id, config.prompt,
                            config.job.model_invocation_type,
                            record_id if record_id is not None else record_id_for(transcript.id),
                            output_schema=config.output_schema)
    except Exception as exc:  # noqa: BLE001 - one transcript that cannot be built fails alone
        return Failure(stage="validate", error_code="RecordNotBuilt",
                       error_message=f"{type(exc).__name__}: {exc}", transcript_id=transcript.id,
                       raw=truncate_raw(transcript.text), origin=transcript.origin)


class _BuildRecordFn(beam.DoFn):
    def __init__(self, config: BatchConfig):
        self._config = config

    def process(self, transcript: Transcript) -> Iterator[Any]:
        built = build_or_failure(transcript, self._config)
        yield beam.pvalue.TaggedOutput(FAILURES, built) if isinstance(built, Failure) else built


def _salted(record: BatchRecord, record_id: str) -> BatchRecord:
    """``record`` under another recordId (its line size changes with the id)."""
    return BatchRecord(record_id, record.transcript_id, record.model_input,
                       jsonl_line_size(record_id, record.model_input), record.metadata,
                       record.attempt)


class _ResolveCollisionsFn(beam.DoFn):
    """Transcripts whose recordIds collide get distinct salted ids (deterministically)."""

    def __init__(self) -> None:
        self._collisions = counter("record_id_collisions")

    def process(self, element: tuple[str, Iterable[BatchRecord]]) -> Iterator[BatchRecord]:
        record_id, records = element
        records = list(records)  # a group is one record unless ids collide
        if len(records) <= 1:  # (none: an empty pane, which Flink fires with allowed lateness)
            yield from records
        else:
            self._collisions.inc(len(records) - 1)
            assigned = assign_record_ids(r.transcript_id for r in records)
            for record in records:
                yield _salted(record, assigned[record.transcript_id])


class _SaltedIdsFn(beam.DoFn):
    """(recordId, the transcript ids that got it) -> (transcript id, its new recordId) for each
    transcript of a colliding group; nothing for the usual group of one."""

    def __init__(self) -> None:
        self._collisions = counter("record_id_collisions")

    def process(self, element: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
        transcript_ids = list(element[1])
        if len(transcript_ids) > 1:
            self._collisions.inc(len(transcript_ids) - 1)
            yield from assign_record_ids(transcript_ids).items()


def _resolve(record: BatchRecord, salted: Mapping[str, str]) -> BatchRecord:
    new_id = salted.get(record.transcript_id)
    return record if new_id is None else _salted(record, new_id)


class PrepareRecords(beam.PTransform):
    """Transcript -> BatchRecord with a recordId unique in the run; Failure rows on the side.

    In the global window (bounded input) only the ids are grouped to find colliding recordIds
    (a record is a few KB, its ids a few dozen bytes), and the records are renamed from the
    few collisions found, a side input. Time windows group the records themselves: a late
    pane's records must be resolved with their own pane, which a side input would not see.

    Args:
        config: The run's configuration (model, prompt, task).
    """

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        built = transcripts | "Build" >> beam.ParDo(_BuildRecordFn(self._config)).with_output_types(
            BatchRecord).with_outputs(FAILURES, main="records")
        if isinstance(transcripts.windowing.windowfn, window.GlobalWindows):
            salted = beam.pvalue.AsDict(
                built.records
                | "Ids" >> beam.Map(lambda r: (r.record_id, r.transcript_id))
                .with_output_types(Tuple[str, str])
                | "IdsByRecordId" >> beam.GroupByKey()
                | "Collided" >> beam.ParDo(_SaltedIdsFn()).with_output_types(Tuple[str, str]))
            records = built.records | "Resolve" >> beam.Map(
                _resolve, salted=salted).with_output_types(BatchRecord)
        else:
            records = (built.records
                       | "KeyByRecordId" >> beam.Map(lambda r: (r.record_id, r))
                       .with_output_types(Tuple[str, BatchRecord])
                       | "ByRecordId" >> beam.GroupByKey()
                       | "Resolve" >> beam.ParDo(_ResolveCollisionsFn())
                       .with_output_types(BatchRecord))
        return {"records": records, "failures": typed_output(built, FAILURES, Failure)}


class _WritableFn(beam.DoFn):
    """Summaries no sink could write (a model answer with token counts outside int64) become
    failure rows here, rather than failing the sink and with it the whole run."""

    def process(self, summary: Summary) -> Iterator[Any]:
        # The fixed columns only: insights were validated against the task's schema when read,
        # and each sink types them from that schema.
        row = summary.to_row()
        row.pop("insights", None)
        problem = row_problem("summaries", row)
        if problem is None:
            yield summary
        else:
            yield beam.pvalue.TaggedOutput(FAILURES, Failure(
                stage="parse", error_code="UnwritableSummary",
                error_message=f"the summary of {summary.transcript_id!r} cannot be written: "
                              f"{problem}",
                transcript_id=summary.transcript_id, record_id=summary.record_id,
                attempt=summary.attempt, job_arn=summary.job_arn,
                raw=truncate_raw(summary.to_row())))


class BatchRound(shards.RoundTransform):
    """One submission round: shard, submit and await, harvest. Returns summaries/failures/retries.

    Args:
        config: The run's configuration.
        attempt: The round's number: 1 for the first submission, +1 per retry round.
    """

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        sharded = records | "WriteShards" >> shards.WriteShards(self._config, self._attempt)
        return run_jobs(self._config, self._attempt, sharded)


def run_jobs(config: BatchConfig, attempt: int, sharded: Mapping[str, beam.PCollection]
             ) -> dict[str, beam.PCollection]:
    """A round's written shards (``WriteShards``'s outputs) -> its jobs submitted, awaited and
    harvested: summaries, failures, retries and the records to invoke on demand.

    Args:
        config: The run's configuration.
        attempt: The round's number.
        sharded: The outputs of ``WriteShards`` (or of ``PrepareOnDisk``).
    """
    cfg = config
    carried = sharded[shards.DEFERRED] | "CarryTails" >> CarryTails(cfg, attempt)
    batches = (sharded["batches"], carried["batches"]) | "AllBatches" >> beam.Flatten()
    harvested = (batches
                 | "AwaitJobs" >> AwaitJobs(cfg)
                 | "Spread" >> beam.Reshuffle()
                 | "Harvest" >> beam.ParDo(harvest.HarvestJobFn(cfg)).with_output_types(
                     Summary).with_outputs(harvest.FAILURES, harvest.RETRIES, main="summaries"))
    failures = ((sharded[shards.FAILURES], carried["failures"],
                 typed_output(harvested, harvest.FAILURES, Failure))
                | "Failures" >> beam.Flatten().with_output_types(Failure))
    return {"summaries": harvested.summaries, "failures": failures,
            "retries": typed_output(harvested, harvest.RETRIES, BatchRecord),
            "on_demand": sharded[shards.ON_DEMAND]}


class SummarizeTranscripts(beam.PTransform):
    """PCollection[Transcript] -> {"summaries": PCollection[Summary], "failures": PCollection[Failure]}.

    Every input ends up in exactly one of the two. Transcripts sharing an id (within a window)
    are summarized once: the first by origin is kept, the others become DuplicateTranscriptId
    failures. Windowing is the caller's: each window's records are submitted as that window's
    jobs.

    Args:
        config: The run's configuration.
    """

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        cfg = self._config
        windowing = transcripts.windowing
        if not transcripts.is_bounded and isinstance(windowing.windowfn, window.GlobalWindows):
            raise ValueError("SummarizeTranscripts got an unbounded PCollection in the global "
                             "window, which never closes: apply beam.WindowInto("
                             "window.FixedWindows(seconds)) first (the CLI: --window-seconds)")
        redaction_failures = []
        if cfg.redactor is not None:  # before the records: unredacted text never reaches a shard
            redacted = transcripts | "Redact" >> RedactTranscripts(cfg.redactor)
            transcripts, redaction_failures = redacted["transcripts"], [redacted["failures"]]
        unique = transcripts | "Dedup" >> DeduplicateTranscripts()
        prepared = unique["transcripts"] | "Prepare" >> PrepareRecords(cfg)
        return every_round(cfg, prepared["records"], None,
                           [*redaction_failures, unique["failures"], prepared["failures"]],
                           windowing)


def every_round(config: BatchConfig, records: beam.PCollection | None,
                first_round: Mapping[str, beam.PCollection] | None,
                failures: list[beam.PCollection], windowing: Any) -> dict[str, beam.PCollection]:
    """The submission rounds, from the first round's records (or its result, when it ran
    already) to every summary and failure, handed back in ``windowing``.

    Args:
        config: The run's configuration.
        records: The first round's records; None when ``first_round`` is given.
        first_round: The first round's result (``run_jobs``'s outputs), or None.
        failures: The failure rows so far.
        windowing: The caller's windowing.
    """
    cfg = config
    summaries = []
    for attempt in range(1, cfg.max_attempts + 1):
        if attempt == 1 and first_round is not None:
            result = first_round
        else:
            result = records | f"Round{attempt}" >> BatchRound(cfg, attempt)
        summaries.append(result["summaries"])
        failures.append(result["failures"])
        on_demand = result["on_demand"] | f"OnDemand{attempt}" >> InvokeOnDemand(cfg)
        summaries.append(on_demand["summaries"])
        failures.append(on_demand["failures"])
        records = result["retries"]
    writable = (tuple(summaries) | "AllSummaries" >> beam.Flatten()
                | "Writable" >> beam.ParDo(_WritableFn()).with_output_types(Summary)
                .with_outputs(FAILURES, main="summaries"))
    failures.append(typed_output(writable, FAILURES, Failure))
    # Hand the caller back its own windowing whole (the rounds used their own triggers):
    # a WindowInto with only the windowfn would reset trigger and allowed lateness.
    return {"summaries": writable.summaries | "SummaryWindows" >> restore_windowing(windowing),
            "failures": (tuple(failures)
                         | "AllFailures" >> beam.Flatten().with_output_types(Failure)
                         | "FailureWindows" >> restore_windowing(windowing))}
