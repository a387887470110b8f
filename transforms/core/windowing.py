"""Putting a PCollection back into the windowing it came in (stages re-window on the way), and
the compact form of a window's bounds in file names."""
from __future__ import annotations

import datetime as dt

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


def compact_utc(moment: dt.datetime) -> str:
    """``moment`` as ISO 8601 basic UTC, e.g. 20260101T000500Z (sub-seconds only if set): a
    window bound in the name of a file, as the row sinks and the insight aggregates write them.

    Args:
        moment: A timezone-aware date-time (a Beam Timestamp's
            ``to_utc_datetime(has_tz=True)``).
    """
    utc = moment.astimezone(dt.timezone.utc)
    text = utc.strftime("%Y%m%dT%H%M%S")
    return text + (f".{utc.microsecond:06d}" if utc.microsecond else "") + "Z"
