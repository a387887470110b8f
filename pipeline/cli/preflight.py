"""Checks `run` makes before any job exists, so a bad flag or destination costs one line, not a
billed job whose results cannot be written.

Each check raises ``UsageError`` with one line naming the flag and the fix. The pure checks come
first; the probes touch the destinations and leave nothing behind.
"""
from __future__ import annotations

import logging
import os
import re
import uuid
from typing import Any, Iterable, Mapping

from pipeline.exit_codes import UsageError
from pipeline.options import BedrockBatchOptions
from transforms.config import BatchConfig

# botocore's pattern for CreateModelInvocationJob's roleArn, with the account id required.
ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::[0-9]{12}:role/.+")
PROBE_PREFIX = ".preflight-probe-"


def _first_line(exc: BaseException) -> str:
    # Beam's S3 errors carry (message, status) as args; the message is what a user needs.
    text = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = text.strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def check_role_arn(role_arn: str) -> None:
    if not ROLE_ARN.fullmatch(role_arn):
        raise UsageError(f"--role-arn {role_arn!r} is not an IAM role ARN; use "
                         f"arn:aws:iam::<12-digit account id>:role/<role name>")


def check_model(model_id: str, invocation_type: str) -> None:
    from transforms.prepare.families import family_for

    try:
        family_for(model_id, invocation_type)
    except ValueError as exc:
        raise UsageError(f"--model-id: {exc}") from None


def _missing_dirs(path: str) -> list[str]:
    """The folders above ``path`` that do not exist yet, deepest first."""
    missing = []
    folder = os.path.abspath(path)
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing


def probe_output(uri: str, flag: str = "--output") -> None:
    """Write and delete a small object under ``uri`` through Beam's FileSystems, the way the
    sinks will write there. Folders the probe had to create are removed again."""
    from apache_beam.io.filesystems import FileSystems

    local = "://" not in uri
    if local and os.path.exists(uri) and not os.path.isdir(uri):
        raise UsageError(f"{flag} {uri} is an existing file; give a folder to write into")
    created = _missing_dirs(uri) if local else []
    probe = FileSystems.join(uri, f"{PROBE_PREFIX}{uuid.uuid4().hex}")
    # Beam logs a failed S3 upload with its stack trace at ERROR; the one line below says it all.
    logging.disable(logging.ERROR)
    try:
        handle = FileSystems.create(probe)
        handle.write(b"probe")
        handle.close()
        FileSystems.delete([probe])
    except Exception as exc:  # any filesystem's error: the destination is unusable as given
        raise UsageError(f"{flag} {uri} is not writable ({_first_line(exc)}); give a folder or "
                         f"s3:// prefix this run can write") from None
    finally:
        logging.disable(logging.NOTSET)
        for folder in created:  # deepest first; only the empty folders the probe made
            try:
                os.rmdir(folder)
            except OSError:
                break


def check_bucket(s3_client: Any, bucket_uri: str) -> None:
    """The bucket Bedrock reads shards from and writes results to answers HeadBucket."""
    from transforms.core.storage import split_s3

    try:
        bucket, _ = split_s3(bucket_uri)
    except ValueError:
        raise UsageError(f"--bucket-uri {bucket_uri!r} must be an s3://bucket/prefix URI") from None
    try:
        s3_client.head_bucket(Bucket=bucket)
    except Exception as exc:  # botocore ClientError (404/403) or an unreachable endpoint
        raise UsageError(f"--bucket-uri {bucket_uri}: bucket {bucket!r} is not reachable "
                         f"({_first_line(exc)}); check the name, --aws-region and "
                         f"--aws-profile") from None


