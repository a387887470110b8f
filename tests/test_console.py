"""A calm console and a CLI that fits: no DoFn of ours makes Beam warn, the CLI alone filters
third-party noise, the progress display's state and ETA, verbosity, per-command help, --version
and the one-line error for a missing extra."""
from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import pytest
from apache_beam.transforms.core import _check_fn_use_yield_and_return
from rich.console import Console

import pipeline
from pipeline.__main__ import COMMANDS, main, version
from pipeline.cli import console as cli_console
from pipeline.exit_codes import UsageError
from pipeline.cli.extras import installed, require
from pipeline.progress import (RunProgress, eta_seconds, format_duration, note_written, unwatch,
                                   watch)
import transforms

ROOT = Path(__file__).resolve().parent.parent

OPTIONAL = {"confluent_kafka", "google"}  # extras: a module needing one is skipped when missing


def _our_modules() -> Iterator[str]:
    for package in (transforms, pipeline):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            yield module.name


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_no_dofn_of_ours_both_yields_and_returns():
    """Beam logs "Using yield and return in the process method" for each such DoFn (at pipeline
    construction); it checks the process source with the function used here."""
    for name in _our_modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            assert exc.name.split(".")[0] in OPTIONAL, exc
    ours = {c for c in _subclasses(beam.DoFn) if c.__module__.split(".")[0] in ("transforms",
                                                                                "pipeline")}
    assert len(ours) > 10
    warned = sorted(c.__qualname__ for c in ours if _check_fn_use_yield_and_return(c.process))
    assert not warned


# --- the progress state and its ETA (pure logic) -------------------------------------------------

T0 = 1_800_000_000.0


def _summary(name: str, status: str, processed: int | None = None, total: int | None = None,
             submitted: float = T0, ended: float | None = None) -> dict:
    """One ListModelInvocationJobs summary, as boto3 returns it (times as datetimes)."""
    job = {"jobName": name, "status": status,
           "submitTime": dt.datetime.fromtimestamp(submitted, dt.timezone.utc)}
    if total is not None:
        job.update(totalRecordCount=total, processedRecordCount=processed)
    if ended is not None:
        job["endTime"] = dt.datetime.fromtimestamp(ended, dt.timezone.utc)
    return job


@pytest.mark.parametrize("samples, total, expected", [
    ([], 100, None),                                # never seen
    ([(0.0, 10)], None, None),                      # not counted yet
    ([(0.0, 10)], 100, None),                       # one sample: no pace yet
    ([(0.0, 10), (10.0, 10)], 100, None),           # no progress between samples
    ([(0.0, 10), (10.0, 30)], 100, 35.0),           # 2 records/s, 70 left
    ([(0.0, 10), (10.0, 100)], 100, 0.0),           # done
])
def test_eta_comes_from_the_pace_between_samples(samples, total, expected):
    assert eta_seconds(samples, total) == expected


@pytest.mark.parametrize("seconds, text", [(None, "-"), (0, "0:00"), (59.6, "1:00"),
                                           (3725, "1:02:05"), (-3, "0:00")])
def test_durations_read_like_clocks(seconds, text):
    assert format_duration(seconds) == text


def test_job_listings_become_per_job_progress_with_an_eta():
    progress = RunProgress("r1", T0)
    progress.on_jobs([_summary("bb-r1-a", "Submitted"), _summary("other-run", "InProgress", 1, 9)],
                     T0 + 5)
    progress.on_jobs([_summary("bb-r1-a", "InProgress", 100, 1000)], T0 + 100)
    progress.on_jobs([_summary("bb-r1-a", "InProgress", 300, 1000),
                      _summary("bb-r1-b", "Completed", 50, 50, submitted=T0 + 1, ended=T0 + 90)],
                     T0 + 200)
    rows, hidden = progress.job_rows(T0 + 200)
    assert hidden == 0
    # The running job first; its pace is 200 records per 100 s, so 700 left take 350 s.
    assert [(r["name"], r["status"], r["processed"], r["total"], r["elapsed"], r["eta"])
            for r in rows] == [("bb-r1-a", "InProgress", 300, 1000, 200.0, 350.0),
                               ("bb-r1-b", "Completed", 50, 50, 89.0, 0.0)]
    totals = progress.job_totals()
    assert totals == {"jobs": 2, "by_status": {"Completed": 1, "InProgress": 1},
                      "processed": 350, "total": 1050, "eta": 350.0}


