"""What every transcript source shares: output tags, the records_in count, validation.

Every source returns ``{"transcripts": PCollection[Transcript], "failures":
PCollection[Failure]}`` so bad input is reported as rows and the pipeline goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import MIN_TIMESTAMP, Duration, Timestamp

from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.coders import typed_output
from transforms.core.model import Failure, Transcript, truncate_raw
from transforms.sources.event_time import transcript_time
from transforms.sources.validation import source_failure
from transforms.sources.validation import validate_transcript

TRANSCRIPTS = "transcripts"
FAILURES = "failures"
# Counted once per input unit (a record, or a file that could only become one failure row), at
# the source and independently of any output, so the run report can prove nothing was lost.
RECORDS_IN = "records_in"
# Streaming: how far behind the watermark an input record may arrive and still be summarized
# (the CLI's --allowed-lateness-seconds default).
DEFAULT_INPUT_LATENESS_SECONDS = 24 * 3600


def checked(item: Transcript | Failure, max_text_chars: int) -> Transcript | Failure:
    """The item itself, or the Failure that rejects it; a check that raises rejects it too.

    Args:
        item: What a reader produced: a Transcript to check, or a Failure (returned as is).
        max_text_chars: The longest text accepted.
    """
    if not isinstance(item, Transcript):
        return item
    try:
        return validate_transcript(item, max_text_chars) or item
    except Exception as err:  # noqa: BLE001 - one odd transcript must not stop the run
        return source_failure("InvalidRecord", f"transcript at {item.origin or 'an input row'} "
                              f"cannot be checked: {type(err).__name__}: {err}",
                              origin=item.origin, raw=item.text)


@dataclass(frozen=True)
class EventTime:
    """Where a source takes each record's event time from, and how late it may be.

    Args:
        field: The record field that holds the event time (see ``transforms.sources.event_time``).
        allowed_lateness_seconds: Streaming: a record whose event time is further behind its
            arrival time than this becomes a ``LateRecord`` failure row (its window may have
            closed, and Beam drops such records silently). Unused on bounded input.
    """

    field: str
    allowed_lateness_seconds: float = DEFAULT_INPUT_LATENESS_SECONDS


def event_time_setting(field: str | None, metadata_fields: Sequence[str] | None,
                       allowed_lateness_seconds: float = DEFAULT_INPUT_LATENESS_SECONDS,
                       **fields: str) -> tuple[EventTime | None, Sequence[str] | None]:
    """The source's EventTime (None without a field) and the metadata fields, which then keep
    the timestamp field (the event time is read from the transcript's metadata).

    Args:
        field: The timestamp field, or None.
        metadata_fields: The source's metadata fields; None keeps every other field.
        allowed_lateness_seconds: See EventTime.
        **fields: The source's other field settings, which the timestamp field must differ from.

    Raises:
        ConfigError: the field is empty or one of the other fields.
    """
    if field is None:
        return None, metadata_fields
    if not isinstance(field, str) or not field:
        raise ConfigError(f"timestamp_field must be a non-empty field name, got {field!r}",
                          "timestamp_field")
    for name, value in fields.items():
        if value == field:
            raise ConfigError(f"timestamp_field {field!r} is also the {name}: name the field "
                              f"that holds each record's event time", "timestamp_field")
    if allowed_lateness_seconds < 0:
        raise ConfigError(f"allowed_lateness_seconds must be >= 0, got {allowed_lateness_seconds}",
                          "allowed_lateness_seconds")
    if metadata_fields is not None and field not in metadata_fields:
        metadata_fields = (*metadata_fields, field)
    return EventTime(field, allowed_lateness_seconds), metadata_fields


# Failure rows of a bounded read have no event time; with an event time field they go to the
# window at the Unix epoch (every window needs a date: the minimum timestamp's has none).
NO_EVENT_TIME = Timestamp(0)


class _EmitFn(beam.DoFn):
    """Validates what the readers produce and routes it to the transcripts or failures output;
    with an EventTime, stamps each transcript with its event time."""

    def __init__(self, max_text_chars: int, event_time: EventTime | None = None) -> None:
        self._max_text_chars = max_text_chars
        self._event_time = event_time
        self._records_in = counter(RECORDS_IN)
        self._read = counter("transcripts_read")
        self._rejected = counter("records_rejected")
        self._input_time = MIN_TIMESTAMP

    def _emit(self, item: Transcript | Failure) -> Iterator[Any]:
        """Subclasses set ``_input_time`` to the timestamp of the element being read first."""
        self._records_in.inc()
        event = None
        if isinstance(item, Transcript) and self._event_time is not None:
            # First: a bad event time is the reason to report, whatever else is wrong.
            item, event = self._event_time_of(item)
        item = checked(item, self._max_text_chars)
        if isinstance(item, Transcript):
            self._read.inc()
            yield item if event is None else TimestampedValue(item, event)
            return
        self._rejected.inc()
        if self._event_time is not None and self._input_time < NO_EVENT_TIME:
            item = TimestampedValue(item, NO_EVENT_TIME)
        yield TaggedOutput(FAILURES, item)

    def _event_time_of(self, transcript: Transcript
                       ) -> tuple[Transcript | Failure, Timestamp | None]:
        """The transcript and its event time, or the Failure saying why it has none usable."""
        seconds = transcript_time(transcript, self._event_time.field)
        if isinstance(seconds, Failure):
            return seconds, None
        event = Timestamp(seconds)
        arrival = self._input_time
        lateness = Duration(seconds=self._event_time.allowed_lateness_seconds)
        # A streaming element's timestamp is its arrival, never behind the watermark: a record
        # within the allowed lateness of it is never dropped as late.
        if arrival > NO_EVENT_TIME and event + lateness < arrival:
            return Failure(
                stage="source", error_code="LateRecord", error_message=(
                    f"transcript {transcript.id!r} at {transcript.origin}: its "
                    f"{self._event_time.field!r} {event.to_rfc3339()} is more than the allowed "
                    f"lateness of {lateness.micros / 1e6:g} s behind its arrival at "
                    f"{arrival.to_rfc3339()}, so its window may already have closed; raise "
                    f"--allowed-lateness-seconds"),
                transcript_id=transcript.id, raw=truncate_raw(transcript.metadata),
                origin=transcript.origin), None
        return transcript, event


def tagged(result: beam.pvalue.DoOutputsTuple) -> dict[str, beam.PCollection]:
    """A ParDo's two outputs as the sources' dict, the failures typed as ``Failure`` rows.

    Args:
        result: The outputs of a ParDo ``with_outputs(FAILURES, main=TRANSCRIPTS)``.
    """
    return {TRANSCRIPTS: result[TRANSCRIPTS], FAILURES: typed_output(result, FAILURES, Failure)}


def check_field_options(max_text_chars: int, **fields: str) -> None:
    """Raise ConfigError unless ``max_text_chars`` is positive and every field name is set.

    Args:
        max_text_chars: The longest transcript text accepted.
        **fields: Setting name -> the input field name it holds, e.g. ``id_field="id"``.
    """
    if max_text_chars <= 0:
        raise ConfigError(f"max_text_chars must be positive, got {max_text_chars}", "max_text_chars")
    for name, value in fields.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty field name, got {value!r}", name)
