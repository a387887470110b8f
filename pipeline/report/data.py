"""The data of report.json: the run's counters and durable accounting (see
``pipeline.report.reconcile``) plus one entry per Bedrock job, as plain JSON.

Pure (no Beam, no AWS): the launcher hands in the counters it summed, the job summaries that
ListModelInvocationJobs returned and the token counts of each job's manifest.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Iterable, Mapping, Protocol

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from pipeline.pricing import estimate_cost
from pipeline.report.reconcile import Accounting, open_job_text
from transforms.core.bedrock import job_id_from_arn
from transforms.core.layout import window_key
from transforms.core.storage import join
from transforms.jobs.results import Manifest

VERSION = 1
# Counters of the rows out per time window: window.<window key>.<summaries|failures|
# summaries_rejected>.
WINDOW_PREFIX = "window."
# Job names are bb-<run id>-<group key>-a<attempt>-...: the group key is "g" (global window),
# "w<epoch seconds>" (a window's start) with "p<pane>" for later panes, or "c..." for the tails
# carried to the next window. Names too long for Bedrock are hashed and lose it.
_GROUP = re.compile(r"(?P<key>g|w\d+|c[a-z0-9]*?)(?:p\d+)?-a\d+-")


class RunCounts(Protocol):
    """What the report needs of ``pipeline.running.outcome.Report`` (kept as a protocol so this
    module imports no Beam)."""

    run_id: str
    counters: Mapping[str, int]
    written: tuple[str, ...]

    @property
    def records_in(self) -> int: ...
    @property
    def summaries(self) -> int: ...
    @property
    def failures(self) -> int: ...
    @property
    def unaccounted(self) -> int: ...
    @property
    def accounting(self) -> Accounting: ...
    def failures_by_cause(self) -> list[tuple[str, str, int]]: ...
    def exit_code(self) -> int: ...
    def cost(self, model_id: str) -> tuple[float, float] | None: ...
    def verdict(self) -> str: ...


_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_NUMBER_OR_NULL = {"type": ["number", "null"]}
_TEXT = {"type": "string"}
_TEXT_OR_NULL = {"type": ["string", "null"]}


def _object(**fields: Any) -> dict[str, Any]:
    return {"type": "object", "required": list(fields), "properties": fields}


# What report.json must hold for the page to be drawn from it (``report_data`` writes more).
REPORT_SCHEMA: dict[str, Any] = _object(
    version={"const": VERSION}, run_id=_TEXT, generated_at=_TEXT, model_id=_TEXT,
    exit_code=_INT, verdict=_TEXT,
    records=_object(**{name: _INT for name in ("in", "summaries", "failures", "unaccounted")}),
    failures_by_cause={"type": "array", "items": _object(stage=_TEXT, code=_TEXT, count=_INT)},
    tokens=_object(input_tokens=_INT, output_tokens=_INT),
    cost_usd={**_object(total={"type": "number"}), "type": ["object", "null"]},
    written={"type": "array", "items": _TEXT},
    jobs={"type": "array", "items": _object(
        name=_TEXT, arn=_TEXT, status=_TEXT, message=_TEXT_OR_NULL, window=_TEXT_OR_NULL,
        submitted=_TEXT_OR_NULL, ended=_TEXT_OR_NULL, last_modified=_TEXT_OR_NULL,
        records=_INT_OR_NULL, records_succeeded=_INT_OR_NULL, records_failed=_INT_OR_NULL,
        input_tokens=_INT_OR_NULL, output_tokens=_INT_OR_NULL, cost_usd=_NUMBER_OR_NULL)},
    windows={"type": "array", "items": _object(
        window=_TEXT, jobs=_INT, summaries=_INT_OR_NULL, failures=_INT_OR_NULL,
        input_tokens=_INT_OR_NULL, output_tokens=_INT_OR_NULL, cost_usd=_NUMBER_OR_NULL)})
REPORT_SCHEMA["properties"].update(streaming={"type": "boolean"}, jobs_note=_TEXT_OR_NULL)
# Written since the report was reconciled with durable facts; optional, so older reports load.
REPORT_SCHEMA["properties"]["jobs"]["items"]["properties"].update(
    harvested={"type": "boolean"}, job_output=_TEXT_OR_NULL)
REPORT_SCHEMA["properties"]["accounting"] = _object(
    counted=_object(**{name: _INT for name in ("in", "summaries", "failures")}),
    ledger_files=_INT_OR_NULL, jobs_listed=_INT_OR_NULL,
    open_jobs={"type": "array", "items": _object(name=_TEXT, status=_TEXT, job_output=_TEXT_OR_NULL,
                                                 why=_TEXT)})
# The job times the timeline subtracts from each other: report_data writes them with a UTC offset.
_JOB_TIMES = ("submitted", "ended", "last_modified")


def _has_offset(text: str) -> bool:
    try:
        return dt.datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def report_problem(data: Any) -> str | None:
    """What keeps ``data`` (report.json as read) from being a run report, or None.

    Args:
        data: The parsed JSON.
    """
    error = best_match(Draft202012Validator(REPORT_SCHEMA).iter_errors(data))
    if error is not None:
        return f"{'.'.join(map(str, error.absolute_path)) or 'the top level'}: {error.message}"
    for number, job in enumerate(data["jobs"]):
        for name in _JOB_TIMES:
            if job[name] is not None and not _has_offset(job[name]):
                return f"jobs.{number}.{name}: {job[name]!r} is no ISO 8601 time with a UTC offset"
    return None


def _iso(value: Any) -> str | None:
    """An API timestamp (datetime from boto3, or already a string) as ISO 8601 UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc).isoformat()
    return str(value)


