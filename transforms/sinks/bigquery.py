"""BigQuery sink for Summary / Failure rows: Beam's ``WriteToBigQuery`` with streaming inserts.

The table schema is ``transforms.sinks.schema.bigquery_schema`` of the row kind, and rows are sent
as ``json_row`` (timestamps as ISO 8601 strings). Rows BigQuery rejects come back from Beam's
``failed_rows_with_errors`` output and become Failure rows (``bigquery_rows.rejected_failure``):
nothing is dropped silently. With the default ``RETRY_ON_TRANSIENT_ERROR`` Beam retries rows
whose error is transient (timeouts, backend errors), up to ``transient_retries`` times per bundle
(10 unless set), and gives up on the others (invalid values, unknown fields).

Only ``STREAMING_INSERTS`` is offered, in batch too: Beam 2.70's ``FILE_LOADS`` has no
failed-rows output (a bad row fails the whole load job) and needs a ``gs://`` temp location.

Insert ids: Beam gives each row a random ``insertId`` (a new one on every attempt), so BigQuery
could not tell a replayed row from a new one. The sink replaces it with the row's own id,
``row_ids.insert_id``: ``<run id>-<row id>``, the row id taken from every column but
``created_at``. A streaming runner that restores a checkpoint and inserts a window's rows again
(Flink after a lost TaskManager), a retried bundle, or a rerun with the same run id sends each row
with the id of its first insert, and BigQuery's de-duplication can drop it. That de-duplication
is best effort and covers a short time only (about a minute, per its documentation): a copy
inserted later can stay. Rows carry no column naming their id; de-duplicate in a query
(one row per ``transcript_id``, ``record_id``, ``attempt`` and ``job_arn``) when it matters.

Unreachable BigQuery: google-cloud-bigquery retries a failing connection for 10 minutes per
insert call. The sink bounds that at ``unreachable_timeout_s`` (default 120 s) and then raises
``BigQueryUnreachable``, which fails the bundle and, on the DirectRunner, the run: nothing is
written as a failure row, since the failures table is unreachable too.

Endpoint and credentials: Beam builds its clients itself, so they come from the environment.
Inserts go through google-cloud-bigquery, which honours ``BIGQUERY_EMULATOR_HOST``; credentials
are Application Default Credentials (``GOOGLE_APPLICATION_CREDENTIALS``). Creating a missing
table (``CREATE_IF_NEEDED``) goes through Beam's apitools client, whose base URL is fixed to
bigquery.googleapis.com: against an emulator create the table first and use ``CREATE_NEVER``.
"""
from __future__ import annotations

from typing import Any, Mapping

import apache_beam as beam
from apache_beam.io.gcp.bigquery import BigQueryDisposition, WriteToBigQuery
from apache_beam.io.gcp.bigquery_tools import RetryStrategy
from apache_beam.utils.retry import PermanentException
from google.api_core.exceptions import RetryError

from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.model import Failure
from transforms.insights.columns import Column, insights_column
from transforms.sinks.bigquery_rows import InsertRows, parse_table, rejected_failure
from transforms.sinks.result import SinkResult, count_per_window, written_once
from transforms.sinks.row_ids import insert_id
from transforms.sinks.schema import bigquery_schema, fields_for

CREATE_DISPOSITIONS = (BigQueryDisposition.CREATE_IF_NEEDED, BigQueryDisposition.CREATE_NEVER)
WRITE_DISPOSITIONS = (BigQueryDisposition.WRITE_APPEND, BigQueryDisposition.WRITE_EMPTY)
RETRY_STRATEGIES = (RetryStrategy.RETRY_ON_TRANSIENT_ERROR, RetryStrategy.RETRY_NEVER,
                    RetryStrategy.RETRY_ALWAYS)


DEFAULT_UNREACHABLE_TIMEOUT_S = 120.0
# Beam's default (10,000 retries, backoff up to 25 minutes) never gives up on a row BigQuery keeps
# answering with a transient error; 10 retries back off for at most ~3.4 minutes per bundle.
DEFAULT_TRANSIENT_RETRIES = 10


class BigQueryUnreachable(PermanentException):
    """No answer from BigQuery within the sink's retry deadline; the bundle fails. Permanent, so
    Beam's own retry around the insert (3 more attempts) does not multiply the deadline."""


