"""Row 9: the two local runners, Prism against the FnApiRunner, which the CLI chooses between.

Bounded input: row 3's run (the CLI against ``serve-local`` until every job is planned) at two
sizes on each runner, its wall time and the peak RSS of every process the CLI started (Prism's
Go process included). Streaming: a watched folder, one file per window, and how long after its
window closed each window's first job existed on the backend. Prints a table of every figure,
the two runners side by side with Prism's over the FnApiRunner's, then the row.

    .venv/bin/python -m benchmarks.runners [--sizes 20000,200000] [--window-seconds 10]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import boto3

from benchmarks import data
from benchmarks.report import Row, print_rows
from benchmarks.scale import MODEL, QUOTA_FLAGS, Watched, to_shards
from benchmarks.shard_memory import serve_local
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.runners import FNAPI, PRISM

RUNNERS = (FNAPI, PRISM)


def bounded(sizes: list[int], workdir: Path) -> dict[str, dict[int, dict[str, float]]]:
    """{runner: {size: {"seconds", "cli_mib", "others_mib"}}} for row 3's run on each runner."""
    figures: dict[str, dict[int, dict[str, float]]] = {runner: {} for runner in RUNNERS}
    for size in sizes:
        path = workdir / f"runners-{size}.jsonl"
        data.write_jsonl(path, size, seed=9)
        for runner in RUNNERS:  # one after the other, so both see the same machine load
            seconds, cli_mib, others = to_shards(path, size, workdir, runner=runner)
            figures[runner][size] = {"seconds": seconds, "cli_mib": cli_mib,
                                     "others_mib": sum(others.values())}
        path.unlink()
    return figures


