"""Where the report's jobs come from: the real local Bedrock service and moto S3 (no pipeline),
and what the report says when the service cannot be asked or the folder cannot be written."""
from __future__ import annotations

import json
import uuid

from pipeline.options import BedrockBatchOptions
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
from pipeline.report.files import run_jobs
from pipeline.running.outcome import Report, write_run_report
from tests.pipelines import local_config
from pipeline.pricing import estimate_cost
from transforms.core.aws import AwsConfig

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
# moto keeps S3 objects per process and job ids repeat across backends (seeded): a prefix of
# this module's own keeps other tests' objects out of its jobs' output folders.
PREFIX = f"report-jobs-{uuid.uuid4().hex[:8]}"


def create_job(bedrock, name: str) -> str:
    prefix = f"s3://{DEFAULT_BUCKET}/{PREFIX}"
    return bedrock.create_model_invocation_job(
        jobName=name, roleArn=SERVICE_ROLE_ARN, modelId=HAIKU,
        inputDataConfig={"s3InputDataConfig": {"s3Uri": f"{prefix}/input/{name}/"}},
        outputDataConfig={"s3OutputDataConfig": {"s3Uri": f"{prefix}/output/"}})["jobArn"]


def test_the_runs_jobs_with_times_and_the_tokens_of_their_manifests(local_backend):
    bedrock, s3 = local_backend.boto3_client("bedrock"), local_backend.boto3_client("s3")
    first = create_job(bedrock, "bb-rep1-g-a1-0000")
    second = create_job(bedrock, "bb-rep1-g-a1-0001")
    create_job(bedrock, "copy-bb-rep1-g-a1-0000")  # holds the prefix, but another run's
    # The first job's manifest where Bedrock writes it: <output>/<job id>/manifest.json.out.
    s3.put_object(Bucket=DEFAULT_BUCKET,
                  Key=f"{PREFIX}/output/{first.rsplit('/', 1)[-1]}/manifest.json.out",
                  Body=json.dumps({"totalRecordCount": 3, "successRecordCount": 3,
                                   "inputTokenCount": 700, "outputTokenCount": 90}).encode())

    jobs, note = run_jobs(bedrock, s3, "rep1")
    assert note is None
    assert [(j["name"], j["arn"]) for j in jobs] == [("bb-rep1-g-a1-0000", first),
                                                     ("bb-rep1-g-a1-0001", second)]
    assert all(j["submitted"] and j["expires"] and j["window"] == "global" for j in jobs)
    assert (jobs[0]["input_tokens"], jobs[0]["output_tokens"]) == (700, 90)
    assert jobs[0]["cost_usd"] == estimate_cost(HAIKU, 700, 90)
    assert (jobs[1]["input_tokens"], jobs[1]["cost_usd"]) == (None, None)  # no manifest yet


def test_a_service_that_cannot_be_asked_leaves_a_note_not_an_error(local_backend):
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused at once.
    nowhere = AwsConfig(region="us-east-1", bedrock_endpoint_url="http://127.0.0.1:9",
                        access_key_id="x", secret_access_key="y")
    jobs, note = run_jobs(nowhere.client("bedrock", max_attempts=1),
                          local_backend.boto3_client("s3"), "rep2")
    assert jobs is None
    assert note.startswith("The jobs could not be listed (EndpointConnectionError")


def test_a_report_that_cannot_be_written_is_named_instead_of_its_path(local_backend, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    opts = BedrockBatchOptions(["--output", str(tmp_path / "out"),
                                "--report-dir", str(blocker / "report")])
    report = Report("rep3", {"records_in": 0})
    where = write_run_report(report, opts, local_config(local_backend, "rep3"), streaming=False,
                             jobs=[], jobs_note=None)
    assert where.startswith(f"not written to {blocker / 'report'}: ")
    assert Report("rep3", {}, report_html=where).lines(HAIKU)[-1] == f"report          {where}"
