"""Sink outages on real services: a Kafka broker killed mid-run and restarted on the same port and
log dir (a broker of this module's own, not the session one), and a BigQuery emulator that is
not there. What is checked is what README's "Guarantees" promise: no row lost, duplicates
allowed (counted and printed), and the documented exit code."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests import rows as sample_rows
from tests.jvm_services import (KAFKA_LOG4J2, REPO_ROOT, STARTUP_TIMEOUT_S, ServiceProcess,
                                broker_answers, free_port, jar_classpath, kafka_server_properties,
                                port_open)
from tests.pipelines import transcripts
from tests.bq_services import (LAUNCHER, PROJECT, BigQueryEmulator, _answers, emulator_python,
                               write_offline_credentials)
from transforms.sinks.bigquery import BigQueryUnreachable, WriteSummariesToBigQuery
from transforms.sinks.kafka import WriteSummariesToKafka

DEADLINE_S = 180.0


class RestartableKafka:
    """A single-node KRaft broker that can be killed (SIGKILL, as in a crash) and started again
    on the same ports and log dir."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.broker_port, controller_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.broker_port}"
        self.properties = work / "server.properties"
        self.properties.write_text(kafka_server_properties(work / "data", self.broker_port,
                                                           controller_port))
        log4j = work / "log4j2.properties"
        log4j.write_text(KAFKA_LOG4J2)
        self.java = ["java", "-Xms128m", "-Xmx512m", f"-Dlog4j2.configurationFile={log4j}",
                     "-cp", jar_classpath("kafka")]
        subprocess.run(self.java + ["kafka.tools.StorageTool", "format", "-t", str(uuid.uuid4()),
                                    "-c", str(self.properties), "--standalone"],
                       check=True, capture_output=True, cwd=work, timeout=STARTUP_TIMEOUT_S)
        self.starts = 0
        self.process: ServiceProcess | None = None

    def start(self) -> None:
        self.starts += 1
        self.process = ServiceProcess("kafka broker", self.java + ["kafka.Kafka", str(self.properties)],
                                      self.work / f"broker-{self.starts}.log", self.work)
        self.process.wait_until(lambda: True if port_open(self.broker_port)
                                and broker_answers(self.bootstrap) else None)

    def kill(self) -> None:
        os.killpg(self.process.process.pid, signal.SIGKILL)
        self.process.process.wait(30)
        self.process.stop()  # closes the log

    def create_topic(self) -> str:
        topic = f"outage-{uuid.uuid4().hex[:10]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
        return topic

    def keys(self, topic: str, at_least: int) -> Counter:
        """Message keys of the topic, read from offset 0 until ``at_least`` arrived (plus a short
        settle so duplicates show up too) or the deadline passed."""
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": uuid.uuid4().hex,
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, 0, 0)])
        keys: Counter = Counter()
        deadline, settle = time.monotonic() + 60, None
        try:
            while time.monotonic() < deadline:
                if sum(keys.values()) >= at_least:
                    settle = settle or time.monotonic() + 1.0
                    if time.monotonic() > settle:
                        break
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    keys[msg.key().decode()] += 1
        finally:
            consumer.close()
        return keys

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def restartable_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartableKafka]:
    broker = RestartableKafka(tmp_path_factory.mktemp("kafka-outage"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def report_duplicates(what: str, keys: Counter) -> int:
    duplicates = sum(n - 1 for n in keys.values())
    print(f"{what}: {sum(keys.values())} messages, {len(keys)} distinct keys, {duplicates} duplicates")
    return duplicates


# --- Kafka: a broker down for less than the delivery timeout ------------------------------------

# The gate below holds the pipeline thread (the DirectRunner runs bundles in this process) so
# that the broker dies at a known point: after the first rows were delivered and before the rest
# are produced. It only waits; every row still goes through the real sink to the real broker.
_GATES: dict[str, dict[str, threading.Event]] = {}


class _HoldAfter(beam.DoFn):
    def __init__(self, gate: str, first: int, total: int) -> None:
        self.gate, self.first, self.total = gate, first, total
        self.seen = 0

    def process(self, element):
        events = _GATES[self.gate]
        if self.seen == self.first:
            events["first_sent"].set()
            if not events["broker_down"].wait(DEADLINE_S):
                raise TimeoutError("the test never killed the broker")
        self.seen += 1
        yield element
        if self.seen == self.total:
            events["all_produced"].set()


def test_broker_killed_and_restarted_mid_bundle_loses_no_row(restartable_kafka):
    """The broker dies after the first rows were delivered and while the rest are produced; it
    comes back within librdkafka's message timeout, so the same bundle delivers everything."""
    broker = restartable_kafka
    topic = broker.create_topic()
    items = sample_rows.summaries(40)
    first = 10
    gate = uuid.uuid4().hex
    _GATES[gate] = {name: threading.Event() for name in ("first_sent", "broker_down", "all_produced")}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
                (p | beam.Create(items) | beam.ParDo(_HoldAfter(gate, first, len(items)))
                 | WriteSummariesToKafka(broker.bootstrap, topic))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    pipeline = threading.Thread(target=run)
    pipeline.start()
    try:
        assert _GATES[gate]["first_sent"].wait(DEADLINE_S), errors
        assert sum(broker.keys(topic, first).values()) >= first, "the first rows never arrived"
        broker.kill()
        _GATES[gate]["broker_down"].set()
        assert _GATES[gate]["all_produced"].wait(DEADLINE_S), errors
        # The rest are in the producer's queue and the broker is down: bring it back.
        broker.start()
        pipeline.join(DEADLINE_S)
        assert not pipeline.is_alive(), "the pipeline did not finish after the broker came back"
    finally:
        _GATES[gate]["broker_down"].set()
        pipeline.join(DEADLINE_S)
        del _GATES[gate]
    assert not errors, errors
    keys = broker.keys(topic, len(items))
    assert set(keys) == {s.transcript_id for s in items}
    report_duplicates("summaries topic", keys)


# --- Kafka: a broker down for longer than the delivery timeout, through the CLI -----------------

def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", "run", *args], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read_stderr(process: subprocess.Popen, lines: list[str], seen: threading.Event,
                 marker: str) -> None:
    for line in process.stderr:
        lines.append(line)
        if marker in line:
            seen.set()


def test_broker_down_past_the_delivery_timeout_exits_1_and_a_rerun_delivers_every_row(
        restartable_kafka, tmp_path):
    """`run --sink kafka`: the broker dies once the batch jobs are submitted and stays down, so
    the sink gives up after --kafka-delivery-timeout-seconds with one clear line and exit 1
    (README: "an outage the run could not ride out"). After the broker is back, a rerun with
    the same --run-id delivers every summary and failure row."""
    broker = restartable_kafka
    summaries_topic, failures_topic = broker.create_topic(), broker.create_topic()
    items = transcripts(6, prefix="outage")
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n" for t in items)
                    + '{"id": "no-text"}\n')
    args = ["--input", str(path), "--sink", "kafka", "--kafka-bootstrap-servers", broker.bootstrap,
            "--kafka-summaries-topic", summaries_topic, "--kafka-failures-topic", failures_topic,
            "--min-records-per-job", "1", "--run-id", f"outage-{uuid.uuid4().hex[:8]}",
            "--kafka-delivery-timeout-seconds", "3"]

    t0 = time.monotonic()
    first = _cli(*args)
    lines: list[str] = []
    submitted = threading.Event()
    reader = threading.Thread(target=_read_stderr, args=(first, lines, submitted, "submitted "))
    reader.start()
    try:
        # Preflight found the broker; the job now runs for seconds before any row is produced.
        assert submitted.wait(DEADLINE_S), "".join(lines)
        broker.kill()
        first.wait(DEADLINE_S)
    finally:
        if first.poll() is None:
            first.kill()
        reader.join(DEADLINE_S)
    stderr = "".join(lines)
    print(f"first run: exit {first.returncode} after {time.monotonic() - t0:.0f}s")
    assert first.returncode == 1, stderr
    [error] = [line for line in lines if line.startswith("error: ")]
    assert "_MSG_TIMED_OUT" in error and "--kafka-delivery-timeout-seconds" in error, error
    assert "Kafka sink, topic" in stderr  # the warning while the broker was unreachable

    broker.start()
    # The rerun calls the CLI's main() in this process, as the other CLI tests do: only the run
    # the outage ends needs a process of its own (to read its exit code and error line).
    from pipeline.__main__ import main
    assert main(["run", *args]) == 0
    print(f"both runs: {time.monotonic() - t0:.0f}s")
    summaries = broker.keys(summaries_topic, len(items))
    failures = broker.keys(failures_topic, 1)
    assert set(summaries) == {t.id for t in items}
    assert set(failures) == {"no-text"}
    report_duplicates("summaries topic", summaries)
    report_duplicates("failures topic", failures)


