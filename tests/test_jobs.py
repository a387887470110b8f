"""transforms/core/bedrock.py: deterministic names against botocore's Bedrock model, config checks,
request shape, and JobsClient against the real local Bedrock batch service (boto3 over HTTP,
moto S3)."""
from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from typing import Any, Iterator

import botocore.session
import pytest

from pipeline.local.backend import SERVICE_ROLE_ARN, LocalBackend
from pipeline.local.jobs_store import Timing
from transforms.core import layout
from transforms.core.bedrock import (HARVESTABLE, IN_FLIGHT, JOB_NAME_MAX, TERMINAL, JobConfig,
                                     JobsClient, JobStatus, client_token, job_id_from_arn, job_name,
                                     plan_submissions, run_prefix, validate_run_id)
from transforms.core.model import JobSpec, encode_jsonl_line
from transforms.core.quotas import Quotas
from transforms.prepare.families import family_for

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
OTHER_MODEL = "meta.llama3-8b-instruct-v1:0"
_SHAPES = botocore.session.get_session().get_service_model("bedrock")
_ids = itertools.count()


def _constraint(shape_name: str) -> tuple[re.Pattern[str], int, int]:
    meta = _SHAPES.shape_for(shape_name).metadata
    return re.compile(meta["pattern"]), meta["min"], meta["max"]


NAME_PATTERN, NAME_MIN, NAME_MAX = _constraint("ModelInvocationJobName")
TOKEN_PATTERN, TOKEN_MIN, TOKEN_MAX = _constraint("ModelInvocationIdempotencyToken")


def assert_valid_name(name: str) -> None:
    assert NAME_MIN <= len(name) <= NAME_MAX, name
    assert NAME_PATTERN.fullmatch(name), name


def assert_valid_token(token: str) -> None:
    assert TOKEN_MIN <= len(token) <= TOKEN_MAX, token
    assert TOKEN_PATTERN.fullmatch(token), token


# ---- names and tokens ---------------------------------------------------------------------------

def test_status_sets_cover_botocore_enum_exactly_once() -> None:
    enum = set(_SHAPES.shape_for("ModelInvocationJobStatus").enum)
    assert IN_FLIGHT | TERMINAL == enum and not IN_FLIGHT & TERMINAL
    assert HARVESTABLE == TERMINAL - {"Failed"}


def test_job_name_is_deterministic_readable_and_valid() -> None:
    name = job_name("nightly-7", "w1700000000", 2, 13)
    assert name == "bb-nightly-7-w1700000000-a2-0013"
    assert job_name("nightly-7", "w1700000000", 2, 13) == name
    assert name.startswith(run_prefix("nightly-7"))
    assert_valid_name(name)


def test_job_names_differ_per_window_attempt_and_shard() -> None:
    names = {job_name("run", w, a, s) for w in ("g", "w1", "w2") for a in (1, 2) for s in (0, 1, 9999)}
    assert len(names) == 3 * 2 * 3
    for name in names:
        assert_valid_name(name)


@pytest.mark.parametrize("run_id,window,shard", [
    ("a" * 24, "w" + "1" * 30, 123456),         # longest run id
    ("x", "w" + "9" * 80, 0),                   # very long window key
    ("run-" + "z" * 19, "w-1700000000" * 5, 10 ** 9),
])
def test_overlong_names_hash_but_keep_the_run_prefix(run_id: str, window: str, shard: int) -> None:
    plain = f"{run_prefix(run_id)}{window}-a1-{shard:04d}"
    assert len(plain) > JOB_NAME_MAX  # the case really takes the hash path
    name = job_name(run_id, window, 1, shard)
    assert len(name) <= JOB_NAME_MAX and name.startswith(run_prefix(run_id))
    assert_valid_name(name)
    assert job_name(run_id, window, 1, shard) == name
    assert job_name(run_id, window, 2, shard) != name
    assert job_name(run_id, window, 1, shard + 1) != name
    assert_valid_token(client_token(name))


def test_name_at_exactly_the_limit_is_kept_readable() -> None:
    run_id = "r" * 24
    window = "w" + "1" * (JOB_NAME_MAX - len(run_prefix(run_id)) - len("-a1-0000") - 1)
    name = job_name(run_id, window, 1, 0)
    assert len(name) == JOB_NAME_MAX and name.endswith(f"{window}-a1-0000")
    assert_valid_name(name)


def test_client_token_is_deterministic_valid_and_distinct() -> None:
    names = [job_name("run", "g", a, s) for a in (1, 2, 3) for s in range(50)]
    tokens = [client_token(n) for n in names]
    assert len(set(tokens)) == len(tokens)
    assert tokens == [client_token(n) for n in names]
    for token in tokens:
        assert_valid_token(token)


