"""--task insights end to end on the embedded local backend: four model families (Claude, Llama
and Mistral InvokeModel jobs, and a Converse job) in one pipeline run.

The local model breaks a seeded share of its answers (``pipeline.local.insights.planned_fault``);
the test picks transcripts so that each outcome occurs and checks each transcript gets the row
the rule says: a valid first answer is an insights row of attempt 1, a broken first answer with
a valid repair is an insights row of attempt 2, two broken answers are one SchemaViolation row.
"""
from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path

import apache_beam as beam
import jsonschema
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.local.insights import planned_fault
from tests.pipelines import local_config
from transforms.core.model import Transcript
from transforms.core.quotas import Quotas
from transforms.insights.schemas import default_schema
from transforms.summarize import SummarizeTranscripts

# min_records_per_job=1: the repair round's few records form a batch job of their own.
QUOTAS = Quotas(max_concurrent_jobs=3, max_records_per_file=100, max_records_per_job=100,
                min_records_per_job=1)
FAMILIES = (("claude", "anthropic.claude-3-haiku-20240307-v1:0", "InvokeModel"),
            ("llama", "meta.llama3-1-8b-instruct-v1:0", "InvokeModel"),
            ("mistral", "mistral.mistral-7b-instruct-v0:2", "InvokeModel"),
            ("converse", "amazon.nova-lite-v1:0", "Converse"))
ENDINGS = ("Agent: I have processed a refund of the double charge, it is resolved now.",
           "Agent: I will escalate this to our specialist team today.",
           "Agent: I will call you back tomorrow once the part is in stock.",
           "Agent: I am afraid I cannot change that. Customer: That is unacceptable.")


def _text(i: int) -> str:
    return (f"Customer: Hi, my order {i} arrived damaged and I am upset. Agent: I can verify your "
            f"account with your date of birth first. {ENDINGS[i % len(ENDINGS)]}")


def _pick(valid: int, repaired: int, failed: int) -> dict[str, list[Transcript]]:
    """Transcripts by the outcome the local model's seed rule gives them."""
    wanted = {"valid": valid, "repaired": repaired, "failed": failed}
    picked: dict[str, list[Transcript]] = {k: [] for k in wanted}
    i = 0
    while any(len(picked[k]) < n for k, n in wanted.items()):
        text = _text(i)
        first, repair = planned_fault(text, False), planned_fault(text, True)
        kind = "valid" if first is None else ("repaired" if repair is None else "failed")
        if len(picked[kind]) < wanted[kind]:
            picked[kind].append(Transcript(id=f"call-{i:05d}", text=text))
        i += 1
    return picked


def _rows(directory: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(glob.glob(str(directory) + "*"))
            for line in open(path, encoding="utf-8") if line.strip()]


def _summary_json(summary) -> str:
    return json.dumps({"transcript_id": summary.transcript_id, "summary": summary.summary,
                       "insights": summary.insights, "attempt": summary.attempt})


def _failure_json(failure) -> str:
    return json.dumps(failure.to_row(), default=str)


def test_insights_rows_repairs_and_schema_violations_for_four_families(local_backend_factory,
                                                                       tmp_path):
    backend = local_backend_factory(quotas=QUOTAS)
    picked = _pick(valid=16, repaired=4, failed=2)
    items = [t for group in picked.values() for t in group]
    schema = default_schema()
    # The sinks' typed insights columns are tested in test_insights_columns.py and
    # test_insights_run.py: rows are written here as the JSON of the Summary fields checked.
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        transcripts = p | beam.Create(items)
        for name, model_id, invocation in FAMILIES:
            config = local_config(backend, model_id=model_id, model_invocation_type=invocation,
                                  task="insights", max_record_retries=1)
            result = transcripts | f"Insights-{name}" >> SummarizeTranscripts(config)
            (result["summaries"] | f"S-{name}" >> beam.Map(_summary_json)
             | f"WS-{name}" >> beam.io.WriteToText(str(tmp_path / name / "summaries")))
            (result["failures"] | f"F-{name}" >> beam.Map(_failure_json)
             | f"WF-{name}" >> beam.io.WriteToText(str(tmp_path / name / "failures")))

    counters: Counter = Counter()
    for result in p.result.metrics().query(MetricsFilter())["counters"]:
        counters[result.key.metric.name] += result.committed
    # Every broken first answer was sent back once; the jobs' manifests reconcile with the rows
    # (a repaired record is one the job answered).
    assert counters["insights_repair_requests"] == len(FAMILIES) * (
        len(picked["repaired"]) + len(picked["failed"]))
    assert counters["manifest_mismatches"] == 0
    expected_attempt = {t.id: 1 for t in picked["valid"]} | {t.id: 2 for t in picked["repaired"]}
    failed_ids = {t.id for t in picked["failed"]}
    for name, _, _ in FAMILIES:
        summaries = _rows(tmp_path / name / "summaries")
        failures = _rows(tmp_path / name / "failures")
        ids = Counter([r["transcript_id"] for r in summaries + failures])
        assert ids == Counter(t.id for t in items), f"{name}: each transcript exactly once"
        assert {r["transcript_id"]: r["attempt"] for r in summaries} == expected_attempt, name
        for row in summaries:
            jsonschema.validate(row["insights"], schema)
            assert row["summary"] == row["insights"]["summary"]
        resolutions = {r["insights"]["resolution"] for r in summaries}
        assert resolutions == {"resolved", "escalated", "callback_scheduled", "unresolved"}, name
        assert {f["transcript_id"] for f in failures} == failed_ids, name
        for failure in failures:
            assert (failure["stage"], failure["error_code"], failure["attempt"]) == (
                "parse", "SchemaViolation", 2), name
            assert "after one repair round" in failure["error_message"]
            assert failure["raw"] and '"reason_for_call"' in failure["raw"]
