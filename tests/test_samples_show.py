"""The demo's tables: a few insight rows and the aggregate, from rows and the aggregate row, and
from a run's output folder."""
import json

import pytest

from pipeline.samples import show
from transforms.insights import tally


def insights(i):
    return {"summary": "s", "reason_for_call": {"category": ["billing", "order"][i % 2],
                                                "detail": "d"},
            "resolution": ["resolved", "escalated", "unresolved"][i % 3],
            "customer_sentiment": {"start": -0.5, "end": 0.25 * (i % 3)},
            "action_items": [{"what": "w", "owner": "agent", "due_date": None}] * (i % 2),
            "topics": ["refund"] if i % 2 else [], "agent_verified_identity": True,
            "language": "en"}


ROWS = [{"transcript_id": f"call-{i:05d}", "insights": insights(i)} for i in range(6)]


def test_rows_and_aggregate_as_tables():
    aggregate = tally.aggregate(r["insights"] for r in ROWS)
    lines = show.demo_lines(ROWS + [{"transcript_id": "plain", "insights": None}], aggregate,
                            limit=2)
    assert lines[0] == "insight rows (2 of 6)"
    assert lines[2].split() == ["call-00000", "billing", "resolved", "-0.50", "->", "+0.00",
                                "0", "-"]
    assert lines[3].split() == ["call-00001", "order", "escalated", "-0.50", "->", "+0.25",
                                "1", "refund"]
    text = "\n".join(lines)
    assert "aggregate over 6 calls" in text
    assert "resolution rate        33%  (escalated 2, resolved 2, unresolved 2)" in text
    assert "mean sentiment change  +0.75" in text
    assert "open action items      agent 3" in text


def test_summary_task_output_says_how_to_get_insights():
    assert show.demo_lines([{"transcript_id": "a", "insights": None}], None) == [
        "no insight rows: the run's task was not insights (run it with --task insights)"]


def test_main_reads_a_run_output_folder(tmp_path, capsys):
    (tmp_path / "summaries").mkdir()
    (tmp_path / "summaries" / "part-00000-of-00001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "insights_aggregate").mkdir()
    (tmp_path / "insights_aggregate" / "overall.jsonl").write_text(
        json.dumps(tally.aggregate(r["insights"] for r in ROWS)) + "\n")
    assert show.main([str(tmp_path), "--rows", "1"]) == 0
    out = capsys.readouterr().out
    assert "insight rows (1 of 6)" in out and "aggregate over 6 calls" in out
    with pytest.raises(SystemExit):
        show.main([str(tmp_path / "missing")])
    assert "missing/summaries does not exist" in capsys.readouterr().err
