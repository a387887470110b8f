"""The one Beam metrics namespace every stage of this plugin counts in.

The run report (``pipeline/running/outcome.py``) and users' own dashboards query a single
namespace, so a counter's name alone says what it counts.
"""
from __future__ import annotations

from apache_beam.metrics import Metrics

NAMESPACE = "bedrock_batch"
# Where a read counts that only plans the run (the first of two reads of the same files, see
# transforms/two_reads.py): outside NAMESPACE, so no record is counted twice.
PLANNING_NAMESPACE = "bedrock_batch_planning"


def counter(name: str, namespace: str = NAMESPACE):
    """A Beam counter named ``name`` in the plugin's namespace.

    Args:
        name: What it counts, e.g. ``records_in`` or ``failures.sink.KafkaUndelivered``.
        namespace: NAMESPACE, or PLANNING_NAMESPACE for a read that only plans.
    """
    return Metrics.counter(namespace, name)