def streaming_latency(runner: str, windows: int, window_seconds: int, workdir: Path) -> list[float]:
    """Seconds from each window's end to its first job on the backend, for a watched folder that
    gets one file in each of ``windows`` windows.

    On the FnApiRunner no window closes before the watch ends, so it runs with --watch-seconds
    covering the windows; Prism runs with no --watch-seconds and is stopped once the last
    window's job exists.
    """
    folder = Path(tempfile.mkdtemp(prefix="watch-", dir=workdir))
    with serve_local() as (s3_url, bedrock_url, exports):
        env = {**os.environ, **exports, "AWS_DEFAULT_REGION": "us-east-1"}
        watch = ([] if runner == PRISM
                 else ["--watch-seconds", str((windows + 1) * window_seconds)])
        run = Watched([sys.executable, "-m", "pipeline", "run", "--runner", runner,
                       "--streaming", "--window-seconds", str(window_seconds), *watch,
                       "--poll-interval-seconds", "1", "--input", str(folder / "*.jsonl"),
                       "--output", tempfile.mkdtemp(prefix="out-", dir=workdir),
                       "--backend", "aws", "--aws-region", "us-east-1",
                       "--s3_endpoint_url", s3_url, "--bedrock-endpoint-url", bedrock_url,
                       "--bedrock-runtime-endpoint-url", bedrock_url,
                       "--bucket-uri", f"s3://{DEFAULT_BUCKET}/latency-{runner}",
                       "--role-arn", SERVICE_ROLE_ARN, "--model-id", MODEL, *QUOTA_FLAGS], env)
        bedrock = boto3.client("bedrock", endpoint_url=bedrock_url, region_name="us-east-1",
                               aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                               aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        first_job: dict[int, float] = {}  # window start -> when its first job was seen
        dropped: set[int] = set()
        deadline = time.time() + (windows + 4) * window_seconds + 300
        while len(first_job) < windows and run.running() and time.time() < deadline:
            # One small file in every window until enough windows have their job.
            window = int(time.time() // window_seconds)
            if window not in dropped:
                data.write_jsonl(folder / f".w{window}.tmp", 20, seed=window)
                os.rename(folder / f".w{window}.tmp", folder / f"w{window}.jsonl")  # whole
                dropped.add(window)
            for job in bedrock.list_model_invocation_jobs()["invocationJobSummaries"]:
                match = re.search(r"-w(\d+)-", job["jobName"])
                if match:
                    first_job.setdefault(int(match[1]), time.time())
            time.sleep(0.2)
        run.stop()
        run.wait()
    if len(first_job) < windows:
        tail = "\n".join(line for _, line in run.lines[-15:])
        raise RuntimeError(f"{runner}: {len(first_job)} of {windows} windows got a job:\n{tail}")
    # The first windows: on the FnApiRunner the window the watch ends in closes early.
    return [seen - (start + window_seconds) for start, seen in sorted(first_job.items())][:windows]


def runners_row(sizes: list[int], windows: int, window_seconds: int, workdir: Path) -> Row:
    """Row 9: Prism against the FnApiRunner, bounded (time, memory) and streaming (latency);
    prints ``side_by_side``'s table first."""
    figures = bounded(sizes, workdir)
    latency = {runner: streaming_latency(runner, windows, window_seconds, workdir)
               for runner in RUNNERS}
    print("\n".join(side_by_side(figures, latency)), flush=True)
    big = max(sizes)
    prism, fnapi = figures[PRISM][big]["seconds"], figures[FNAPI][big]["seconds"]

    def memory(runner: str, size: int) -> str:
        f = figures[runner][size]
        return (f"{f['seconds']:.0f} s, {f['cli_mib'] + f['others_mib']:,.0f} MiB "
                f"(CLI {f['cli_mib']:,.0f} + others {f['others_mib']:,.0f})")

    bounded_note = "; ".join(f"{size:,}: {runner} {memory(runner, size)}"
                             for size in sizes for runner in RUNNERS)
    stream_note = "; ".join(f"{runner} {', '.join(f'{s:.1f}' for s in latency[runner])} s"
                            for runner in RUNNERS)
    return Row(9, f"{big:,} transcripts to shards on Prism", f"on the {FNAPI}", prism, fnapi,
               "s", "choose the local runner by these figures", None, ratio=prism / fnapi,
               note=(f"bounded, until the last job is planned, peak RSS summed over every "
                     f"process the CLI started: {bounded_note}. Streaming, a watched folder, "
                     f"{window_seconds} s windows, seconds from each window's end to its first "
                     f"job: {stream_note} (the {FNAPI} with --watch-seconds "
                     f"{(windows + 1) * window_seconds}, as it closes no window before the watch "
                     f"ends: each window waits for it)"),
               details={"bounded": figures, "latency_seconds": latency})


def side_by_side(figures: dict[str, dict[int, dict[str, float]]],
                 latency: dict[str, list[float]]) -> list[str]:
    """Row 9's figures as a table: one line per measure, the two runners beside each other and
    Prism's figure over the FnApiRunner's.

    Args:
        figures: ``bounded``'s figures.
        latency: Each runner's ``streaming_latency``.
    """
    lines: list[tuple[str, float, float]] = []
    for size in sorted(figures[FNAPI]):
        def get(runner: str, *keys: str) -> float:
            return sum(figures[runner][size][key] for key in keys)
        lines += [(f"{size:,} transcripts: wall time (s)",
                   get(FNAPI, "seconds"), get(PRISM, "seconds")),
                  (f"{size:,}: peak RSS, all processes (MiB)",
                   get(FNAPI, "cli_mib", "others_mib"), get(PRISM, "cli_mib", "others_mib")),
                  (f"{size:,}: peak RSS, the CLI (MiB)", get(FNAPI, "cli_mib"), get(PRISM, "cli_mib")),
                  (f"{size:,}: peak RSS, what it started (MiB)",
                   get(FNAPI, "others_mib"), get(PRISM, "others_mib"))]
    for window, (fnapi, prism) in enumerate(zip(latency[FNAPI], latency[PRISM]), 1):
        lines.append((f"streaming: window {window}, end to first job (s)", fnapi, prism))
    width = max(len(name) for name, _, _ in lines)
    rows = [f"{'measure'.ljust(width)}  {FNAPI:>11}  {PRISM:>11}  {'ratio':>6}"]
    for name, fnapi, prism in lines:
        ratio = f"{prism / fnapi:.2f}" if fnapi else "-"
        rows.append(f"{name.ljust(width)}  {fnapi:>11,.1f}  {prism:>11,.1f}  {ratio:>6}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda text: [int(n) for n in text.split(",")],
                        default=[20_000, 200_000])
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--window-seconds", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        print_rows([runners_row(args.sizes, args.windows, args.window_seconds, Path(tmp))])


if __name__ == "__main__":
    main()
