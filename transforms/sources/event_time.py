"""A record's event time from one of its fields (pure: no Beam import).

Accepted values: an ISO 8601 date-time with a UTC offset or ``Z`` (``2026-01-05T09:30:00Z``,
``2026-01-05T09:30:00+01:00``), a timezone-aware ``datetime`` (Parquet and Avro timestamp
columns), or epoch time as a number or a numeric string: seconds, or milliseconds from
``EPOCH_MILLIS_FROM`` on. Anything else raises ``InvalidTimestamp`` naming the value and why.
"""
from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from transforms.core.model import Failure, Transcript
from transforms.sources.validation import validation_failure

# A number this large or larger is epoch milliseconds (as seconds it would be past the year
# 5000, as milliseconds it is 1973 or later).
EPOCH_MILLIS_FROM = 100_000_000_000
# Event times are taken from 1970 up to (not including) the year 3000: a call outside that is a
# mapping or unit mistake, and every window of it can still be named by its bounds.
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
LATEST = dt.datetime(3000, 1, 1, tzinfo=dt.timezone.utc)

# Longer digit strings are not epoch times (and int() refuses over 4300 digits).
_NUMBER = re.compile(r"[+-]?\d{1,20}(\.\d{1,20})?")


class InvalidTimestamp(ValueError):
    """A timestamp field value that is not an event time this module accepts."""


def event_seconds(value: Any) -> float:
    """``value`` as epoch seconds (UTC), see the module docstring for what is accepted.

    Args:
        value: The timestamp field's value as read.

    Raises:
        InvalidTimestamp: the value is missing, of another type, unparseable or out of range.
    """
    if value is None:
        raise InvalidTimestamp("the value is null")
    if isinstance(value, bool):
        raise InvalidTimestamp(f"must be a date-time or epoch number, got {value!r}")
    if isinstance(value, (int, float)):
        return _from_epoch(value)
    if isinstance(value, dt.datetime):
        return _from_datetime(value, repr(value), "store the column with a time zone, e.g. UTC")
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return _from_epoch(float(text) if "." in text else int(text))
        try:
            parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTimestamp(f"{value!r:.80} is not ISO 8601 (e.g. 2026-01-05T09:30:00Z) "
                                   f"nor epoch seconds or milliseconds") from None
        return _from_datetime(parsed, repr(value), "add Z or +HH:MM")
    raise InvalidTimestamp(f"must be a date-time string or epoch number, got "
                           f"{type(value).__name__} {value!r:.80}")


def _from_epoch(number: int | float) -> float:
    if isinstance(number, float) and not math.isfinite(number):
        raise InvalidTimestamp(f"must be a finite number, got {number!r}")
    millis = abs(number) >= EPOCH_MILLIS_FROM
    scale = 1000 if millis else 1
    # Compared in the number's own unit, so a 400-digit integer is refused, not an OverflowError.
    if not EARLIEST.timestamp() * scale <= number < LATEST.timestamp() * scale:
        raise InvalidTimestamp(f"epoch {number!r:.40} is outside {EARLIEST:%Y} to {LATEST:%Y} "
                               f"(read as {'milliseconds' if millis else 'seconds'})")
    return number / scale


def _from_datetime(moment: dt.datetime, shown: str, fix: str) -> float:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTimestamp(f"{shown:.80} has no UTC offset: {fix}")
    if not EARLIEST <= moment < LATEST:
        raise InvalidTimestamp(f"{shown:.80} is outside {EARLIEST:%Y} to {LATEST:%Y}")
    return moment.timestamp()


def transcript_time(transcript: Transcript, field: str) -> float | Failure:
    """The transcript's event time (epoch seconds) from ``field`` of its metadata (the sources
    keep that field there), or the ``InvalidTimestamp`` Failure naming the field and the value.

    Args:
        transcript: A transcript read with ``field`` as its timestamp field.
        field: The record field that holds the event time.
    """
    where = f" at {transcript.origin}" if transcript.origin else ""
    if field not in transcript.metadata:
        problem = "the field is missing"
    else:
        try:
            return event_seconds(transcript.metadata[field])
        except InvalidTimestamp as err:
            problem = str(err)
    return validation_failure(
        "InvalidTimestamp", f"transcript {transcript.id!r}{where}: timestamp field {field!r}: "
        f"{problem}; give ISO 8601 with an offset or Z, or epoch seconds or milliseconds "
        f"(or set --timestamp-field to the field that holds the event time)",
        origin=transcript.origin, raw=transcript.metadata, transcript_id=transcript.id)