@pytest.mark.parametrize("run_id", ["a", "run-1", "0" * 24, "a-b-c"])
def test_validate_run_id_accepts(run_id: str) -> None:
    assert validate_run_id(run_id) == run_id
    assert_valid_name(run_prefix(run_id) + "g")


@pytest.mark.parametrize("run_id", ["", "Run", "run_1", "-run", "run-", "a" * 25, "run.1", "r n"])
def test_validate_run_id_rejects_with_the_flag_and_the_fix(run_id: str) -> None:
    with pytest.raises(ValueError, match=r"run_id .* is invalid: use 1-24 lowercase letters"):
        validate_run_id(run_id)
    with pytest.raises(ValueError):
        job_name(run_id, "g", 1, 0)


def test_job_id_from_arn() -> None:
    assert job_id_from_arn("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123") == "abc123"


@pytest.mark.parametrize("pending,sizes,in_flight,limit,expected", [
    ([0, 1, 2, 3], [5, 5, 5, 5], 0, 2, [0, 1]),  # equal sizes: queue order
    ([0, 1, 2, 3], [1, 9, 5, 9], 0, 3, [1, 3, 2]),  # the largest first
    ([4, 7], [0, 0, 0, 0, 3, 0, 0, 8], 1, 10, [7, 4]),
    ([4, 7], [0] * 8, 3, 3, []),
    ([4, 7], [0] * 8, 5, 3, []),  # more in flight than the quota (other clients): never negative
    ([], [], 0, 3, []),
])
def test_plan_submissions(pending: list[int], sizes: list[int], in_flight: int, limit: int,
                          expected: list[int]) -> None:
    assert plan_submissions(pending, sizes, in_flight, limit) == expected


# ---- JobConfig and request shape ----------------------------------------------------------------

@pytest.mark.parametrize("hours", [23, 169, 0, -1])
def test_timeout_out_of_range(hours: int) -> None:
    with pytest.raises(ValueError, match=r"timeout_hours .* Bedrock accepts 24 to 168"):
        JobConfig(SERVICE_ROLE_ARN, timeout_hours=hours)


@pytest.mark.parametrize("hours", [24, 72, 168])
def test_timeout_in_range(hours: int) -> None:
    assert JobConfig(SERVICE_ROLE_ARN, timeout_hours=hours).timeout_hours == hours


def test_invocation_type_must_be_known() -> None:
    with pytest.raises(ValueError, match="model_invocation_type 'Chat': use InvokeModel or Converse"):
        JobConfig(SERVICE_ROLE_ARN, model_invocation_type="Chat")
    assert JobConfig(SERVICE_ROLE_ARN, model_invocation_type="Converse").model_invocation_type == "Converse"


@pytest.mark.parametrize("subnets,groups", [(("subnet-1",), ()), ((), ("sg-1",))])
def test_vpc_settings_go_in_pairs(subnets: tuple[str, ...], groups: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="vpc_subnet_ids and vpc_security_group_ids go together"):
        JobConfig(SERVICE_ROLE_ARN, vpc_subnet_ids=subnets, vpc_security_group_ids=groups)


def _spec(name: str = "bb-run-g-a1-0000", bucket: str = "bkt", model: str = MODEL,
          prefix: str = "in") -> JobSpec:
    return JobSpec(job_name=name, client_request_token=client_token(name), model_id=model,
                   input_s3_uri=f"s3://{bucket}/{prefix}/{name}/", output_s3_uri=f"s3://{bucket}/out/",
                   record_count=2, input_bytes=100)


