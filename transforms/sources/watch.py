"""Streaming: transcripts from files as they appear under a pattern."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Iterator

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.iobase import RestrictionProgress, RestrictionTracker
from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.window import TimestampedValue
from apache_beam.utils.timestamp import Duration, Timestamp

from transforms.core.errors import ConfigError
from transforms.core.storage import Storage, join
from transforms.sources.common import DEFAULT_INPUT_LATENESS_SECONDS
from transforms.sources.files import ReadTranscriptFiles
from transforms.sources.source_ledger import (WATCH_END_NAME, SourceLedger, WatchEnd,
                                              file_identity, watch_end_text)
from transforms.sources.watch_state import (WatchRestriction, event_time, last_listing_done,
                                            new_files, next_watermark, still_listed)

_STOP = None  # claimed when the watch ends: the restriction is done

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Listed:
    """What a listing learnt besides the new paths: the watch's end (fixed at its first
    listing), the paths listed (the others are forgotten), the watermark and the next
    listing's time."""

    stop_at: float | None
    paths: frozenset[str]
    watermark: float
    next_poll_at: float


class WatchTracker(RestrictionTracker):
    """Claims paths of a WatchRestriction as they are emitted; splits only to checkpoint.

    Args:
        restriction: The restriction to track.
    """

    def __init__(self, restriction: WatchRestriction) -> None:
        self._restriction = restriction

    def current_restriction(self) -> WatchRestriction:
        return self._restriction

    def try_claim(self, claim: "str | _Listed | None") -> bool:
        """A path (to emit it), a _Listed (what a listing learnt) or _STOP (the watch ended).
        Beam hands the DoFn only try_claim, so a listing's news is claimed too."""
        r = self._restriction
        if r.closed:
            return False
        if claim is _STOP:
            self._restriction = replace(r, closed=True)
        elif isinstance(claim, _Listed):
            self._restriction = replace(
                r, stop_at=claim.stop_at, seen=still_listed(r.seen, claim.paths),
                watermark=claim.watermark, next_poll_at=claim.next_poll_at)
        elif claim in r.seen:
            return False
        else:
            self._restriction = replace(r, seen=r.seen | {claim})
        return True

    def try_split(self, fraction_of_remainder: float
                  ) -> tuple[WatchRestriction, WatchRestriction] | None:
        # Only checkpoints: the watch goes on in the residual, with everything seen so far.
        r = self._restriction
        if fraction_of_remainder != 0 or r.closed:
            return None
        self._restriction = replace(r, closed=True)
        return self._restriction, r

    def check_done(self) -> None:
        if not self._restriction.closed:
            raise ValueError("the watch neither ended nor deferred its remainder")

    def current_progress(self) -> RestrictionProgress:
        return RestrictionProgress(completed=len(self._restriction.seen), remaining=1)

    def is_bounded(self) -> bool:
        return self._restriction.stop_at is not None


class _WatchRestrictionProvider(RestrictionProvider):
    """The element is the watch's length in seconds (0: until cancelled)."""

    def initial_restriction(self, stop_after_seconds: float) -> WatchRestriction:
        # 0: the end is fixed at the first poll (a runner may take a while to start reading).
        return WatchRestriction(stop_at=0.0 if stop_after_seconds else None)

    def create_tracker(self, restriction: WatchRestriction) -> WatchTracker:
        return WatchTracker(restriction)

    def restriction_size(self, element: Any, restriction: WatchRestriction) -> int:
        return 1


