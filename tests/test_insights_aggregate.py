"""AggregateInsights: its numbers match a recount done here from the rows, per window and
overall, in the pure counting module (hypothesis) and through a Beam pipeline that writes
insights_aggregate/ files."""
import datetime as dt
import glob
import json
import os
import random

import apache_beam as beam
import pytest
from apache_beam.transforms import window
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.model import Summary
from transforms.insights import tally
from transforms.insights.aggregate import AggregateInsights, WriteInsightsAggregate, read_overall

CATEGORIES = ["billing", "technical_issue", "account", "cancellation", "complaint", "order",
              "other"]
RESOLUTIONS = ["resolved", "unresolved", "escalated", "callback_scheduled"]
OWNERS = ["agent", "customer", "team"]
TOPICS = ["refund", "router", "password", "roaming", "upgrade"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

sentiment = st.floats(min_value=-1, max_value=1, allow_nan=False)
insights_objects = st.fixed_dictionaries({
    "summary": st.just("s"),
    "reason_for_call": st.fixed_dictionaries({"category": st.sampled_from(CATEGORIES),
                                              "detail": st.just("d")}),
    "resolution": st.sampled_from(RESOLUTIONS),
    "customer_sentiment": st.fixed_dictionaries({"start": sentiment, "end": sentiment}),
    "action_items": st.lists(st.fixed_dictionaries({
        "what": st.just("w"), "owner": st.sampled_from(OWNERS),
        "due_date": st.none() | st.just("2026-01-02")}), max_size=3),
    "topics": st.lists(st.sampled_from(TOPICS), max_size=4),
    "agent_verified_identity": st.booleans(),
    "language": st.just("en"),
})


def recount(rows):
    """The aggregate, counted the plain way from the rows."""
    if not rows:
        return {"calls": 0, "by_reason": {}, "by_topic": {}, "by_resolution": {},
                "resolution_rate": None, "mean_sentiment_change": None,
                "open_action_items_by_owner": {}}
    reasons, topics, resolutions, owners = {}, {}, {}, {}
    for row in rows:
        category = row["reason_for_call"]["category"]
        reasons[category] = reasons.get(category, 0) + 1
        for topic in set(row["topics"]):
            topics[topic] = topics.get(topic, 0) + 1
        resolutions[row["resolution"]] = resolutions.get(row["resolution"], 0) + 1
        for item in row["action_items"]:
            owners[item["owner"]] = owners.get(item["owner"], 0) + 1
    changes = [r["customer_sentiment"]["end"] - r["customer_sentiment"]["start"] for r in rows]
    return {"calls": len(rows), "by_reason": reasons, "by_topic": topics,
            "by_resolution": resolutions,
            "resolution_rate": resolutions.get("resolved", 0) / len(rows),
            "mean_sentiment_change": sum(changes) / len(changes),
            "open_action_items_by_owner": owners}


def assert_matches(row, rows):
    expected = recount(rows)
    for key, value in expected.items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, abs=1e-9), key
        else:
            assert row[key] == value, key


@settings(max_examples=10, deadline=None)
@given(st.lists(insights_objects, max_size=20), st.integers(min_value=0, max_value=20))
def test_aggregate_matches_a_recount_however_the_rows_are_split(rows, cut):
    whole = tally.aggregate(rows)
    assert_matches(whole, rows)
    # Bundles counted apart and merged give the same figures.
    parts = [tally.Tally(), tally.Tally()]
    for row in rows[:cut]:
        tally.add(parts[0], row)
    for row in rows[cut:]:
        tally.add(parts[1], row)
    merged = tally.aggregate_row(tally.merge(parts), "overall")
    assert merged == {**whole, "mean_sentiment_change": merged["mean_sentiment_change"]}
    if rows:
        assert merged["mean_sentiment_change"] == pytest.approx(whole["mean_sentiment_change"])