def _kafka_metadata(bootstrap_servers: str, timeout_s: float) -> tuple[Any, Any]:
    """(an AdminClient, the cluster's metadata), or a UsageError when no broker answers."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    try:
        return admin, admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise UsageError(f"--kafka-bootstrap-servers {bootstrap_servers}: no broker answered "
                         f"within {timeout_s:.0f} s ({_first_line(exc)})") from None


def check_kafka_source(bootstrap_servers: str, topic: str, timeout_s: float = 10.0) -> None:
    """The brokers answer and --kafka-topic exists: the source reads it and never creates it."""
    _, metadata = _kafka_metadata(bootstrap_servers, timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise UsageError(f"--kafka-topic {topic} does not exist on {bootstrap_servers}: create "
                         f"it, or fix --kafka-topic")


def check_kafka(bootstrap_servers: str, topics: Iterable[str], timeout_s: float = 10.0) -> None:
    """The brokers answer, and each topic exists or the broker creates topics on first use."""
    from confluent_kafka.admin import ConfigResource

    admin, metadata = _kafka_metadata(bootstrap_servers, timeout_s)
    missing = sorted(t for t in topics if t not in metadata.topics)
    if not missing:
        return
    broker = str(next(iter(metadata.brokers)))
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.BROKER, broker)]).values()
    auto_create = future.result(timeout=timeout_s).get("auto.create.topics.enable")
    if auto_create is None or auto_create.value != "true":
        raise UsageError(f"Kafka topic(s) {', '.join(missing)} do not exist on "
                         f"{bootstrap_servers} and the broker does not create topics; create "
                         f"them first")


def check_bigquery(tables: Iterable[str], create_disposition: str) -> None:
    """Each table exists; with CREATE_IF_NEEDED its dataset is enough."""
    from google.api_core.exceptions import NotFound
    from google.cloud import bigquery

    from transforms.sinks.bigquery_rows import parse_table

    for table in tables:
        project, dataset, name = parse_table(table)
        client = bigquery.Client(project=project)
        ref = f"{project}.{dataset}.{name}"
        try:
            client.get_table(ref)
            continue
        except NotFound:
            pass
        except Exception as exc:  # credentials, network: the sink would fail the same way
            raise UsageError(f"BigQuery table {table} cannot be checked ({_first_line(exc)}); "
                             f"check Application Default Credentials") from None
        if create_disposition != "CREATE_IF_NEEDED":
            raise UsageError(f"BigQuery table {table} does not exist and "
                             f"--bigquery-create-disposition is {create_disposition}; create it "
                             f"or use CREATE_IF_NEEDED")
        try:
            client.get_dataset(f"{project}.{dataset}")
        except NotFound:
            raise UsageError(f"BigQuery dataset {project}:{dataset} of table {table} does not "
                             f"exist; create the dataset first") from None


def check_destinations(opts: BedrockBatchOptions) -> None:
    """The sink of --sink is usable: probe folder, brokers and topics, or tables."""
    if opts.sink == "kafka":
        check_kafka(opts.kafka_bootstrap_servers,
                    (opts.kafka_summaries_topic, opts.kafka_failures_topic))
    elif opts.sink == "bigquery":
        check_bigquery((opts.bigquery_summaries_table, opts.bigquery_failures_table),
                       opts.bigquery_create_disposition)
    else:
        probe_output(opts.output)


def check_output_schema(schema: Mapping[str, Any], source: str) -> None:
    """The insights JSON Schema maps onto typed Parquet/Avro/BigQuery columns.

    Args:
        schema: The JSON Schema object.
        source: Where it came from, named in the error (e.g. "--output-schema my.json").

    Raises:
        UsageError: one line naming ``source``, the field path and what to change.
    """
    from transforms.insights.columns import SchemaMappingError, insights_column

    try:
        insights_column(schema)
    except SchemaMappingError as exc:
        raise UsageError(f"{source} cannot be stored as typed columns: {exc}") from None


def preflight(opts: BedrockBatchOptions, config: BatchConfig) -> None:
    """Every check, cheapest first."""
    if config.task == "insights" and config.output_schema is not None:
        schema_file = getattr(opts, "output_schema", None)
        check_output_schema(config.output_schema, f"--output-schema {schema_file}" if schema_file
                            else "the default insights schema")
    check_role_arn(config.job.role_arn)
    check_model(config.model_id, config.job.model_invocation_type)
    check_bucket(config.aws.client("s3"), config.base_uri)
    if opts.kafka_topic:
        check_kafka_source(opts.kafka_bootstrap_servers, opts.kafka_topic)
    check_destinations(opts)


def run_banner(config: BatchConfig, backend: str) -> str:
    """Printed before the pipeline starts: a crash never reaches the final report."""
    from transforms.core.layout import output_prefix

    if backend == "local":
        return (f"run id {config.run_id} (the embedded local backend keeps its jobs and files "
                f"only while this run lasts)")
    return (f"run id {config.run_id}: after a crash, rerun with the same flags and --run-id "
            f"{config.run_id} to adopt its jobs instead of paying again\n"
            f"job results land under {output_prefix(config.base_uri, config.run_id)}<job id>/; "
            f"`python -m pipeline collect --job-output <that folder> --output DIR` parses one")


def check_cost(estimate_usd: float | None, limit_usd: float, model_id: str, records: int) -> None:
    """Refuse a plan whose estimated cost (batch prices, output at --max-tokens) exceeds the limit."""
    if estimate_usd is None:
        raise UsageError(f"--max-cost-usd: no batch price is known for --model-id {model_id}, so "
                         f"the cost cannot be estimated; drop --max-cost-usd to run anyway")
    if estimate_usd > limit_usd:
        raise UsageError(f"estimated cost ${estimate_usd:.4f} for {records} records (batch prices, "
                         f"output at --max-tokens) exceeds --max-cost-usd {limit_usd:g}; raise "
                         f"--max-cost-usd, lower --max-tokens or split the input")
