"""The combination matrix: features that each work alone, tried together through the CLI.

The cases are not hand-picked: an all-pairs generator (allpairspy) covers every pair of values of
the dimensions below, after a seeded shuffle of each dimension's values, so the list is the same
on every run and grows by itself when a value or a dimension is added to DIMENSIONS. Pairs that
are usage errors by design are kept out by ``valid`` (each rule says why).

Each case writes a dozen records in its input format (the same ids in every format), runs
`python -m pipeline run` in-process against a local backend the test owns (with injected record
errors when the case asks for them), and asserts:

- the exit code is a documented one, never 1, and the one the rows call for;
- every input id is exactly once in the summaries or the failures;
- report.json's counts equal the rows;
- the rows read back with a standard reader: pyarrow (parquet), fastavro (avro), json (jsonl),
  a Kafka consumer (kafka), the BigQuery client on the emulator (bigquery).

`make combos` runs every case (COMBOS=all); `make test` runs a seeded handful of them. The table
of the cases that ran is printed at the end of the test report (tests/combo_table.py).
"""
from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import os
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pytest
from allpairspy import AllPairs

from pipeline import exit_codes
from pipeline.flags import DEFAULT_MAX_FAILURE_RATE
from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN, LocalBackend
from pipeline.local.faults import Faults
from pipeline.local.jobs_store import Timing
from tests.combo_table import SELECTION, add_row
from tests.pipelines import transcripts
from transforms.core.quotas import Quotas

SEED = 17
RECORDS = 12
# Jobs of 5 records and a minimum of 3: 12 records leave a tail of 2 under the minimum (and a
# window of 6 a tail of 1), so every undersized policy has something to do.
PER_JOB, MIN_PER_JOB = 5, 3
TIMING = Timing(submitted=1.0, validating=1.0, scheduled=1.0, per_record=0.02, speed=20.0)
# Windowed bounded input: event time from this field; the records span two hours, so
# --window-seconds 3600 puts them in two windows.
TIMESTAMP_FIELD = "started_at"
# The cases `make test` runs (the whole set is `make combos`).
SUBSET = 5

# Each dimension's values, by name. A new flag value or runner is one more entry here (and, if
# it needs flags or set-up of its own, a branch in _argv / _write_input).
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "format": ("jsonl", "csv", "parquet", "avro", "transcribe", "txt", "jsonl.gz"),
    "source": ("files", "watch", "kafka"),
    "window": ("none", "fixed", "fixed+lateness"),
    "policy": ("pad-merge", "on-demand", "defer", "fail"),
    "task": ("summary", "insights", "user-schema"),
    "model": ("claude", "nova", "llama", "mistral", "titan", "converse"),
    "redaction": ("off", "redact", "custom"),
    "sink": ("parquet", "jsonl", "avro", "kafka", "bigquery"),
    "errors": ("none", "record-errors"),
    # The two local runners the CLI chooses between (embedded Flink joins once the CLI runs on it).
    "runner": ("FnApiRunner", "PrismRunner"),
}

MODELS = {"claude": ("anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel"),
          "nova": ("amazon.nova-micro-v1:0", "InvokeModel"),
          "llama": ("meta.llama3-1-8b-instruct-v1:0", "InvokeModel"),
          "mistral": ("mistral.mistral-7b-instruct-v0:2", "InvokeModel"),
          "titan": ("amazon.titan-text-express-v1", "InvokeModel"),
          "converse": ("anthropic.claude-3-haiku-20240307-v1:0", "Converse")}
# Formats whose records have fields, so a record can carry its event time.
ROW_FORMATS = ("jsonl", "csv", "parquet", "avro", "jsonl.gz")
SCHEMA_FILE = Path(__file__).with_name("data") / "insights_schema.json"


