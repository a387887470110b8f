"""Streaming: transcripts from files as they appear under a pattern."""
from __future__ import annotations

from typing import Any, Iterator

import apache_beam as beam
from apache_beam.coders import BooleanCoder
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.transforms import userstate
from apache_beam.transforms.periodicsequence import PeriodicImpulse, RebaseMode
from apache_beam.utils.timestamp import MAX_TIMESTAMP, Timestamp

from transforms.core.errors import ConfigError
from transforms.sources.files import ReadTranscriptFiles


class _FirstSightingFn(beam.DoFn):
    """(path, FileMetadata) -> the FileMetadata, the first time its path is seen only."""

    SEEN = userstate.ReadModifyWriteStateSpec("seen", BooleanCoder())

    def process(self, element: tuple[str, FileMetadata],
                seen=beam.DoFn.StateParam(SEEN)) -> Iterator[FileMetadata]:
        if not seen.read():
            seen.write(True)
            yield element[1]


class WatchTranscripts(beam.PTransform):
    """Streaming: read every new file that appears under ``file_pattern`` (a local folder or an
    s3:// prefix glob), checking every ``interval_seconds``: what ``fileio.MatchContinuously``
    does, with the clock started when the pipeline starts, then ``ReadTranscriptFiles``. Each
    transcript is timestamped with the time its file was found, so windows group transcripts by
    arrival (with ``timestamp_field``, by their own event time). Files are read once even if
    rewritten.

    Args:
        file_pattern: A path glob, e.g. ``s3://bucket/incoming/*.jsonl``.
        interval_seconds: How often to look for new files.
        stop_after_seconds: End the watch (and, once in-flight work is done, the pipeline) this
            long after it starts reading (not after the graph is built: a runner may take a
            while to start); None (or 0) watches until the pipeline is cancelled.
        **options: ``ReadTranscriptFiles``' arguments (format, field names, max_text_chars,
            timestamp_field, allowed_lateness_seconds, ledger).
    """

    def __init__(self, file_pattern: str, interval_seconds: float = 10.0,
                 stop_after_seconds: float | None = None, **options: Any) -> None:
        super().__init__()
        if interval_seconds <= 0:
            raise ConfigError(f"interval_seconds {interval_seconds} must be > 0", "interval_seconds")
        if stop_after_seconds is not None and not stop_after_seconds >= 0:
            raise ConfigError(f"stop_after_seconds {stop_after_seconds} must be >= 0 (0 watches "
                              f"until the pipeline is cancelled)", "stop_after_seconds")
        self._pattern = file_pattern
        self._interval = interval_seconds
        self._stop_after = stop_after_seconds
        self._read = ReadTranscriptFiles(**options)

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        pattern = self._pattern
        # The start and stop given here are rebased to the time the impulse first runs.
        if self._stop_after:
            ticks = PeriodicImpulse(Timestamp(0), Timestamp(self._stop_after), self._interval,
                                    rebase=RebaseMode.REBASE_ALL)
        else:
            ticks = PeriodicImpulse(Timestamp(0), MAX_TIMESTAMP, self._interval,
                                    rebase=RebaseMode.REBASE_START)
        return (pbegin
                | "Ticks" >> ticks
                | "Pattern" >> beam.Map(lambda _tick: pattern)
                | "Match" >> fileio.MatchAll()
                | "ByPath" >> beam.Map(lambda found: (found.path, found))
                | "FirstSighting" >> beam.ParDo(_FirstSightingFn())
                | "ReadFiles" >> self._read)
