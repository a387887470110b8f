"""Streaming correctness: SummarizeTranscripts keeps the caller's windowing, late records are
processed under allowed lateness or become LateRecord failure rows, and on the DirectRunner a
window's jobs are submitted while the watch goes on."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms import trigger, window
from apache_beam.transforms.core import Windowing
from apache_beam.utils.timestamp import Duration

from tests.pipelines import transcripts
from transforms.config import BatchConfig
from transforms.jobs import JobConfig
from transforms.summarize import SummarizeTranscripts

CONFIG = BatchConfig(base_uri="s3://b/p", run_id="r", job=JobConfig(role_arn="arn:aws:iam::1:role/x"))


@pytest.mark.parametrize("windowing", [
    Windowing(window.FixedWindows(60), triggerfn=trigger.AfterWatermark(
        early=trigger.AfterProcessingTime(5), late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
        timestamp_combiner=window.TimestampCombiner.OUTPUT_AT_EARLIEST,
        allowed_lateness=Duration(seconds=3600)),
    Windowing(window.SlidingWindows(60, 30), allowed_lateness=Duration(seconds=5)),
    Windowing(window.GlobalWindows()),
], ids=["fixed-custom-trigger", "sliding-lateness", "global-default"])
def test_summaries_and_failures_keep_the_callers_windowing(windowing):
    """The outputs' windowing strategy equals the input's, field by field (Windowing.__eq__
    compares windowfn, trigger, accumulation mode, timestamp combiner and allowed lateness)."""
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    windowed = (p | beam.Create(transcripts(2))
                | beam.WindowInto(windowing.windowfn, trigger=windowing.triggerfn,
                                  accumulation_mode=windowing.accumulation_mode,
                                  timestamp_combiner=windowing.timestamp_combiner,
                                  allowed_lateness=windowing.allowed_lateness))
    assert windowed.windowing == windowing
    result = windowed | SummarizeTranscripts(CONFIG)
    assert result["summaries"].windowing == windowing
    assert result["failures"].windowing == windowing
