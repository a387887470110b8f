"""Metrics stay readable after a stage ran many bundles (the await stage's resumes)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.metrics import Metrics
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration

from transforms.core import beam_compat

RESUMES = 300
ROOT = Path(__file__).resolve().parent.parent


class _Provider(RestrictionProvider):
    def initial_restriction(self, element):
        return OffsetRange(0, RESUMES)

    def create_tracker(self, restriction):
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element, restriction):
        return restriction.size()


class _OnePerBundle(beam.DoFn):
    """Claims one position per bundle, like a poller deferring between polls."""

    def process(self, element, tracker=beam.DoFn.RestrictionParam(_Provider())):
        position = tracker.current_restriction().start
        if tracker.try_claim(position):
            Metrics.counter("test", "resumes").inc()
            tracker.defer_remainder(Duration(seconds=0))


def test_counters_readable_after_hundreds_of_bundles():
    beam_compat.apply()
    old = sys.getrecursionlimit()
    with beam.Pipeline() as p:
        p | beam.Create([0]) | beam.ParDo(_OnePerBundle())
    try:
        sys.setrecursionlimit(200)  # below the bundle count: a chained fold would overflow
        counters = p.result.metrics().query(MetricsFilter().with_name("resumes"))["counters"]
    finally:
        sys.setrecursionlimit(old)
    assert sum(c.committed for c in counters) == RESUMES


def test_applied_when_the_await_stage_is_built_not_on_import():
    """In a fresh process (this one is patched by the test above): importing the await stage
    leaves Beam as it is; building a pipeline with it applies the work-around."""
    script = textwrap.dedent("""
        import apache_beam as beam
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from transforms.core import beam_compat
        from transforms.jobs.await_jobs import AwaitJobs
        from transforms.config import BatchConfig
        from transforms.core.bedrock import JobConfig
        patched = beam_compat._consolidate_eagerly
        print(fn_runner.consolidate_monitoring_infos is patched)
        p = beam.Pipeline()
        _ = p | beam.Create([]) | AwaitJobs(BatchConfig(
            base_uri="s3://bucket/prefix", run_id="r1", job=JobConfig(role_arn="arn:aws:iam::1:role/x")))
        print(fn_runner.consolidate_monitoring_infos is patched)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
