"""One transcript per id: the duplicates become failure rows naming both origins."""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.pvalue import TaggedOutput

from transforms.core.metrics import counter
from transforms.core.model import Transcript
from transforms.sources.common import FAILURES, TRANSCRIPTS, tagged
from transforms.sources.validation import dedup_key, pick_unique


class _PickUniqueFn(beam.DoFn):
    def __init__(self) -> None:
        self._duplicates = counter("duplicate_ids")

    def process(self, keyed: tuple[str, Any]) -> Iterator[Any]:
        group = list(keyed[1])  # one transcript unless ids repeat
        # An empty group is an empty pane: with allowed lateness, Flink fires a window's on-time
        # pane for a key even when its data came in another pane. Nothing to keep, nothing lost.
        if group:
            kept, failures = pick_unique(group)
            yield kept
            for failure in failures:
                self._duplicates.inc()
                yield TaggedOutput(FAILURES, failure)


@beam.typehints.with_input_types(Transcript)
class DeduplicateTranscripts(beam.PTransform):
    """Keeps one transcript per id (the first by origin, so the choice is deterministic); the
    others become ``DuplicateTranscriptId`` failures naming both origins. Ids equal up to
    Unicode normalization count as one id. SummarizeTranscripts applies it to its input.

    Groups by id, so on an unbounded input apply it after windowing: duplicates are found within
    a window.
    """

    def expand(self, transcripts: beam.PCollection) -> dict[str, beam.PCollection]:
        return tagged(
            transcripts
            | "KeyById" >> beam.Map(lambda transcript: (dedup_key(transcript.id), transcript))
            | "GroupById" >> beam.GroupByKey()
            | "PickOne" >> beam.ParDo(_PickUniqueFn()).with_output_types(Transcript)
            .with_outputs(FAILURES, main=TRANSCRIPTS))
