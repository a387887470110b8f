"""Library errors name the config field; the CLI names the flag that sets it."""
import argparse
import re
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline.cli.field_flags import cli_message, flag_for
from pipeline.options import BedrockBatchOptions
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig, validate_run_id
from transforms.core.errors import ConfigError
from transforms.core.quotas import Quotas
from transforms.prepare.records import PromptConfig
from transforms.sinks import WriteRows, WriteSummaries
from transforms.sinks.bigquery import WriteSummariesToBigQuery
from transforms.sources import ReadTranscripts, TranscriptsFromRows, WatchTranscripts
from transforms.sources.kafka import ReadTranscriptsFromKafka
from transforms.summarize import fixed_windows_with_lateness

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
    "template": lambda: PromptConfig(template="Summarize the call."),
    "system_prompt": lambda: PromptConfig.from_files(system_path="/nonexistent/system.txt"),
    "max_tokens": lambda: PromptConfig(max_tokens=0),
    "temperature": lambda: PromptConfig(temperature=1.5),
    "window_seconds": lambda: fixed_windows_with_lateness(0),
    "allowed_lateness_seconds": lambda: kafka_source(allowed_lateness_seconds=-1),
    "stop_after_seconds": lambda: kafka_source(stop_after_seconds=0),
    "bootstrap_servers": lambda: ReadTranscriptsFromKafka(" ", "calls"),
    "topic": lambda: ReadTranscriptsFromKafka("localhost:9092", ""),
}


def kafka_source(**changes):
    return ReadTranscriptsFromKafka("localhost:9092", "calls", **changes)


# Settings of the public transforms that no CLI flag sets: their ConfigError names the setting,
# and the CLI's message keeps that name rather than inventing a flag.
LIBRARY_ONLY = {
    "kind": lambda: WriteRows("/tmp/x", kind="calls"),
    "path": lambda: WriteSummaries(""),
    "insights_schema": lambda: WriteRows("/tmp/x", kind="failures",
                                         insights_schema={"type": "object"}),
    "write_disposition": lambda: WriteSummariesToBigQuery("p-123456:ds.t",
                                                          write_disposition="WRITE_TRUNCATE"),
    "transient_retries": lambda: WriteSummariesToBigQuery("p-123456:ds.t", transient_retries=-1),
    "unreachable_timeout_s": lambda: WriteSummariesToBigQuery("p-123456:ds.t",
                                                              unreachable_timeout_s=0),
    "insert_client": lambda: WriteSummariesToBigQuery("p-123456:ds.t", insert_client=object()),
    "table": lambda: WriteSummariesToBigQuery("summaries"),
    "start_offset": lambda: kafka_source(start_offset="middle"),
    "poll_timeout_seconds": lambda: kafka_source(poll_timeout_seconds=0),
    "group_id": lambda: kafka_source(group_id=""),
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


@pytest.mark.parametrize("field", sorted(LIBRARY_ONLY))
def test_transform_settings_raise_config_errors_naming_the_field(field):
    with pytest.raises(ConfigError) as caught:
        LIBRARY_ONLY[field]()
    error = caught.value
    assert field in error.fields and field in str(error) and "\n" not in str(error)
    named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", cli_message(error)))
    assert named <= cli_flags(), f"the message names flags that do not exist: {named}"


def test_a_sink_format_error_names_the_setting_not_the_input_format_flag():
    """``format`` is --input-format for a source; a file sink's format is no flag (--sink
    picks the sink, and `collect` refuses a --sink that is not a file format)."""
    with pytest.raises(ConfigError) as caught:
        WriteSummaries("/tmp/x", format="csv")
    assert caught.value.fields == ("format",)
    assert "format 'csv' is not a file format" in str(caught.value)


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
    """WatchTranscripts refuses max_text_chars when the pipeline is built (the CLI's flag parsing
    lets it through): exit 2 and the flag, not the field."""
    code = main(["run", "--input", str(tmp_path / "*.jsonl"), "--output", str(tmp_path / "out"),
                 "--streaming", "--window-seconds", "5", "--watch-seconds", "1",
                 "--max-text-chars", "0"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert (code, err) == (2, "error: --max-text-chars must be positive, got 0")
