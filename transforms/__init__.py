"""Embeddable Beam transforms for Amazon Bedrock batch summarization of call transcripts.

What a pipeline needs is importable from here::

    from transforms import BatchConfig, JobConfig, ReadTranscripts, SummarizeTranscripts

The folders below hold the parts, each importing only those listed before it:

- ``core``: the element types and their coders, errors, metrics, AWS clients, the run's layout;
- ``insights``: the ``--task insights`` schema, prompt, answers, columns and aggregate;
- ``sources``: reading transcripts (files, rows, Kafka), parsing and validating them;
- ``prepare``: redaction, the prompt and each model family's request: transcripts -> records;
- ``config.py``: ``BatchConfig``, the settings the stages below share;
- ``jobs``: submitting the Bedrock batch jobs, waiting for them, harvesting their output;
- ``shards``: packing a window's records into jobs, and the undersized policies;
- ``sinks``: writing summaries and failures (files, Kafka, BigQuery);
- ``summarize.py``: ``SummarizeTranscripts``, the composite of all of them;
- ``summarize_files.py``: ``SummarizeTranscriptFiles``, the same for bounded files, spilled and
  planned on local disk so that no step holds the records; ``sighting_plan.py``, its plan, in
  SQLite.

The names below are loaded when first asked for, so importing one pure module does not import
Beam, Kafka or BigQuery. Module paths from before the folders still import, with a
DeprecationWarning naming the new path (``transforms/_moved.py``).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from transforms import _moved

_moved.install()

# Public name -> the module that defines it.
_EXPORTS = {
    "SummarizeTranscripts": "transforms.summarize",
    "SummarizeTranscriptFiles": "transforms.summarize_files",
    "fixed_windows_with_lateness": "transforms.summarize",
    "BatchConfig": "transforms.config",
    "JobConfig": "transforms.core.bedrock",
    "PromptConfig": "transforms.prepare.records",
    "Quotas": "transforms.core.quotas",
    "AwsConfig": "transforms.core.aws",
    "ConfigError": "transforms.core.errors",
    "redact_pii": "transforms.prepare.redaction",
    "Transcript": "transforms.core.model",
    "Turn": "transforms.core.model",
    "Summary": "transforms.core.model",
    "Failure": "transforms.core.model",
    "ReadTranscripts": "transforms.sources.files",
    "ReadTranscriptFiles": "transforms.sources.files",
    "WatchTranscripts": "transforms.sources.watch",
    "TranscriptsFromRows": "transforms.sources.rows",
    "EventTime": "transforms.sources.common",
    "ReadTranscriptsFromKafka": "transforms.sources.kafka",
    "WriteSummaries": "transforms.sinks.files",
    "WriteFailures": "transforms.sinks.files",
    "WriteRows": "transforms.sinks.files",
    "SinkResult": "transforms.sinks.result",
    "WriteSummariesToKafka": "transforms.sinks.kafka",
    "WriteFailuresToKafka": "transforms.sinks.kafka",
    "WriteSummariesToBigQuery": "transforms.sinks.bigquery",
    "WriteFailuresToBigQuery": "transforms.sinks.bigquery",
    "AggregateInsights": "transforms.insights.aggregate",
    "WriteInsightsAggregate": "transforms.insights.aggregate",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from transforms.config import BatchConfig
    from transforms.core.aws import AwsConfig
    from transforms.core.bedrock import JobConfig
    from transforms.core.errors import ConfigError
    from transforms.core.model import Failure, Summary, Transcript, Turn
    from transforms.core.quotas import Quotas
    from transforms.insights.aggregate import AggregateInsights, WriteInsightsAggregate
    from transforms.prepare.records import PromptConfig
    from transforms.prepare.redaction import redact_pii
    from transforms.sinks.bigquery import WriteFailuresToBigQuery, WriteSummariesToBigQuery
    from transforms.sinks.files import WriteFailures, WriteRows, WriteSummaries
    from transforms.sinks.kafka import WriteFailuresToKafka, WriteSummariesToKafka
    from transforms.sinks.result import SinkResult
    from transforms.sources.common import EventTime
    from transforms.sources.files import ReadTranscriptFiles, ReadTranscripts
    from transforms.sources.kafka import ReadTranscriptsFromKafka
    from transforms.sources.rows import TranscriptsFromRows
    from transforms.sources.watch import WatchTranscripts
    from transforms.summarize import SummarizeTranscripts, fixed_windows_with_lateness
    from transforms.summarize_files import SummarizeTranscriptFiles


def __getattr__(name: str) -> Any:
    # Loaded on first use (PEP 562): the Kafka and BigQuery names need their extras.
    if name not in _EXPORTS:
        raise AttributeError(f"module 'transforms' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
