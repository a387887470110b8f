"""Streaming correctness: SummarizeTranscripts keeps the caller's windowing, late records are
processed under allowed lateness or become LateRecord failure rows, and on the DirectRunner a
window's jobs are submitted while the watch goes on."""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_stream import TestStream
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import trigger, window
from apache_beam.transforms.core import Windowing
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration
from apache_beam.utils.windowed_value import PaneInfoTiming

from tests.pipelines import transcripts
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig
from transforms.sources import DeduplicateTranscripts
from transforms.summarize import SummarizeTranscripts, fixed_windows_with_lateness

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


# --- late records: processed under allowed lateness (TestStream) ------------------------------

def _late_stream() -> TestStream:
    """late-a arrives in window [0, 10); the watermark passes 30 (the window has closed); then
    late-b arrives with time 2, in that closed window."""
    early, late = transcripts(2, prefix="late")
    return (TestStream()
            .add_elements([TimestampedValue(early, 1)])
            .advance_watermark_to(30)
            .add_elements([TimestampedValue(late, 2)])
            .advance_watermark_to_infinity())


def _check_after_dedup(windowing: beam.PTransform, expected: list[tuple[str, int]]) -> None:
    """Runs the stream through ``windowing`` and the CLI's first GroupByKey (Dedup) and checks
    the (transcript id, pane timing) of what comes out."""
    def id_and_timing(transcript, pane=beam.DoFn.PaneInfoParam):
        return transcript.id, pane.timing

    with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
        unique = p | _late_stream() | windowing | DeduplicateTranscripts()
        assert_that(unique["transcripts"] | beam.Map(id_and_timing), equal_to(expected))


def test_a_late_record_is_summarized_in_a_late_pane_not_dropped():
    _check_after_dedup(fixed_windows_with_lateness(10, allowed_lateness_seconds=3600),
                       [("late-0000", PaneInfoTiming.ON_TIME), ("late-0001", PaneInfoTiming.LATE)])


def test_without_allowed_lateness_beam_drops_the_late_record():
    """The control: what the CLI did before (plain FixedWindows) loses late-b silently."""
    _check_after_dedup(beam.WindowInto(window.FixedWindows(10)),
                       [("late-0000", PaneInfoTiming.ON_TIME)])


def test_window_options_are_checked():
    with pytest.raises(ValueError, match="allowed_lateness_seconds"):
        fixed_windows_with_lateness(10, allowed_lateness_seconds=-1)
    with pytest.raises(ValueError, match="window_seconds"):
        fixed_windows_with_lateness(0)


# --- the FnApiRunner cannot close windows while a watch runs: an endless watch on it is refused;
# --- Prism (the default for --streaming) runs it, and where Prism is missing the run is refused

def test_an_endless_streaming_run_on_the_fnapi_runner_is_refused(tmp_path, capsys):
    from pipeline.__main__ import main

    (tmp_path / "in").mkdir()
    code = main(["run", "--streaming", "--input", str(tmp_path / "in" / "*.jsonl"),
                 "--output", str(tmp_path / "out"), "--window-seconds", "5",
                 "--runner", "FnApiRunner"])
    assert code == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "--watch-seconds" in line and "Prism" in line and "drop --runner" in line


def test_an_endless_streaming_run_without_prism_is_refused_naming_make_prism(tmp_path, capsys):
    """No Prism of that version is built, and Beam cannot download one (a release that does not
    exist: refused offline and online alike)."""
    from pipeline.__main__ import main

    (tmp_path / "in").mkdir()
    code = main(["run", "--streaming", "--input", str(tmp_path / "in" / "*.jsonl"),
                 "--output", str(tmp_path / "out"), "--window-seconds", "5",
                 "--prism_beam_version_override", "v0.0.1"])
    assert code == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "`make prism`" in line and "--prism_location" in line and "Prism 0.0.1" in line


@pytest.mark.parametrize("args, refused", [
    ([], False), (["--runner", "PrismRunner"], False), (["--runner", "DirectRunner"], True),
    (["--runner=BundleBasedDirectRunner"], True), (["--runner=FnApiRunner"], True),
    (["--runner", "FnApiRunner", "--watch-seconds", "0"], True),
    (["--runner", "FnApiRunner", "--watch-seconds", "30"], False),
    (["--runner", "FlinkRunner"], False),
    (["--runner", "PrismRunner", "--watch-seconds", "30", "--undersized-policy", "defer"], True),
    (["--watch-seconds", "30", "--undersized-policy", "defer"], False),
    (["--runner", "PrismRunner", "--undersized-policy", "defer"], False),
    (["--sink", "bigquery"], True), (["--sink", "bigquery", "--watch-seconds", "30"], False),
    (["--runner", "PrismRunner", "--sink", "bigquery", "--watch-seconds", "30"], True),
])
def test_which_streaming_runs_are_refused(args, refused):
    from pipeline.exit_codes import UsageError
    from pipeline.options import BedrockBatchOptions
    from pipeline.cli.run_flags import check_streaming

    options = PipelineOptions(["--streaming", "--window-seconds", "5", *args])
    if refused:  # each refusal names the flag to add or drop
        with pytest.raises(UsageError, match="--watch-seconds|drop --runner"):
            check_streaming(options, options.view_as(BedrockBatchOptions))
    else:
        check_streaming(options, options.view_as(BedrockBatchOptions))


def test_late_summaries_get_files_of_their_own(tmp_path):
    """A window's late pane (a late record's summary) is written next to its on-time file,
    not over it."""
    from tests.pipelines import read_rows
    from tests.rows import summaries
    from transforms.sinks.files import WriteSummaries

    on_time, late = summaries(2)
    stream = (TestStream()
              .add_elements([TimestampedValue(on_time, 1)])
              .advance_watermark_to(30)
              .add_elements([TimestampedValue(late, 2)])
              .advance_watermark_to_infinity())
    with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
        (p | stream | fixed_windows_with_lateness(10, allowed_lateness_seconds=3600)
         | WriteSummaries(str(tmp_path / "s"), format="jsonl"))
    names = sorted(path.name for path in (tmp_path / "s").glob("*.jsonl"))
    assert len(names) == 2 and len([n for n in names if "-p1-" in n]) == 1, names
    assert sorted(r["transcript_id"] for r in read_rows(tmp_path / "s")) == \
        sorted([on_time.transcript_id, late.transcript_id])
