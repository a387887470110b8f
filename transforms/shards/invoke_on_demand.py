"""Beam stage for the ``on-demand`` undersized policy: records too few for a batch job are sent
one by one with InvokeModel (or Converse), at on-demand prices, beside the batch jobs.

Each worker keeps up to ``on_demand_concurrency`` calls in flight, paced by an AIMD rate whose
ceiling is ``on_demand_rps`` (transforms/core/rate_control.py): throttling halves the rate,
successes restore it, and throttled or transient errors are retried with backoff. A record ends
as exactly one Summary or one Failure row.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.utils.windowed_value import WindowedValue
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError

from transforms.config import BatchConfig
from transforms.core.bedrock import error_code
from transforms.core.metrics import counter
from transforms.core.coders import typed_output
from transforms.core.model import BatchRecord, Failure, Summary, metadata_json, truncate_raw
from transforms.core.rate_control import AdaptiveRate, Progress, RetryPolicy, is_throttling
from transforms.insights.answers import AnswerError, read_answer
from transforms.jobs.results import answer_problem, answer_text, repair_or_fail
from transforms.prepare.families import ParsedOutput, UnparseableOutput, parse_model_output
from transforms.shards.write_shards import window_bounds

log = logging.getLogger(__name__)

FAILURES = "failures"
PROGRESS_INTERVAL_SECONDS = 5.0
# Records waiting in memory for a thread. The policy's input, a window's undersized tail, is
# below one job's minimum record count; this bounds what other callers may queue.
MAX_WAITING = 1000


def converse_request(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Converse-type model input -> keyword arguments of bedrock-runtime ``converse``.

    Args:
        model_id: The model or inference-profile id.
        body: The record's Converse-shaped model input.
    """
    request = {"modelId": model_id, "messages": body["messages"]}
    for key in ("system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"):
        if key in body:
            request[key] = body[key]
    return request


@dataclass
class CallOutcome:
    """What one record's calls produced. Counted by the bundle thread: Beam metrics do not
    record increments made on other threads.

    Args:
        output: The Summary, or the Failure of the last attempt.
        calls: Calls made for the record.
        throttles: How many of them were throttled.
        parsed: The parsed model answer, when there was one.
    """

    output: Summary | Failure
    calls: int
    throttles: int
    parsed: ParsedOutput | None = None
    repairs: int = 0  # insights answers sent back once for being invalid