def test_minimal_request_has_exactly_the_required_members() -> None:
    spec = _spec()
    request = JobsClient(None, JobConfig(SERVICE_ROLE_ARN)).create_request(spec)
    assert request == {
        "jobName": spec.job_name, "clientRequestToken": spec.client_request_token,
        "roleArn": SERVICE_ROLE_ARN, "modelId": MODEL, "modelInvocationType": "InvokeModel",
        "inputDataConfig": {"s3InputDataConfig": {"s3Uri": spec.input_s3_uri, "s3InputFormat": "JSONL"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": spec.output_s3_uri}},
    }
    members = _SHAPES.operation_model("CreateModelInvocationJob").input_shape.members
    assert set(request) <= set(members)


def test_full_request_carries_kms_vpc_tags_and_timeout() -> None:
    kms = "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012"
    config = JobConfig(SERVICE_ROLE_ARN, model_invocation_type="Converse", timeout_hours=48,
                       kms_key_id=kms, vpc_subnet_ids=("subnet-a", "subnet-b"),
                       vpc_security_group_ids=("sg-1",), tags={"team": "cx", "env": "prod"})
    request = JobsClient(None, config).create_request(_spec())
    assert request["modelInvocationType"] == "Converse"
    assert request["timeoutDurationInHours"] == 48
    assert request["outputDataConfig"]["s3OutputDataConfig"]["s3EncryptionKeyId"] == kms
    assert request["vpcConfig"] == {"subnetIds": ["subnet-a", "subnet-b"], "securityGroupIds": ["sg-1"]}
    assert request["tags"] == [{"key": "env", "value": "prod"}, {"key": "team", "value": "cx"}]
    # The shape botocore serializes must accept it as is (types, required members, lengths).
    from botocore.validate import ParamValidator
    shape = _SHAPES.operation_model("CreateModelInvocationJob").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()


@pytest.mark.parametrize("window", [None, dt.datetime(2025, 3, 1, 12, 5, tzinfo=dt.timezone.utc),
                                    dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc)])
def test_layout_names_and_uris_satisfy_the_service_model(window: dt.datetime | None) -> None:
    s3_uri, _, s3_max = _constraint("S3Uri")
    base, run = "s3://my-bucket.prod/bedrock/batch", "nightly-2025"
    for attempt, shard in ((1, 0), (3, 9999)):
        name = job_name(run, layout.window_key(window), attempt, shard)
        assert_valid_name(name)
        spec = JobSpec(name, client_token(name), MODEL, layout.job_input_prefix(base, run, name),
                       layout.output_prefix(base, run), 1, 1)
        request = JobsClient(None, JobConfig(SERVICE_ROLE_ARN)).create_request(spec)
        for uri in (request["inputDataConfig"]["s3InputDataConfig"]["s3Uri"],
                    request["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]):
            assert s3_uri.fullmatch(uri) and len(uri) <= s3_max, uri


# ---- JobStatus ----------------------------------------------------------------------------------

ARN = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abc123def456"


def test_status_from_full_response() -> None:
    status = JobStatus.from_response({
        "jobArn": ARN, "jobName": "bb-run-g-a1-0000", "status": "InProgress", "modelId": MODEL,
        "message": "working", "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://b/run/output"}},
        "totalRecordCount": 10, "processedRecordCount": 4, "successRecordCount": 3, "errorRecordCount": 1})
    assert (status.total, status.processed, status.succeeded, status.errored) == (10, 4, 3, 1)
    assert status.message == "working" and not status.terminal
    assert status.job_output_uri == "s3://b/run/output/abc123def456/"
    assert status.progress() == "bb-run-g-a1-0000 (abc123def456): InProgress, 4/10 records"


def test_status_from_sparse_response() -> None:
    status = JobStatus.from_response({"jobArn": ARN, "jobName": "n", "status": "Completed",
                                      "modelId": MODEL})
    assert status.terminal and status.job_output_uri is None and status.total is None
    assert status.progress().endswith("Completed, counts n/a")
    trailing = JobStatus(ARN, "n", "Failed", MODEL, output_s3_uri="s3://b/out/")
    assert trailing.job_output_uri == "s3://b/out/abc123def456/"


# ---- JobsClient against the local Bedrock batch service -----------------------------------------

def _unique(prefix: str) -> str:
    return f"{prefix}{next(_ids)}{time.monotonic_ns() % 10**6}"


def _upload_input(backend: LocalBackend, spec: JobSpec, records: int = 2) -> None:
    s3 = backend.boto3_client("s3")
    family = family_for(spec.model_id)
    body = "".join(encode_jsonl_line(f"R{i:05d}", family.build_request(
        "Agent: Hello. Customer: My parcel is late. Agent: I will refund the shipping fee.",
        None, 64, 0.2)) for i in range(records))
    bucket, key = spec.input_s3_uri[len("s3://"):].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key + "shard-00000.jsonl", Body=body.encode())