class _WatchFn(beam.DoFn):
    """The watch's length -> FileMetadata of each file under the pattern the first time it is
    listed, timestamped with its modification time; lists every interval until the watch ends.
    With a source ledger, a watch that ends records what it had listed (``WatchEnd``)."""

    def __init__(self, pattern: str, interval_seconds: float, late_limit_seconds: float,
                 ledger: SourceLedger | None, hold_after_end: bool) -> None:
        self._pattern = pattern
        self._interval = interval_seconds
        self._late_limit = late_limit_seconds
        self._ledger = ledger
        self._hold_after_end = hold_after_end

    def setup(self) -> None:
        if self._ledger is not None:
            aws = self._ledger.aws
            self._ledger_storage = Storage(aws.client("s3") if aws is not None else None)

    def _list(self) -> dict[str, FileMetadata]:
        (result,) = FileSystems.match([self._pattern])
        return {found.path: found for found in result.metadata_list}

    @beam.DoFn.unbounded_per_element()
    def process(self, stop_after_seconds: float,
                tracker=beam.DoFn.RestrictionParam(_WatchRestrictionProvider()),
                watermark=beam.DoFn.WatermarkEstimatorParam(
                    ManualWatermarkEstimator.default_provider())) -> Iterator[Any]:
        restriction = tracker.current_restriction()
        delay = restriction.next_poll_at - time.time()
        if delay > 0:
            time.sleep(delay)  # the runner resumed us early (local runners ignore the delay)
        now = time.time()
        first = restriction.watermark is None  # no listing yet
        restriction = tracker.current_restriction().started(now, stop_after_seconds)
        if first:
            until = (time.strftime("%H:%M:%S UTC", time.gmtime(restriction.stop_at))
                     if restriction.stop_at else "cancelled")
            log.info("watching %s every %g s until %s", self._pattern, self._interval, until)
        mark = next_watermark(restriction.watermark, now, self._interval)
        # Held after its end, the watch lists no more; only the watermark goes on, with the clock.
        held = self._hold_after_end and last_listing_done(restriction, self._interval)
        listed = {} if held else self._list()
        mtimes = {path: found.last_updated_in_seconds for path, found in listed.items()}
        for path, mtime in new_files(mtimes, restriction.seen):
            if tracker.try_claim(path):
                stamp = event_time(mtime, restriction.watermark, self._late_limit)
                yield TimestampedValue(listed[path], Timestamp(stamp))
        paths = restriction.seen if held else frozenset(listed)
        tracker.try_claim(_Listed(restriction.stop_at, paths, mark, now + self._interval))
        last = restriction.ended(now) and not held
        if last:
            log.info("the watch of %s ended: %d file(s) listed", self._pattern,
                     len(tracker.current_restriction().seen))
            self._record_end(tracker.current_restriction())
        if last and not self._hold_after_end:
            tracker.try_claim(_STOP)
        else:
            watermark.set_watermark(Timestamp(mark))
            tracker.defer_remainder(Duration(seconds=self._interval))

    def _record_end(self, restriction: WatchRestriction) -> None:
        # Whoever ends the run from the ledger (the CLI, on Flink with checkpointing) learns
        # here which files the read must cover: its own listing races files moved in at the end.
        # Before the claim that ends the watch, so a failed write retries the last listing.
        if self._ledger is not None:
            end = WatchEnd(restriction.stop_at, frozenset(map(file_identity, restriction.seen)))
            self._ledger_storage.write_text(join(self._ledger.prefix, WATCH_END_NAME),
                                            watch_end_text(end))


class WatchTranscripts(beam.PTransform):
    """Streaming: read every new file that appears under ``file_pattern`` (a local folder or an
    s3:// prefix glob), listing it every ``interval_seconds``, then ``ReadTranscriptFiles``.

    Each transcript is timestamped with its file's modification time (with ``timestamp_field``,
    with its own event time), so a job restarted from a checkpoint that reads a file again puts
    its records into the same windows, under the same job names. The watch is a splittable
    DoFn whose checkpointed restriction holds the paths it has read (``watch_state``): a
    restored job reads exactly the files it had not read by its checkpoint; a file is read once
    even if rewritten, while its path stays listed.

    Args:
        file_pattern: A path glob, e.g. ``s3://bucket/incoming/*.jsonl``.
        interval_seconds: How often to look for new files.
        stop_after_seconds: End the watch (and, once in-flight work is done, the pipeline) this
            long after its first listing (not after the graph is built: a runner may take a
            while to start); None (or 0) watches until the pipeline is cancelled.
        hold_after_end: Once the watch has ended, list no more but stay, the watermark
            following the clock, until the pipeline is cancelled; for a runner that keeps a job
            whose sources are done running anyway (Flink with checkpointing): a watch that
            finished there would move the watermark to the end of time at once, and every row
            still on its way (the results of a job that finishes later) would be dropped as
            late at the next GroupByKey (measured on a Flink session cluster). The caller
            cancels the pipeline (the CLI does, once the source ledger and the rows agree).
        **options: ``ReadTranscriptFiles``' arguments (format, field names, max_text_chars,
            timestamp_field, allowed_lateness_seconds, ledger).
    """

    def __init__(self, file_pattern: str, interval_seconds: float = 10.0,
                 stop_after_seconds: float | None = None, hold_after_end: bool = False,
                 **options: Any) -> None:
        super().__init__()
        if interval_seconds <= 0:
            raise ConfigError(f"interval_seconds {interval_seconds} must be > 0", "interval_seconds")
        if stop_after_seconds is not None and not stop_after_seconds >= 0:
            raise ConfigError(f"stop_after_seconds {stop_after_seconds} must be >= 0 (0 watches "
                              f"until the pipeline is cancelled)", "stop_after_seconds")
        self._pattern = file_pattern
        self._interval = interval_seconds
        self._stop_after = stop_after_seconds or None
        self._hold_after_end = hold_after_end
        # A file moved in with a time older than the input's lateness would be dropped by the
        # windows: it is timestamped at that limit instead (``watch_state.event_time``).
        self._late_limit = options.get("allowed_lateness_seconds",
                                       DEFAULT_INPUT_LATENESS_SECONDS) / 2
        self._ledger = options.get("ledger")
        self._read = ReadTranscriptFiles(**options)

    def expand(self, pbegin: beam.pvalue.PBegin) -> dict[str, beam.PCollection]:
        watch = _WatchFn(self._pattern, self._interval, self._late_limit, self._ledger,
                         self._hold_after_end)
        length = float(self._stop_after or 0)
        return (pbegin
                | "Impulse" >> beam.Impulse()
                | "Length" >> beam.Map(lambda _impulse: length)
                | "List" >> beam.ParDo(watch)
                | "ReadFiles" >> self._read)
