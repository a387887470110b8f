"""Print a few insight rows and the insights aggregate of a finished run as small tables
(what `make demo` shows after its run).

    python -m pipeline.samples.show out/demo [--rows 5]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from typing import Any, Mapping, Sequence

DEFAULT_ROWS = 5


def _counts(counts: Mapping[str, int], limit: int = 6) -> str:
    shown = [f"{name} {n}" for name, n in list(counts.items())[:limit]]
    more = len(counts) - limit
    return ", ".join(shown) + (f", ... ({more} more)" if more > 0 else "") if shown else "-"


def _sentiment(value: Mapping[str, Any] | None) -> str:
    if not value or value.get("start") is None or value.get("end") is None:
        return "-"
    return f"{value['start']:+.2f} -> {value['end']:+.2f}"


def demo_lines(rows: Sequence[Mapping[str, Any]], aggregate: Mapping[str, Any] | None,
               limit: int = DEFAULT_ROWS) -> list[str]:
    """A few insight rows and the overall aggregate as readable text lines.

    Args:
        rows: Summary rows (dicts with ``transcript_id`` and ``insights``); rows without
            insights are skipped.
        aggregate: The overall AggregateInsights row, or None.
        limit: How many insight rows to show.
    """
    with_insights = sorted((r for r in rows if r.get("insights")),
                           key=lambda r: r["transcript_id"])
    if not with_insights:
        return ["no insight rows: the run's task was not insights (run it with --task insights)"]
    lines = [f"insight rows ({min(limit, len(with_insights))} of {len(with_insights)})",
             f"{'transcript':<12} {'reason':<16} {'resolution':<19} {'sentiment':<15} "
             f"{'actions':>7}  topics"]
    for row in with_insights[:limit]:
        insights = row["insights"]
        reason = (insights.get("reason_for_call") or {}).get("category") or "-"
        lines.append(f"{row['transcript_id']:<12} {reason:<16} "
                     f"{insights.get('resolution') or '-':<19} "
                     f"{_sentiment(insights.get('customer_sentiment')):<15} "
                     f"{len(insights.get('action_items') or []):>7}  "
                     f"{', '.join(insights.get('topics') or []) or '-'}")
    if aggregate is None:
        return lines + ["", "no insights aggregate was written (file sinks write it)"]
    rate, change = aggregate["resolution_rate"], aggregate["mean_sentiment_change"]
    lines += [
        "",
        f"aggregate over {aggregate['calls']} calls",
        f"  resolution rate        {'-' if rate is None else f'{rate:.0%}'}  "
        f"({_counts(aggregate['by_resolution'])})",
        f"  mean sentiment change  {'-' if change is None else f'{change:+.2f}'}",
        f"  by reason              {_counts(aggregate['by_reason'])}",
        f"  top topics             {_counts(aggregate['by_topic'])}",
        f"  open action items      {_counts(aggregate['open_action_items_by_owner'])}",
    ]
    return lines


def read_summaries(directory: str) -> list[dict[str, Any]]:
    """Every summary row written under ``directory`` (Parquet, JSONL or Avro files).

    Args:
        directory: A run's ``summaries/`` folder.
    """
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(directory, "*"))):
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq
            rows += pq.read_table(path).to_pylist()
        elif path.endswith(".jsonl"):
            with open(path, encoding="utf-8") as fh:
                rows += [json.loads(line) for line in fh if line.strip()]
        elif path.endswith(".avro"):
            import fastavro
            with open(path, "rb") as fh:
                rows += list(fastavro.reader(fh))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the tables for the run output folder given on the command line."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.samples.show",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("output", help="the run's --output folder")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="insight rows to show")
    args = parser.parse_args(argv)
    summaries = os.path.join(args.output, "summaries")
    if not os.path.isdir(summaries):
        parser.error(f"{summaries} does not exist: give the --output folder of a finished run")
    overall = os.path.join(args.output, "insights_aggregate", "overall.jsonl")
    aggregate = None
    if os.path.exists(overall):
        with open(overall, encoding="utf-8") as fh:
            aggregate = json.loads(fh.read())
    print("\n".join(demo_lines(read_summaries(summaries), aggregate, args.rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