def test_a_long_run_lists_running_jobs_first_and_counts_the_rest():
    progress = RunProgress("r1", T0)
    progress.on_jobs([_summary(f"bb-r1-{i:02d}", "Completed", 5, 5, ended=T0 + i)
                      for i in range(20)] + [_summary("bb-r1-late", "Scheduled")], T0 + 30)
    rows, hidden = progress.job_rows(T0 + 30, limit=5)
    assert [r["name"] for r in rows] == ["bb-r1-late", "bb-r1-19", "bb-r1-18", "bb-r1-17",
                                         "bb-r1-16"]
    assert hidden == 16
    assert progress.job_totals()["eta"] is None  # the scheduled job has no pace yet


def test_log_events_and_sink_rows_feed_the_counts():
    progress = RunProgress("r1", T0)
    assert not progress.on_log_event("transforms.sources.files", "something else %s", ("x",))
    events = [("transforms.sources.files", "read %s: %d records, %d failures", ("a.jsonl", 10, 2)),
              ("transforms.sources.files", "read %s: unknown format, 1 failure", ("b.bin",)),
              ("transforms.shards.shard_writer", "planned %s: %d records, %d bytes%s",
               ("bb-r1-a", 8, 1000, "")),
              ("transforms.jobs.harvest", "harvested %s: %d summaries, %d failures, %d to retry",
               ("bb-r1-a", 6, 1, 1))]
    assert all(progress.on_log_event(*event) for event in events)
    watch(progress)
    try:
        note_written(summaries=2)
        note_written(failures=1)
    finally:
        unwatch(progress)
    note_written(summaries=5)  # after unwatch: not this run's
    lines = progress.lines(T0 + 61)
    assert lines[0] == "progress r1: 1:01 elapsed"
    assert "  read      11 records from 2 files (3 failures)" in lines
    assert "  sharded   8 records into 1 jobs" in lines
    assert "  harvested 1 jobs: 6 summaries, 1 failures, 1 to retry" in lines
    assert "  written   2 summaries, 1 failures" in lines


def test_without_pipeline_events_only_the_jobs_show():
    """On Flink's remote workers no log event reaches the CLI: the jobs line still does."""
    progress = RunProgress("r1", T0)
    progress.on_jobs([_summary("bb-r1-a", "InProgress", 10, 40)], T0 + 10)
    lines = progress.lines(T0 + 20)
    assert lines[1:] == ["  jobs      1 (1 InProgress); 10/40 records processed, ETA -",
                         "    bb-r1-a: InProgress, 10/40 records, 0:20 elapsed, ETA -"]


def test_the_live_display_shows_each_job_with_its_counts_and_eta():
    progress = RunProgress("r1", T0)
    progress.on_jobs([_summary("bb-r1-a", "InProgress", 100, 400)], T0 + 10)
    progress.on_jobs([_summary("bb-r1-a", "InProgress", 200, 400)], T0 + 20)
    screen = Console(record=True, width=120, color_system=None)
    screen.print(cli_console.render(progress, T0 + 20))
    text = screen.export_text()
    [job_line] = [line for line in text.splitlines() if "bb-r1-a" in line]
    assert "InProgress" in job_line and "200/400" in job_line
    assert job_line.split()[-2:] == ["0:20", "0:20"]  # elapsed, ETA at 10 records/s
    assert "jobs     1 (1 InProgress), 200/400 records, ETA 0:20" in text


# --- verbosity, filters, extras ------------------------------------------------------------------

@pytest.mark.parametrize("argv, level", [
    ([], 0), (["--input", "x"], 0), (["-v"], 1), (["-vv"], 2), (["-v", "--verbose"], 2),
    (["-q"], -1), (["--quiet", "-v"], -1), (["--input", "-very.jsonl"], 0),
])
def test_verbosity_from_the_flags(argv, level):
    assert cli_console.verbosity(argv) == level


@pytest.mark.parametrize("level, terminal, shown", [
    (-1, True, logging.WARNING), (-1, False, logging.WARNING),
    (0, True, logging.WARNING), (0, False, logging.INFO),
    (1, True, logging.INFO), (2, False, logging.DEBUG),
])
def test_what_each_verbosity_prints(level, terminal, shown):
    assert cli_console.handler_level(level, terminal) == shown


def test_quiet_turns_the_display_off():
    assert cli_console.display_mode(quiet=True) == "off"
    assert cli_console.display_mode(quiet=False) in ("live", "log")


def _record(name: str, msg: str, *args) -> logging.LogRecord:
    return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, args, None)


def test_the_noise_filter_drops_only_third_party_lines():
    class OurFn:  # stands for one of our DoFns: its warning must still show
        pass

    from apache_beam.io.fileio import _ReadMatchesFn
    noise = cli_console.ThirdPartyNoise()
    yield_return = "Using yield and return in the process method of %s can lead to ..."
    assert not noise.filter(_record("root", "crcmod package not found. This package is ..."))
    assert not noise.filter(_record("apache_beam.transforms.core", yield_return, _ReadMatchesFn))
    assert noise.filter(_record("apache_beam.transforms.core", yield_return, OurFn))
    assert noise.filter(_record("transforms.jobs.harvest", "job %s: manifest says ...", "x"))