def valid(values: Mapping[str, str]) -> bool:
    """Whether a (partial) combination is one to run: the others are usage errors by design or
    cannot apply (each rule says why), and would only hide the pairs around them."""
    get = values.get
    # A Kafka topic holds JSON messages: the file formats do not apply to it.
    if get("source") == "kafka" and get("format") not in (None, "jsonl"):
        return False
    # --streaming needs --window-seconds: jobs are submitted per window.
    if get("source") in ("watch", "kafka") and get("window") == "none":
        return False
    # Windows on bounded input need --timestamp-field, a field of the record: a txt file or a
    # Transcribe output has no field to carry the call's time.
    if (get("source") == "files" and get("window") not in (None, "none")
            and get("format") not in (None, *ROW_FORMATS)):
        return False
    # Prism loses the defer policy's tail flushed when a watch ends and, in a bounded input's
    # time windows, a window's rows when tails are carried; Beam's BigQuery write fails on it with
    # time windows: the CLI refuses these there (pipeline/runners.py).
    if get("runner") == "PrismRunner" and (
            (get("policy") == "defer" and get("window") not in (None, "none"))
            or (get("sink") == "bigquery" and get("window") not in (None, "none"))
            or (get("sink") == "bigquery" and get("source") in ("watch", "kafka"))):
        return False
    # Not a usage error, a limit of the test set-up: the BigQuery emulator answers 500 to the
    # create of a table with the nested insights column, so these pairs cannot be run here.
    if get("sink") == "bigquery" and get("task") not in (None, "summary"):
        return False
    return True


def generate(seed: int = SEED) -> list[dict[str, str]]:
    """The all-pairs cases: every valid pair of values of two dimensions is in at least one case."""
    rng = random.Random(seed)
    names = list(DIMENSIONS)
    shuffled = [rng.sample(values, len(values)) for values in DIMENSIONS.values()]
    cases = [dict(zip(names, row))
             for row in AllPairs(shuffled, filter_func=lambda row: valid(dict(zip(names, row))))]
    # The generator is greedy: with a filter it can leave valid pairs out. They go into extra
    # cases: the first missing pair into the first generated case that stays valid with it, then
    # every other missing pair that agrees with the values already put in.
    while missing := uncovered(cases):
        first, rest = missing[0], missing[1:]
        case = next(filled for base in cases if valid(filled := {**base, **first}))
        fixed = set(first)
        for pair in rest:
            if (all(case[d] == value for d, value in pair.items() if d in fixed)
                    and valid({**case, **pair})):
                case, fixed = {**case, **pair}, fixed | set(pair)
        cases.append(case)
    return cases


def uncovered(cases: list[dict[str, str]]) -> list[dict[str, str]]:
    """The valid pairs of values (as {dimension: value, dimension: value}) no case holds."""
    missing = []
    for a, b in itertools.combinations(DIMENSIONS, 2):
        for x, y in itertools.product(DIMENSIONS[a], DIMENSIONS[b]):
            if valid({a: x, b: y}) and not any(c[a] == x and c[b] == y for c in cases):
                missing.append({a: x, b: y})
    return missing


@dataclass(frozen=True)
class Case:
    name: str
    values: Mapping[str, str]

    @property
    def label(self) -> str:
        """The values that set this case apart, for the table."""
        return " ".join(self.values[d] for d in DIMENSIONS if len(DIMENSIONS[d]) > 1)

    @property
    def ids(self) -> list[str]:
        return [f"{self.name}-{i:02d}" for i in range(RECORDS)]

    @property
    def streaming(self) -> bool:
        return self.values["source"] != "files"


CASES = [Case(f"c{i:02d}", values) for i, values in enumerate(generate(), 1)]


def _selected() -> list[Case]:
    if os.environ.get("COMBOS") == "all":
        SELECTION.update(total=len(CASES), ran=len(CASES), how="COMBOS=all")
        return CASES
    chosen = sorted(random.Random(SEED).sample(range(len(CASES)), SUBSET))
    SELECTION.update(total=len(CASES), ran=SUBSET,
                     how="a seeded subset; `make combos` runs all")
    return [CASES[i] for i in chosen]