def test_rows_lacking_a_field_are_not_counted_for_it():
    row = tally.aggregate([{"summary": "a user schema without the default fields"},
                           {"resolution": "resolved", "topics": ["x", "x"]}])
    assert row["calls"] == 2 and row["by_resolution"] == {"resolved": 1}
    assert row["resolution_rate"] == 1.0 and row["by_topic"] == {"x": 1}
    assert row["mean_sentiment_change"] is None and row["by_reason"] == {}


def test_pipeline_writes_window_and_overall_aggregates_that_match_a_recount(tmp_path):
    rng = random.Random(12)
    summaries = []
    for i in range(40):
        insights = None if i % 10 == 9 else {  # summary-task rows are not counted
            "reason_for_call": {"category": rng.choice(CATEGORIES), "detail": "d"},
            "resolution": rng.choice(RESOLUTIONS),
            "customer_sentiment": {"start": rng.uniform(-1, 1), "end": rng.uniform(-1, 1)},
            "action_items": [{"what": "w", "owner": rng.choice(OWNERS), "due_date": None}
                             for _ in range(rng.randrange(3))],
            "topics": rng.sample(TOPICS, rng.randrange(3))}
        summaries.append((i * 20, Summary(transcript_id=f"c{i}", record_id=f"r{i}", model_id="m",
                                          summary="s", insights=insights)))
    out = str(tmp_path / "insights_aggregate")
    with beam.Pipeline() as p:
        (p | beam.Create(summaries)
         | beam.MapTuple(lambda seconds, s: window.TimestampedValue(s, T0.timestamp() + seconds))
         | beam.WindowInto(window.FixedWindows(300))
         | AggregateInsights()
         | WriteInsightsAggregate(out))

    names = sorted(os.path.basename(f) for f in glob.glob(os.path.join(out, "*")))
    assert names == ["overall.jsonl", "window-20260101T000000Z-20260101T000500Z.jsonl",
                     "window-20260101T000500Z-20260101T001000Z.jsonl",
                     "window-20260101T001000Z-20260101T001500Z.jsonl"]
    counted = [(seconds, s.insights) for seconds, s in summaries if s.insights is not None]
    overall = read_overall(out)
    assert overall["scope"] == "overall" and overall["window_start"] is None
    assert_matches(overall, [row for _, row in counted])
    for k, name in enumerate(names[1:]):
        with open(os.path.join(out, name), encoding="utf-8") as fh:
            row = json.loads(fh.read())
        assert row["window_start"] == (T0 + dt.timedelta(minutes=5 * k)).isoformat()
        assert_matches(row, [r for seconds, r in counted if 300 * k <= seconds < 300 * (k + 1)])


def test_unbounded_input_gets_window_rows_and_one_overall_row_when_it_ends():
    """Streaming DirectRunner with a TestStream: the overall row fires once the input ends."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.testing.util import assert_that, equal_to

    rows = [{"resolution": RESOLUTIONS[i % 2], "topics": ["refund"]} for i in range(4)]
    stream = TestStream()
    for i, row in enumerate(rows):
        stream = stream.add_elements([window.TimestampedValue(
            Summary(transcript_id=f"c{i}", record_id=f"r{i}", model_id="m", summary="s",
                    insights=row), T0.timestamp() + 40 * i)])
    stream = stream.advance_watermark_to_infinity()
    options = PipelineOptions()
    options.view_as(StandardOptions).streaming = True
    with beam.Pipeline(options=options) as p:
        aggregates = (p | stream | beam.WindowInto(window.FixedWindows(60)) | AggregateInsights()
                      | beam.Map(lambda r: (r["scope"], r["window_start"], r["calls"],
                                            r["resolution_rate"])))
        assert_that(aggregates, equal_to([
            ("window", T0.isoformat(), 2, 0.5),
            ("window", (T0 + dt.timedelta(minutes=1)).isoformat(), 1, 1.0),
            ("window", (T0 + dt.timedelta(minutes=2)).isoformat(), 1, 0.0),
            ("overall", None, 4, 0.5)]))