def test_a_missing_extra_is_one_line_naming_it():
    assert installed("json") and not installed("no_such_module_here")
    assert not installed("no_such_package_here.sub")  # a missing parent is no crash
    from pipeline.cli import extras
    extras.OPTIONAL_PARTS["missing-part"] = ("no_such_module_here", "missing-part")
    try:
        with pytest.raises(UsageError, match=r"^--sink missing-part needs the missing-part extra "
                           r"\(no_such_module_here is not installed\): "
                           r"pip install 'bedrock-batch-beam\[missing-part\]'$"):
            require("missing-part", "--sink missing-part")
    finally:
        del extras.OPTIONAL_PARTS["missing-part"]


# --- the CLI's commands, help and version --------------------------------------------------------

def _help(command: str, capsys) -> str:
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


def test_each_command_help_lists_only_its_own_flags(capsys):
    run, plan, jobs = _help("run", capsys), _help("plan", capsys), _help("jobs", capsys)
    for title in ("input:", "model and prompt:", "quotas:", "jobs:", "AWS:", "output:",
                  "streaming:", "runner:", "console:"):
        assert f"\n{title}" in run
    assert "--job-output" not in run and "--status" not in run  # collect's and jobs' flags
    assert "--input " in plan and "--output " not in plan and "--window-seconds" not in plan
    assert "--status" in jobs and "--input" not in jobs and "--model-id" not in jobs
    assert "--max_records_per_job " not in run  # one form per flag; the text names the other


def test_top_level_help_and_version(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS) and "--version" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == version()
    assert version().startswith("bedrock-batch-beam 0.1.0 (apache-beam ")
    assert main([]) == 2


# A sitecustomize-free blocker: the listed packages raise ImportError as if not installed.
_BLOCKER = """
import sys, runpy
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["pipeline", *{argv!r}]
runpy.run_module("pipeline", run_name="__main__")
"""


def _without(blocked: set[str], *argv: str) -> subprocess.CompletedProcess:
    code = _BLOCKER.format(blocked=blocked, argv=list(argv))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_help_and_a_missing_extra_without_the_optional_packages(tmp_path):
    """As after a plain `pip install` without extras (and even without moto): --help works, and
    asking for a missing extra is one line naming it, exit 2, before anything starts."""
    blocked = {"moto", "confluent_kafka"}
    shown = _without(blocked, "run", "--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "--input" in shown.stdout
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "Customer: hi."}) + "\n")
    refused = _without(blocked, "run", "--input", str(path), "--sink", "kafka",
                       "--kafka-bootstrap-servers", "localhost:9", "--kafka-summaries-topic", "s",
                       "--kafka-failures-topic", "f")
    assert refused.returncode == 2, refused.stderr[-2000:]
    [line] = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert line == ("error: --sink kafka needs the kafka extra (confluent_kafka is not "
                    "installed): pip install 'bedrock-batch-beam[kafka]'")
    assert "Warning" not in refused.stderr and "WARNING" not in refused.stderr


def test_a_run_off_a_terminal_logs_its_progress(tmp_path, capsys):
    """One CLI run on the embedded local backend: stderr is no terminal here, so the progress
    comes as log lines, ending with every count of the run."""
    from tests.pipelines import transcripts

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(12)))
    assert main(["run", "--input", str(path), "--output", str(tmp_path / "out"), "--sink", "jsonl",
                 "--min-records-per-job", "1"]) == 0
    err = capsys.readouterr().err
    assert "Warning" not in err and " WARNING " not in err
    last = err[err.rindex("pipeline.progress: progress "):].splitlines()
    assert "  read      12 records from 1 files (0 failures)" in last
    assert "  sharded   12 records into 1 jobs" in last
    assert "  jobs      1 (1 Completed); 12/12 records processed, ETA 0:00" in last
    assert "  harvested 1 jobs: 12 summaries, 0 failures, 0 to retry" in last
    assert "  written   12 summaries, 0 failures" in last


def test_the_transforms_leave_warning_filters_and_log_settings_alone():
    """Only the CLI entry point sets them: code users import from transforms/ must not."""
    import ast

    forbidden = {"filterwarnings", "simplefilter", "resetwarnings", "basicConfig", "setLevel",
                 "addHandler", "removeHandler", "addFilter", "dictConfig", "fileConfig",
                 "captureWarnings", "disable"}
    found = []
    for path in (ROOT / "transforms").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in forbidden):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}")
    assert not found
