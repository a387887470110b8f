"""Stable ids for sink rows, so a replayed write can be recognized (no Beam import).

A streaming runner that restores a checkpoint (Flink after a lost TaskManager) computes a
window's rows again and writes them again. The rows it computes are the same except for
``created_at`` (when the row was produced), so a row's id is taken from every other column:

* the file sinks put a row in the shard file ``shard_of(row_id(row), shards)``, so a replayed
  window writes the same rows into files of the same names;
* the Kafka sink sends the id in the ``row_id`` header (with the run id in ``run_id``), so a
  consumer can drop a message it has already seen;
* the BigQuery sink sends it as the row's ``insertId`` (prefixed with the run id), so BigQuery's
  best-effort de-duplication can drop a replayed insert.

The typed ``insights`` column is left out too: it is derived from the same model answer as the
``summary`` column, and each sink encodes it differently (BigQuery sends a null list as ``[]``).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any, Mapping

# Columns that differ between two attempts that produce the same row, or only repeat another.
NOT_IN_ROW_ID = ("created_at", "insights")


def _plain(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"a row id cannot be made from a {type(value).__name__} value: {value!r}")


def row_id(row: Mapping[str, Any]) -> str:
    """32 hex digits (128 bits of SHA-256) naming the row by its content, ``created_at`` and
    ``insights`` left out.

    The same for a row as ``normalize_row`` returns it (UTC datetimes) and as ``json_row``
    returns it (their ISO 8601 strings), so every sink computes it from what it already holds.

    Args:
        row: A normalized sink row (``transforms.sinks.schema.normalize_row`` or ``json_row``).
    """
    content = {name: value for name, value in row.items() if name not in NOT_IN_ROW_ID}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=_plain)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def shard_of(row_key: str, shards: int) -> int:
    """The shard (0 to ``shards`` - 1) a row with id ``row_key`` is written to: the same on
    every attempt, whatever the runner's bundles were.

    Args:
        row_key: The row's ``row_id``.
        shards: How many shards there are (> 0).
    """
    return int(row_key[:16], 16) % shards


def insert_id(row: Mapping[str, Any], run_id: str | None = None) -> str:
    """The BigQuery ``insertId`` of a row: ``<run id>-<row id>``, or the row id alone without a
    run id. Scoped by the run so that two runs writing the same row both keep it.

    Args:
        row: A normalized sink row, as for ``row_id``.
        run_id: The run's id, or None.
    """
    key = row_id(row)
    return f"{run_id}-{key}" if run_id else key
