"""Putting a PCollection back into the windowing it came in (stages re-window on the way)."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.transforms.core import Windowing


def restore_windowing(windowing: Windowing) -> beam.WindowInto:
    """A WindowInto that puts a PCollection back into ``windowing``: windowfn, trigger,
    accumulation mode, allowed lateness and timestamp combiner.

    Args:
        windowing: The windowing to restore (a PCollection's ``windowing``).
    """
    return beam.WindowInto(windowing.windowfn, trigger=windowing.triggerfn,
                           accumulation_mode=windowing.accumulation_mode,
                           timestamp_combiner=windowing.timestamp_combiner,
                           allowed_lateness=windowing.allowed_lateness)