class InvokeOnDemandFn(beam.DoFn):
    """BatchRecord -> Summary, or Failure (``failures``) with the service's error.

    ``process`` hands each record to a thread pool and emits whatever calls have finished;
    ``finish_bundle`` waits for the rest. Outputs keep their own record's window and timestamp.

    Args:
        config: The run's settings (model, pacing, concurrency).
        retry: How throttled and transient errors are retried.
    """

    def __init__(self, config: BatchConfig, retry: RetryPolicy):
        self._config = config
        self._retry = retry
        self._calls = counter("on_demand_calls")
        self._throttled = counter("on_demand_throttled")
        self._tokens_in = counter("on_demand_input_tokens")
        self._tokens_out = counter("on_demand_output_tokens")
        self._truncated = counter("summaries_truncated")
        self._repairs = counter("insights_repair_requests")

    def setup(self) -> None:
        # botocore must not retry throttling itself: the pacer has to see it to slow down.
        self._runtime = self._config.aws.client("bedrock-runtime", max_attempts=1)
        self._pool = ThreadPoolExecutor(max_workers=self._config.on_demand_concurrency,
                                        thread_name_prefix="on-demand")
        self._rate = AdaptiveRate(self._config.on_demand_rps)

    def start_bundle(self) -> None:
        self._pending: dict[Future, WindowedValue] = {}
        self._progress = Progress(time.monotonic(), PROGRESS_INTERVAL_SECONDS)

    def process(self, record: BatchRecord, window=beam.DoFn.WindowParam,
                timestamp=beam.DoFn.TimestampParam, pane=beam.DoFn.PaneInfoParam) -> Iterator[Any]:
        while len(self._pending) >= MAX_WAITING:
            yield from self._collect(block=True)
        future = self._pool.submit(self._invoke, record, window_bounds(window))
        self._pending[future] = WindowedValue(None, timestamp, (window,), pane)
        self._progress.add()
        yield from self._collect(block=False)

    def finish_bundle(self) -> Iterator[Any]:
        while self._pending:
            yield from self._collect(block=True)

    def teardown(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, block: bool) -> Iterator[Any]:
        """Emit the finished calls (waiting up to the progress interval for one if ``block``)."""
        if block:
            done, _ = wait(self._pending, timeout=PROGRESS_INTERVAL_SECONDS,
                           return_when=FIRST_COMPLETED)
        else:
            done = [f for f in self._pending if f.done()]
        for future in done:
            where = self._pending.pop(future)
            try:
                outcome = future.result()
            except BaseException:
                # The bundle fails and the runner retries it: calls not yet started are not made.
                for other in self._pending:
                    other.cancel()
                raise
            self._count(outcome)
            value = where.with_value(outcome.output)
            yield (beam.pvalue.TaggedOutput(FAILURES, value)
                   if isinstance(outcome.output, Failure) else value)
        line = self._progress.line(time.monotonic())
        if line:
            log.info("%s (rate ceiling %.1f/s, now %.1f/s)", line, self._rate.ceiling,
                     self._rate.rate)

    def _count(self, outcome: CallOutcome) -> None:
        self._calls.inc(outcome.calls)
        self._throttled.inc(outcome.throttles)
        self._repairs.inc(outcome.repairs)
        self._progress.finish(failed=isinstance(outcome.output, Failure))
        if outcome.parsed is not None:
            self._tokens_in.inc(outcome.parsed.input_tokens or 0)
            self._tokens_out.inc(outcome.parsed.output_tokens or 0)
            if outcome.parsed.truncated:
                self._truncated.inc()

    # ---- on the pool's threads -------------------------------------------------------------

    def _invoke(self, record: BatchRecord,
                bounds: tuple[dt.datetime | None, dt.datetime | None]) -> CallOutcome:
        """Call until the record has an answer, a non-retriable error, or no attempts left."""
        attempt, throttles = 1, 0
        while True:
            start = self._rate.reserve(time.monotonic())
            time.sleep(max(0.0, start - time.monotonic()))
            try:
                parsed = parse_model_output(self._call(record), self._config.model_id,
                                            self._config.job.model_invocation_type)
            except UnparseableOutput as exc:
                return CallOutcome(self._failure(record, "parse", "UnparseableOutput", str(exc)),
                                   attempt, throttles)
            except (BotoConnectionError, HTTPClientError) as exc:
                self._wait_after_no_answer(record, exc, attempt)
                attempt += 1
                continue
            except Exception as exc:  # botocore ClientError carries the service's error code
                code = error_code(exc)
                if code is None:
                    raise
                if is_throttling(code):
                    throttles += 1
                    self._slow_down(code, start)
                if self._retry.should_retry(code, attempt):
                    time.sleep(self._retry.backoff(attempt))
                    attempt += 1
                    continue
                tries = f" (after {attempt} attempts)" if attempt > 1 else ""
                return CallOutcome(self._failure(record, "model", code, f"{exc}{tries}"),
                                   attempt, throttles)
            self._rate.on_success()
            return self._answered(record, bounds, parsed, attempt, throttles)

    def _wait_after_no_answer(self, record: BatchRecord, exc: Exception, attempt: int) -> None:
        """No answer from the service. botocore's retries are off for this client, so retry
        here; when the attempts run out the bundle fails (``exc`` is raised) and the runner
        retries."""
        if attempt >= self._retry.max_attempts:
            raise exc
        delay = self._retry.backoff(attempt)
        log.warning("on-demand call for %s: %s; attempt %d of %d in %.2f s",
                    record.transcript_id, exc, attempt + 1, self._retry.max_attempts, delay)
        time.sleep(delay)

    def _slow_down(self, code: str, started: float) -> None:
        if self._rate.on_throttle(time.monotonic(), started=started):
            log.info("on-demand calls throttled (%s): pace lowered to %.2f calls/s",
                     code, self._rate.rate)

    def _answered(self, record: BatchRecord, bounds: tuple[dt.datetime | None, dt.datetime | None],
                  parsed: ParsedOutput, calls: int, throttles: int) -> CallOutcome:
        """A parsed answer as a Summary; an insights answer that is not schema-valid goes to
        ``_repair``."""
        text, insights = parsed.text, None
        if self._config.output_schema is not None:
            try:
                found = read_answer(parsed.text, self._config.output_schema, parsed.tool_input)
            except AnswerError as exc:
                return self._repair(record, bounds, parsed, answer_problem(exc, parsed), calls,
                                    throttles)
            text, insights = found.summary, found.value
        summary = Summary(
            transcript_id=record.transcript_id, record_id=record.record_id,
            model_id=self._config.model_id, summary=text,
            stop_reason=parsed.stop_reason, input_tokens=parsed.input_tokens,
            output_tokens=parsed.output_tokens, job_arn=None, window_start=bounds[0],
            window_end=bounds[1], attempt=record.attempt, metadata=metadata_json(record.metadata),
            insights=insights)
        return CallOutcome(summary, calls, throttles, parsed)

    def _repair(self, record: BatchRecord, bounds: tuple[dt.datetime | None, dt.datetime | None],
                parsed: ParsedOutput, error: str, calls: int, throttles: int) -> CallOutcome:
        """An answer that is no valid insights object: asked once more at once (on-demand has
        no later round to wait for), with the error, if ``max_record_retries`` leaves the
        record a round, as a batch job's answer would be; otherwise, or for a second invalid
        answer, a failure row."""
        cfg = self._config
        outcome = repair_or_fail(record, record.model_input, answer_text(parsed), error,
                                 model_id=cfg.model_id,
                                 invocation_type=cfg.job.model_invocation_type,
                                 max_attempts=cfg.max_attempts, job_arn=None)
        if isinstance(outcome, Failure):
            return CallOutcome(outcome, calls, throttles, parsed)
        again = self._invoke(outcome, bounds)
        # Both answers were billed: the report's token counts include the first one too.
        both = dataclasses.replace(
            again.parsed,
            input_tokens=(again.parsed.input_tokens or 0) + (parsed.input_tokens or 0),
            output_tokens=(again.parsed.output_tokens or 0) + (parsed.output_tokens or 0)
        ) if again.parsed is not None else parsed
        return CallOutcome(again.output, calls + again.calls, throttles + again.throttles, both,
                           repairs=again.repairs + 1)

    def _call(self, record: BatchRecord) -> dict[str, Any]:
        cfg = self._config
        if cfg.job.model_invocation_type == "Converse":
            body = self._runtime.converse(**converse_request(cfg.model_id, dict(record.model_input)))
            body.pop("ResponseMetadata", None)
            return body
        response = self._runtime.invoke_model(
            modelId=cfg.model_id, body=json.dumps(record.model_input),
            contentType="application/json", accept="application/json")
        return json.loads(response["body"].read())

    def _failure(self, record: BatchRecord, stage: str, code: str, message: str) -> Failure:
        return Failure(stage=stage, error_code=code, error_message=message,
                       transcript_id=record.transcript_id, record_id=record.record_id,
                       attempt=record.attempt, raw=truncate_raw(record.model_input))


