"""The run report built from counters (pure, no pipeline): its lines and its exit code."""
from __future__ import annotations

import dataclasses

import pytest

from pipeline import exit_codes
from pipeline.pricing import estimate_cost
from pipeline.report.reconcile import Facts
from pipeline.running.outcome import Report

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"


def report(written: tuple[str, ...] = ("out/summaries",), max_failure_rate: float = 0.2,
           **counters: int) -> Report:
    return Report("r1", dict(counters), written, max_failure_rate)


def line(lines: list[str], label: str) -> str:
    [found] = [text for text in lines if text.startswith(label)]
    return found


def test_every_record_accounted_for_exits_0():
    r = report(records_in=10, summaries_written=9, failures_written=1, jobs_planned=1,
               jobs_submitted=1, jobs_finished=1)
    lines = r.lines(HAIKU)
    assert r.exit_code() == exit_codes.OK
    assert line(lines, "records in") == "records in      10"
    assert line(lines, "jobs").endswith("1 planned, 1 submitted, 1 finished, 0 not created")
    assert not any(text.startswith("NOT ACCOUNTED") for text in lines)
    assert lines[-1] == "exit code       0: every record is a summary or a failure row"


def test_a_lost_record_exits_4_and_says_so():
    """records_in counted at the source is not derived from the outputs, so a record that
    vanished between source and sink shows."""
    r = report(records_in=10, summaries_written=8, failures_written=1)
    lines = r.lines(HAIKU)
    assert r.exit_code() == exit_codes.UNACCOUNTED
    assert ("NOT ACCOUNTED   1 records in are neither a summary nor a failure row: records were "
            "lost") in lines
    assert lines[-1].startswith("exit code       4:")


def test_more_rows_out_than_in_exits_4():
    r = report(records_in=3, summaries_written=3, failures_written=1)
    assert r.exit_code() == exit_codes.UNACCOUNTED
    assert any("1 more rows out than records in" in text for text in r.lines(HAIKU))


def test_a_manifest_mismatch_exits_4_even_when_the_counts_agree():
    r = report(records_in=2, summaries_written=2, manifest_mismatches=1)
    assert r.exit_code() == exit_codes.UNACCOUNTED
    assert any(text.startswith("NOT ACCOUNTED   1 job manifests disagree") for text in r.lines(HAIKU))


def test_a_failure_row_the_table_rejected_exits_4():
    """BigQuery: that failure row was counted on its way to the sink but is in no output."""
    r = report(records_in=2, summaries_written=1, failures_written=1, failures_rejected=1)
    assert r.exit_code() == exit_codes.UNACCOUNTED
    assert any(text.startswith("NOT ACCOUNTED   1 failure rows the failures table rejected")
               for text in r.lines(HAIKU))


@pytest.mark.parametrize("summaries, failures, limit, code", [
    (8, 2, 0.2, exit_codes.OK),                        # exactly at the limit
    (7, 3, 0.2, exit_codes.FAILURES_ABOVE_THRESHOLD),  # above it
    (10, 1, 0.0, exit_codes.FAILURES_ABOVE_THRESHOLD), # 0: any failure row
    (0, 5, 1.0, exit_codes.FAILURES_ABOVE_THRESHOLD),  # every record failed, whatever the limit
    (0, 0, 0.2, exit_codes.OK),                        # empty input
])
def test_failure_rate_against_the_limit(summaries, failures, limit, code):
    r = report(max_failure_rate=limit, records_in=summaries + failures,
               summaries_written=summaries, failures_written=failures)
    assert r.exit_code() == code


def test_every_record_failed_says_so():
    r = report(written=("out/failures",), records_in=3, failures_written=3,
               **{"failures.submit.UndersizedJob": 3})
    lines = r.lines(HAIKU)
    assert lines[-1] == "exit code       3: every record failed (see the failure rows)"
    assert line(lines, "failures") == "failures        3  (100.0% of rows out)"


def test_failures_above_the_limit_name_the_flag():
    r = report(records_in=4, summaries_written=1, failures_written=3)
    assert r.lines(HAIKU)[-1] == ("exit code       3: failures are 75.0% of rows, above "
                                  "--max-failure-rate 0.2 (see the failure rows)")


def test_empty_input_exits_0_and_says_nothing_was_written():
    r = dataclasses.replace(report(written=()), facts=Facts(ledger=(), jobs=(), rows=(0, 0)))
    lines = r.lines(HAIKU)
    assert r.exit_code() == exit_codes.OK
    assert line(lines, "written to") == "written to      nothing"
    assert lines[-1] == "exit code       0: the input held no records"


def test_failures_are_broken_down_by_stage_and_code_most_frequent_first():
    r = report(records_in=6, summaries_written=2, failures_written=4,
               **{"failures.source.InvalidJson": 1, "failures.validate.MissingText": 3})
    lines = r.lines(HAIKU)
    start = lines.index(line(lines, "failures"))
    assert [text.split() for text in lines[start + 1:start + 3]] == [
        ["validate", "MissingText", "3"], ["source", "InvalidJson", "1"]]


def test_cost_includes_on_demand_calls_at_twice_the_batch_price():
    r = report(records_in=3, summaries_written=3, input_tokens=1_000_000, output_tokens=200_000,
               on_demand_calls=2, on_demand_input_tokens=100_000, on_demand_output_tokens=40_000)
    lines = r.lines(HAIKU)
    batch = estimate_cost(HAIKU, 1_000_000, 200_000)
    on_demand = 2 * estimate_cost(HAIKU, 100_000, 40_000)
    assert r.cost(HAIKU) == pytest.approx((batch, on_demand))
    assert line(lines, "tokens") == ("tokens          batch 1000000 in, 200000 out; on demand "
                                     "2 calls, 100000 in, 40000 out")
    assert line(lines, "estimated cost") == (
        f"estimated cost  ${batch + on_demand:.4f} (batch ${batch:.4f}, on demand "
        f"${on_demand:.4f}; estimate from list prices)")


def test_a_model_without_a_price_gets_no_made_up_cost():
    lines = report(records_in=1, summaries_written=1).lines("acme.unknown-model-v1:0")
    assert line(lines, "estimated cost") == ("estimated cost  unknown: no listed price for "
                                             "acme.unknown-model-v1:0")


def test_written_to_names_only_the_destinations_given():
    lines = report(written=("out/summaries", "out/failures"), records_in=1,
                   summaries_written=1).lines(HAIKU)
    assert line(lines, "written to") == "written to      out/summaries, out/failures"


def test_rejected_summaries_count_as_failures_not_summaries():
    """BigQuery: a summary the table rejected is written again as a failure row."""
    r = report(records_in=2, summaries_written=2, summaries_rejected=1, failures_written=1)
    assert (r.summaries, r.failures, r.unaccounted) == (1, 1, 0)