# --- BigQuery unreachable -----------------------------------------------------------------------

def _write_to_bigquery(table: str, timeout_s: float) -> None:
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        (p | beam.Create(sample_rows.summaries(3))
         | WriteSummariesToBigQuery(table, create_disposition="CREATE_NEVER",
                                    unreachable_timeout_s=timeout_s))


def _point_bigquery_at(monkeypatch: pytest.MonkeyPatch, emulator: BigQueryEmulator, url: str) -> None:
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", url)


def test_bigquery_on_a_closed_port_stops_after_the_timeout_with_a_clear_error(
        bq_emulator, monkeypatch):
    """Nothing listens on the port: instead of google-cloud-bigquery's 10 minutes of retries,
    the insert gives up after unreachable_timeout_s and the run fails naming the table."""
    _point_bigquery_at(monkeypatch, bq_emulator, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(BigQueryUnreachable, match=r"BigQuery table "
                                        r"emulator-project\.outage\.summaries: no answer within 3s"):
        _write_to_bigquery(f"{bq_emulator.project}:outage.summaries", 3)
    took = time.monotonic() - started
    print(f"closed port: gave up after {took:.0f}s")
    assert took < 90


@pytest.fixture
def own_bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BigQueryEmulator, ServiceProcess]]:
    """A bqemulator of this test's own (the session one must stay up), started as the
    ``bq_emulator`` fixture starts it, so the test can kill it."""
    work = tmp_path_factory.mktemp("bq-outage")
    rest_port, grpc_port = free_port(), free_port()
    env = {**os.environ, "BQEMU_SPATIAL": "0", "BQEMU_ENABLE_FORMAT_EXTENSIONS": "false",
           "BQEMU_LOG_LEVEL": "warning"}
    service = ServiceProcess(
        "bqemulator", [str(emulator_python()), str(LAUNCHER), "start", "--ephemeral",
                       "--rest-host", "127.0.0.1", "--rest-port", str(rest_port),
                       "--grpc-host", "127.0.0.1", "--grpc-port", str(grpc_port),
                       "--project", PROJECT],
        work / "bqemulator.log", cwd=work, env=env)
    try:
        rest_url = service.wait_until(lambda: _answers(f"http://127.0.0.1:{rest_port}"))
        yield BigQueryEmulator(rest_url, PROJECT, write_offline_credentials(work / "adc.json")), service
    finally:
        service.stop()