class InvokeOnDemand(beam.PTransform):
    """PCollection[BatchRecord] -> {"summaries", "failures"} via InvokeModel / Converse.

    ``retry`` sets how throttled and transient errors are retried (default: 8 attempts with
    exponential backoff from 0.25 s, capped at 20 s).

    Args:
        config: The run's settings (model, pacing, concurrency).
        retry: How errors are retried; None for the default above.
    """

    def __init__(self, config: BatchConfig, retry: RetryPolicy | None = None):
        super().__init__()
        self._config = config
        self._retry = retry or RetryPolicy()

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        # Two shuffles, so the batch jobs do not wait for the on-demand calls:
        # - "Detach" ends the fused stage that wrote the shards. Fused, the calls would run in
        #   its bundle, and no JobBatch would leave that bundle (to be submitted) until every
        #   call was done.
        # - "Queue": the DirectRunner runs one stage at a time, in the order stages become
        #   ready. With one shuffle the calls' stage becomes ready together with the first stage
        #   of AwaitJobs (its restriction split) and runs before the stage that creates the
        #   jobs; with two it becomes ready after that stage, so the jobs are created first and
        #   run in the service while the calls are made.
        out = (records
               | "Detach" >> beam.Reshuffle()
               | "Queue" >> beam.Reshuffle()
               | "Invoke" >> beam.ParDo(InvokeOnDemandFn(self._config, self._retry))
               .with_output_types(Summary).with_outputs(FAILURES, main="summaries"))
        return {"summaries": out.summaries, "failures": typed_output(out, FAILURES, Failure)}