# -- inputs ---------------------------------------------------------------------------------

def _records(case: Case) -> list[dict[str, Any]]:
    start = 1_767_603_600  # 2026-01-05T09:00:00Z; one call every 10 minutes
    return [{"id": i, "text": t.text,
             TIMESTAMP_FIELD: _iso(start + 600 * n)}
            for n, (i, t) in enumerate(zip(case.ids, transcripts(RECORDS)))]


def _iso(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _write_input(case: Case, folder: Path) -> str:
    """The case's records in its format under ``folder``; returns the --input glob."""
    import fastavro
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    records, fmt = _records(case), case.values["format"]
    if fmt in ("jsonl", "jsonl.gz"):
        text = "".join(json.dumps(r) + "\n" for r in records).encode()
        path = folder / f"calls.{fmt}"
        path.write_bytes(gzip.compress(text) if fmt == "jsonl.gz" else text)
    elif fmt == "csv":
        import csv

        with open(folder / "calls.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["call_id", "transcript", TIMESTAMP_FIELD])
            writer.writerows([r["id"], r["text"], r[TIMESTAMP_FIELD]] for r in records)
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), folder / "calls.parquet")
    elif fmt == "avro":
        schema = {"type": "record", "name": "Call", "fields": [
            {"name": name, "type": "string"} for name in ("id", "text", TIMESTAMP_FIELD)]}
        with open(folder / "calls.avro", "wb") as handle:
            fastavro.writer(handle, schema, records)
    elif fmt == "transcribe":
        for r in records:
            (folder / f"{r['id']}.json").write_text(json.dumps(
                {"jobName": r["id"], "accountId": "1", "status": "COMPLETED",
                 "results": {"transcripts": [{"transcript": r["text"]}], "items": []}}))
    elif fmt == "txt":
        for r in records:
            (folder / f"{r['id']}.txt").write_text(r["text"], encoding="utf-8")
    else:
        raise ValueError(f"no writer for format {fmt}")
    ext = {"transcribe": "json"}.get(fmt, fmt)
    return str(folder / f"*.{ext}")


def _produce(case: Case, bootstrap: str) -> str:
    """The case's records as JSON messages on a new topic; returns the topic."""
    from confluent_kafka import Producer

    from tests.test_kafka_source import create_topic

    topic = create_topic(bootstrap, partitions=1)
    producer = Producer({"bootstrap.servers": bootstrap})
    for record in _records(case):
        producer.produce(topic, key=record["id"].encode(), value=json.dumps(record).encode())
    assert producer.flush(30) == 0, "every message delivered"
    return topic


# -- the run --------------------------------------------------------------------------------

@dataclass
class Sinks:
    """Where a case's rows go and how to read them back."""
    flags: list[str]
    read: Callable[[str], list[dict[str, Any]]]  # "summaries" | "failures" -> rows
    report_dir: Path


def _file_sink(fmt: str, out: Path) -> Sinks:
    def read(kind: str) -> list[dict[str, Any]]:
        files = sorted((out / kind).glob(f"*.{fmt}"))
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return [row for f in files for row in pq.read_table(f).to_pylist()]
        if fmt == "avro":
            import fastavro

            rows = []
            for f in files:
                with open(f, "rb") as handle:
                    rows += list(fastavro.reader(handle))
            return rows
        return [json.loads(line) for f in files
                for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]

    return Sinks(["--output", str(out), "--sink", fmt], read, out)


