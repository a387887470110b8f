"""Ending a bounded watch on Flink with checkpointing from the durable facts: the decision
(``pipeline.report.drain``), the loop (``pipeline.running.drain``) and the CLI's refusals.

The loop's tests hand it a stand-in for Beam's PipelineResult and a stand-in clock: a real
Flink job that never agrees with its facts would take a day to reach the bound (the loop on a
real cluster is exercised by tests/test_failover.py)."""
from __future__ import annotations

import pytest
from apache_beam.runners.runner import PipelineState

from pipeline.__main__ import main
from pipeline.report.drain import drain_seconds, missing, quiet_seconds
from pipeline.report.reconcile import Facts, RunJob
from pipeline.running.drain import drain
from transforms.sources.source_ledger import LedgerEntry

LEDGER = (LedgerEntry("/in/a.jsonl", 4, 0), LedgerEntry("/in/b.jsonl", 3, 1))
HARVESTED = (RunJob("run-w0-0", "Completed", True, "s3://b/out/j0/"),
             RunJob("run-w1-0", "Completed", True, "s3://b/out/j1/"))
DONE = Facts(ledger=LEDGER, jobs=HARVESTED, rows=(6, 1))
LISTED = ["/in/a.jsonl", "/in/b.jsonl"]


def test_done_when_every_listed_file_is_read_every_record_a_row_every_job_harvested():
    assert missing(LISTED, DONE) == []


def test_a_listed_file_not_in_the_ledger_is_missing():
    gaps = missing([*LISTED, "/in/c.jsonl"], DONE)
    assert gaps == ["1 listed input(s) not read whole yet: /in/c.jsonl"]


def test_records_not_yet_rows_and_jobs_not_harvested_are_missing():
    facts = Facts(ledger=LEDGER, jobs=(HARVESTED[0], RunJob("run-w1-0", "InProgress", False,
                                                            "s3://b/out/j1/")), rows=(4, 0))
    assert missing(LISTED, facts) == ["3 of 7 record(s) in are not yet a summary or a failure row",
                                      "job run-w1-0 (InProgress) is not harvested yet"]


def test_more_rows_than_records_is_not_done():
    assert missing(LISTED, Facts(ledger=LEDGER, jobs=HARVESTED, rows=(8, 1))) == [
        "2 row(s) more than the 7 record(s) in"]


@pytest.mark.parametrize("facts, gap", [
    (Facts(ledger=None, jobs=HARVESTED, rows=(6, 1)), "the source ledger could not be read"),
    (Facts(ledger=LEDGER, jobs=None, rows=(6, 1)), "the run's jobs could not be listed"),
    (Facts(ledger=LEDGER, jobs=HARVESTED, rows=None), "the rows in --output could not be counted"),
])
def test_an_unknown_fact_is_never_done(facts, gap):
    assert missing(LISTED, facts) == [gap]


def test_an_empty_folder_with_no_jobs_is_done():
    assert missing([], Facts(ledger=(), jobs=(), rows=(0, 0))) == []


def test_drain_time_covers_the_last_window_and_bedrock_job_timeout():
    assert drain_seconds(10, 60, None) == 10 + 24 * 3600 + 600
    assert drain_seconds(None, 1, 48) == 48 * 3600 + 10


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Job:
    """Stands in for Beam's PipelineResult of a Flink job that runs until cancelled."""

    def __init__(self, ends_at: float | None = None, clock: Clock | None = None,
                 final: str = PipelineState.DONE) -> None:
        self.cancelled = False
        self.ends_at, self.clock, self.final = ends_at, clock, final

    @property
    def state(self) -> str:
        if self.cancelled:
            return PipelineState.CANCELLED
        if self.ends_at is not None and self.clock() >= self.ends_at:
            return self.final
        return PipelineState.RUNNING

    def cancel(self) -> None:
        self.cancelled = True

    def wait_until_finish(self) -> str:
        if self.state == PipelineState.FAILED:
            raise RuntimeError("Pipeline failed.")
        return self.state


