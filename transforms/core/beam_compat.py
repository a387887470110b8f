"""Work-around for a Beam bug that the await stage's many small bundles trigger.

Beam's FnApiRunner (behind the DirectRunner) folds each bundle's metrics into a lazily chained
generator, one level deeper per bundle of a stage. A self-checkpointing DoFn that waits hours, or
a streaming source ticking every second, makes thousands of bundles, and reading the metrics
then fails with RecursionError. Materializing each fold keeps the depth at one.

Nothing is patched on import: ``AwaitJobs`` calls ``apply`` when it is built (so every
``SummarizeTranscripts`` pipeline, the CLI's included, has it); a pipeline that meets the bug
without that stage calls ``apply()`` itself before it runs.
"""
from __future__ import annotations

from typing import Any

from apache_beam.metrics import monitoring_infos
from apache_beam.runners.portability.fn_api_runner import fn_runner


def _consolidate_eagerly(metrics: Any, key: Any = monitoring_infos.to_key) -> list:
    return list(monitoring_infos.consolidate(metrics, key))


def apply() -> None:
    """Patch Beam's FnApiRunner to fold bundle metrics eagerly (see the module docstring)."""
    fn_runner.consolidate_monitoring_infos = _consolidate_eagerly