def window_counter(start: dt.datetime, name: str) -> str:
    """The name of the counter of ``name`` rows in the window starting at ``start``.

    Args:
        start: The window's start (UTC).
        name: What is counted: ``summaries``, ``failures`` or ``summaries_rejected``.
    """
    return f"{WINDOW_PREFIX}{window_key(start)}.{name}"


def _window_label(key: str) -> str:
    """A window key ("g", "w<epoch seconds>", "c...") as the report shows it."""
    if key.startswith("w") and key[1:].isdigit():
        return dt.datetime.fromtimestamp(int(key[1:]), dt.timezone.utc).isoformat()
    return {"g": "global"}.get(key, "carried" if key.startswith("c") else "unknown")


def window_of(job_name: str, run_id: str) -> str:
    """The window a job's records came from, read from its deterministic name.

    Args:
        job_name: The Bedrock job name (``transforms.core.bedrock.job_name``).
        run_id: The run's id, whose prefix the name starts with.

    Returns:
        ``"global"`` for a batch run's single window, the window start as ISO 8601 UTC for a
        streaming window, ``"carried"`` for tails carried between windows, or ``"unknown"`` for
        a name that was hashed to fit Bedrock's length limit.
    """
    prefix = f"bb-{run_id}-"
    match = _GROUP.match(job_name[len(prefix):]) if job_name.startswith(prefix) else None
    return "unknown" if match is None else _window_label(match["key"])


def job_entry(summary: Mapping[str, Any], manifest: Manifest | None, run_id: str) -> dict[str, Any]:
    """One job of the report from its ListModelInvocationJobs summary and its manifest.

    Args:
        summary: A ``ModelInvocationJobSummary`` as boto3 returns it (or GetModelInvocationJob's
            response): name, ARN, status, times and record counts.
        manifest: The job's ``manifest.json.out`` (token counts), or None when the job wrote
            none (it failed, or is still running).
        run_id: The run's id, to tell the job's window from its name.

    Returns:
        The job as report.json holds it. Bedrock reports when a job was submitted, last changed
        and ended, but not when it began running, so the report has no start time.
    """
    model_id = summary.get("modelId", "")
    tokens_in = manifest.input_tokens if manifest else None
    tokens_out = manifest.output_tokens if manifest else None
    cost = (estimate_cost(model_id, tokens_in, tokens_out)
            if tokens_in is not None and tokens_out is not None else None)
    total = summary.get("totalRecordCount", manifest.total if manifest else None)
    output = summary.get("outputDataConfig", {}).get("s3OutputDataConfig", {}).get("s3Uri")
    return {
        "name": summary["jobName"],
        "arn": summary["jobArn"],
        "window": window_of(summary["jobName"], run_id),
        "status": summary["status"],
        "message": summary.get("message"),
        "model_id": model_id,
        "submitted": _iso(summary.get("submitTime")),
        "ended": _iso(summary.get("endTime")),
        "last_modified": _iso(summary.get("lastModifiedTime")),
        "expires": _iso(summary.get("jobExpirationTime")),
        "records": total,
        "records_succeeded": summary.get("successRecordCount",
                                         manifest.success if manifest else None),
        "records_failed": summary.get("errorRecordCount", manifest.error if manifest else None),
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "cost_usd": cost,
        # Where Bedrock writes the job's output files: what `collect --job-output` takes.
        "job_output": (join(output, job_id_from_arn(summary["jobArn"])) + "/"
                       if output else None),
    }


