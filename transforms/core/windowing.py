"""Putting a PCollection back into the windowing it came in (stages re-window on the way), and
the compact form of a window's bounds in file names."""
from __future__ import annotations

import datetime as dt

import apache_beam as beam
from apache_beam.transforms import trigger, window
from apache_beam.transforms.core import Windowing
from apache_beam.utils.timestamp import Duration

# Longest a job may take (168 h timeout) plus a day of queueing: rows this far behind the
# watermark still form jobs and still reach the sinks.
ALLOWED_LATENESS = Duration(seconds=8 * 24 * 3600)


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


def keep_late(rows: beam.PCollection, label: str) -> beam.PCollection:
    """``rows`` in the same windows, with every row that arrives after its window closed fired
    as a later pane (``ALLOWED_LATENESS``) instead of being dropped by the next GroupByKey.

    A sink groups its rows per window; with the caller's own lateness (possibly 0) a row that a
    runner lets fall behind the watermark on the way (a summary whose job finished after its
    window closed) would be dropped there without a trace. The global window passes unchanged.

    Args:
        rows: A sink's input.
        label: The WindowInto's label (unique within the caller).
    """
    windowing = rows.windowing
    if isinstance(windowing.windowfn, window.GlobalWindows):
        return rows
    return rows | label >> beam.WindowInto(
        windowing.windowfn, trigger=trigger.AfterWatermark(late=trigger.AfterCount(1)),
        accumulation_mode=trigger.AccumulationMode.DISCARDING,
        timestamp_combiner=windowing.timestamp_combiner, allowed_lateness=ALLOWED_LATENESS)


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
