"""Row 6: job scheduling on a simulated clock against the best schedule the slots allow.

The project's own ``AwaitJobsFn.process`` (submission planning, reconcile, polls, backoff) and
``WaitTracker`` (its checkpoints) run unchanged; what is simulated is everything around them:
the clock (``time`` in ``transforms.jobs.await_jobs``), the Bedrock control plane (a fake client,
because a real one cannot run 60 jobs of hours on a simulated clock) and the runner that resumes
a deferred restriction after the delay it asked for. 60 jobs of random sizes share 10 slots;
CreateModelInvocationJob answers ThrottlingException at random and
ServiceQuotaExceededException when the slots are full, as Bedrock does.

A job's duration is taken as proportional to its input (the model works through the records at
a steady rate) times a random factor of about +-15% (other load on the service): the scheduler
sees the sizes, as it does in a real run, never the durations. The row's note also gives the
same run with every job of one size and durations unrelated to it (0.5-6 h at random), where
no order can help.

The best schedule's makespan is taken as its lower bound, max(total work / slots, longest
job): no schedule finishes sooner, so "within 5%" of it is at least as strict as of the optimum.

    .venv/bin/python -m benchmarks.scheduling [--seed N]
"""
from __future__ import annotations

import argparse
import heapq
import random
from typing import Any, Iterator
from unittest import mock

from apache_beam.io.watermark_estimators import ManualWatermarkEstimator
from apache_beam.runners.sdf_utils import RestrictionTrackerView, ThreadsafeRestrictionTracker
from apache_beam.utils.timestamp import Timestamp
from botocore.exceptions import ClientError

from benchmarks.report import Row, print_rows
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig, JobsClient, client_token, job_name
from transforms.core.model import JobBatch, JobSpec
from transforms.core.quotas import Quotas
from transforms.jobs import await_jobs

SLOTS, JOBS, POLL_SECONDS, THROTTLE_RATE = 10, 60, 60, 0.2
BYTES_PER_HOUR = 100_000_000  # the simulated steady rate: input bytes worked through per hour
NOISE = 0.15  # sigma of the log-normal factor on each job's duration
MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
RUN_ID = "sched"


