"""Which local runner a run gets (pipeline/runners.py, pipeline/environment.choose_runner):
the FnApiRunner for bounded input, Prism for --streaming, --runner always kept, and Prism pointed
at the binary `make prism` built."""
from __future__ import annotations

from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import (PipelineOptions, PortableOptions,
                                                  PrismRunnerOptions, StandardOptions)
from apache_beam.version import __version__ as beam_version

from pipeline import runners
from pipeline.running.environment import choose_runner

BUILT = runners.prism_binary(beam_version)


def test_the_default_is_the_fnapi_runner_for_bounded_input_and_prism_for_streaming():
    assert runners.default_runner(streaming=False) == "FnApiRunner"
    assert runners.default_runner(streaming=True) == "PrismRunner"


def test_streaming_runs_prism_cannot_run_stay_on_the_fnapi_runner():
    """Prism loses the defer policy's tail flushed when a watch ends and, on a bounded input in
    time windows, the rows of a window whose tails the policy carried; Beam's BigQuery write fails
    on it with time windows (docs/architecture.md, "Runner facts")."""
    assert runners.default_runner(streaming=True, prism_fails=True) == "FnApiRunner"
    assert runners.why_not_prism(True, True, 60, "defer", "jsonl")
    assert runners.why_not_prism(True, True, None, "pad-merge", "bigquery")
    assert runners.why_not_prism(False, True, None, "pad-merge", "bigquery"), "bounded windows"
    assert not runners.why_not_prism(True, True, None, "defer", "jsonl"), "no end, no flush"
    assert not runners.why_not_prism(True, True, 60, "pad-merge", "parquet")
    assert not runners.why_not_prism(False, False, None, "defer", "bigquery")
    assert runners.why_not_prism(False, True, None, "defer", "jsonl"), "a backfill's windows"
    assert _chosen("--streaming", "--watch-seconds", "60", "--undersized-policy",
                   "defer")[0] == "FnApiRunner"
    assert _chosen("--streaming", "--watch-seconds", "60", "--sink", "bigquery")[0] == "FnApiRunner"
    assert _chosen("--streaming", "--undersized-policy", "defer")[0] == "PrismRunner"


def test_a_prism_run_is_not_ended_by_the_job_server_timeout():
    """Beam's portable runner puts --job_server_timeout (300 s by default) on the streams that
    report a Prism run's state, so a run longer than that failed with DEADLINE_EXCEEDED (an
    unbounded --streaming run after five minutes; the next test shows it). The CLI raises it to
    a year for Prism, unless the user set it; other runners keep theirs."""
    def timeout(*argv: str) -> int:
        options = PipelineOptions(list(argv))
        choose_runner(options)
        return options.view_as(PortableOptions).job_server_timeout

    year = runners.PRISM_JOB_SERVER_TIMEOUT
    assert year >= 365 * 24 * 3600
    assert timeout("--runner", "PrismRunner") == year
    assert timeout("--streaming") == year, "Prism, chosen for --streaming"
    assert timeout("--runner", "PrismRunner", "--prism_location", "/bin/true") == year
    assert timeout("--runner", "PrismRunner", "--job_server_timeout", "60") == 60
    assert timeout("--runner", "FnApiRunner") == runners.BEAM_JOB_SERVER_TIMEOUT
    assert timeout() == runners.BEAM_JOB_SERVER_TIMEOUT, "bounded: the FnApiRunner"


@pytest.mark.timeout(600)
def test_beam_ends_a_prism_run_at_the_job_server_timeout():
    """The runner fact behind the test above, measured with a short timeout: a Prism pipeline
    that runs longer than --job_server_timeout fails with DEADLINE_EXCEEDED."""
    import time

    import apache_beam as beam

    from tests.pipelines import pipeline_on

    with pytest.raises(Exception, match="DEADLINE_EXCEEDED|Deadline Exceeded"):
        with pipeline_on(runners.PRISM, ["--job_server_timeout=5"]) as p:
            _ = p | beam.Create([20]) | beam.Map(lambda seconds: time.sleep(seconds) or seconds)


