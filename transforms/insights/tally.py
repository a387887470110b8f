"""Counting insights rows into an aggregate, with no Beam import (``AggregateInsights`` in
``transforms/insights/aggregate.py`` runs it per window and overall).

It reads the default insights schema's fields; a row lacking one (a user schema without it) is
simply not counted for that figure, so ``calls`` may exceed, say, the sum of ``by_resolution``:

* ``by_reason``: calls per ``reason_for_call.category``.
* ``by_topic``: calls per topic in ``topics`` (a topic listed twice in one call counts once).
* ``by_resolution`` and ``resolution_rate``: calls per ``resolution`` value, and resolved calls
  divided by the calls that state a resolution (None when none does).
* ``mean_sentiment_change``: the mean of ``customer_sentiment.end - start`` over the calls that
  give both numbers (None when none does).
* ``open_action_items_by_owner``: action items per ``owner``. The schema records the follow-ups
  promised in the call, not whether they were done since, so every listed item counts as open.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

RESOLVED = "resolved"


@dataclass
class Tally:
    """The running counts of one aggregate (a CombineFn accumulator).

    Args:
        calls: Insights rows counted.
        by_reason: Calls per reason category.
        by_topic: Calls per topic.
        by_resolution: Calls per resolution value.
        sentiment_calls: Calls with both sentiment numbers.
        sentiment_change_sum: Sum of (end - start) over those calls.
        action_items_by_owner: Action items per owner.
    """

    calls: int = 0
    by_reason: Counter = field(default_factory=Counter)
    by_topic: Counter = field(default_factory=Counter)
    by_resolution: Counter = field(default_factory=Counter)
    sentiment_calls: int = 0
    sentiment_change_sum: float = 0.0
    action_items_by_owner: Counter = field(default_factory=Counter)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def add(tally: Tally, insights: Mapping[str, Any]) -> Tally:
    """Count one insights object into ``tally`` (in place) and return it.

    Args:
        tally: The running counts.
        insights: One schema-valid insights object (``Summary.insights``).
    """
    tally.calls += 1
    reason = insights.get("reason_for_call")
    if isinstance(reason, Mapping) and isinstance(reason.get("category"), str):
        tally.by_reason[reason["category"]] += 1
    topics = insights.get("topics")
    if isinstance(topics, list):
        tally.by_topic.update({t for t in topics if isinstance(t, str)})
    if isinstance(insights.get("resolution"), str):
        tally.by_resolution[insights["resolution"]] += 1
    sentiment = insights.get("customer_sentiment")
    if isinstance(sentiment, Mapping):
        start, end = _number(sentiment.get("start")), _number(sentiment.get("end"))
        if start is not None and end is not None:
            tally.sentiment_calls += 1
            tally.sentiment_change_sum += end - start
    items = insights.get("action_items")
    if isinstance(items, list):
        tally.action_items_by_owner.update(
            item["owner"] for item in items
            if isinstance(item, Mapping) and isinstance(item.get("owner"), str))
    return tally


def merge(tallies: Iterable[Tally]) -> Tally:
    """One tally holding the counts of all ``tallies``.

    Args:
        tallies: Partial counts (e.g. from different bundles).
    """
    out = Tally()
    for t in tallies:
        out.calls += t.calls
        out.by_reason.update(t.by_reason)
        out.by_topic.update(t.by_topic)
        out.by_resolution.update(t.by_resolution)
        out.sentiment_calls += t.sentiment_calls
        out.sentiment_change_sum += t.sentiment_change_sum
        out.action_items_by_owner.update(t.action_items_by_owner)
    return out


def _sorted(counts: Counter) -> dict[str, int]:
    # Most frequent first, then by name: stable output for files and charts.
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def aggregate_row(tally: Tally, scope: str, window_start: dt.datetime | None = None,
                  window_end: dt.datetime | None = None) -> dict[str, Any]:
    """The aggregate as a JSON-ready dict (one line of ``insights_aggregate/``).

    Args:
        tally: The counts.
        scope: "window" (one window's calls) or "overall" (every call of the run).
        window_start: The window's start (UTC), None for "overall".
        window_end: The window's end (UTC), None for "overall".
    """
    stated = sum(tally.by_resolution.values())
    return {
        "scope": scope,
        "window_start": _iso(window_start),
        "window_end": _iso(window_end),
        "calls": tally.calls,
        "by_reason": _sorted(tally.by_reason),
        "by_topic": _sorted(tally.by_topic),
        "by_resolution": _sorted(tally.by_resolution),
        "resolution_rate": tally.by_resolution[RESOLVED] / stated if stated else None,
        "mean_sentiment_change": (tally.sentiment_change_sum / tally.sentiment_calls
                                  if tally.sentiment_calls else None),
        "open_action_items_by_owner": _sorted(tally.action_items_by_owner),
    }


def aggregate(insights: Iterable[Mapping[str, Any]], scope: str = "overall") -> dict[str, Any]:
    """``aggregate_row`` of a whole collection of insights objects, counted at once.

    Args:
        insights: Insights objects.
        scope: The row's scope.
    """
    tally = Tally()
    for item in insights:
        add(tally, item)
    return aggregate_row(tally, scope)

