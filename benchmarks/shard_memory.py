"""Memory of writing one window's shards: the streaming ShardWriter against holding the window.

Issue 4 asks that no worker hold a window's records in memory beyond what one shard needs. This
writes N records (default 20,000, ~2 KB each) through ``ShardWriter`` to the local S3 and, as the
baseline in the same run, builds the same shard files the naive way (records and lines collected
in memory first). Peak Python allocations come from tracemalloc; the local backend runs in its
own process (serve-local) so the objects it stores are not counted.

    .venv/bin/python -m benchmarks.shard_memory [--records N]
"""
from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import time
import tracemalloc
from typing import Callable, Iterator

from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from transforms.config import BatchConfig
from transforms.core.aws import AwsConfig
from transforms.core.bedrock import JobConfig, JobsClient
from transforms.core.model import BatchRecord, encode_jsonl_line
from transforms.core.quotas import Quotas
from transforms.core.storage import Storage
from transforms.shards.shard_writer import ShardWriter

TEXT = ("Customer: my order arrived damaged and I would like a replacement please. "
        "Agent: I am sorry to hear that, I have shipped a replacement today. ") * 14


class Records:
    """A re-iterable stream of records made on the fly, as Beam's grouped values are."""

    def __init__(self, count: int):
        self.count = count

    def __iter__(self) -> Iterator[BatchRecord]:
        for i in range(self.count):
            body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 512,
                    "messages": [{"role": "user", "content": [{"type": "text",
                                                              "text": f"{i} {TEXT}"}]}]}
            line = encode_jsonl_line(f"R{i:015d}", body)
            yield BatchRecord(f"R{i:015d}", f"call-{i}", body, len(line.encode()), {"n": i})


def peak_mib(work: Callable[[], object]) -> tuple[float, float]:
    tracemalloc.start()
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, elapsed


def naive(records: Records, storage: Storage, base: str, per_file: int) -> None:
    """What a straightforward implementation does: hold the window, then cut it into files."""
    held = sorted(records, key=lambda r: r.record_id)
    lines = [r.jsonl_line() for r in held]
    for start in range(0, len(lines), per_file):
        body = "".join(lines[start:start + per_file]).encode()
        bucket, key = base[5:].split("/", 1)
        storage._client().put_object(Bucket=bucket, Key=f"{key}/naive-{start}.jsonl", Body=body)


@contextlib.contextmanager
def serve_local() -> Iterator[tuple[str, str, dict[str, str]]]:
    """`python -m pipeline serve-local` in a subprocess; yields its S3 and Bedrock endpoints and
    the credentials it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "serve-local", "--s3-port", "0",
                             "--bedrock-port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        urls: dict[str, str] = {}
        exports: dict[str, str] = {}
        for line in proc.stdout:
            match = re.match(r"\s+(S3|Bedrock) endpoint:\s+(\S+)", line)
            if match:
                urls[match[1]] = match[2]
            exports.update(re.findall(r"export (AWS_\w+)=(\S+)", line))
            if line.startswith("Press Ctrl-C"):
                break
        yield urls["S3"], urls["Bedrock"], exports
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    quotas = Quotas(max_records_per_file=5_000, max_records_per_job=50_000, min_records_per_job=1)
    with serve_local() as (s3_url, bedrock_url, exports):
        aws = AwsConfig(region="us-east-1", s3_endpoint_url=s3_url, bedrock_endpoint_url=bedrock_url,
                        access_key_id=exports["AWS_ACCESS_KEY_ID"],
                        secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        config = BatchConfig(base_uri=f"s3://{DEFAULT_BUCKET}/bench", run_id="bench",
                             job=JobConfig(role_arn=SERVICE_ROLE_ARN), quotas=quotas, aws=aws)
        storage = Storage(aws.client("s3"))
        writer = ShardWriter(config, storage, JobsClient(aws.client("bedrock"), config.job))
        records = Records(args.records)
        stream_mib, stream_s = peak_mib(lambda: writer.write(records, "g", 1, None, None, pool="g"))
        naive_mib, naive_s = peak_mib(lambda: naive(records, storage, config.base_uri,
                                                    quotas.max_records_per_file))
    data_mib = sum(r.size_bytes for r in records) / 2**20
    print(f"records {args.records}, input {data_mib:.1f} MiB, files of {quotas.max_records_per_file}")
    print(f"{'':24}{'peak MiB':>10}{'seconds':>10}")
    print(f"{'baseline (hold window)':24}{naive_mib:>10.1f}{naive_s:>10.2f}")
    print(f"{'ShardWriter (streamed)':24}{stream_mib:>10.1f}{stream_s:>10.2f}")
    print(f"memory ratio baseline/streamed: {naive_mib / stream_mib:.1f}x")


if __name__ == "__main__":
    main()
