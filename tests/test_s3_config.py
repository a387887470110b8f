"""One S3 configuration: --aws-profile, the profile's region and --s3_endpoint_url reach Beam's own
S3 filesystem (s3:// input and output) as well as the project's clients. The same run shows the
run banner before the report, a cost limit it stays under, and no preflight probe left behind.

The run goes to a standalone local backend with --backend aws (tests/standalone.py), so nothing
but the CLI flags says where S3 is: no AWS_* endpoint, region or key variables are set.
"""
from __future__ import annotations

import json
import uuid
import os

from pipeline.__main__ import main
from pipeline.local.backend import DEFAULT_BUCKET
from tests.pipelines import transcripts
from tests.standalone import aws_flags, profile_file, standalone_backend  # noqa: F401 (fixtures)


def _read_jsonl(s3, prefix: str) -> list[dict]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=prefix)
            .get("Contents", [])]
    return [json.loads(line) for key in keys
            for line in s3.get_object(Bucket=DEFAULT_BUCKET, Key=key)["Body"].read().splitlines()
            if line.strip()]


def test_s3_input_and_output_through_the_flags_only(standalone_backend, profile_file,  # noqa: F811
                                                     capsys):
    s3 = standalone_backend.boto3_client("s3")
    calls = transcripts(12)
    # moto keeps S3 in one store per process: other tests' folders are in this bucket too.
    out = f"out-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=DEFAULT_BUCKET, Key=f"{out}-in/calls.jsonl", Body="".join(
        json.dumps({"id": t.id, "text": t.text}) + "\n" for t in calls).encode())
    assert not [k for k in os.environ if k.startswith("AWS_") and k != "AWS_CONFIG_FILE"
                and k != "AWS_SHARED_CREDENTIALS_FILE"]
    assert main(["run", *aws_flags(standalone_backend),
                 "--input", f"s3://{DEFAULT_BUCKET}/{out}-in/*.jsonl",
                 "--output", f"s3://{DEFAULT_BUCKET}/{out}", "--sink", "jsonl",
                 "--min-records-per-job", "1", "--max-cost-usd", "1"]) == 0, \
        capsys.readouterr().err
    captured = capsys.readouterr()
    [banner] = [line for line in captured.err.splitlines() if line.startswith("run id ")]
    run_id = banner.split()[2].rstrip(":")
    assert f"--run-id {run_id} to adopt its jobs" in banner
    assert f"run id          {run_id}" in captured.out  # the final report names the same run
    summaries = _read_jsonl(s3, f"{out}/summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(t.id for t in calls)
    written = [o["Key"] for o in s3.list_objects_v2(Bucket=DEFAULT_BUCKET, Prefix=f"{out}/")
               .get("Contents", [])]
    assert written and not [k for k in written if ".preflight-probe-" in k]  # probe removed
    assert "AWS_PROFILE" not in os.environ  # set for the run only


def test_plan_reads_s3_input_through_the_flags(standalone_backend, profile_file,  # noqa: F811
                                               capsys):
    s3 = standalone_backend.boto3_client("s3")
    key = f"plan-{uuid.uuid4().hex[:8]}/calls.jsonl"
    s3.put_object(Bucket=DEFAULT_BUCKET, Key=key, Body="".join(
        json.dumps({"id": t.id, "text": t.text}) + "\n" for t in transcripts(5)).encode())
    assert main(["plan", "--aws-profile", profile_file,
                 "--s3_endpoint_url", standalone_backend.s3_endpoint_url,
                 "--input", f"s3://{DEFAULT_BUCKET}/{key}",
                 "--min-records-per-job", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 5
