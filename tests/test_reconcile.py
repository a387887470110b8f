"""The report's reconciliation of counters, the source ledger, the job ledger and the rows
written (pure, no pipeline), on generated cases: counters reset to zero by a restarted attempt,
ledger entries written again by a replay, jobs left in every status."""
from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import exit_codes
from pipeline.report.reconcile import COLLECTABLE, RUNNING, Facts, RunJob, reconcile
from pipeline.running.outcome import Report
from transforms.sources.source_ledger import (LedgerEntry, entry_name, entry_text, file_identity,
                                              parse_entry)

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
STATUSES = sorted(RUNNING | COLLECTABLE | {"Failed"})


@st.composite
def ledgers(draw) -> tuple[LedgerEntry, ...]:
    """One entry per input file (failures at most its records)."""
    paths = draw(st.lists(st.from_regex(r"s3://in/[a-z]{1,6}\.jsonl", fullmatch=True),
                          unique=True, max_size=6))
    entries = []
    for path in paths:
        records = draw(st.integers(0, 500))
        entries.append(LedgerEntry(path, records, draw(st.integers(0, records))))
    return tuple(entries)


@st.composite
def jobs(draw) -> tuple[RunJob, ...]:
    count = draw(st.integers(0, 5))
    return tuple(RunJob(f"bb-r1-g-a1-{n:04d}", draw(st.sampled_from(STATUSES)), draw(st.booleans()),
                        draw(st.sampled_from([None, f"s3://b/runs/r1/output/job{n}/"])))
                 for n in range(count))


def replayed(entries: tuple[LedgerEntry, ...], data: st.DataObject) -> list[LedgerEntry]:
    """The entries with some written again (a replayed read), in any order."""
    again = data.draw(st.lists(st.sampled_from(entries), max_size=8)) if entries else []
    return data.draw(st.permutations(list(entries) + again))


@given(ledgers(), st.data())
def test_a_replayed_read_counts_its_file_once(entries, data):
    total = sum(e.records for e in entries)
    books = reconcile({}, Facts(ledger=tuple(replayed(entries, data)), jobs=()))
    assert (books.records_in, books.ledger_files) == (total, len(entries))


@given(ledgers(), jobs(), st.data())
def test_counters_reset_by_a_restart_change_no_figure(entries, run_jobs, data):
    """Whatever the last attempt's counters kept (any part of the true counts, down to zero),
    the figures are the durable ones."""
    total = sum(e.records for e in entries)
    failed = sum(e.failures for e in entries)
    rows = (total - failed, failed)
    facts = Facts(ledger=entries, jobs=run_jobs, rows=rows)
    kept = {name: data.draw(st.integers(0, full), label=name) for name, full in (
        ("records_in", total), ("summaries_written", rows[0]), ("failures_written", rows[1]))}
    full = reconcile({"records_in": total, "summaries_written": rows[0],
                      "failures_written": rows[1]}, facts)
    books = reconcile(kept, facts)
    assert (books.records_in, books.summaries, books.failures, books.unaccounted) == (
        full.records_in, full.summaries, full.failures, 0)
    assert books.counters_differ() == (tuple(kept.values()) != (total, *rows))
    report = Report("r1", kept, facts=facts)
    assert report.exit_code() == Report("r1", {}, facts=facts).exit_code()
    if books.counters_differ():
        assert any(line.startswith("counted ") for line in report.lines(MODEL))


@given(st.integers(0, 1000), st.integers(0, 1000), ledgers())
def test_a_counter_above_the_ledger_is_never_hidden(counted, written, entries):
    books = reconcile({"records_in": counted, "summaries_written": written},
                      Facts(ledger=entries, jobs=()))
    assert books.records_in == max(counted, sum(e.records for e in entries))
    assert books.summaries == written  # no durable rows (Kafka, BigQuery): the counter stands


