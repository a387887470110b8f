"""What every transcript source shares: output tags, the records_in count, validation.

Every source returns ``{"transcripts": PCollection[Transcript], "failures":
PCollection[Failure]}`` so bad input is reported as rows and the pipeline goes on.
"""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.errors import ConfigError
from transforms.metrics import counter
from transforms.model import Failure, Transcript
from transforms.validation import source_failure
from transforms.validation import validate_transcript

TRANSCRIPTS = "transcripts"
FAILURES = "failures"
# Counted once per input unit (a record, or a file that could only become one failure row), at
# the source and independently of any output, so the run report can prove nothing was lost.
RECORDS_IN = "records_in"


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


class _EmitFn(beam.DoFn):
    """Validates what the readers produce and routes it to the transcripts or failures output."""

    def __init__(self, max_text_chars: int) -> None:
        self._max_text_chars = max_text_chars
        self._records_in = counter(RECORDS_IN)
        self._read = counter("transcripts_read")
        self._failed = counter("records_failed")

    def _emit(self, item: Transcript | Failure) -> Iterator[Any]:
        self._records_in.inc()
        item = checked(item, self._max_text_chars)
        if isinstance(item, Transcript):
            self._read.inc()
            yield item
            return
        self._failed.inc()
        yield TaggedOutput(FAILURES, item)


def tagged(result: beam.pvalue.DoOutputsTuple) -> dict[str, beam.PCollection]:
    """A ParDo's two outputs as the sources' dict.

    Args:
        result: The outputs of a ParDo ``with_outputs(FAILURES, main=TRANSCRIPTS)``.
    """
    return {TRANSCRIPTS: result[TRANSCRIPTS], FAILURES: result[FAILURES]}


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
