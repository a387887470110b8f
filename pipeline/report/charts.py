"""Plotly figure specs for report.html, from report.json's data.

Pure: each chart is a plain plotly figure dict ({"data": [...], "layout": {...}}) that plotly.js
draws in the page, so the specs are tested without a browser.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

# One colour per job status, so the timeline reads at a glance (failures in warm colours).
STATUS_COLORS = {
    "Completed": "#2ca02c", "PartiallyCompleted": "#bcbd22", "InProgress": "#1f77b4",
    "Submitted": "#aec7e8", "Validating": "#aec7e8", "Scheduled": "#9edae5",
    "Stopping": "#ff9896", "Stopped": "#ff7f0e", "Expired": "#8c564b", "Failed": "#d62728",
}
_LAYOUT = {"margin": {"l": 60, "r": 70, "t": 40, "b": 60}, "height": 360,
           "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom"}}


@dataclass(frozen=True)
class Chart:
    """One chart of the page.

    Args:
        id: The HTML id of its element.
        title: Its heading.
        figure: The plotly figure dict, or None when there is nothing to draw.
        note: Shown instead of the figure when there is nothing to draw, or under it.
    """

    id: str
    title: str
    figure: Mapping[str, Any] | None
    note: str | None = None


def _layout(**extra: Any) -> dict[str, Any]:
    return {**_LAYOUT, **extra}


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def timeline(jobs: list[Mapping[str, Any]]) -> Chart:
    """Each job as a bar from submitted to ended (to its last change while it has not ended),
    coloured by status.

    Args:
        jobs: report.json's job entries.
    """
    traces: dict[str, dict[str, Any]] = {}
    for job in jobs:
        start = _parse(job["submitted"])
        end = _parse(job["ended"] or job["last_modified"])
        if start is None or end is None:
            continue
        trace = traces.setdefault(job["status"], {
            "type": "bar", "orientation": "h", "name": job["status"], "x": [], "y": [],
            "base": [], "text": [], "hoverinfo": "text", "textposition": "none",
            "marker": {"color": STATUS_COLORS.get(job["status"], "#7f7f7f")}})
        trace["base"].append(job["submitted"])
        trace["x"].append(max((end - start).total_seconds() * 1000, 1.0))  # ms on a date axis
        trace["y"].append(job["name"])
        trace["text"].append(f"{job['name']}<br>{job['status']}<br>submitted {job['submitted']}"
                             f"<br>{'ended' if job['ended'] else 'last change'} "
                             f"{job['ended'] or job['last_modified']}<br>"
                             f"records {job['records']}"
                             + (f"<br>{job['message']}" if job["message"] else ""))
    if not traces:
        return Chart("timeline", "Job timeline", None, "No Bedrock job ran.")
    return Chart("timeline", "Job timeline", {
        "data": list(traces.values()),
        "layout": _layout(xaxis={"type": "date", "title": {"text": "time (UTC)"}},
                          yaxis={"automargin": True, "autorange": "reversed"},
                          barmode="overlay", showlegend=True,
                          height=max(260, 120 + 28 * len(jobs)))},
        "Bars run from submission to the end (Bedrock reports no start time).")


def outcomes(records: Mapping[str, int]) -> Chart:
    """Records in against the rows out: summaries, failure rows and any not accounted for.

    Args:
        records: report.json's ``records`` section.
    """
    labels = ["records in", "summaries", "failure rows"]
    values = [records["in"], records["summaries"], records["failures"]]
    colors = ["#7f7f7f", "#2ca02c", "#d62728"]
    if records["unaccounted"]:
        # Positive: records lost; negative: more rows out than records in.
        labels.append("not accounted for" if records["unaccounted"] > 0
                      else "rows out beyond records in")
        values.append(abs(records["unaccounted"]))
        colors.append("#9467bd")
    return Chart("outcomes", "Records by outcome", {
        "data": [{"type": "bar", "x": labels, "y": values, "text": values,
                  "textposition": "auto", "marker": {"color": colors}}],
        "layout": _layout(yaxis={"title": {"text": "records"}})})


def failures(causes: list[Mapping[str, Any]]) -> Chart:
    """Failure rows per error code, one colour per stage.

    Args:
        causes: report.json's ``failures_by_cause`` ({stage, code, count}).
    """
    if not causes:
        return Chart("failures", "Failures by stage and code", None, "No failure rows.")
    by_stage: dict[str, dict[str, Any]] = {}
    per_code: dict[str, int] = {}
    for cause in causes:
        per_code[cause["code"]] = per_code.get(cause["code"], 0) + cause["count"]
        trace = by_stage.setdefault(cause["stage"], {"type": "bar", "name": cause["stage"],
                                                     "x": [], "y": []})
        trace["x"].append(cause["code"])
        trace["y"].append(cause["count"])
    max_stack = max(per_code.values())
    return Chart("failures", "Failures by stage and code", {
        "data": list(by_stage.values()),
        # Whole rows: with few of them plotly would otherwise tick 0.2, 0.4, ...
        "layout": _layout(barmode="stack", yaxis={"title": {"text": "failure rows"},
                                                   "rangemode": "tozero", "tickformat": "d",
                                                   "dtick": max(1, max_stack // 10)})})


def _tokens_and_cost(chart_id: str, title: str, labels: list[str],
                     rows: list[Mapping[str, Any]], axis_title: str) -> Chart:
    if not rows:
        return Chart(chart_id, title, None, "No Bedrock job ran.")
    data: list[dict[str, Any]] = [
        {"type": "bar", "name": "input tokens", "x": labels,
         "y": [r["input_tokens"] for r in rows], "marker": {"color": "#1f77b4"}},
        {"type": "bar", "name": "output tokens", "x": labels,
         "y": [r["output_tokens"] for r in rows], "marker": {"color": "#aec7e8"}}]
    note = None
    if any(r["cost_usd"] is not None for r in rows):
        data.append({"type": "scatter", "mode": "markers", "name": "estimated cost (USD)",
                     "x": labels, "y": [r["cost_usd"] for r in rows], "yaxis": "y2",
                     "marker": {"size": 12, "color": "#ff7f0e",
                                                   "line": {"width": 1, "color": "#222"}}})
    else:
        note = "No cost estimate: the model has no listed price, or no job wrote a manifest."
    return Chart(chart_id, title, {
        "data": data,
        "layout": _layout(barmode="group", xaxis={"title": {"text": axis_title},
                                                  "automargin": True},
                          yaxis={"title": {"text": "tokens"}},
                          yaxis2={"title": {"text": "USD"}, "overlaying": "y", "side": "right",
                                  "rangemode": "tozero", "tickprefix": "$",
                                  "tickformat": ".4~f"})}, note)


def tokens_per_job(jobs: list[Mapping[str, Any]]) -> Chart:
    """Input and output tokens per job (from its manifest), with its estimated cost.

    Args:
        jobs: report.json's job entries.
    """
    return _tokens_and_cost("tokens", "Tokens and cost per job", [j["name"] for j in jobs],
                            jobs, "job")


def window_records(windows: list[Mapping[str, Any]]) -> Chart:
    """Summaries and failure rows written per window, stacked.

    Args:
        windows: report.json's ``windows`` section.
    """
    counted = [w for w in windows if w["summaries"] is not None]
    if not counted:
        return Chart("window-records", "Records by outcome per window", None,
                     "No rows were counted per window.")
    labels = [w["window"] for w in counted]
    return Chart("window-records", "Records by outcome per window", {
        "data": [{"type": "bar", "name": "summaries", "x": labels,
                  "y": [w["summaries"] for w in counted], "marker": {"color": "#2ca02c"}},
                 {"type": "bar", "name": "failure rows", "x": labels,
                  "y": [w["failures"] for w in counted], "marker": {"color": "#d62728"}}],
        "layout": _layout(barmode="stack", xaxis={"title": {"text": "window start (UTC)"}},
                          yaxis={"title": {"text": "rows"}})})


def window_tokens(windows: list[Mapping[str, Any]]) -> Chart:
    """Tokens and estimated cost per window.

    Args:
        windows: report.json's ``windows`` section.
    """
    with_jobs = [w for w in windows if w["jobs"]]
    return _tokens_and_cost("window-tokens", "Tokens and cost per window",
                            [w["window"] for w in with_jobs], with_jobs, "window start (UTC)")


def insights(aggregate: Mapping[str, Any]) -> list[Chart]:
    """A bar chart per breakdown of the insights aggregate: each entry whose value maps labels
    to numbers (e.g. ``{"sentiment": {"positive": 3, "negative": 1}}``).

    Args:
        aggregate: report.json's ``insights_aggregate`` section.
    """
    charts = []
    for name, value in aggregate.items():
        if not isinstance(value, Mapping) or not value:
            continue
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            continue
        labels = [str(label) for label in value]
        title = f"Insights: {str(name).replace('_', ' ')}"  # by_reason -> by reason
        charts.append(Chart(f"insights-{len(charts)}", title, {
            "data": [{"type": "bar", "x": labels, "y": list(value.values()),
                      "marker": {"color": "#17becf"}}],
            "layout": _layout(yaxis={"title": {"text": str(name)}})}))
    return charts


def charts(data: Mapping[str, Any]) -> list[Chart]:
    """Every chart of the page, in order: jobs, records, failures, tokens, then per window
    (when jobs ran in more than one window, e.g. a streaming run) and insights (when the report
    has an ``insights_aggregate``).

    Args:
        data: The report data (report.json).
    """
    out = [timeline(data["jobs"]), outcomes(data["records"]),
           failures(data["failures_by_cause"]), tokens_per_job(data["jobs"])]
    if data.get("streaming") or len(data.get("windows", [])) > 1:
        out += [window_records(data["windows"]), window_tokens(data["windows"])]
    if isinstance(data.get("insights_aggregate"), Mapping):
        out += insights(data["insights_aggregate"])
    return out
