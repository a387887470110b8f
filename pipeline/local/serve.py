"""`python -m pipeline serve-local`: run local S3 and the local Bedrock batch service until Ctrl-C
(or SIGTERM), then stop them and exit 130, as any interrupted command does."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from transforms.core.aws import beam_s3_options
from transforms.core.quotas import profile

from pipeline.exit_codes import INTERRUPTED
from pipeline.local.backend import (DEFAULT_BUCKET, FOREIGN_CREDENTIAL_VARS, SERVICE_ROLE_ARN,
                                    LocalBackend)
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import Timing

QUOTA_FLAGS = ("max_concurrent_jobs", "max_records_per_file", "max_records_per_job",
               "min_records_per_job", "max_file_bytes", "max_job_bytes")
FAULT_FLAGS = ("throttle_rate", "record_error_rate", "partial_job_rate", "expire_job_rate",
               "fail_job_rate", "slow_job_rate", "stop_job_rate", "torn_line_rate",
               "missing_output_rate", "manifest_mismatch_rate", "s3_error_rate",
               "lost_create_rate")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipeline serve-local",
        description="Run the embedded local backend (S3 + Bedrock batch inference API) on localhost "
                    "for boto3, the AWS CLI and Beam pipelines. Its model is a local extractive "
                    "summarizer, not a real LLM.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1; any other address is reachable from "
                        "other machines and is warned about)")
    p.add_argument("--s3-port", type=int, default=5100, help="S3 port; 0 picks a free one (default: 5100)")
    p.add_argument("--bedrock-port", type=int, default=5101,
                   help="Bedrock port; 0 picks a free one (default: 5101)")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket to create at start ('' for none)")
    p.add_argument("--quota-profile", default="aws-default", help="article | aws-default")
    for name in QUOTA_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=f"override the profile's {name}")
    p.add_argument("--speed", type=float, default=1.0,
                   help="job clock speed factor: 10 runs every job phase 10x faster (default: 1)")
    for name in FAULT_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=float, default=0.0,
                       help=f"fault injection: fraction in [0, 1] ({name})")
    p.add_argument("--slow-multiplier", type=float, default=10.0,
                   help="how much slower the slow jobs run (default: 10)")
    p.add_argument("--fault-seed", type=int, default=0, help="seed that makes injected faults repeatable")
    p.add_argument("--verbose", action="store_true", help="log every request")
    return p


def backend_from_args(args: argparse.Namespace) -> LocalBackend:
    try:
        quotas = profile(args.quota_profile).override(**{n: getattr(args, n) for n in QUOTA_FLAGS})
        faults = Faults(seed=args.fault_seed, slow_multiplier=args.slow_multiplier,
                        **{n: getattr(args, n) for n in FAULT_FLAGS})
        timing = Timing(speed=args.speed)
    except ValueError as e:
        raise SystemExit(f"serve-local: {e}") from None
    return LocalBackend(quotas=quotas, faults=faults, timing=timing, region=args.region, host=args.host,
                        s3_port=args.s3_port, bedrock_port=args.bedrock_port,
                        bucket=args.bucket or None, quiet=not args.verbose)


def instructions(backend: LocalBackend) -> str:
    """How to point boto3, the AWS CLI and Beam at the running backend.

    It includes this backend's secret key: the user who started it needs the key to reach it,
    the banner goes to that user's stdout (the request log never shows it), and the key is random
    per start, so a copy that leaks opens nothing once the backend has stopped.
    """
    env = backend.env()
    s3, bedrock = backend.s3_endpoint_url, backend.bedrock_endpoint_url
    lines = [
        "Local Bedrock batch backend is running (model: local extractive summarizer).",
        f"  S3 endpoint:      {s3}",
        f"  Bedrock endpoint: {bedrock}",
        f"  Bucket:           {backend.bucket or '(none created)'}",
        f"  Service role ARN: {SERVICE_ROLE_ARN}",
        "",
        "Environment for boto3 / the AWS CLI (paste into a shell; the key is new at every start):",
        *(f"  export {k}={v}" for k, v in env.items()),
        f"  unset {' '.join(FOREIGN_CREDENTIAL_VARS)}",
        "",
        "AWS CLI flags:",
        f"  aws --endpoint-url {bedrock} --region {backend.region} bedrock list-model-invocation-jobs",
        f"  aws --endpoint-url {s3} --region {backend.region} s3 ls",
        "",
        "Beam S3 filesystem flags:",
        "  " + " ".join(f"--{name}={value}"
                        for name, value in beam_s3_options(backend.aws_config()).items()),
        "",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        if done.is_set():  # a second Ctrl-C: stopping the servers takes too long for the user
            os._exit(INTERRUPTED)
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        backend = backend_from_args(args).start()
    except OSError as e:
        print(f"serve-local: cannot bind the local endpoints ({e}); choose other ports with "
              f"--s3-port / --bedrock-port, or 0 for free ones", file=sys.stderr)
        return 2
    with backend:
        print(instructions(backend), flush=True)
        while not done.wait(0.5):  # short waits keep the main thread responsive to signals
            pass
    print("Local backend stopped.", flush=True)
    return INTERRUPTED  # Ctrl-C or SIGTERM is its only way to end, and exits as any interrupt


if __name__ == "__main__":
    sys.exit(main())