def _create_tables(emulator: BigQueryEmulator) -> tuple[str, str]:
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    from transforms.core.model import FAILURE_FIELDS, SUMMARY_FIELDS
    from transforms.sinks.schema import bigquery_schema

    client = bigquery.Client(project=emulator.project, credentials=AnonymousCredentials(),
                             client_options=ClientOptions(api_endpoint=emulator.rest_url))
    client.create_dataset("outage")
    for name, fields in (("summaries", SUMMARY_FIELDS), ("failures", FAILURE_FIELDS)):
        schema = [bigquery.SchemaField.from_api_repr(f) for f in bigquery_schema(fields)["fields"]]
        client.create_table(bigquery.Table(f"{emulator.project}.outage.{name}", schema=schema))
    client.close()
    return f"{emulator.project}:outage.summaries", f"{emulator.project}:outage.failures"


def test_bigquery_emulator_killed_mid_run_exits_1_with_a_clear_error(own_bq_emulator, tmp_path):
    """`run --sink bigquery`: preflight finds both tables, then the emulator dies while the batch
    job runs. The insert gives up after --bigquery-unreachable-timeout-seconds and the run ends
    with one line naming the table and exit 1, as README's exit codes promise."""
    emulator, service = own_bq_emulator
    summaries_table, failures_table = _create_tables(emulator)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                            for t in transcripts(4, prefix="bq")))
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--input", str(path), "--sink", "bigquery",
         "--bigquery-summaries-table", summaries_table, "--bigquery-failures-table", failures_table,
         "--bigquery-create-disposition", "CREATE_NEVER", "--min-records-per-job", "1",
         "--bigquery-unreachable-timeout-seconds", "3"],
        cwd=REPO_ROOT, env={**os.environ, **emulator.env()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    submitted = threading.Event()
    reader = threading.Thread(target=_read_stderr, args=(process, lines, submitted, "submitted "))
    reader.start()
    try:
        assert submitted.wait(DEADLINE_S), "".join(lines)
        service.stop()
        process.wait(DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
        reader.join(DEADLINE_S)
    print(f"emulator killed: exit {process.returncode} after {time.monotonic() - started:.0f}s")
    assert process.returncode == 1, "".join(lines)
    [error] = [line for line in lines if line.startswith("error: ")]
    assert "BigQueryUnreachable: BigQuery table emulator-project.outage." in error, error
    assert "no answer within 3s" in error, error


class AlwaysTransientClient:
    """FAKE google-cloud-bigquery client (only ``insert_rows_json``), used because the emulator
    never answers with transient errors: every row of every request gets 'backendError'. Each
    request is appended to ``log`` (Beam pickles the client into its DoFn)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def insert_rows_json(self, table, json_rows, **_):
        with self.log.open("a") as out:
            out.write(json.dumps([r["transcript_id"] for r in json_rows]) + "\n")
        return [{"index": i, "errors": [{"reason": "backendError", "message": "try later"}]}
                for i in range(len(json_rows))]


def test_rows_bigquery_keeps_failing_transiently_become_failure_rows_after_bounded_retries(tmp_path):
    """A BigQuery that answers but keeps failing rows transiently: the sink retries
    transient_retries times, then every row comes back as a Failure instead of being retried
    forever (Beam's default is 10,000 retries)."""
    from apache_beam.testing.util import assert_that, equal_to

    from transforms.sinks.bigquery_rows import REJECTED_CODE

    items = sample_rows.summaries(3)
    log = tmp_path / "calls.jsonl"
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        out = p | beam.Create(items) | WriteSummariesToBigQuery(
            "p-123456:ds.t", create_disposition="CREATE_NEVER", transient_retries=2,
            insert_client=AlwaysTransientClient(log))
        assert_that(out.failures | beam.Map(lambda f: (f.transcript_id, f.error_code)),
                    equal_to([(s.transcript_id, REJECTED_CODE) for s in items]))
    assert len(log.read_text().splitlines()) == 3  # the first try and 2 retries


def test_outage_bounds_must_be_positive_with_one_line_errors(capsys):
    with pytest.raises(ValueError, match="unreachable_timeout_s must be positive, got 0"):
        WriteSummariesToBigQuery("p-123456:ds.t", unreachable_timeout_s=0)
    with pytest.raises(ValueError, match="transient_retries must be a whole number >= 0, got -1"):
        WriteSummariesToBigQuery("p-123456:ds.t", transient_retries=-1)
    from pipeline.__main__ import main
    common = ["run", "--input", str(REPO_ROOT / "pipeline" / "samples" / "*.jsonl")]
    assert main(common + ["--sink", "kafka", "--kafka-bootstrap-servers", "127.0.0.1:1",
                          "--kafka-summaries-topic", "s", "--kafka-failures-topic", "f",
                          "--kafka-delivery-timeout-seconds", "0"]) == 2
    assert "error: --kafka-delivery-timeout-seconds 0 is out of range" in capsys.readouterr().err
    assert main(common + ["--sink", "bigquery", "--bigquery-summaries-table", "p-123456:d.s",
                          "--bigquery-failures-table", "p-123456:d.f",
                          "--bigquery-unreachable-timeout-seconds", "-1"]) == 2
    assert ("error: argument --bigquery-unreachable-timeout-seconds/"
            "--bigquery_unreachable_timeout_seconds: '-1' is not seconds above 0"
            in capsys.readouterr().err)
