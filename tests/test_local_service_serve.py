"""serve-local in a subprocess and LocalBackend in process, both driven by unmodified boto3."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest

from pipeline.local.backend import SERVICE_ROLE_ARN, LocalBackend
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import Timing
from pipeline.local.serve import backend_from_args, build_parser
from tests.test_local_support import MODEL, record_lines, unique
from transforms.core.quotas import PROFILES, Quotas

ROOT = Path(__file__).resolve().parents[1]


def read_banner(proc: subprocess.Popen, timeout: float = 30.0) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Press Ctrl-C"):
            return "".join(lines)
    raise AssertionError(f"serve-local did not start: {''.join(lines)}{proc.stderr.read()}")


def test_serve_local_subprocess_serves_boto3_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.local.serve", "--s3-port", "0", "--bedrock-port", "0",
         "--speed", "1000", "--min-records-per-job", "1", "--bucket", "serve-local-test"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = read_banner(proc)
        exports = dict(re.findall(r"export (\w+)=(\S+)", banner))
        assert exports["AWS_ACCESS_KEY_ID"].startswith("LOCAL")
        assert exports["AWS_DEFAULT_REGION"] == "us-east-1"
        s3_url, bedrock_url = exports["AWS_ENDPOINT_URL_S3"], exports["AWS_ENDPOINT_URL_BEDROCK"]
        assert f"--s3_endpoint_url={s3_url}" in banner
        assert f"aws --endpoint-url {bedrock_url}" in banner

        s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1",
                          aws_access_key_id=exports["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=exports["AWS_SECRET_ACCESS_KEY"])
        s3.put_object(Bucket="serve-local-test", Key="in/a.jsonl", Body="\n".join(record_lines(4)).encode())
        # A script that knows nothing but the printed environment reaches both endpoints.
        script = (
            "import boto3, time\n"
            "b = boto3.client('bedrock')\n"
            f"arn = b.create_model_invocation_job(jobName='from-env', roleArn='{SERVICE_ROLE_ARN}', "
            f"modelId='{MODEL}', inputDataConfig={{'s3InputDataConfig': {{'s3Uri': 's3://serve-local-test/in/'}}}}, "
            "outputDataConfig={'s3OutputDataConfig': {'s3Uri': 's3://serve-local-test/out/'}})['jobArn']\n"
            "while b.get_model_invocation_job(jobIdentifier=arn)['status'] != 'Completed': time.sleep(0.02)\n"
            "print(arn)\n")
        child_env = {**env, **exports, "AWS_CONFIG_FILE": os.devnull,
                     "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        run = subprocess.run([sys.executable, "-c", script], env=child_env, capture_output=True,
                             text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        arn = run.stdout.strip()
        manifest = s3.get_object(Bucket="serve-local-test",
                                 Key=f"out/{arn.rsplit('/', 1)[-1]}/manifest.json.out")["Body"].read()
        assert json.loads(manifest)["successRecordCount"] == 4
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 130, err  # Ctrl-C exits as any interrupted command
    assert "Local backend stopped." in out


def test_serve_local_rejects_bad_flags() -> None:
    parser = build_parser()
    with pytest.raises(SystemExit, match="must be between 0 and 1"):
        backend_from_args(parser.parse_args(["--throttle-rate", "2"]))
    with pytest.raises(SystemExit, match="unknown quota profile"):
        backend_from_args(parser.parse_args(["--quota-profile", "huge"]))
    backend = backend_from_args(parser.parse_args(["--quota-profile", "article", "--max-concurrent-jobs", "7",
                                                   "--speed", "5", "--record-error-rate", "0.1"]))
    assert backend.quotas == PROFILES["article"].override(max_concurrent_jobs=7)


def test_local_backend_env_clients_and_bucket() -> None:
    with LocalBackend(bucket=unique("backend-bkt"), quotas=Quotas(min_records_per_job=1),
                      timing=Timing(speed=1000), faults=Faults(record_error_rate=1.0)) as backend:
        env = backend.env()
        assert env["AWS_ENDPOINT_URL_S3"] == backend.s3_endpoint_url
        assert env["AWS_ENDPOINT_URL_BEDROCK"] == backend.bedrock_endpoint_url
        assert env["AWS_DEFAULT_REGION"] == backend.region == "us-east-1"
        s3, bedrock = backend.boto3_client("s3"), backend.boto3_client("bedrock")
        assert backend.bucket in {b["Name"] for b in s3.list_buckets()["Buckets"]}
        s3.put_object(Bucket=backend.bucket, Key="in/a.jsonl", Body=record_lines(2)[0].encode())
        arn = bedrock.create_model_invocation_job(
            jobName="backend-job", roleArn=SERVICE_ROLE_ARN, modelId=MODEL,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{backend.bucket}/in/a.jsonl"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{backend.bucket}/out/"}})["jobArn"]
        deadline = time.monotonic() + 10
        while (job := bedrock.get_model_invocation_job(jobIdentifier=arn))["status"] != "Completed":
            assert time.monotonic() < deadline, job
            time.sleep(0.01)
        assert job["errorRecordCount"] == 1  # the faults given to the backend reach its service
        with pytest.raises(ValueError, match="serves"):
            backend.boto3_client("sqs")
    with pytest.raises(RuntimeError, match="not running"):
        _ = backend.bedrock_endpoint_url


def test_backend_stops_cleanly_with_jobs_still_running() -> None:
    with LocalBackend(bucket=unique("parked"), timing=Timing(submitted=60)) as backend:
        bedrock = backend.boto3_client("bedrock")
        arn = bedrock.create_model_invocation_job(
            jobName="parked", roleArn=SERVICE_ROLE_ARN, modelId=MODEL,
            inputDataConfig={"s3InputDataConfig": {"s3Uri": f"s3://{backend.bucket}/in/"}},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"s3://{backend.bucket}/out/"}})["jobArn"]
        assert bedrock.get_model_invocation_job(jobIdentifier=arn)["status"] == "Submitted"
        started = time.monotonic()
    assert time.monotonic() - started < 2.0

