"""Streaming: transcripts from files as they appear under a pattern."""
from __future__ import annotations

import time
from typing import Any

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.utils.timestamp import MAX_TIMESTAMP

from transforms.errors import ConfigError
from transforms.sources.files import ReadTranscriptFiles


class WatchTranscripts(beam.PTransform):
    """Streaming: read every new file that appears under ``file_pattern`` (a local folder or an
    s3:// prefix glob), checking every ``interval_seconds``: ``fileio.MatchContinuously``, then
    ``ReadTranscriptFiles``. Each transcript is timestamped with the time its file was found, so
    windows group transcripts by arrival. Files are read once even if rewritten.

    Args:
        file_pattern: A path glob, e.g. ``s3://bucket/incoming/*.jsonl``.
        interval_seconds: How often to look for new files.
        stop_after_seconds: End the watch (and, once in-flight work is done, the pipeline) this
            long after it starts; None watches until the pipeline is cancelled.
        **options: ``ReadTranscriptFiles``' arguments (format, field names, max_text_chars).
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
        start = time.time()
        stop = start + self._stop_after if self._stop_after else MAX_TIMESTAMP
        return (pbegin
                | "MatchContinuously" >> fileio.MatchContinuously(
                    self._pattern, interval=self._interval, start_timestamp=start,
                    stop_timestamp=stop)
                | "ReadFiles" >> self._read)
