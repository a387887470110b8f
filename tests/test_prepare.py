"""PrepareRecords: every transcript gets a recordId of its own, even when hashes collide."""
from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.util import assert_that
from apache_beam.transforms import window

from tests.pipelines import transcripts
from transforms import summarize
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig
from transforms.prepare import records
from transforms.summarize import PrepareRecords

real_record_id_for = records.record_id_for


def colliding_record_id_for(transcript_id: str, salt: int = 0) -> str:
    """Every transcript's first-choice id is the same: a forced collision."""
    return "RSAME" if salt == 0 else real_record_id_for(transcript_id, salt)


def test_colliding_record_ids_are_resolved(monkeypatch):
    monkeypatch.setattr(records, "record_id_for", colliding_record_id_for)
    monkeypatch.setattr(summarize, "record_id_for", colliding_record_id_for)
    config = BatchConfig(base_uri="s3://b/p", run_id="r", job=JobConfig(role_arn="arn:aws:iam::1:role/x"))

    def check(built):
        ids = [r.record_id for r in built]
        assert len(ids) == 4 and len(set(ids)) == 4, ids
        assert ids.count("RSAME") == 1 and all(i.isalnum() for i in ids)
        for r in built:
            assert r.size_bytes == len(r.jsonl_line().encode("utf-8"))

    with beam.Pipeline() as p:
        prepared = p | beam.Create(transcripts(4)) | PrepareRecords(config)
        assert_that(prepared["records"] | beam.combiners.ToList(), lambda lists: check(lists[0]))


def test_windowed_and_global_collisions_get_the_same_ids(monkeypatch, tmp_path):
    """The global window finds collisions from the ids alone (a side input), time windows by
    grouping the records: both give each transcript the same recordId and line size."""
    monkeypatch.setattr(records, "record_id_for", colliding_record_id_for)
    monkeypatch.setattr(summarize, "record_id_for", colliding_record_id_for)
    config = BatchConfig(base_uri="s3://b/p", run_id="r", job=JobConfig(role_arn="arn:aws:iam::1:role/x"))

    def ids(windowed: bool) -> list[str]:
        out = tmp_path / ("windowed" if windowed else "global")
        with beam.Pipeline() as p:
            items = p | beam.Create(transcripts(5))
            if windowed:
                items = (items | beam.Map(lambda t: window.TimestampedValue(t, 1000))
                         | "Windows" >> beam.WindowInto(window.FixedWindows(60)))
            built = items | PrepareRecords(config)
            (built["records"]
             | beam.Map(lambda r: f"{r.transcript_id} {r.record_id} {r.size_bytes}")
             | "Global" >> beam.WindowInto(window.GlobalWindows())
             | beam.io.WriteToText(str(out)))
        return sorted(line for path in tmp_path.glob(f"{out.name}*")
                      for line in path.read_text().splitlines())

    global_ids = ids(windowed=False)
    assert len(global_ids) == 5 and len({line.split()[1] for line in global_ids}) == 5
    assert ids(windowed=True) == global_ids


def test_unbounded_input_needs_windows():
    import pytest
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.transforms.periodicsequence import PeriodicImpulse

    from transforms.summarize import SummarizeTranscripts

    config = BatchConfig(base_uri="s3://b/p", run_id="r", job=JobConfig(role_arn="arn:aws:iam::1:role/x"))
    p = beam.Pipeline(options=PipelineOptions(["--streaming"]))
    ticks = p | PeriodicImpulse(fire_interval=1, apply_windowing=False)
    with pytest.raises(ValueError, match="FixedWindows"):
        ticks | SummarizeTranscripts(config)
