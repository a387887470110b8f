"""Beam stage for the ``on-demand`` undersized policy: records too few for a batch job are sent
one by one with InvokeModel (or Converse), rate limited, at on-demand prices."""
from __future__ import annotations

import json
import time
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics

from transforms.config import BatchConfig
from transforms.families import UnparseableOutput, parse_model_output
from transforms.jobs import error_code
from transforms.model import BatchRecord, Failure, Summary, metadata_json, truncate_raw

FAILURES = "failures"


def converse_request(model_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Converse-type model input -> keyword arguments of bedrock-runtime ``converse``."""
    request = {"modelId": model_id, "messages": body["messages"]}
    for key in ("system", "inferenceConfig", "toolConfig", "additionalModelRequestFields"):
        if key in body:
            request[key] = body[key]
    return request


class InvokeOnDemandFn(beam.DoFn):
    """BatchRecord -> Summary, or Failure (``failures``) with the service's error."""

    def __init__(self, config: BatchConfig):
        self._config = config
        self._calls = Metrics.counter("bedrock", "on_demand_calls")

    def setup(self) -> None:
        self._runtime = self._config.aws.client("bedrock-runtime")
        self._next_call = 0.0

    def _throttle(self) -> None:
        # Per-worker pacing; botocore's retry config absorbs the service's own throttling.
        wait = self._next_call - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._next_call = time.monotonic() + 1.0 / self._config.on_demand_rps

    def process(self, record: BatchRecord) -> Iterator[Any]:
        cfg = self._config
        self._throttle()
        self._calls.inc()
        try:
            if cfg.job.model_invocation_type == "Converse":
                body = self._runtime.converse(**converse_request(cfg.model_id, dict(record.model_input)))
                body.pop("ResponseMetadata", None)
            else:
                response = self._runtime.invoke_model(
                    modelId=cfg.model_id, body=json.dumps(record.model_input),
                    contentType="application/json", accept="application/json")
                body = json.loads(response["body"].read())
            parsed = parse_model_output(body, cfg.model_id, cfg.job.model_invocation_type)
        except UnparseableOutput as exc:
            yield self._failure(record, "parse", "UnparseableOutput", str(exc))
            return
        except Exception as exc:  # botocore ClientError carries the service's error code
            code = error_code(exc)
            if code is None:
                raise
            yield self._failure(record, "model", code, str(exc))
            return
        yield Summary(transcript_id=record.transcript_id, record_id=record.record_id,
                      model_id=cfg.model_id, summary=parsed.text, stop_reason=parsed.stop_reason,
                      input_tokens=parsed.input_tokens, output_tokens=parsed.output_tokens,
                      job_arn=None, attempt=record.attempt, metadata=metadata_json(record.metadata))

    def _failure(self, record: BatchRecord, stage: str, code: str, message: str) -> Any:
        return beam.pvalue.TaggedOutput(FAILURES, Failure(
            stage=stage, error_code=code, error_message=message, transcript_id=record.transcript_id,
            record_id=record.record_id, attempt=record.attempt, raw=truncate_raw(record.model_input)))


class InvokeOnDemand(beam.PTransform):
    """PCollection[BatchRecord] -> {"summaries", "failures"} via InvokeModel / Converse."""

    def __init__(self, config: BatchConfig):
        super().__init__()
        self._config = config

    def expand(self, records: beam.PCollection) -> dict[str, beam.PCollection]:
        out = records | beam.ParDo(InvokeOnDemandFn(self._config)).with_outputs(
            FAILURES, main="summaries")
        return {"summaries": out.summaries, "failures": out[FAILURES]}
