"""The run report's files: the run's jobs from the Bedrock service, the durable records the run
keeps under its S3 prefix (the source ledger, the harvest markers), and report.json and
report.html written and read through Beam's FileSystems (so an s3:// output gets its report too)."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping

from apache_beam.io.filesystems import FileSystems
from plotly.offline import get_plotlyjs

from pipeline.exit_codes import UsageError
from pipeline.report.data import job_entry, report_problem
from pipeline.report.page import render
from transforms.core.bedrock import job_id_from_arn, run_prefix
from transforms.core.storage import Storage, join
from transforms.jobs.results import MANIFEST_NAME, Manifest
from transforms.sources.source_ledger import SUFFIX as LEDGER_SUFFIX, LedgerEntry, parse_entry

log = logging.getLogger(__name__)

JSON_NAME = "report.json"
HTML_NAME = "report.html"


def _manifest(storage: Storage, summary: Mapping[str, Any]) -> Manifest | None:
    output = summary.get("outputDataConfig", {}).get("s3OutputDataConfig", {}).get("s3Uri")
    if not output:
        return None
    uri = join(output, job_id_from_arn(summary["jobArn"]), MANIFEST_NAME)
    if not storage.exists(uri):  # a failed or unfinished job has written none
        return None
    return Manifest.parse(storage.read_text(uri))


def run_jobs(bedrock: Any, s3: Any, run_id: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The run's jobs as the Bedrock service reports them now, with each manifest's tokens.

    One ListModelInvocationJobs listing of the run's name prefix gives names, ARNs, status,
    times and record counts; each finished job's manifest.json.out gives its tokens. The report
    comes after the rows are written, so a service that cannot be asked leaves the jobs out
    with a note instead of failing the run.

    Args:
        bedrock: A boto3 ``bedrock`` client.
        s3: A boto3 ``s3`` client, for the manifests.
        run_id: The run whose jobs to list.

    Returns:
        (job entries in submission order, or None when the service could not be asked; a note
        saying what is missing, or None).
    """
    prefix = run_prefix(run_id)
    storage = Storage(s3)
    jobs, unreadable = [], []
    try:
        pages = bedrock.get_paginator("list_model_invocation_jobs").paginate(
            nameContains=prefix, sortBy="CreationTime", sortOrder="Ascending")
        summaries = [s for page in pages for s in page.get("invocationJobSummaries", [])
                     if s["jobName"].startswith(prefix)]  # nameContains matches anywhere
    except Exception as exc:  # botocore errors: access denied, endpoint down, ...
        log.warning("run report: could not list the jobs of run %s: %s", run_id, exc)
        return None, f"The jobs could not be listed ({type(exc).__name__}: {exc})."
    for summary in summaries:
        try:
            manifest = _manifest(storage, summary)
        except Exception as exc:  # an unreadable manifest costs the tokens of one job only
            log.warning("run report: no tokens for job %s: %s", summary["jobName"], exc)
            unreadable.append(summary["jobName"])
            manifest = None
        jobs.append(job_entry(summary, manifest, run_id))
    note = (f"The manifests of {', '.join(unreadable)} could not be read: their tokens are "
            f"missing." if unreadable else None)
    return jobs, note


def read_ledger(storage: Storage, prefix: str) -> tuple[LedgerEntry, ...]:
    """The source ledger's entries under ``prefix``
    (``transforms.core.layout.source_ledger_prefix``).

    Args:
        storage: Where the run keeps its files.
        prefix: The ledger's prefix.

    Raises:
        ValueError: An object there is no ledger entry.
    """
    return tuple(parse_entry(storage.read_text(uri)) for uri in storage.list(prefix)
                 if uri.endswith(LEDGER_SUFFIX))


def harvested_jobs(storage: Storage, prefix: str) -> frozenset[str]:
    """The names of the jobs the run harvested: its markers under ``prefix``
    (``transforms.core.layout.harvested_prefix``).

    Args:
        storage: Where the run keeps its files.
        prefix: The markers' prefix.
    """
    return frozenset(uri[len(prefix):] for uri in storage.list(prefix))


def _write(path: str, text: str) -> None:
    if "://" not in path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with FileSystems.create(path) as handle:
        handle.write(text.encode("utf-8"))


def write_report(directory: str, data: Mapping[str, Any]) -> str:
    """Write report.json and report.html into ``directory``; returns report.html's path.

    Args:
        directory: A local folder or any Beam filesystem path (s3://...).
        data: The report data (``pipeline.report.data.report_data``).
    """
    _write(join(directory, JSON_NAME), json.dumps(data, indent=2, sort_keys=True) + "\n")
    html_path = join(directory, HTML_NAME)
    _write(html_path, render(data, get_plotlyjs()))
    return html_path


def rebuild(directory: str) -> str:
    """Write ``directory``/report.html again from its report.json; returns the page's path.

    Args:
        directory: A run's report folder (its --output for file sinks, or its --report-dir).

    Raises:
        UsageError: ``directory`` holds no report.json, or one that is no run report; nothing
            is written then.
    """
    json_path = join(directory, JSON_NAME)
    if not FileSystems.exists(json_path):
        raise UsageError(f"{json_path} does not exist: pass the folder of a run's report (its "
                         f"--output, or its --report-dir)")
    with FileSystems.open(json_path) as handle:
        content = handle.read()
    fix = "restore it from a copy, or rerun the run with the same --run-id, which writes it again"
    try:
        data = json.loads(content.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # not UTF-8, not JSON, nested too deep
        raise UsageError(f"{json_path} is not valid JSON ({type(exc).__name__}: "
                         f"{exc}); {fix}") from None
    problem = report_problem(data)
    if problem is not None:
        raise UsageError(f"{json_path} is not a run report ({problem}); {fix}")
    html_path = join(directory, HTML_NAME)
    _write(html_path, render(data, get_plotlyjs()))
    return html_path
