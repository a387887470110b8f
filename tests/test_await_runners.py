"""The await stage (self-checkpointing SDF) on every local runner, with polling bounded by the interval.

GetModelInvocationJob calls are counted by wrapping the real service's handler (a spy: the real
service still answers every call).
"""
from __future__ import annotations

import collections
import time

import pytest

from pipeline.local.jobs_store import Timing
from tests.pipelines import RUNNERS, local_config, summarize, transcripts
from transforms.core.quotas import Quotas

# Slow enough that a job spans several poll intervals: ~3.5 s from submit to Completed.
STEADY = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=1.0)
POLL = 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_await_jobs_on_runner_without_busy_polling(local_backend_factory, tmp_path, runner):
    backend = local_backend_factory(timing=STEADY, quotas=Quotas(max_concurrent_jobs=2,
                                                                 max_records_per_job=15,
                                                                 min_records_per_job=5))
    calls: collections.Counter[str] = collections.Counter()
    real_get = backend.service.get_model_invocation_job

    def counting_get(params):
        calls[params["jobIdentifier"].rsplit("/", 1)[-1]] += 1
        return real_get(params)

    backend.service.get_model_invocation_job = counting_get
    items = transcripts(30)
    started = time.monotonic()
    summaries, failures = summarize(items, local_config(backend, poll_interval_seconds=POLL),
                                    tmp_path, runner=runner)
    elapsed = time.monotonic() - started
    assert failures == []
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in items)
    assert len(calls) == 2, "both jobs were polled"
    # A poll per interval while the job runs, plus slack for the first and the last poll.
    bound = elapsed / POLL + 2
    assert max(calls.values()) <= bound, f"busy polling: {dict(calls)} in {elapsed:.1f}s"
