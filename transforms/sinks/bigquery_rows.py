"""BigQuery sink logic with no Beam import: table names, insert rows, rejected rows -> Failure.

``transforms/sinks/bigquery.py`` wraps these in Beam transforms.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping, Sequence

from transforms.core.errors import ConfigError
from transforms.core.model import Failure, truncate_raw
from transforms.insights.columns import Column
from transforms.sinks.schema import fields_for, json_row

# A row BigQuery rejects is filed under model.STAGES' "sink" stage; raw holds the rejected row.
REJECTED_STAGE = "sink"
REJECTED_CODE = "BigQueryInsertFailed"

# "project:dataset.table"; a project id may carry a legacy domain prefix ("example.com:proj").
_TABLE = re.compile(r"(?P<project>[a-z][a-z0-9.:-]{4,61}[a-z0-9]):(?P<dataset>[A-Za-z0-9_]{1,1024})"
                    r"\.(?P<table>[^\s.:`]{1,1024})")


def parse_table(table: str) -> tuple[str, str, str]:
    """Split ``project:dataset.table`` into its parts; a one-line ValueError names the fix.

    Args:
        table: The table name as ``project:dataset.table``.
    """
    match = _TABLE.fullmatch(table or "")
    if match is None:
        raise ConfigError(f"BigQuery table {table!r} is not 'project:dataset.table' "
                          "(e.g. 'my-project:calls.summaries')", "table")
    return match["project"], match["dataset"], match["table"]


class InsertRows:
    """Summary / Failure elements (or row dicts of that kind) -> insertAll JSON rows.

    Args:
        kind: "summaries" or "failures".
        insights: The typed insights column of summaries (``--task insights``), sent as a
            nested object; None for none.
    """

    def __init__(self, kind: str, insights: Column | None = None) -> None:
        self.kind = kind
        self.fields = fields_for(kind)
        self.insights = insights

    def __call__(self, element: Any) -> dict[str, Any]:
        row = element.to_row() if hasattr(element, "to_row") else element
        # Timestamps as ISO 8601 strings: what insertAll accepts for TIMESTAMP columns; a null
        # array as [], since a REPEATED field cannot be null.
        return json_row(self.fields, row, self.insights, null_arrays=False)


def describe_errors(errors: Sequence[Mapping[str, Any]]) -> str:
    """insertAll's per-row error list as one line: ``reason at location: message; ...``.

    Args:
        errors: The ``errors`` of one row in an insertAll answer.
    """
    parts = []
    for error in errors:
        text = (error.get("reason") or "error") + (f" at {error['location']}" if error.get("location") else "")
        parts.append(f"{text}: {error['message']}" if error.get("message") else text)
    return "; ".join(parts) or "no error detail returned"


def rejected_failure(table: str, row: Mapping[str, Any], errors: Sequence[Mapping[str, Any]]) -> Failure:
    """The Failure row for a row BigQuery did not accept, keeping the row's ids and attempt.

    Args:
        table: The table that refused the row.
        row: The insert row it refused.
        errors: Its insertAll errors.
    """
    attempt = row.get("attempt")
    return Failure(
        stage=REJECTED_STAGE, error_code=REJECTED_CODE,
        error_message=f"BigQuery rejected the row for {table}: {describe_errors(errors)}",
        transcript_id=row.get("transcript_id"), record_id=row.get("record_id"),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
        job_arn=row.get("job_arn"), origin=row.get("origin"),
        raw=truncate_raw(json.dumps(dict(row), ensure_ascii=False, sort_keys=True)))