@given(jobs())
def test_every_job_never_harvested_is_named_with_what_collects_it_and_exits_4(run_jobs):
    facts = Facts(ledger=(LedgerEntry("in.jsonl", 3, 0),), jobs=run_jobs, rows=(3, 0))
    report = Report("r1", {"records_in": 3, "summaries_written": 3}, facts=facts)
    lines = report.lines(MODEL)
    named = [line for line in lines if line.startswith("NOT ACCOUNTED   job ")]
    left = [job for job in run_jobs if not job.harvested]
    assert [line.split()[3] for line in named] == [job.name for job in left]
    for job, line in zip(left, named):
        collectable = job.job_output is not None and job.status in RUNNING | COLLECTABLE
        assert (f"python -m pipeline collect --job-output {job.job_output} --output "
                f"collected-" in line) == collectable
        assert ("rerun with the same --run-id" in line) == (not collectable)
    assert (report.exit_code() == exit_codes.UNACCOUNTED) == bool(left)
    assert lines[-1].startswith(f"exit code       {report.exit_code()}: ")


@given(ledgers(), jobs(), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5))
def test_no_records_is_said_only_when_the_ledger_the_jobs_and_the_rows_agree(
        entries, run_jobs, counted, summaries, failures):
    facts = Facts(ledger=entries, jobs=run_jobs, rows=(summaries, failures))
    report = Report("r1", {"records_in": counted}, facts=facts)
    said = report.verdict().endswith("the input held no records")
    empty = (not any(e.records for e in entries) and not run_jobs and not counted
             and not summaries and not failures)
    assert said == empty
    if said:
        assert report.exit_code() == exit_codes.OK
    if any(e.records for e in entries) or run_jobs:
        assert report.exit_code() != exit_codes.OK or report.records_in > 0


@given(st.sampled_from([dict(ledger=None), dict(jobs=None), dict(ledger=None, jobs=None)]))
def test_without_a_ledger_or_a_job_listing_no_records_is_not_claimed(missing):
    facts = dataclasses.replace(Facts(ledger=(), jobs=(), rows=(0, 0)), **missing)
    verdict = Report("r1", {}, facts=facts).verdict()
    assert verdict.startswith("exit code       0: no record was counted in (")
    assert ("no source ledger" in verdict) == ("ledger" in missing)
    assert ("no job ledger" in verdict) == ("jobs" in missing)


def test_jobs_without_any_record_read_are_not_accounted():
    """A restarted attempt that counted nothing, whose ledger is gone too: the jobs tell."""
    job = RunJob("bb-r1-g-a1-0000", "Completed", harvested=True, job_output=None)
    report = Report("r1", {}, facts=Facts(ledger=(), jobs=(job,), rows=(0, 0)))
    assert report.exit_code() == exit_codes.UNACCOUNTED
    assert ("NOT ACCOUNTED   1 job(s) of the run exist, but no record was read in"
            in report.lines(MODEL))


@settings(max_examples=50)
@given(st.text(min_size=1), st.integers(0, 10**6), st.integers(0, 10**6))
def test_a_ledger_entry_reads_back_and_is_named_by_its_path_alone(path, records, failures):
    entry = LedgerEntry(path, records, failures)
    assert parse_entry(entry_text(entry)) == entry
    assert entry_name(path).endswith(".json") and "/" not in entry_name(path)
    assert entry_name(path) != entry_name(path + "x")


def test_a_file_has_one_identity_however_its_path_is_spelled(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.jsonl").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    spellings = ["data/in.jsonl", "./data/in.jsonl", "data//in.jsonl", "link/in.jsonl",
                 "link/../data/in.jsonl", str(tmp_path / "data" / "in.jsonl")]
    assert {file_identity(path) for path in spellings} == {
        str((tmp_path / "data" / "in.jsonl").resolve())}
    # Object keys are names: two spellings are two objects.
    assert file_identity("s3://b/calls//in.jsonl") == "s3://b/calls//in.jsonl"