def _kafka_sink(bootstrap: str, tmp_path: Path) -> Sinks:
    from confluent_kafka import Consumer, TopicPartition

    from tests.test_kafka_source import create_topic

    topics = {kind: create_topic(bootstrap, partitions=1) for kind in ("summaries", "failures")}

    def read(kind: str) -> list[dict[str, Any]]:
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                             "enable.auto.commit": False})
        try:
            partition = TopicPartition(topics[kind], 0, 0)
            _, high = consumer.get_watermark_offsets(partition, timeout=30)
            consumer.assign([partition])
            messages = []
            while len(messages) < high:
                batch = consumer.consume(num_messages=100, timeout=30)
                assert batch, f"{kind}: {len(messages)} of {high} messages read"
                messages += [m for m in batch if m.error() is None]
            return [json.loads(m.value()) for m in messages]
        finally:
            consumer.close()

    return Sinks(["--sink", "kafka", "--kafka-bootstrap-servers", bootstrap,
                  "--kafka-summaries-topic", topics["summaries"],
                  "--kafka-failures-topic", topics["failures"],
                  "--report-dir", str(tmp_path / "report")], read, tmp_path / "report")


def _bigquery_sink(client: Any, tmp_path: Path, insights: Mapping[str, Any] | None) -> Sinks:
    """Two tables made beforehand with the sink's own schemas (--bigquery-create-disposition
    CREATE_NEVER): the emulator answers 500 to Beam's create of a table with a nested insights
    column."""
    from google.cloud import bigquery

    from transforms.insights.columns import insights_column
    from transforms.sinks.schema import bigquery_schema, fields_for

    dataset = f"combos_{uuid.uuid4().hex[:8]}"
    client.create_dataset(dataset)
    column = {"summaries": insights_column(insights) if insights else None, "failures": None}
    for kind in ("summaries", "failures"):
        schema = [bigquery.SchemaField.from_api_repr(f)
                  for f in bigquery_schema(fields_for(kind), column[kind])["fields"]]
        client.create_table(bigquery.Table(f"{client.project}.{dataset}.{kind}", schema=schema))

    def read(kind: str) -> list[dict[str, Any]]:
        return [dict(r) for r in client.list_rows(f"{client.project}.{dataset}.{kind}")]

    return Sinks(["--sink", "bigquery", "--bigquery-create-disposition", "CREATE_NEVER",
                  "--bigquery-summaries-table", f"{client.project}:{dataset}.summaries",
                  "--bigquery-failures-table", f"{client.project}:{dataset}.failures",
                  "--report-dir", str(tmp_path / "report")], read, tmp_path / "report")


def _argv(case: Case, backend: LocalBackend, source: list[str], sinks: Sinks) -> list[str]:
    v = case.values
    model, invocation = MODELS[v["model"]]
    argv = ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
            "--bedrock-runtime-endpoint-url", backend.bedrock_endpoint_url,
            "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
            "--aws-region", backend.region, "--s3_endpoint_url", backend.s3_endpoint_url,
            # moto's S3 is shared by every test of the process: a run id of its own.
            "--run-id", f"{case.name}-{uuid.uuid4().hex[:8]}",
            "--runner", v["runner"], "--poll-interval-seconds", "1",
            "--max-records-per-file", str(PER_JOB), "--max-records-per-job", str(PER_JOB),
            "--min-records-per-job", str(MIN_PER_JOB), "--undersized-policy", v["policy"],
            "--max-record-retries", "2", "--model-id", model,
            "--model-invocation-type", invocation, *source, *sinks.flags]
    if v["format"] == "csv" and v["source"] != "kafka":
        argv += ["--id-field", "call_id", "--text-field", "transcript"]
    if v["task"] == "insights":
        argv += ["--task", "insights"]
    elif v["task"] == "user-schema":
        argv += ["--output-schema", str(SCHEMA_FILE)]
    if v["redaction"] == "redact":
        argv += ["--redact"]
    elif v["redaction"] == "custom":
        argv += ["--redactor", "tests.combo_redactor:mask_order_numbers"]
    if v["window"] != "none":
        # Streaming: windows of processing time, a few seconds; bounded: two windows of event time.
        argv += ["--window-seconds", "5" if case.streaming else "3600"]
        if not case.streaming:
            argv += ["--timestamp-field", TIMESTAMP_FIELD]
    if v["window"] == "fixed+lateness":
        argv += ["--allowed-lateness-seconds", "600"]
    if case.streaming:
        argv += ["--streaming", "--watch-seconds", "10"]
    return argv


