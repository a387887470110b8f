"""Output under replay, through the CLI: a streaming run from Kafka into files, run again with
the same --run-id over the same messages (as a restored streaming job would write its windows
again). Kafka records carry their own timestamps, so the second run has the same windows; its
files replace the first run's, and the report's row count, read from the files, still equals the
records in. On the FnApiRunner: on Prism with --allowed-lateness-seconds 0 the first run
already loses a window's summaries at the sink (exit 4, with or without this change), which is
not what this test is about. The per-sink replay tests are in test_sinks_files.py,
test_sinks_kafka.py and test_sinks_bigquery.py."""
from __future__ import annotations

import json
import time

from tests.pipelines import cli_with_counters, read_rows
from tests.test_kafka_source import Sent, create_topic
from transforms.sinks.files import rows_in


def test_a_streaming_rerun_rewrites_its_windows_files(kafka_bootstrap, tmp_path, monkeypatch):
    topic = create_topic(kafka_bootstrap, partitions=1)
    sent = Sent(kafka_bootstrap, topic)
    # One-minute windows that closed before the run starts; ascending times, none late.
    start_ms = (int(time.time()) // 60 - 3) * 60_000
    labels = [f"call-{i}" for i in range(8)]
    for i, label in enumerate(labels):
        text = f"Customer {i} asks about a refund. Agent confirms the refund today."
        sent.send(label, json.dumps({"id": label, "text": text}).encode(), 0, start_ms + 15_000 * i)
    sent.send("no-text", json.dumps({"id": "no-text"}).encode(), 0, start_ms + 15_000 * 8)
    sent.flush()
    out = tmp_path / "out"
    argv = ["run", "--streaming", "--kafka-bootstrap-servers", kafka_bootstrap,
            "--kafka-topic", topic, "--output", str(out), "--sink", "jsonl",
            "--window-seconds", "60", "--watch-seconds", "6", "--min-records-per-job", "1",
            "--allowed-lateness-seconds", "0", "--max-failure-rate", "0.5",
            "--run-id", "replayed", "--runner", "FnApiRunner"]
    names = []
    for _attempt in range(2):
        code, counters = cli_with_counters(argv, monkeypatch)
        assert code == 0, "the report's row count (from the files) equals the records in"
        assert counters["records_in"] == len(labels) + 1
        names.append(sorted(p.name for p in out.glob("*/*.jsonl")))
    assert names[1] == names[0]
    assert rows_in(str(out / "summaries"), "jsonl") == 8
    assert rows_in(str(out / "failures"), "jsonl") == 1
    # Two windows of summaries, and the window of the failure row: one file each.
    assert len(names[0]) == 3 and all(n.endswith("-00000-of-00001.jsonl") for n in names[0])
    summaries = read_rows(out / "summaries")
    assert sorted(r["transcript_id"] for r in summaries) == sorted(labels)
    assert [r["transcript_id"] for r in read_rows(out / "failures")] == ["no-text"]