class _InsertClient:
    """The client Beam's streaming inserts use (``WriteToBigQuery(test_client=...)``), built on
    the worker on first use. ``insert_rows_json`` sends each row with its own insert id
    (``row_ids.insert_id``) instead of Beam's random one, through ``inner`` when given (a
    caller's ``insert_client``) or else google-cloud-bigquery with a retry deadline of
    ``timeout_s`` instead of its 10 minutes. Every other call (Beam's table lookups and creates)
    goes to ``inner``, or to the apitools client Beam would have built itself."""

    def __init__(self, timeout_s: float, run_id: str | None = None, inner: Any = None) -> None:
        self.timeout_s = timeout_s
        self.run_id = run_id
        self.inner = inner
        self._inserts: Any = None
        self._tables: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # Clients hold sockets and credentials; a caller's client travels as it is.
        return {"timeout_s": self.timeout_s, "run_id": self.run_id, "inner": self.inner}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["timeout_s"], state["run_id"], state["inner"])

    def insert_rows_json(self, table: str, json_rows: Any, **kwargs: Any) -> Any:
        kwargs["row_ids"] = [insert_id(row, self.run_id) for row in json_rows]
        if self.inner is not None:
            return self.inner.insert_rows_json(table, json_rows, **kwargs)
        from google.cloud import bigquery
        if self._inserts is None:
            self._inserts = bigquery.Client()
        try:
            return self._inserts.insert_rows_json(
                table, json_rows, retry=bigquery.DEFAULT_RETRY.with_deadline(self.timeout_s), **kwargs)
        except RetryError as exc:
            raise BigQueryUnreachable(
                f"BigQuery table {table}: no answer within {self.timeout_s:g}s "
                f"({exc.cause or exc}); rerun once it is reachable") from exc

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self.inner is not None:
            return getattr(self.inner, name)
        if self._tables is None:
            from apache_beam.io.gcp.bigquery_tools import BigQueryWrapper
            from apache_beam.options.pipeline_options import PipelineOptions
            # What BigQueryWrapper builds when it is given no client.
            self._tables = BigQueryWrapper._bigquery_client(PipelineOptions())
        return getattr(self._tables, name)


def _one_of(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"WriteRowsToBigQuery {name} {value!r} is not supported: use one of "
                          f"{list(allowed)}", name)
    return value


class _ToInsertRow(beam.DoFn):
    def __init__(self, kind: str, insights: Column | None) -> None:
        self.to_row = InsertRows(kind, insights)
        self.sent = counter(f"{kind}_rows_sent")

    def process(self, element: Any):
        row = self.to_row(element)
        self.sent.inc()
        yield row


class _ToFailure(beam.DoFn):
    def __init__(self, kind: str, table: str) -> None:
        self.table = table
        self.rejected = counter(f"{kind}_rows_rejected")

    def process(self, element: tuple[str, dict[str, Any], list[dict[str, Any]]]):
        _destination, row, errors = element
        self.rejected.inc()
        yield rejected_failure(self.table, row, errors)


