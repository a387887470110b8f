"""Row 10: one TaskManager against two on the Flink session cluster (tests/flink_cluster.py).

Row 3's run (the CLI against ``serve-local`` until every job exists on the backend) submitted
with ``--flink_master`` to a session cluster of one TaskManager, then of two, each with all its
slots in use: parallelism 2 on one TaskManager (2 slots), 4 on two. The Python stages run in
PROCESS SDK workers, as on a real cluster: each TaskManager starts its own with Beam's boot
(`make beam-boot`). Each configuration gets a cluster of its own, started before the clock.

    .venv/bin/python -m benchmarks.flink_cluster [--records 20000]
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import data
from benchmarks.report import Row, print_rows
from benchmarks.scale import (FLINK_JAR, MODEL, QUOTA_FLAGS, RECORDS_PER_JOB, Watched,
                              bedrock_client, flink_flags)
from benchmarks.shard_memory import serve_local
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from tests.flink_cluster import BEAM_BOOT, FlinkCluster, process_environment_args

SLOTS_PER_TASKMANAGER = 2  # jvm/flink/conf/config.yaml's taskmanager.numberOfTaskSlots
RUN_TIMEOUT_S = 1800.0


def on_session_cluster(input_path: Path, count: int, taskmanagers: int, workdir: Path) -> float:
    """Seconds from the CLI's start until every job of ``count`` records exists on the backend,
    on a fresh session cluster of ``taskmanagers`` TaskManagers, every slot used."""
    jobs = math.ceil(count / RECORDS_PER_JOB)
    parallelism = taskmanagers * SLOTS_PER_TASKMANAGER
    with contextlib.ExitStack() as stack:
        s3_url, bedrock_url, exports = stack.enter_context(serve_local())
        env = {**os.environ, **exports, "AWS_DEFAULT_REGION": "us-east-1"}
        # The workers reach the backend with their own credential chain: the environment of the
        # TaskManagers, which start them.
        cluster = FlinkCluster(Path(tempfile.mkdtemp(prefix=f"cluster-{taskmanagers}tm-",
                                                     dir=workdir)), env=env)
        stack.callback(cluster.stop)
        cluster.start(taskmanagers=taskmanagers)
        run = Watched([
            sys.executable, "-m", "pipeline", "run", "--input", str(input_path),
            "--output", tempfile.mkdtemp(prefix="out-", dir=workdir), "--backend", "aws",
            "--aws-region", "us-east-1", "--s3_endpoint_url", s3_url,
            "--bedrock-endpoint-url", bedrock_url, "--bedrock-runtime-endpoint-url", bedrock_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/cluster-{taskmanagers}tm",
            "--role-arn", SERVICE_ROLE_ARN, "--model-id", MODEL, *QUOTA_FLAGS,
            *flink_flags(cluster.address, parallelism, SLOTS_PER_TASKMANAGER,
                         process_environment_args())], env)
        bedrock = bedrock_client(bedrock_url, exports)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        done = False
        # The workers log, not the CLI: the end is when the last job exists on the backend.
        while not done and run.running() and time.monotonic() < deadline:
            done = len(bedrock.list_model_invocation_jobs()["invocationJobSummaries"]) >= jobs
            if not done:
                time.sleep(0.5)
        if run.running():
            run.stop()
        seconds, _, _ = run.wait()
    if not done:
        tail = "\n".join(line for _, line in run.lines[-15:])
        raise RuntimeError(f"{taskmanagers} TaskManager(s): no {jobs} jobs:\n{tail}")
    return seconds


def taskmanagers_row(records: int, workdir: Path) -> Row:
    """Row 10: two TaskManagers against one, the same input, one run after the other."""
    for needed, make in ((FLINK_JAR, "make jvm-jars"), (BEAM_BOOT, "make beam-boot")):
        if not needed.is_file():
            return Row(10, "transcripts to shards on a session cluster, 2 TaskManagers",
                       "1 TaskManager", None, None, "s", "report the speed-up", None,
                       note=f"NOT MEASURED: {needed} is missing; `{make}` builds it")
    input_path = workdir / f"cluster-{records}.jsonl"
    data.write_jsonl(input_path, records, seed=10)
    seconds = {n: on_session_cluster(input_path, records, n, workdir) for n in (1, 2)}
    input_path.unlink()
    speedup = seconds[1] / seconds[2]
    load = os.getloadavg()[0]
    return Row(10, f"{records:,} transcripts to shards on a session cluster, 2 TaskManagers "
                   f"(parallelism 4)", "1 TaskManager (parallelism 2)", seconds[2], seconds[1],
               "s", "report the speed-up", None, ratio=speedup,
               note=(f"{speedup:.2f}x; until the last job exists on the backend; each "
                     f"TaskManager has {SLOTS_PER_TASKMANAGER} slots, all used, and starts its "
                     f"own PROCESS SDK workers. Every JVM, the SDK workers, the local S3 and "
                     f"Bedrock service and the CLI share this machine's {os.cpu_count()} cores "
                     f"(load average {load:.1f} at the end), so a second TaskManager adds slots "
                     f"but no core: the figure is noisy and says little about a real cluster"),
               details={"seconds": {str(n): s for n, s in seconds.items()},
                        "load_average": load})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskmanagers-bench-") as tmp:
        print_rows([taskmanagers_row(args.records, Path(tmp))])


if __name__ == "__main__":
    main()
