"""Row ids (transforms/sinks/row_ids.py): what the sinks name a row by, so that a replayed write
is recognized. Pure functions, tested directly."""
import dataclasses
import datetime as dt

from tests import rows as sample_rows
from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS
from transforms.sinks.schema import json_row, normalize_row
from transforms.sinks.row_ids import insert_id, row_id, shard_of


def normalized(items, fields):
    return [normalize_row(fields, item.to_row()) for item in items]


def test_a_row_has_one_id_normalized_or_as_json():
    for items, fields in ((sample_rows.summaries(10), SUMMARY_FIELDS),
                          (sample_rows.failures(10), FAILURE_FIELDS)):
        for item in items:
            row = item.to_row()
            assert row_id(normalize_row(fields, row)) == row_id(json_row(fields, row))


def test_a_row_produced_again_later_keeps_its_id_and_other_rows_differ():
    summaries = sample_rows.summaries(20)
    later = dt.timedelta(hours=3)
    again = [dataclasses.replace(s, created_at=s.created_at + later) for s in summaries]
    ids = [row_id(r) for r in normalized(summaries, SUMMARY_FIELDS)]
    assert ids == [row_id(r) for r in normalized(again, SUMMARY_FIELDS)]
    assert len(set(ids)) == 20 and all(len(i) == 32 for i in ids)
    # Failures without a transcript id (source rows) differ by their origin.
    failures = normalized(sample_rows.failures(12), FAILURE_FIELDS)
    assert len({row_id(f) for f in failures}) == 12


def test_every_column_but_created_at_and_insights_changes_the_id():
    base = normalize_row(FAILURE_FIELDS, sample_rows.failures(2)[1].to_row())
    changed = {"transcript_id": "other", "record_id": "r9", "stage": "sink", "error_code": "X",
               "error_message": "other", "attempt": 7, "job_arn": "arn:x", "raw": "{}",
               "origin": "b.jsonl:1"}
    assert set(changed) | {"created_at"} == {f.name for f in FAILURE_FIELDS}
    for name, value in changed.items():
        assert row_id({**base, name: value}) != row_id(base), name
    assert row_id({**base, "created_at": base["created_at"] + dt.timedelta(days=1)}) == row_id(base)
    assert row_id({**base, "insights": {"a": 1}}) == row_id(base)


def test_shards_spread_rows_and_stay_in_range():
    ids = [row_id(r) for r in normalized(sample_rows.summaries(60), SUMMARY_FIELDS)]
    shards = [shard_of(i, 4) for i in ids]
    assert set(shards) == {0, 1, 2, 3}
    assert shards == [shard_of(i, 4) for i in ids]
    assert {shard_of(i, 1) for i in ids} == {0}


def test_insert_ids_are_scoped_by_the_run():
    row = normalized(sample_rows.summaries(1), SUMMARY_FIELDS)[0]
    assert insert_id(row, "run-a") == "run-a-" + row_id(row)
    assert insert_id(row, "run-a") != insert_id(row, "run-b")
    assert insert_id(row) == row_id(row)
