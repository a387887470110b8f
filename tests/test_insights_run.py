"""An insights run through the CLI: summaries carry the typed insights column, the aggregate is
published under insights_aggregate/ and reaches the run report, and a schema no column can
hold stops the run before anything is submitted.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.__main__ import main
import pipeline.running.execute
from transforms.insights import tally
from tests.pipelines import transcripts

SCHEMA = json.loads((Path(__file__).with_name("data") / "insights_schema.json").read_text())


def _insights_task(tmp_path: Path, schema: dict) -> list[str]:
    """The flags of an insights run with ``schema`` as the user's schema file."""
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema))
    return ["--task", "insights", "--output-schema", str(path)]


def test_insights_run_writes_typed_column_and_aggregate(tmp_path, monkeypatch, capsys):
    task = _insights_task(tmp_path, SCHEMA)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": t.id, "text": t.text}) + "\n"
                              for t in transcripts(4)))
    reports = []
    real_run = pipeline.running.execute.run
    monkeypatch.setattr(pipeline.running.execute, "run",
                        lambda o, c: reports.append(real_run(o, c)) or reports[-1])
    out = tmp_path / "out"
    # The local model's seeded invalid answers may leave a SchemaViolation failure row among
    # these few records: the threshold lets one through; the aggregate recounts the rows written.
    code = main(["run", "--input", str(source), "--output", str(out), "--min-records-per-job", "1",
                 "--max-failure-rate", "0.5", *task])
    assert code == 0, capsys.readouterr()

    table = pq.read_table(out / "summaries")
    assert pa.types.is_struct(table.schema.field("insights").type)
    assert table.schema.field("insights").type.field("topics").type == pa.list_(
        pa.field("item", pa.string(), False))
    written = [row for row in table.column("insights").to_pylist() if row is not None]
    overall = json.loads((out / "insights_aggregate" / "overall.jsonl").read_text())
    assert overall == tally.aggregate(written)  # the aggregate recounts the rows written
    assert reports[0].insights_aggregate == overall
    assert str(out / "insights_aggregate") in reports[0].written
    assert f"insights        {len(written)} calls" in capsys.readouterr().out


def test_unmappable_schema_stops_the_run_before_any_job(tmp_path, capsys):
    bad = {**SCHEMA, "properties": {**SCHEMA["properties"],
                                    "extras": {"type": "object",
                                               "additionalProperties": {"type": "string"}}}}
    task = _insights_task(tmp_path, bad)
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"id": "a", "text": "Customer: hi"}) + "\n")
    assert main(["run", "--input", str(source), "--output", str(tmp_path / "out"), *task]) == 2
    err = capsys.readouterr().err
    assert (f"--output-schema {tmp_path / 'schema.json'} cannot be stored as typed columns: insights.extras: "
            "'additionalProperties' with a schema is a map") in err
    assert not (tmp_path / "out" / "summaries").exists()
