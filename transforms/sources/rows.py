"""Transcripts from any PCollection of rows (dicts, beam.Row, NamedTuples, dataclasses)."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import apache_beam as beam
from apache_beam.utils.timestamp import Timestamp

from transforms.core.model import Failure, Transcript
from transforms.sources.common import (DEFAULT_INPUT_LATENESS_SECONDS, FAILURES, TRANSCRIPTS,
                                       EventTime, _EmitFn, check_field_options, event_time_setting,
                                       tagged)
from transforms.sources.parsing import row_to_record
from transforms.sources.validation import source_failure
from transforms.sources.validation import DEFAULT_MAX_TEXT_CHARS, FieldMapping, record_to_transcript


class _RowsFn(_EmitFn):
    def __init__(self, mapping: FieldMapping, max_text_chars: int,
                 event_time: EventTime | None) -> None:
        super().__init__(max_text_chars, event_time)
        self._mapping = mapping

    def process(self, row: Any, timestamp: Timestamp = beam.DoFn.TimestampParam) -> Iterator[Any]:
        self._input_time = timestamp
        yield from self._emit(self._item(row))

    def _item(self, row: Any) -> Transcript | Failure:
        if isinstance(row, Transcript):
            return row
        try:
            record = row_to_record(row)
            if record is not None:
                return record_to_transcript(record, self._mapping, None)
        except Exception as err:  # noqa: BLE001 - one odd row must not stop the run
            return source_failure("InvalidRecord", f"input row cannot be read: "
                                  f"{type(err).__name__}: {err}", origin=None, raw=row)
        return source_failure(
            "InvalidRecord", f"input row of type {type(row).__name__} is not a dict, beam.Row, "
            f"NamedTuple or dataclass; map it to one of those first", origin=None, raw=row)


class TranscriptsFromRows(beam.PTransform):
    """Turns an existing PCollection of dicts / beam.Row / NamedTuple / dataclass rows (or
    Transcripts, which are only validated) into the same tagged output as ReadTranscripts.

    Args:
        id_field: The row field that holds the transcript id.
        text_field: The row field that holds the transcript text.
        turns_field: The row field that holds speaker turns (used when there is no text).
        metadata_fields: Row fields kept as metadata; None keeps the others.
        max_text_chars: The longest text accepted; a longer one becomes a failure row.
        timestamp_field: The row field that holds each row's event time (ISO 8601 with an
            offset or Z, epoch seconds or milliseconds, or a timezone-aware datetime): each
            transcript is timestamped with it; a row without a valid one becomes an
            ``InvalidTimestamp`` failure row. None keeps the rows' timestamps.
        allowed_lateness_seconds: With ``timestamp_field``, on timestamped (streaming) rows: a
            row whose event time is further behind the row's own timestamp than this becomes a
            ``LateRecord`` failure row, as its window may already have closed.
    """

    def __init__(self, id_field: str = "id", text_field: str = "text", turns_field: str = "turns",
                 metadata_fields: Sequence[str] | None = None,
                 max_text_chars: int = DEFAULT_MAX_TEXT_CHARS, timestamp_field: str | None = None,
                 allowed_lateness_seconds: float = DEFAULT_INPUT_LATENESS_SECONDS) -> None:
        super().__init__()
        check_field_options(max_text_chars, id_field=id_field, text_field=text_field,
                       turns_field=turns_field)
        self._event_time, metadata_fields = event_time_setting(
            timestamp_field, metadata_fields, allowed_lateness_seconds, id_field=id_field,
            text_field=text_field, turns_field=turns_field)
        self._mapping = FieldMapping.of(id_field, text_field, turns_field, metadata_fields)
        self._max_text_chars = max_text_chars

    def expand(self, rows: beam.PCollection) -> dict[str, beam.PCollection]:
        return tagged(rows | "ToTranscripts" >> beam.ParDo(
            _RowsFn(self._mapping, self._max_text_chars, self._event_time)).with_output_types(Transcript)
            .with_outputs(FAILURES, main=TRANSCRIPTS))