def _sum(values: Iterable[Any]) -> Any:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def windows(jobs: Iterable[Mapping[str, Any]], counters: Mapping[str, int]
            ) -> list[dict[str, Any]]:
    """Per-window rows out (from the window counters) and job totals (records, tokens, cost),
    in window order.

    Args:
        jobs: Job entries from ``job_entry``.
        counters: The run's counters, with ``window_counter`` ones for a windowed run.
    """
    by_window: dict[str, list[Mapping[str, Any]]] = {}
    for job in jobs:
        by_window.setdefault(job["window"], []).append(job)
    rows: dict[str, dict[str, int]] = {}
    for name, count in counters.items():
        if name.startswith(WINDOW_PREFIX):
            key, _, what = name[len(WINDOW_PREFIX):].partition(".")
            rows.setdefault(_window_label(key), {})[what] = count
    # Rows are counted per time window only: a global window's are the run's totals.
    return [{"window": window, "jobs": len(by_window.get(window, [])),
             # A summary its table rejected (BigQuery) was written again as a failure row.
             "summaries": (rows[window].get("summaries", 0)
                           - rows[window].get("summaries_rejected", 0)) if window in rows else None,
             "failures": rows[window].get("failures", 0) if window in rows else None,
             **{key: _sum(j[key] for j in by_window.get(window, []))
                for key in ("records_succeeded", "records_failed", "input_tokens",
                            "output_tokens", "cost_usd")}}
            for window in sorted(set(by_window) | set(rows))]


def report_data(report: RunCounts, model_id: str, jobs: list[dict[str, Any]], *,
                streaming: bool = False, jobs_note: str | None = None,
                generated_at: dt.datetime | None = None,
                insights_aggregate: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything report.json holds, from the run's counters and its jobs.

    Args:
        report: The run's accounting (``pipeline.running.outcome.Report``), counted at the source.
        model_id: The model the run used, for the cost estimate.
        jobs: Job entries from ``job_entry``, in submission order.
        streaming: Whether the run was a streaming one (the page then shows per-window charts).
        jobs_note: Why ``jobs`` may be incomplete (e.g. the service could not be asked), or None.
        generated_at: When the report was made (default: now).
        insights_aggregate: The aggregate of the run's insights rows, when there is one.
    """
    cost = report.cost(model_id)
    data: dict[str, Any] = {
        "version": VERSION,
        "run_id": report.run_id,
        "generated_at": _iso(generated_at or dt.datetime.now(dt.timezone.utc)),
        "model_id": model_id,
        "streaming": streaming,
        "exit_code": report.exit_code(),
        "verdict": " ".join(report.verdict().split()),  # without the console's column padding
        "records": {"in": report.records_in, "summaries": report.summaries,
                    "failures": report.failures, "unaccounted": report.unaccounted,
                    "cut_at_max_tokens": report.counters.get("summaries_truncated", 0)},
        "failures_by_cause": [{"stage": stage, "code": code, "count": count}
                              for stage, code, count in report.failures_by_cause()],
        "tokens": {name: report.counters.get(name, 0)
                   for name in ("input_tokens", "output_tokens", "on_demand_calls",
                                "on_demand_input_tokens", "on_demand_output_tokens")},
        "cost_usd": (None if cost is None else
                     {"batch": cost[0], "on_demand": cost[1], "total": cost[0] + cost[1]}),
        "written": list(report.written),
        "counters": dict(sorted(report.counters.items())),
        "jobs": jobs,
        "jobs_note": jobs_note,
        "windows": windows(jobs, report.counters),
    }
    books = report.accounting
    data["accounting"] = {
        "counted": {"in": books.counted_in, "summaries": books.counted_summaries,
                    "failures": books.counted_failures},
        "ledger_files": books.ledger_files,
        "jobs_listed": books.jobs,
        "open_jobs": [{"name": job.name, "status": job.status, "job_output": job.job_output,
                       "why": open_job_text(job, model_id)} for job in books.open_jobs],
    }
    if insights_aggregate is not None:
        data["insights_aggregate"] = dict(insights_aggregate)
    return data