def test_the_job_is_cancelled_once_the_facts_agree_after_the_watch():
    clock, job = Clock(), Job()
    listed_at = []
    # Rows appear 30 s after the watch's end.
    facts = lambda: DONE if clock() >= 150 else Facts(LEDGER, HARVESTED[:1], (4, 0))  # noqa: E731
    gaps = drain(job, lambda: listed_at.append(clock()) or LISTED, facts, watch_seconds=120,
                 drain_seconds=1000, quiet_seconds=300, poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert gaps == [] and job.cancelled
    assert listed_at[0] == 120  # what the read had to cover is asked once the watch is over
    assert 150 <= clock() < 160


def test_the_run_waits_for_the_watch_to_record_its_end():
    """The watch's clock starts at its first listing, after the CLI's: a file moved in after
    the CLI's clock ran out, but while the watch still lists, is waited for (before, an empty
    folder at the CLI's count ended the run with exit 0 and the file was never summarized)."""
    clock, job = Clock(), Job()
    nothing_yet = Facts(ledger=(), jobs=(), rows=(0, 0))
    listed = lambda: LISTED if clock() >= 200 else None  # noqa: E731 - the watch ends at 200 s
    facts = lambda: DONE if clock() >= 250 else nothing_yet  # noqa: E731
    gaps = drain(job, listed, facts, watch_seconds=120, drain_seconds=1000, quiet_seconds=300,
                 poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert gaps == [] and job.cancelled
    assert 250 <= clock() < 260


def test_a_watch_that_never_records_its_end_is_reported_once_nothing_changes():
    """A job that never reads (measured on the session cluster: its watch never listed again)
    is cancelled after the quiet time, not a day later at the bound."""
    clock, job = Clock(), Job()
    gaps = drain(job, lambda: None, lambda: Facts(ledger=(), jobs=(), rows=(0, 0)),
                 watch_seconds=120, drain_seconds=86400, quiet_seconds=300, poll_seconds=5,
                 clock=clock, sleep=clock.sleep)
    assert gaps[0] == "the watch has not recorded its end yet" and job.cancelled
    assert 420 <= clock() < 430


def test_facts_that_never_agree_while_a_job_runs_cancel_at_the_bound():
    clock, job = Clock(), Job()
    running = Facts(LEDGER, (HARVESTED[0], RunJob("run-w1-0", "InProgress", False, None)), (4, 0))
    gaps = drain(job, lambda: LISTED, lambda: running, watch_seconds=120, drain_seconds=600,
                 quiet_seconds=300, poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert gaps == missing(LISTED, running) and job.cancelled
    assert 720 <= clock() < 730


def test_facts_that_stand_still_with_no_job_running_cancel_after_the_quiet_time():
    """What a restored Flink job that dropped its windows' records looks like: every file
    ledgered, no job, no row, nothing changing."""
    clock, job = Clock(), Job()
    lost = Facts(LEDGER, (), (0, 0))
    gaps = drain(job, lambda: LISTED, lambda: lost, watch_seconds=120, drain_seconds=86400,
                 quiet_seconds=300, poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert gaps == ["7 of 7 record(s) in are not yet a summary or a failure row",
                    "nothing changed for 300 s with no job of the run running: what is missing "
                    "is not on its way"] and job.cancelled
    assert 420 <= clock() < 430


def test_the_quiet_time_counts_from_the_last_change():
    clock, job = Clock(), Job()
    facts = lambda: Facts(LEDGER, (), (min(7, int(clock() // 100)), 0))  # noqa: E731 - a row per 100 s
    gaps = drain(job, lambda: LISTED, facts, watch_seconds=0, drain_seconds=86400,
                 quiet_seconds=300, poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert gaps == [] and job.cancelled and 700 <= clock() < 710


def test_quiet_time_is_five_minutes_two_windows_or_ten_polls():
    assert quiet_seconds(10, 1) == 300
    assert quiet_seconds(600, 60) == 1200
    assert quiet_seconds(None, 60) == 600


def test_a_job_that_ends_by_itself_is_not_cancelled():
    clock = Clock()
    job = Job(ends_at=60, clock=clock)
    assert drain(job, lambda: LISTED, lambda: DONE, watch_seconds=120, drain_seconds=600, quiet_seconds=300,
                 poll_seconds=5, clock=clock, sleep=clock.sleep) == []
    assert not job.cancelled


def test_a_failed_job_raises_with_flinks_error():
    clock = Clock()
    job = Job(ends_at=60, clock=clock, final=PipelineState.FAILED)
    with pytest.raises(RuntimeError):
        drain(job, lambda: LISTED, lambda: DONE, watch_seconds=120, drain_seconds=600, quiet_seconds=300,
              poll_seconds=5, clock=clock, sleep=clock.sleep)
    assert not job.cancelled


FLINK = ["--runner=FlinkRunner", "--flink_master=localhost:1", "--streaming",
         "--window-seconds", "10", "--watch-seconds", "60", "--checkpointing_interval=2000"]


def test_the_idle_shutdown_flag_is_refused_on_a_checkpointed_bounded_watch(tmp_path, capsys):
    argv = ["run", "--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "out"),
            *FLINK, "--shutdown_sources_after_idle_ms=60000"]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "--shutdown_sources_after_idle_ms" in errors[0] and "drop the flag" in errors[0]
    assert not (tmp_path / "out").exists()


def test_a_sink_whose_rows_cannot_be_counted_is_refused(tmp_path, capsys):
    argv = ["run", "--input", str(tmp_path / "*.jsonl"), "--sink", "kafka",
            "--kafka-bootstrap-servers", "localhost:1", "--kafka-summaries-topic", "s",
            "--kafka-failures-topic", "f", *FLINK]
    assert main(argv) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "--sink kafka" in errors[0] and "--sink avro or jsonl or parquet" in errors[0]


def test_the_watch_records_what_it_had_listed_and_the_cli_waits_for_it(tmp_path, monkeypatch):
    """The CLI learns what the read had to cover from the watch's own record of its end (its
    clock starts at its first listing, later than the CLI's): nothing before the watch ended,
    then every file it listed, named as the ledger names them (file_identity) even through a
    relative, symbolic-linked pattern, so the facts can agree."""
    import types

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.options import BedrockBatchOptions
    from pipeline.running.execute import listed_inputs
    from transforms.core.layout import source_ledger_prefix
    from transforms.sources import WatchTranscripts
    from transforms.sources.source_ledger import SUFFIX, SourceLedger, file_identity, parse_entry

    (tmp_path / "real").mkdir()
    for name in ("a", "b"):
        (tmp_path / "real" / f"{name}.jsonl").write_text(f'{{"id": "{name}", "text": "hi"}}\n')
    (tmp_path / "link").symlink_to(tmp_path / "real")
    monkeypatch.chdir(tmp_path)
    config = types.SimpleNamespace(base_uri=str(tmp_path / "runs"), run_id="r",
                                   aws=types.SimpleNamespace(client=lambda service: None))
    opts = PipelineOptions(["--input", "link/*.jsonl"]).view_as(BedrockBatchOptions)
    assert listed_inputs(opts, config) is None, "the watch has not ended yet"

    prefix = source_ledger_prefix(config.base_uri, config.run_id)
    with beam.Pipeline(options=PipelineOptions(["--streaming"])) as p:
        _ = p | WatchTranscripts("link/*.jsonl", interval_seconds=1, stop_after_seconds=2,
                                 ledger=SourceLedger(prefix))
    expected = sorted(file_identity(str(tmp_path / "real" / f"{n}.jsonl")) for n in "ab")
    assert listed_inputs(opts, config) == expected
    entries = [parse_entry(path.read_text()) for path in (tmp_path / "runs").rglob(f"*{SUFFIX}")]
    assert sorted(entry.path for entry in entries) == expected