def _expected_exit(summaries: int, failures: int) -> int:
    """The documented code for these rows: 3 when failure rows pass the default threshold."""
    if failures and (not summaries or failures / (summaries + failures) > DEFAULT_MAX_FAILURE_RATE):
        return exit_codes.FAILURES_ABOVE_THRESHOLD
    return exit_codes.OK


@pytest.mark.timeout(300)  # a case takes under a minute; a hang fails the case, not the matrix
@pytest.mark.parametrize("case", _selected(), ids=lambda c: f"{c.name} {c.label}")
def test_combination(case: Case, local_backend_factory, request, tmp_path) -> None:
    from pipeline.__main__ import main

    v = case.values
    faults = Faults(seed=SEED, record_error_rate=0.25 if v["errors"] == "record-errors" else 0.0)
    backend = local_backend_factory(
        faults=faults, timing=TIMING,
        quotas=Quotas(max_records_per_file=PER_JOB, max_records_per_job=PER_JOB,
                      min_records_per_job=MIN_PER_JOB))
    if v["source"] == "kafka" or v["sink"] == "kafka":
        bootstrap = request.getfixturevalue("kafka_bootstrap")
    if v["source"] == "kafka":
        source = ["--kafka-bootstrap-servers", bootstrap, "--kafka-topic", _produce(case, bootstrap)]
    else:
        pattern = _write_input(case, tmp_path / "in")
        source = ["--input", pattern]
        if v["source"] == "watch":
            source += ["--watch-interval-seconds", "1"]
    if v["sink"] == "kafka":
        sinks = _kafka_sink(bootstrap, tmp_path)
    elif v["sink"] == "bigquery":
        from transforms.insights.schemas import default_schema, load_schema

        request.getfixturevalue("bq_env")
        insights = {"summary": None, "insights": default_schema(),
                    "user-schema": load_schema(SCHEMA_FILE)}[v["task"]]
        sinks = _bigquery_sink(request.getfixturevalue("bq_client"), tmp_path, insights)
    else:
        sinks = _file_sink(v["sink"], tmp_path / "out")

    code = main(_argv(case, backend, source, sinks))

    ran = code not in (exit_codes.INTERNAL_ERROR, exit_codes.USAGE)
    summaries = sinks.read("summaries") if ran else []
    failures = sinks.read("failures") if ran else []
    add_row({"case": case.name, "flags": case.label, "inputs": RECORDS,
             "summaries": len(summaries), "failures": len(failures), "exit": code})
    assert code in (exit_codes.OK, exit_codes.FAILURES_ABOVE_THRESHOLD), \
        f"exit {code}: a combination a user may run ends with 0 or 3"
    out_ids = Counter(r["transcript_id"] for r in summaries + failures)
    assert out_ids == Counter(case.ids), "every input id exactly once, as a summary or a failure"
    assert code == _expected_exit(len(summaries), len(failures))
    report = json.loads((sinks.report_dir / "report.json").read_text())
    assert report["exit_code"] == code
    assert report["records"]["in"] == RECORDS
    assert report["records"]["summaries"] == len(summaries)
    assert report["records"]["failures"] == len(failures)
    assert report["records"]["unaccounted"] == 0
    if v["task"] != "summary":
        assert all(r["insights"] is not None for r in summaries), "insights rows carry insights"


def test_every_pair_of_values_is_covered() -> None:
    """The generated cases cover every valid pair of values, hold no invalid one, and are the same
    list on every run."""
    assert generate() == generate()
    assert uncovered([dict(c.values) for c in CASES]) == []
    assert all(valid(c.values) for c in CASES)
