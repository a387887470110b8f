"""Pure modules under the local Bedrock service: model-driven validation, job state, fault plans."""
from __future__ import annotations

import pytest

from pipeline.local.faults import FaultPlan, Faults
from pipeline.local.jobs_store import ACTIVE, TERMINAL, TRANSITIONS, JobStore, Timing
from pipeline.local.runner import model_name, record_id_for
from pipeline.local.validation import ApiError, match_route, service_model, validate
from transforms.core.quotas import Quotas

PARAMS = {"jobName": "j1", "roleArn": "arn:aws:iam::123456789012:role/r",
          "modelId": "anthropic.claude-3-haiku-20240307-v1:0",
          "inputDataConfig": {"s3InputDataConfig": {"s3Uri": "s3://bkt-1/in/"}},
          "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": "s3://bkt-1/out/"}}}


def test_routes_come_from_the_service_model() -> None:
    op, labels = match_route("POST", "/model-invocation-job/arn%3Aaws%3Abedrock%3Aus-east-1%3A1/stop")
    assert op.name == "StopModelInvocationJob" and labels == {"jobIdentifier": "arn:aws:bedrock:us-east-1:1"}
    assert match_route("GET", "/model-invocation-jobs")[0].name == "ListModelInvocationJobs"
    assert match_route("POST", "/model-invocation-job")[0].name == "CreateModelInvocationJob"
    with pytest.raises(ApiError) as info:
        match_route("DELETE", "/model-invocation-job/abc")
    assert info.value.code == "ValidationException"


def test_error_status_codes_come_from_the_model() -> None:
    assert [ApiError(c, "").status for c in ("ValidationException", "ResourceNotFoundException",
                                             "ThrottlingException", "AccessDeniedException",
                                             "ServiceQuotaExceededException", "ConflictException",
                                             "SerializationException")] == [400, 404, 429, 403, 400, 400, 400]


def test_validate_accepts_a_minimal_valid_request() -> None:
    shape = service_model().operation_model("CreateModelInvocationJob").input_shape
    assert validate(shape, PARAMS) == []


def test_validate_reports_nested_paths_in_aws_form() -> None:
    shape = service_model().operation_model("CreateModelInvocationJob").input_shape
    bad = dict(PARAMS, tags=[{"key": "ok", "value": "v"}, {"key": "", "value": "v"}], timeoutDurationInHours=7)
    assert sorted(validate(shape, bad)) == [
        "Value '' at 'tags.2.member.key' failed to satisfy constraint: Member must have length "
        "greater than or equal to 1",
        "Value '7' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value "
        "greater than or equal to 24",
    ]


def store(**quota: int) -> JobStore:
    return JobStore(Quotas(**quota), timing=Timing(speed=1000))


def test_lifecycle_table_is_closed() -> None:
    reachable = {s for targets in TRANSITIONS.values() for s in targets}
    assert reachable <= ACTIVE | TERMINAL and set(TRANSITIONS) == ACTIVE
    assert not TERMINAL & set(TRANSITIONS)


def test_illegal_transition_raises_and_pending_stop_wins() -> None:
    jobs = store()
    job, created = jobs.create(dict(PARAMS))
    assert created and job.status == "Submitted"
    with pytest.raises(RuntimeError, match="illegal transition Submitted -> Completed"):
        jobs.transition(job, "Completed")
    jobs.request_stop(job.arn)
    assert job.status == "Stopping" and job.stop_requested.is_set()
    assert jobs.transition(job, "Validating") is False  # the runner learns the stop won
    assert job.status == "Stopped" and job.end_time is not None


def test_job_ids_are_seeded_and_arns_well_formed() -> None:
    a = JobStore(Quotas(), seed=5).create(dict(PARAMS))[0]
    b = JobStore(Quotas(), seed=5).create(dict(PARAMS))[0]
    assert a.job_id == b.job_id and len(a.job_id) == 12 and a.job_id.isalnum() and a.job_id.islower()
    assert a.arn == f"arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{a.job_id}"


def test_fault_plan_is_deterministic_and_exclusive() -> None:
    faults = Faults(seed=11, fail_job_rate=0.3, expire_job_rate=0.3, partial_job_rate=0.3,
                    slow_job_rate=0.5, slow_multiplier=4)
    plans = [FaultPlan(faults).for_job(seq) for seq in range(200)]
    assert plans == [FaultPlan(faults).for_job(seq) for seq in range(200)]
    assert all(p.fail + p.expire + p.partial <= 1 for p in plans)
    assert {p.slowdown for p in plans} == {1.0, 4}
    for kind in ("fail", "expire", "partial"):
        assert 10 < sum(getattr(p, kind) for p in plans) < 120, kind
    assert FaultPlan(Faults()).for_job(0) == FaultPlan(Faults()).for_job(1)  # no faults by default


@pytest.mark.parametrize("kwargs", [{"throttle_rate": -0.1}, {"record_error_rate": 1.5},
                                    {"partial_unprocessed": 2.0}, {"slow_multiplier": 0.5}])
def test_faults_reject_out_of_range_values(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="fault"):
        Faults(**kwargs)


def test_timing_scales_by_speed_and_rejects_nonsense() -> None:
    assert Timing(speed=4).real(2.0) == 0.5
    with pytest.raises(ValueError, match="speed"):
        Timing(speed=0)
    with pytest.raises(ValueError, match="per_record"):
        Timing(per_record=-1)


def test_partial_jobs_always_leave_something_out() -> None:
    plan = FaultPlan(Faults(partial_unprocessed=0.0))
    assert plan.unprocessed_from(10) == 9 and plan.unprocessed_from(1) == 0
    assert FaultPlan(Faults(partial_unprocessed=0.5)).unprocessed_from(10) == 5


def test_assigned_record_ids_and_model_names() -> None:
    rid = record_id_for("abc123def456", "shard.jsonl", 3)
    assert rid == record_id_for("abc123def456", "shard.jsonl", 3) != record_id_for("abc123def456", "shard.jsonl", 4)
    assert len(rid) == 11 and rid.isalnum() and rid == rid.upper()
    arn = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
    assert model_name(arn) == "anthropic.claude-3-haiku-20240307-v1:0"
    assert model_name("amazon.nova-lite-v1:0") == "amazon.nova-lite-v1:0"
