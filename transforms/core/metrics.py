"""The one Beam metrics namespace every stage of this plugin counts in.

The run report (``pipeline/running/outcome.py``) and users' own dashboards query a single
namespace, so a counter's name alone says what it counts.
"""
from __future__ import annotations

from apache_beam.metrics import Metrics

NAMESPACE = "bedrock_batch"


def counter(name: str):
    """A Beam counter named ``name`` in the plugin's namespace.

    Args:
        name: What it counts, e.g. ``records_in`` or ``failures.sink.KafkaUndelivered``.
    """
    return Metrics.counter(NAMESPACE, name)