def test_runner_names_are_matched_as_beam_spells_them():
    assert runners.is_prism("PrismRunner") and runners.is_prism("prism")
    assert all(runners.is_fnapi(name) for name in ("DirectRunner", "direct", "FnApiRunner",
                                                   "SwitchingDirectRunner"))
    assert not runners.is_fnapi("PrismRunner") and not runners.is_prism("FlinkRunner")


def test_prism_binary_is_found_only_where_make_prism_puts_it(tmp_path: Path):
    assert runners.prism_binary("2.70.0", cache=tmp_path) is None
    (tmp_path / "v2.70.0").mkdir()
    (tmp_path / "v2.70.0" / "prism").write_bytes(b"")
    assert runners.prism_binary("2.70.0", cache=tmp_path) == tmp_path / "v2.70.0" / "prism"
    assert runners.prism_binary("2.71.0", cache=tmp_path) is None


def _chosen(*argv: str) -> tuple[str, str | None]:
    options = PipelineOptions(list(argv))
    runner = choose_runner(options)
    assert options.view_as(StandardOptions).runner == runner
    return runner, options.view_as(PrismRunnerOptions).prism_location


@pytest.mark.parametrize("argv, runner", [
    ([], "FnApiRunner"), (["--streaming"], "PrismRunner"),
    (["--runner", "PrismRunner"], "PrismRunner"), (["--streaming", "--runner", "DirectRunner"],
                                                   "DirectRunner")])
def test_a_local_run_gets_the_built_prism(argv, runner):
    assert BUILT is not None, "Prism is not built: run `make prism` (make test does)"
    assert _chosen(*argv) == (runner, str(BUILT))


def test_an_explicit_runner_and_prism_location_are_kept(tmp_path: Path):
    assert _chosen("--runner", "FlinkRunner", "--streaming") == ("FlinkRunner", None)
    given = tmp_path / "my-prism"
    assert _chosen("--streaming", f"--prism_location={given}") == ("PrismRunner", str(given))


def test_prism_with_windows_into_bigquery_is_refused_in_one_line():
    """Bounded input too: the combination matrix found Beam's BigQuery write failing on Prism
    with --timestamp-field windows."""
    from pipeline.exit_codes import UsageError
    from pipeline.options import BedrockBatchOptions
    from pipeline.cli.run_flags import check_streaming

    options = PipelineOptions(["--runner", "PrismRunner", "--window-seconds", "3600",
                               "--timestamp-field", "started", "--sink", "bigquery"])
    with pytest.raises(UsageError, match="BigQuery write fails on Prism.*drop --runner"):
        check_streaming(options, options.view_as(BedrockBatchOptions))


@pytest.mark.parametrize("runner,interval,argv,added", [
    ("FlinkRunner", "2000", [], [runners.FINISH_BUNDLE_BEFORE_CHECKPOINTING]),
    ("apache_beam.runners.portability.flink_runner.FlinkRunner", "5", [],
     [runners.FINISH_BUNDLE_BEFORE_CHECKPOINTING]),
    ("FlinkRunner", None, [], []),  # no checkpoints: no bundle is finished inside one
    ("FlinkRunner", "0", [], []),
    ("PrismRunner", "2000", [], []),
    ("FlinkRunner", "2000", ["--finish_bundle_before_checkpointing"], []),  # given: not twice
])
def test_a_checkpointed_flink_run_finishes_its_bundles_before_each_checkpoint(
        runner, interval, argv, added):
    assert runners.checkpointing_flags(runner, interval, argv) == added


def test_the_cli_hands_the_added_flag_to_the_job_server():
    from pipeline.options import parse_options

    options, _ = parse_options(["--runner=FlinkRunner", "--checkpointing_interval", "2000"])
    passed = options.get_all_options(retain_unknown_options=True)
    assert passed["finish_bundle_before_checkpointing"] is True
    assert passed["checkpointing_interval"] == "2000"
