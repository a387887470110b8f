"""Beam: RedactTranscripts, the config's redactor applied to every transcript before submission."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import apache_beam as beam

from transforms.core.metrics import counter
from transforms.core.coders import typed_output
from transforms.core.model import Failure, Transcript
from transforms.prepare.redaction import Redactor, checked_counts

FAILURES = "failures"


class _RedactFn(beam.DoFn):
    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        self._counters: dict[str, Any] = {}

    def setup(self) -> None:
        self._scanned = counter("redaction_transcripts")

    def _count(self, counts: dict[str, int]) -> None:
        for kind, n in counts.items():
            if kind not in self._counters:
                self._counters[kind] = counter(f"redacted_{kind}")
            self._counters[kind].inc(n)

    def _redact(self, text: str) -> tuple[str, dict[str, int]]:
        redacted, counts = self._redactor(text)
        if not isinstance(redacted, str):
            raise TypeError(f"a redactor must return (str, counts), got {type(redacted).__name__}")
        return redacted, checked_counts(counts)

    def process(self, transcript: Transcript) -> Iterator[Any]:
        try:
            text, counts = self._redact(transcript.text)
            turns = []
            if transcript.turns:
                # The prompt is built from the turns when there are any; ``text`` holds the same
                # words, so only the turns' counts are kept.
                counts = {}
                for turn in transcript.turns:
                    turn_text, turn_counts = self._redact(turn.text)
                    turns.append(dataclasses.replace(turn, text=turn_text))
                    for kind, n in turn_counts.items():
                        counts[kind] = counts.get(kind, 0) + n
        except Exception as exc:  # a user's redactor can fail in any way: one failure row each
            # No raw text: it could not be redacted, so it is not copied anywhere.
            yield beam.pvalue.TaggedOutput(FAILURES, Failure(
                stage="validate", error_code="RedactionFailed",
                error_message=f"{type(exc).__name__}: {exc}", transcript_id=transcript.id,
                origin=transcript.origin))
        else:
            self._scanned.inc()
            self._count(counts)
            yield dataclasses.replace(transcript, text=text, turns=tuple(turns))


class RedactTranscripts(beam.PTransform):
    """Transcript -> the same transcript with its text (and turns) redacted; Failure rows for
    transcripts the redactor failed on. Counters: ``redacted_<kind>`` and ``redaction_transcripts``.

    Args:
        redactor: text -> (redacted text, {kind: count}); picklable.
    """

    def __init__(self, redactor: Redactor):
        super().__init__()
        self._redactor = redactor

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        out = transcripts | "Redact" >> beam.ParDo(_RedactFn(self._redactor)).with_output_types(
            Transcript).with_outputs(FAILURES, main="transcripts")
        return {"transcripts": out.transcripts, "failures": typed_output(out, FAILURES, Failure)}
