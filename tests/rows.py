"""Summary / Failure rows with the awkward values sinks must round-trip: None fields, naive and
aware datetimes, unicode in keys and values."""
from __future__ import annotations

import datetime as dt
import json

from transforms.core.model import Failure, Summary

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def summaries(n: int) -> list[Summary]:
    return [
        Summary(
            transcript_id=f"anruf-ü-{i:03d}", record_id=f"rec{i:03d}", model_id="anthropic.claude-3-haiku",
            summary=f"Kunde #{i} fragt nach Rückerstattung — 退款 ✓ \"quoted\"\nsecond line",
            stop_reason=None if i % 3 else "end_turn", input_tokens=None if i % 4 == 0 else 100 + i,
            output_tokens=40 + i, job_arn=None if i % 2 else f"arn:aws:bedrock:us-east-1:1:job/j{i}",
            # Naive datetimes are taken as UTC; None where the row has no window.
            window_start=None if i % 5 == 0 else T0.replace(tzinfo=None),
            window_end=None if i % 5 == 0 else T0 + dt.timedelta(minutes=5),
            attempt=1 + i % 2, metadata=None if i % 2 else json.dumps({"queue": "billing", "n": i}),
            created_at=T0 + dt.timedelta(seconds=i, microseconds=i))
        for i in range(n)
    ]


def failures(n: int) -> list[Failure]:
    return [
        Failure(stage=("source", "model", "parse")[i % 3], error_code="ModelError",
                error_message=f"record {i}: ütf-8 ✗ failure", transcript_id=None if i % 3 == 0 else f"t{i}",
                record_id=None if i % 2 else f"r{i}", attempt=i % 3 + 1, raw=None if i % 3 else "{\"bad\": ",
                origin=f"input.jsonl:{i}", created_at=T0 + dt.timedelta(milliseconds=i))
        for i in range(n)
    ]