def _wait_terminal(jobs: JobsClient, arn: str, timeout: float = 10.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = jobs.get(arn)
        if status.terminal or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


@pytest.fixture(scope="module")
def fast() -> Iterator[LocalBackend]:
    """Jobs finish in a few tens of milliseconds."""
    with LocalBackend(quotas=Quotas(min_records_per_job=1), timing=Timing(speed=500),
                      bucket=_unique("jobs-fast-")) as backend:
        yield backend


@pytest.fixture(scope="module")
def parked() -> Iterator[LocalBackend]:
    """Jobs stay Submitted for a minute unless stopped: in flight for as long as a test needs."""
    with LocalBackend(quotas=Quotas(min_records_per_job=1), timing=Timing(submitted=60, speed=1),
                      bucket=_unique("jobs-parked-")) as backend:
        yield backend


def _client(backend: LocalBackend, **config: Any) -> JobsClient:
    return JobsClient(backend.boto3_client("bedrock"), JobConfig(SERVICE_ROLE_ARN, **config))


def _new_spec(backend: LocalBackend, run: str, shard: int = 0, model: str = MODEL,
              window: str = "g") -> JobSpec:
    spec = _spec(job_name(run, window, 1, shard), backend.bucket, model, prefix=f"{run}/input")
    _upload_input(backend, spec)
    return spec


def test_create_twice_returns_one_job(fast: LocalBackend) -> None:
    jobs, run = _client(fast), _unique("c")
    spec = _new_spec(fast, run)
    first = jobs.create(spec)
    assert jobs.create(spec) == first
    listed = list(jobs.list(name_contains=spec.job_name))
    assert [j.arn for j in listed] == [first]
    assert listed[0].name == spec.job_name and listed[0].model_id == MODEL


def test_create_after_the_job_finished_returns_the_same_job(fast: LocalBackend) -> None:
    jobs, run = _client(fast), _unique("d")
    spec = _new_spec(fast, run)
    arn = jobs.create(spec)
    done = _wait_terminal(jobs, arn)
    assert done.status == "Completed", done
    assert (done.total, done.succeeded) == (2, 2)
    assert done.job_output_uri == f"{spec.output_s3_uri}{job_id_from_arn(arn)}/"
    assert jobs.create(spec) == arn
    assert jobs.get(arn).status == "Completed"
    assert [j.arn for j in jobs.list(name_contains=run_prefix(run))] == [arn]


def test_create_with_changed_settings_adopts_the_existing_job(fast: LocalBackend) -> None:
    """A restarted run with different tags reuses the token: the service says Conflict, create finds the job."""
    run = _unique("e")
    spec = _new_spec(fast, run)
    arn = _client(fast).create(spec)
    assert _client(fast, tags={"team": "cx"}).create(spec) == arn
    assert len(list(_client(fast).list(name_contains=run_prefix(run)))) == 1


def test_hashed_long_names_are_accepted_by_the_service(fast: LocalBackend) -> None:
    jobs, run = _client(fast), _unique("h")
    spec = _new_spec(fast, run, window="w" + "7" * 70)
    assert len(spec.job_name) == JOB_NAME_MAX
    arn = jobs.create(spec)
    assert jobs.find(spec.job_name).arn == arn


def test_create_rejected_request_raises(fast: LocalBackend) -> None:
    from botocore.exceptions import ClientError
    spec = _spec(job_name(_unique("v"), "g", 1, 0), fast.bucket, "cohere.unknown-model-v1")
    with pytest.raises(ClientError) as info:
        _client(fast).create(spec)
    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_reconcile_finds_only_the_runs_wanted_jobs(fast: LocalBackend) -> None:
    jobs, run = _client(fast), _unique("r")
    specs = [_new_spec(fast, run, shard) for shard in range(3)]
    arns = [jobs.create(s) for s in specs[:2]]
    other = _new_spec(fast, run + "x", 0)  # a run whose prefix extends this one's id
    jobs.create(other)
    found = jobs.reconcile([s.job_name for s in specs], run_prefix(run))
    assert {name: s.arn for name, s in found.items()} == {specs[0].job_name: arns[0],
                                                           specs[1].job_name: arns[1]}
    only_first = jobs.reconcile([specs[0].job_name], run_prefix(run))
    assert list(only_first) == [specs[0].job_name]
    assert jobs.reconcile([other.job_name], run_prefix(run)) == {}
    assert jobs.find(specs[2].job_name) is None


def test_in_flight_counts_only_this_models_active_jobs(parked: LocalBackend) -> None:
    jobs, run = _client(parked), _unique("f")
    before = {m: jobs.in_flight(m) for m in (MODEL, OTHER_MODEL)}
    a0, a1, a2 = (jobs.create(_new_spec(parked, run, i)) for i in range(3))
    jobs.create(_new_spec(parked, run, 3, model=OTHER_MODEL))
    assert jobs.in_flight(MODEL) == before[MODEL] + 3
    assert jobs.in_flight(OTHER_MODEL) == before[OTHER_MODEL] + 1
    jobs.stop(a2)
    assert _wait_terminal(jobs, a2).status == "Stopped"
    assert jobs.in_flight(MODEL) == before[MODEL] + 2
    assert {jobs.get(a).status for a in (a0, a1)} == {"Submitted"}


def test_stop_and_list_by_status(parked: LocalBackend) -> None:
    jobs, run = _client(parked), _unique("s")
    keep, stop = (jobs.create(_new_spec(parked, run, i)) for i in range(2))
    jobs.stop(stop)
    final = _wait_terminal(jobs, stop)
    assert final.status == "Stopped" and final.message
    submitted = {j.arn for j in jobs.list(name_contains=run_prefix(run), status="Submitted")}
    stopped = {j.arn for j in jobs.list(name_contains=run_prefix(run), status="Stopped")}
    assert (submitted, stopped) == ({keep}, {stop})
    assert all(j.status == "Stopped" for j in jobs.list(status="Stopped"))
    everything = [j.arn for j in jobs.list(name_contains=run_prefix(run))]
    assert everything == [keep, stop]  # ascending creation time

