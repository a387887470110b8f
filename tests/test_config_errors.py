"""Library errors name the config field; the CLI names the flag that sets it."""
import argparse
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.field_flags import cli_message, flag_for
from pipeline.options import BedrockBatchOptions
from transforms.config import BatchConfig
from transforms.errors import ConfigError
from transforms.jobs import JobConfig, validate_run_id
from transforms.quotas import Quotas
from transforms.sources import ReadTranscripts, TranscriptsFromRows, WatchTranscripts

SAMPLES = str(Path(__file__).resolve().parent.parent / "pipeline" / "samples" / "calls.jsonl")
JOB = JobConfig(role_arn="arn:aws:iam::123456789012:role/BedrockBatch")


def batch(**changes):
    return BatchConfig(**{"base_uri": "s3://b/p", "run_id": "r1", "job": JOB, **changes})


BAD = {
    "base_uri": lambda: batch(base_uri="gs://b/p"),
    "undersized_policy": lambda: batch(undersized_policy="drop"),
    "max_record_retries": lambda: batch(max_record_retries=-1),
    "poll_interval_seconds": lambda: batch(poll_interval_seconds=1.5),
    "on_demand_rps": lambda: batch(on_demand_rps=0),
    "on_demand_concurrency": lambda: batch(on_demand_concurrency=0),
    "redactor": lambda: batch(redactor="not callable"),
    "run_id": lambda: validate_run_id("Bad_Id"),
    "timeout_hours": lambda: JobConfig(role_arn="r", timeout_hours=2),
    "model_invocation_type": lambda: JobConfig(role_arn="r", model_invocation_type="Chat"),
    "vpc_subnet_ids": lambda: JobConfig(role_arn="r", vpc_subnet_ids=("subnet-1",)),
    "max_file_bytes": lambda: Quotas(max_file_bytes=0),
    "min_records_per_job": lambda: Quotas(min_records_per_job=10, max_records_per_job=5),
    "format": lambda: ReadTranscripts("in/*", format="xml"),
    "interval_seconds": lambda: WatchTranscripts("in/*", interval_seconds=0),
    "max_text_chars": lambda: TranscriptsFromRows(max_text_chars=0),
    "id_field": lambda: TranscriptsFromRows(id_field=""),
}


def cli_flags() -> set[str]:
    parser = argparse.ArgumentParser()
    BedrockBatchOptions._add_argparse_args(parser)
    return {flag for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("field", sorted(BAD))
def test_library_errors_name_the_field_and_the_cli_names_an_existing_flag(field):
    with pytest.raises(ConfigError) as caught:
        BAD[field]()
    error = caught.value
    assert field in error.fields and field in str(error)
    assert "--" not in str(error), "a library error names config fields, not CLI flags"
    message = cli_message(error)
    flags = cli_flags()
    for name in error.fields:
        assert flag_for(name) in flags and flag_for(name) in message
    assert "\n" not in message


def test_other_errors_keep_their_message():
    assert cli_message(ValueError("format is fine")) == "format is fine"


def test_the_cli_prints_the_flag_for_a_field_error(capsys):
    code = main(["run", "--input", SAMPLES, "--output", "unused", "--min-records-per-job", "10",
                 "--max-records-per-job", "5"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert err == ("error: --min-records-per-job (10) exceeds --max-records-per-job (5); lower "
                   "--min-records-per-job")


def test_a_field_error_raised_while_the_pipeline_is_built_names_the_flag(capsys, tmp_path):
    """WatchTranscripts refuses its interval when the pipeline is built (after the local backend
    started, before any job): exit 2 and the flag, not the field."""
    code = main(["run", "--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "out"),
                 "--streaming", "--window-seconds", "5", "--watch-seconds", "1",
                 "--watch-interval-seconds", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (code, err) == (2, "error: --watch-interval-seconds 0.0 must be > 0")
