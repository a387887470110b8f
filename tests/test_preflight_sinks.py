"""Preflight of the Kafka and BigQuery sinks, against a real broker and the BigQuery emulator."""
from __future__ import annotations

import json
import socket

import pytest

from pipeline.__main__ import main
from pipeline.exit_codes import UsageError
from pipeline.cli.preflight import check_bigquery, check_kafka
from tests.test_sinks_bigquery import new_table
from transforms.core.model import SUMMARY_FIELDS


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kafka_sink_without_a_broker_is_refused(tmp_path, capsys):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "Customer: hi."}) + "\n")
    servers = f"127.0.0.1:{_closed_port()}"
    assert main(["run", "--input", str(path), "--sink", "kafka", "--kafka-bootstrap-servers",
                 servers, "--kafka-summaries-topic", "s", "--kafka-failures-topic", "f"]) == 2
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"--kafka-bootstrap-servers {servers}: no broker answered" in line
    assert "run id" not in err


def test_kafka_topics_exist_or_are_created_by_the_broker(kafka_bootstrap):
    """The test broker keeps Kafka's default auto.create.topics.enable=true, so a missing topic
    passes after the broker's configuration was read."""
    from tests.test_kafka_source import create_topic

    check_kafka(kafka_bootstrap, [create_topic(kafka_bootstrap, 1)])
    check_kafka(kafka_bootstrap, ["not-yet-created"])


def test_bigquery_tables_or_their_dataset_must_exist(bq_env, bq_client):
    table = new_table(bq_client, SUMMARY_FIELDS)
    project, rest = table.split(":")
    dataset = rest.split(".")[0]
    check_bigquery([table], "CREATE_NEVER")
    check_bigquery([f"{project}:{dataset}.later"], "CREATE_IF_NEEDED")
    with pytest.raises(UsageError, match="does not exist and --bigquery-create-disposition is "
                                         "CREATE_NEVER"):
        check_bigquery([f"{project}:{dataset}.later"], "CREATE_NEVER")
    with pytest.raises(UsageError, match=f"dataset {project}:nodataset of table"):
        check_bigquery([f"{project}:nodataset.t"], "CREATE_IF_NEEDED")
