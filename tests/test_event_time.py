"""Event times read from a record field: what is accepted, and that nothing else gets through."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.core.model import Failure, Transcript
from transforms.sources.event_time import InvalidTimestamp, event_seconds, transcript_time

UTC = dt.timezone.utc
JAN5 = dt.datetime(2026, 1, 5, 9, 30, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("value", [
    "2026-01-05T09:30:00Z", "2026-01-05T10:30:00+01:00", "2026-01-05 09:30:00+00:00",
    int(JAN5), JAN5, int(JAN5) * 1000, str(int(JAN5)), f"{int(JAN5) * 1000}",
    dt.datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
])
def test_iso_8601_and_epoch_seconds_or_millis_are_read(value):
    assert event_seconds(value) == JAN5


@pytest.mark.parametrize("value, reason", [
    (None, "null"), (True, "got True"), ("yesterday", "not ISO 8601"), ("", "not ISO 8601"),
    ("2026-01-05T09:30:00", "no UTC offset"), ("2026-01-05", "no UTC offset"),
    (dt.datetime(2026, 1, 5), "no UTC offset"), (-1, "outside 1970"), (-10**13, "outside 1970"),
    (10**40, "outside 1970"), ("9" * 5000, "not ISO 8601"), (float("nan"), "finite"),
    (float("-inf"), "finite"), (5 * 10**10, "read as seconds"),
    ("3000-01-01T00:00:00Z", "outside 1970"), ([1767605400], "got list"), ({"t": 1}, "got dict"),
])
def test_anything_else_is_refused_with_the_reason(value, reason):
    with pytest.raises(InvalidTimestamp, match=reason):
        event_seconds(value)


_ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40), st.datetimes(timezones=st.one_of(st.none(), st.just(UTC))),
    st.lists(st.integers(), max_size=2), st.from_regex(r"[+-]?\d{1,25}(\.\d{0,5})?", fullmatch=True))


@settings(max_examples=500, deadline=None)
@given(_ANYTHING)
def test_any_value_is_an_event_time_in_range_or_refused(value):
    """Never another exception (an OverflowError from a huge epoch, a ValueError from int())."""
    try:
        seconds = event_seconds(value)
    except InvalidTimestamp:
        return
    assert math.isfinite(seconds)
    assert dt.datetime(1970, 1, 1, tzinfo=UTC).timestamp() <= seconds
    assert seconds < dt.datetime(3000, 1, 1, tzinfo=UTC).timestamp()


def test_a_transcript_without_the_field_gets_a_failure_naming_field_and_value():
    missing = transcript_time(Transcript("a", "text", {}, origin="calls.jsonl:3"), "start")
    assert isinstance(missing, Failure)
    assert (missing.stage, missing.error_code, missing.transcript_id) == (
        "validate", "InvalidTimestamp", "a")
    assert "'start'" in missing.error_message and "missing" in missing.error_message
    assert "calls.jsonl:3" in missing.error_message
    bad = transcript_time(Transcript("b", "text", {"start": "soon"}), "start")
    assert isinstance(bad, Failure) and "'soon'" in bad.error_message
    assert transcript_time(Transcript("c", "text", {"start": "2026-01-05T09:30:00Z"}),
                           "start") == JAN5
