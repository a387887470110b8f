"""report.html: one self-contained page (plotly.js inlined, so it opens with no network)."""
from __future__ import annotations

import html
import json
from typing import Any, Mapping

from pipeline.report.charts import Chart, charts

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.verdict { padding: .6rem 1rem; border-radius: 6px; background: #e8f5e9; }
.verdict.bad { background: #ffebee; }
.tiles { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.tile { border: 1px solid #ddd; border-radius: 6px; padding: .6rem 1rem; min-width: 8rem; }
.tile b { display: block; font-size: 1.4rem; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { border-bottom: 1px solid #eee; padding: .3rem .5rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #666; font-size: .9rem; }
.chart { min-height: 240px; }
"""


def _tile(label: str, value: Any) -> str:
    return f'<div class="tile">{html.escape(label)}<b>{html.escape(str(value))}</b></div>'


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.4f}"


def _chart(chart: Chart) -> str:
    parts = [f"<h2>{html.escape(chart.title)}</h2>"]
    if chart.figure is not None:
        parts.append(f'<div class="chart" id="{chart.id}"></div>')
    if chart.note:
        parts.append(f'<p class="note">{html.escape(chart.note)}</p>')
    return "\n".join(parts)


def _time(value: str | None) -> str:
    """An ISO 8601 UTC time as the table shows it: to the second, without the offset (a window
    name such as "global" stays as it is)."""
    return value[:19].replace("T", " ") if value else "-"


def _jobs_table(jobs: list[Mapping[str, Any]]) -> str:
    head = ("job", "job id", "status", "window", "submitted (UTC)", "ended (UTC)", "records",
            "answered", "errored", "input tokens", "output tokens", "cost")
    rows = []
    for job in jobs:
        status = f"{job['status']}: {job['message']}" if job["message"] else job["status"]
        cells = [job["name"], job["arn"].rsplit("/", 1)[-1], status, _time(job["window"]),
                 _time(job["submitted"]), _time(job["ended"])]
        numbers = [job["records"], job["records_succeeded"], job["records_failed"],
                   job["input_tokens"], job["output_tokens"]]
        arn = html.escape(job["arn"])
        row = ("".join(f'<td title="{arn}">{html.escape(c)}</td>' for c in cells[:2])  # name, id
               + "".join(f"<td>{html.escape(c)}</td>" for c in cells[2:]))
        rows.append("<tr>" + row
                    + "".join(f'<td class="n">{"-" if n is None else n}</td>' for n in numbers)
                    + f'<td class="n">{_money(job["cost_usd"])}</td></tr>')
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


def _insights_note(aggregate: Any) -> str:
    """The plain numbers and texts of the insights aggregate (its breakdowns are charts)."""
    if not isinstance(aggregate, Mapping):
        return ""
    scalars = [f"{str(name).replace('_', ' ')}: {value:.3g}" if isinstance(value, float)
               else f"{str(name).replace('_', ' ')}: {value}"
               for name, value in aggregate.items() if isinstance(value, (int, float, str))]
    return f'<p class="note">insights: {html.escape(", ".join(scalars))}</p>' if scalars else ""


def render(data: Mapping[str, Any], plotly_js: str) -> str:
    """The whole page for one run's report data.

    Args:
        data: The report data (report.json).
        plotly_js: The plotly.js bundle to inline (``plotly.offline.get_plotlyjs()``).
    """
    records, cost = data["records"], data["cost_usd"]
    page_charts = charts(data)
    figures = {c.id: c.figure for c in page_charts if c.figure is not None}
    bad = " bad" if data["exit_code"] else ""
    title = f"Bedrock batch run {data['run_id']}"
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">model {html.escape(data["model_id"])} · report made '
        f'{html.escape(data["generated_at"])}</p>',
        f'<p class="verdict{bad}">{html.escape(data["verdict"])}</p>',
        # Jobs the run never harvested, each with what collects it (older reports have none).
        *(f'<p class="verdict bad">NOT ACCOUNTED: {html.escape(job["why"])}</p>'
          for job in data.get("accounting", {}).get("open_jobs", [])),
        '<div class="tiles">',
        _tile("records in", records["in"]), _tile("summaries", records["summaries"]),
        _tile("failure rows", records["failures"]), _tile("jobs", len(data["jobs"])),
        _tile("tokens in / out", f"{data['tokens']['input_tokens']} / "
                                 f"{data['tokens']['output_tokens']}"),
        _tile("estimated cost", _money(cost["total"]) if cost else "n/a"),
        "</div>",
        f'<p class="note">written to {html.escape(", ".join(data["written"]) or "nothing")}</p>',
        *(_chart(c) for c in page_charts),
        _insights_note(data.get("insights_aggregate")),
        "<h2>Jobs</h2>",
        _jobs_table(data["jobs"]) if data["jobs"] else '<p class="note">No Bedrock job ran.</p>',
    ]
    if data.get("jobs_note"):
        body.append(f'<p class="note">{html.escape(data["jobs_note"])}</p>')
    # "</" inside a script would end it early: JSON escapes it as "<\/".
    specs = json.dumps(figures).replace("</", "<\\/")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style>
<script>{plotly_js}</script></head>
<body>
{chr(10).join(body)}
<script>
const figures = {specs};
for (const [id, figure] of Object.entries(figures)) {{
  Plotly.newPlot(id, figure.data, figure.layout, {{responsive: true, displaylogo: false}});
}}
</script>
</body></html>
"""