class SimClock:
    """Simulated seconds; ``sleep`` advances them instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


class SimBedrock:
    """The bedrock client calls JobsClient makes, answered from simulated jobs."""

    def __init__(self, clock: SimClock, durations: dict[str, float], rng: random.Random) -> None:
        self.clock, self.durations, self.rng = clock, durations, rng
        self.jobs: dict[str, dict[str, Any]] = {}  # by name: arn, started, ends
        self.gets = self.lists = self.creates = self.throttled = 0

    def _status(self, job: dict[str, Any]) -> str:
        return "Completed" if self.clock.now >= job["ends"] else "InProgress"

    def _response(self, name: str) -> dict[str, Any]:
        job = self.jobs[name]
        return {"jobArn": job["arn"], "jobName": name, "modelId": MODEL,
                "status": self._status(job)}

    def _refuse(self, code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": 429 if code == "ThrottlingException" else 400}},
                           "CreateModelInvocationJob")

    def create_model_invocation_job(self, jobName: str, **_: Any) -> dict[str, Any]:
        self.creates += 1
        if self.rng.random() < THROTTLE_RATE:
            self.throttled += 1
            raise self._refuse("ThrottlingException")
        if jobName in self.jobs:
            return {"jobArn": self.jobs[jobName]["arn"]}
        if sum(self._status(j) == "InProgress" for j in self.jobs.values()) >= SLOTS:
            raise self._refuse("ServiceQuotaExceededException")
        arn = f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/sim{len(self.jobs):04d}"
        self.jobs[jobName] = {"arn": arn, "started": self.clock.now,
                              "ends": self.clock.now + self.durations[jobName]}
        return {"jobArn": arn}

    def get_model_invocation_job(self, jobIdentifier: str) -> dict[str, Any]:
        self.gets += 1
        return next(self._response(n) for n, j in self.jobs.items() if j["arn"] == jobIdentifier)

    def get_paginator(self, operation: str) -> "SimBedrock":
        return self

    def paginate(self, nameContains: str | None = None, statusEquals: str | None = None,
                 **_: Any) -> Iterator[dict[str, Any]]:
        self.lists += 1
        jobs = [self._response(n) for n in self.jobs if nameContains is None or nameContains in n]
        yield {"invocationJobSummaries": [j for j in jobs
                                          if statusEquals is None or j["status"] == statusEquals]}


def list_schedule(durations: list[float]) -> float:
    """Makespan of starting jobs in the given order, each the instant a slot frees (no polls,
    no throttling): what the queue order alone allows."""
    slots = [0.0] * SLOTS
    for duration in durations:
        heapq.heapreplace(slots, slots[0] + duration)
    return max(slots)


def simulate(seed: int, sized: bool = True) -> dict[str, float]:
    """One run of AwaitJobsFn over 60 jobs on the simulated clock; its figures.

    Args:
        seed: Seeds the sizes, the durations and the throttling.
        sized: Jobs of random sizes whose durations follow them (True), or jobs of one size
            whose durations are random (False).
    """
    rng = random.Random(seed)
    names = [job_name(RUN_ID, "w", 1, i) for i in range(JOBS)]
    hours = {n: rng.uniform(0.5, 6.0) for n in names}  # half an hour to six hours
    if sized:
        sizes = {n: int(h * BYTES_PER_HOUR) for n, h in hours.items()}
        durations = {n: h * rng.lognormvariate(0, NOISE) * 3600 for n, h in hours.items()}
    else:
        sizes = dict.fromkeys(names, BYTES_PER_HOUR)
        durations = {n: h * 3600 for n, h in hours.items()}
    clock, config = SimClock(), BatchConfig(
        base_uri="s3://sim/runs", run_id=RUN_ID, model_id=MODEL,
        job=JobConfig(role_arn="arn:aws:iam::123456789012:role/sim"),
        quotas=Quotas(max_concurrent_jobs=SLOTS, min_records_per_job=1))
    bedrock = SimBedrock(clock, durations, rng)
    specs = tuple(JobSpec(n, client_token(n), MODEL, f"s3://sim/in/{n}/", f"s3://sim/out/{n}/",
                          1000, sizes[n]) for n in names)
    batch = JobBatch(MODEL, specs, POLL_SECONDS)
    fn = await_jobs.AwaitJobsFn(config)
    # What setup() builds, over the simulated control plane instead of a boto3 client.
    fn._jobs, fn._last_status = JobsClient(bedrock, config.job), {}
    seen_done: dict[str, float] = {}
    restriction = await_jobs.WaitRestrictionProvider().initial_restriction(batch)
    with mock.patch.object(await_jobs, "time", clock):
        while True:
            tracker = ThreadsafeRestrictionTracker(await_jobs.WaitTracker(restriction))
            for outcome in fn.process(batch, timestamp=Timestamp(0), tracker=RestrictionTrackerView(tracker),
                                      watermark=ManualWatermarkEstimator(None)):
                seen_done[outcome.spec.job_name] = clock.now
            deferred = tracker.deferred_status()
            if deferred is None:
                break
            restriction = deferred[0]
            clock.sleep(POLL_SECONDS)  # the runner resumes the residual after its delay
    if len(seen_done) != JOBS:
        raise RuntimeError(f"{len(seen_done)} of {JOBS} jobs finished")
    # Slot use while jobs were queued: busy slots over all slots, integrated over the time
    # some job was not yet created.
    last_start = max(j["started"] for j in bedrock.jobs.values())
    events = sorted({0.0, last_start, *(j["started"] for j in bedrock.jobs.values()),
                     *(min(j["ends"], last_start) for j in bedrock.jobs.values())})
    busy = sum(sum(1 for j in bedrock.jobs.values() if j["started"] <= a and j["ends"] > a) * (b - a)
               for a, b in zip(events, events[1:]))
    work = sum(durations.values())
    return {"makespan_h": max(seen_done.values()) / 3600,
            "queue_order_makespan_h": list_schedule([durations[n] for n in names]) / 3600,
            "best_makespan_h": max(work / SLOTS, max(durations.values())) / 3600,
            "slot_use_while_queued": busy / (SLOTS * last_start) if last_start else 1.0,
            "polls_per_job_hour": (bedrock.gets + bedrock.lists) / (work / 3600),
            "gets": bedrock.gets, "lists": bedrock.lists, "creates": bedrock.creates,
            "throttled": bedrock.throttled}


def scheduling_row(seed: int = 6) -> Row:
    """Row 6."""
    f = simulate(seed)
    unsized = simulate(seed, sized=False)
    f["one_size_makespan_h"] = unsized["makespan_h"]
    f["one_size_best_makespan_h"] = unsized["best_makespan_h"]
    excess = f["makespan_h"] / f["best_makespan_h"] - 1
    holds = f["slot_use_while_queued"] >= 0.95 and excess <= 0.05
    return Row(6, f"scheduling {JOBS} jobs on {SLOTS} slots, simulated clock (makespan)",
               "best possible makespan (lower bound)", f["makespan_h"], f["best_makespan_h"], "h",
               "slot use while queued >= 95% and makespan within 5%", holds,
               ratio=f["makespan_h"] / f["best_makespan_h"],
               note=(f"slot use while queued {f['slot_use_while_queued']:.1%}, makespan "
                     f"{excess:+.1%} over the bound with the largest jobs submitted first "
                     f"(in queue order, with no poll delay, they would take "
                     f"{f['queue_order_makespan_h']:.1f} h); jobs of one size with random "
                     f"durations: {unsized['makespan_h']:.1f} h against "
                     f"{unsized['best_makespan_h']:.1f} h, which no order can improve; "
                     f"{f['polls_per_job_hour']:.1f} polls per "
                     f"job-hour ({f['gets']} Get + {f['lists']} List calls); {f['creates']} "
                     f"creates, {f['throttled']} throttled; poll every {POLL_SECONDS} s"),
               details=f)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=6)
    print_rows([scheduling_row(parser.parse_args().seed)])


if __name__ == "__main__":
    main()
