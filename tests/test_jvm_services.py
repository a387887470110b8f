"""Smoke tests of the real JVM services in tests/jvm_services.py, and the
runner facts the project builds on: how Beam's Flink
runner treats a self-checkpointing splittable DoFn and streaming windows."""

from __future__ import annotations

import math
import time
import uuid

import apache_beam as beam
import pytest
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import BeamAssertException, assert_that, equal_to
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.transforms.periodicsequence import PeriodicImpulse
from apache_beam.utils.timestamp import Duration
from confluent_kafka import Consumer, Producer

from tests.jvm_services import flink_pipeline_args, flink_runner_args

# A job whose workers cannot start waits forever on the runner side.
flink_timeout = pytest.mark.timeout(120)

POLLS = 4
DEFER_S = 1


def test_kafka_broker_round_trips_a_message(kafka_bootstrap: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    delivered = []
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    producer.produce(topic, key=b"t-1", value=b'{"ok": true}',
                     on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(30) == 0
    assert delivered == [None]

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": f"g-{topic}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1)
            if message is not None and message.error():
                raise AssertionError(f"consumer error: {message.error()}")
    finally:
        consumer.close()
    assert message is not None, "no message consumed within 30 s"
    assert (message.key(), message.value()) == (b"t-1", b'{"ok": true}')


def count_words(pipeline: beam.Pipeline) -> None:
    counts = (pipeline
              | beam.Create(["a b", "b c", "c c"])
              | beam.FlatMap(str.split)
              | beam.combiners.Count.PerElement())
    assert_that(counts, equal_to([("a", 1), ("b", 2), ("c", 3)]))


@flink_timeout
def test_flink_runs_batch_pipeline_with_loopback_workers(flink_job_endpoint: str) -> None:
    with beam.Pipeline(options=PipelineOptions(flink_pipeline_args(flink_job_endpoint))) as p:
        count_words(p)


@flink_timeout
def test_flink_runs_batch_pipeline_on_external_worker_pool(
        flink_job_endpoint: str, sdk_worker_pool: str) -> None:
    args = flink_pipeline_args(flink_job_endpoint, worker_pool=sdk_worker_pool)
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        count_words(p)


@flink_timeout
def test_flink_runner_starts_its_own_job_server_from_the_jar() -> None:
    with beam.Pipeline(options=PipelineOptions(flink_runner_args())) as p:
        count_words(p)


@flink_timeout
def test_flink_reports_a_failing_pipeline(flink_job_endpoint: str) -> None:
    """The fixture is only useful if failures inside the job reach the caller."""
    try:
        with beam.Pipeline(options=PipelineOptions(flink_pipeline_args(flink_job_endpoint))) as p:
            assert_that(p | beam.Create([1, 2]), equal_to([1, 2, 3]))
    except Exception as error:  # the portable runner wraps the worker's exception
        assert "BeamAssertException" in str(error) or isinstance(error, BeamAssertException)
    else:
        raise AssertionError("a pipeline with a failing assert_that succeeded")


class PollRange(RestrictionProvider):
    """One restriction position per poll, never split, like a job poller."""

    def initial_restriction(self, element: str) -> OffsetRange:
        return OffsetRange(0, POLLS)

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: str, restriction: OffsetRange) -> int:
        return restriction.size()

    def split(self, element: str, restriction: OffsetRange):
        yield restriction


class SelfCheckpointingPoll(beam.DoFn):
    """Claims one position per call, then defers the rest by DEFER_S seconds."""

    def process(self, element: str, tracker=beam.DoFn.RestrictionParam(PollRange())):
        position = tracker.current_restriction().start
        if not tracker.try_claim(position):
            return
        yield element, position, time.time()
        if position + 1 < POLLS:
            tracker.defer_remainder(Duration(seconds=DEFER_S))


@flink_timeout
def test_flink_batch_resumes_deferred_sdf_to_completion(flink_job_endpoint: str) -> None:
    with beam.Pipeline(options=PipelineOptions(flink_pipeline_args(flink_job_endpoint))) as p:
        polls = (p
                 | beam.Create(["job-1", "job-2"])
                 | beam.ParDo(SelfCheckpointingPoll())
                 | beam.Map(lambda poll: poll[:2]))
        assert_that(polls, equal_to([(job, i) for job in ("job-1", "job-2") for i in range(POLLS)]))


def spaced_by_delay(polls: list) -> None:
    """Matcher: every resume came at least ~DEFER_S after the previous poll."""
    times = sorted(t for _, _, t in polls)
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    if len(times) != POLLS or min(gaps) < DEFER_S * 0.9:
        raise BeamAssertException(f"expected {POLLS} polls spaced >= {DEFER_S}s, got gaps {gaps}")


@flink_timeout
def test_flink_streaming_honours_defer_delay_while_source_is_live(flink_job_endpoint: str) -> None:
    """While an unbounded source keeps the watermark open, Flink waits the
    requested delay before resuming (once input ends it resumes at once)."""
    start = time.time()
    live_s = POLLS * DEFER_S * 2 + 8  # room for a slow job start before the polls
    args = flink_pipeline_args(flink_job_endpoint, streaming=True)
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        polls = (p
                 | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + live_s, fire_interval=1)
                 | beam.Filter(lambda ts: float(ts) < start + 0.5)
                 | beam.Map(lambda _: "job")
                 | beam.ParDo(SelfCheckpointingPoll()))
        assert_that(polls, spaced_by_delay)


@flink_timeout
def test_flink_streaming_groups_by_fixed_window(flink_job_endpoint: str) -> None:
    interval_s, windows = 0.5, 3
    start = math.floor(time.time()) + 1  # whole second, so windows hold whole pairs
    per_window = int(1 / interval_s)
    args = flink_pipeline_args(flink_job_endpoint, streaming=True)
    with beam.Pipeline(options=PipelineOptions(args)) as p:
        grouped = (p
                   | PeriodicImpulse(start_timestamp=start, stop_timestamp=start + windows,
                                     fire_interval=interval_s)
                   | beam.Map(lambda ts: beam.window.TimestampedValue(
                       ("k", round((float(ts) - start) / interval_s)), float(ts)))
                   | beam.WindowInto(beam.window.FixedWindows(1))
                   | beam.GroupByKey()
                   | beam.Map(lambda kv, w=beam.DoFn.WindowParam: (int(w.start) - start, sorted(kv[1]))))
        assert_that(grouped, equal_to([
            (w, list(range(w * per_window, (w + 1) * per_window))) for w in range(windows)]))