class WriteRowsToBigQuery(beam.PTransform):
    """Write Summary or Failure rows (``kind``) to the BigQuery table ``project:dataset.table``.

    Input: elements with ``to_row()`` (Summary / Failure) or row dicts of that kind, bounded or
    unbounded. Output: a ``SinkResult`` whose ``failures`` hold one Failure (stage
    ``REJECTED_STAGE``, error_code ``BigQueryInsertFailed``, raw = the rejected row) per row
    BigQuery did not accept, ``counts`` the rows accepted per window (rows sent minus rows
    rejected), and ``written`` ``bigquery:<table>`` per window with accepted rows.
    ``insert_client`` replaces the google-cloud-bigquery client Beam builds (an object with its
    ``insert_rows_json``, e.g. a test fake); Beam then uses it for table calls too, so it needs
    ``CREATE_NEVER``. Either way each row is sent with its own insert id (``row_ids.insert_id``,
    scoped by ``run_id``), the same on every attempt: see the module docstring.
    ``unreachable_timeout_s`` bounds how long an insert retries a BigQuery that does not answer
    before ``BigQueryUnreachable`` fails the bundle (an ``insert_client`` keeps its own retries
    instead). ``transient_retries`` bounds the retries (per bundle, exponential
    backoff from 0.2 s) of rows BigQuery answers with a transient error; rows still failing then
    become Failures too. Delivery is at-least-once with BigQuery's best-effort insert-id
    de-duplication.

    Args:
        table: The table, ``project:dataset.table``.
        kind: ``summaries`` or ``failures``: which row schema the table has.
        create_disposition: One of ``CREATE_DISPOSITIONS``.
        write_disposition: One of ``WRITE_DISPOSITIONS``.
        retry_strategy: One of ``RETRY_STRATEGIES``: which insert errors Beam retries.
        insert_client: Replaces google-cloud-bigquery's client (see above); None for the real one.
        unreachable_timeout_s: Seconds an insert retries an unreachable BigQuery.
        transient_retries: Retries per bundle of rows BigQuery answers with a transient error.
        insights_schema: Summaries with ``--task insights``: the JSON Schema the ``insights``
            RECORD column is typed from (None: no such column).
        run_id: The run id every insert id starts with; None for row ids alone.
    """

    def __init__(self, table: str, kind: str = "summaries",
                 create_disposition: str = BigQueryDisposition.CREATE_IF_NEEDED,
                 write_disposition: str = BigQueryDisposition.WRITE_APPEND,
                 retry_strategy: str = RetryStrategy.RETRY_ON_TRANSIENT_ERROR,
                 insert_client: Any = None,
                 unreachable_timeout_s: float = DEFAULT_UNREACHABLE_TIMEOUT_S,
                 transient_retries: int = DEFAULT_TRANSIENT_RETRIES,
                 insights_schema: Mapping[str, Any] | None = None,
                 run_id: str | None = None) -> None:
        super().__init__()
        parse_table(table)
        fields_for(kind)
        if insights_schema is not None and kind != "summaries":
            raise ConfigError(f"insights_schema: only summaries carry insights; {kind} take none",
                              "insights_schema")
        self.insights = insights_column(insights_schema) if insights_schema is not None else None
        self.table = table
        self.kind = kind
        self.create_disposition = _one_of("create_disposition", create_disposition, CREATE_DISPOSITIONS)
        self.write_disposition = _one_of("write_disposition", write_disposition, WRITE_DISPOSITIONS)
        self.retry_strategy = _one_of("retry_strategy", retry_strategy, RETRY_STRATEGIES)
        if insert_client is not None and create_disposition != BigQueryDisposition.CREATE_NEVER:
            raise ConfigError("WriteRowsToBigQuery insert_client needs create_disposition="
                              "CREATE_NEVER (Beam would send table calls to it too)",
                              "insert_client", "create_disposition")
        if not unreachable_timeout_s > 0:
            raise ConfigError(f"WriteRowsToBigQuery unreachable_timeout_s must be positive, "
                              f"got {unreachable_timeout_s!r}", "unreachable_timeout_s")
        if not isinstance(transient_retries, int) or transient_retries < 0:
            raise ConfigError(f"WriteRowsToBigQuery transient_retries must be a whole number "
                              f">= 0, got {transient_retries!r}", "transient_retries")
        self.transient_retries = transient_retries
        self.insert_client = _InsertClient(float(unreachable_timeout_s), run_id, insert_client)

    def expand(self, pcoll: beam.PCollection) -> SinkResult:
        rows = pcoll | "ToInsertRows" >> beam.ParDo(_ToInsertRow(self.kind, self.insights))
        inserted = (
            rows
            | "Insert" >> WriteToBigQuery(
                self.table, schema=bigquery_schema(fields_for(self.kind), self.insights),
                method=WriteToBigQuery.Method.STREAMING_INSERTS,
                create_disposition=self.create_disposition, write_disposition=self.write_disposition,
                insert_retry_strategy=self.retry_strategy, max_retries=self.transient_retries,
                test_client=self.insert_client))
        failures = inserted.failed_rows_with_errors | "ToFailures" >> beam.ParDo(
            _ToFailure(self.kind, self.table)).with_output_types(Failure)
        # Every row sent is either accepted or comes back rejected (an unreachable BigQuery fails
        # the bundle instead), so the rows accepted are those sent minus those rejected.
        counts = count_per_window(
            (rows | "Sent" >> beam.Map(lambda _row: 1),
             failures | "Rejected" >> beam.Map(lambda _failure: -1)) | "SentAndRejected" >> beam.Flatten())
        destination = f"bigquery:{self.table}"
        return SinkResult(destination, written_once(counts, destination), failures, counts)


class WriteSummariesToBigQuery(WriteRowsToBigQuery):
    """Write Summary rows to a BigQuery table; rejected rows come back as Failures.

    Args:
        table: The table, ``project:dataset.table``.
        **options: ``WriteRowsToBigQuery``'s other arguments.
    """

    def __init__(self, table: str, **options: Any) -> None:
        super().__init__(table, "summaries", **options)


class WriteFailuresToBigQuery(WriteRowsToBigQuery):
    """Write Failure rows to a BigQuery table; rejected rows come back as (new) Failures.

    Args:
        table: The table, ``project:dataset.table``.
        **options: ``WriteRowsToBigQuery``'s other arguments.
    """

    def __init__(self, table: str, **options: Any) -> None:
        super().__init__(table, "failures", **options)
