"""The registered coders of the pipeline's records (transforms/core/coders.py): exact round trips,
equal bytes for equal elements, and the hot-path PCollections typed so Beam uses them."""
from __future__ import annotations

import datetime as dt
import decimal
from typing import Callable

import apache_beam as beam
from apache_beam import coders
from apache_beam.pipeline import PipelineVisitor
from apache_beam.runners import pipeline_context
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from hypothesis import given, settings
from hypothesis import strategies as st
import pytest

from pipeline.local.backend import SERVICE_ROLE_ARN
from pipeline.options import parse_options
from pipeline.running.graph import build
from transforms.config import BatchConfig
from transforms.core.bedrock import JobConfig
from transforms.core.coders import BatchRecordCoder, FailureCoder, SummaryCoder, TranscriptCoder
from transforms.core.model import STAGES, BatchRecord, Failure, Summary, Transcript, Turn
from transforms.shards.carry import CarryTailsFn
from transforms.summarize import PrepareRecords

TEXT = st.text(max_size=40)  # includes lone surrogates
JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
MAPPING = st.dictionaries(st.text(max_size=8), JSONISH, max_size=4)
WHEN = st.datetimes(timezones=st.just(dt.timezone.utc)) | st.none()

TRANSCRIPTS = st.builds(Transcript, id=TEXT, text=TEXT, metadata=MAPPING,
                        turns=st.lists(st.builds(Turn, TEXT, TEXT, st.floats(0, 1e4) | st.none(),
                                                 st.none()), max_size=3).map(tuple),
                        origin=TEXT | st.none())
RECORDS = st.builds(BatchRecord, record_id=TEXT, transcript_id=TEXT, model_input=MAPPING,
                    size_bytes=st.integers(0, 10**9), metadata=MAPPING, attempt=st.integers(1, 5))
SUMMARIES = st.builds(Summary, transcript_id=TEXT, record_id=TEXT, model_id=TEXT, summary=TEXT,
                      input_tokens=st.integers(0, 2**62) | st.none(), window_start=WHEN,
                      window_end=WHEN, metadata=TEXT | st.none(),
                      created_at=st.datetimes(timezones=st.just(dt.timezone.utc)))
FAILURES = st.builds(Failure, stage=st.sampled_from(["source", "model"]), error_code=TEXT,
                     error_message=TEXT, transcript_id=TEXT | st.none(), raw=TEXT | st.none())


@settings(max_examples=10, deadline=None)
@given(st.one_of(TRANSCRIPTS.map(lambda v: (TranscriptCoder(), v)),
                 RECORDS.map(lambda v: (BatchRecordCoder(), v)),
                 SUMMARIES.map(lambda v: (SummaryCoder(), v)),
                 FAILURES.map(lambda v: (FailureCoder(), v))))
def test_every_record_type_round_trips_exactly(case) -> None:
    coder, value = case
    assert coder.decode(coder.encode(value)) == value


def test_equal_elements_encode_to_equal_bytes() -> None:
    a = BatchRecord("R1", "t", {"b": 1, "a": [1, {"y": 2, "x": 3}]}, 10, {"k": 1, "j": 2})
    b = BatchRecord("R1", "t", {"a": [1, {"x": 3, "y": 2}], "b": 1}, 10, {"j": 2, "k": 1})
    assert BatchRecordCoder().is_deterministic()
    assert BatchRecordCoder().encode(a) == BatchRecordCoder().encode(b)


def test_values_without_a_json_type_are_written_as_their_strings() -> None:
    """As the index sidecar and the metadata column write them: nothing fails, nothing is lost
    that the outputs keep."""
    when = dt.datetime(2026, 1, 2, 3, 4, 5)
    record = BatchRecord("R1", "t\ud800", {"m": 1}, 10, {"at": when, 7: decimal.Decimal("1.5")})
    back = BatchRecordCoder().decode(BatchRecordCoder().encode(record))
    assert back.transcript_id == "t\ud800"
    assert back.metadata == {"at": str(when), "7": "1.5"}


def test_a_summary_keeps_its_timezone() -> None:
    start = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    summary = Summary("t", "R1", "m", "s", window_start=start, window_end=start)
    back = SummaryCoder().decode(SummaryCoder().encode(summary))
    assert back.window_start == start and back.window_start.utcoffset() == start.utcoffset()


def test_the_registry_hands_out_these_coders() -> None:
    for cls, coder in ((Transcript, TranscriptCoder), (BatchRecord, BatchRecordCoder),
                       (Summary, SummaryCoder), (Failure, FailureCoder)):
        assert coders.registry.get_coder(cls) == coder()


def test_the_hot_path_is_typed(tmp_path) -> None:
    """The records between stages are BatchRecords to Beam, so it codes them with BatchRecordCoder
    rather than pickling them (the pipeline is built, not run)."""
    config = BatchConfig(base_uri="s3://bucket/runs", run_id="typed",
                         job=JobConfig(role_arn=SERVICE_ROLE_ARN))
    p = beam.Pipeline()
    prepared = (p | beam.Create([Transcript("a", "hello")]).with_output_types(Transcript)
                | PrepareRecords(config))
    assert prepared["records"].element_type is BatchRecord
    assert coders.registry.get_coder(prepared["records"].element_type) == BatchRecordCoder()


def test_deferred_records_wait_coded_with_their_event_times() -> None:
    """The defer policy's bag holds (record, timestamp in micros) deterministically coded, not
    pickled; a bounded read's records have Beam's minimum timestamp, which must come back too."""
    coder = CarryTailsFn.TAIL.coder
    record = BatchRecord("R1", "t", {"b": 1, "a": 2}, 10, {"k": "v"}, attempt=2)
    assert coder.is_deterministic()
    for micros in (MIN_TIMESTAMP.micros, 0, 1_767_225_600_000_000):
        assert coder.decode(coder.encode((record, micros))) == (record, micros)
# Hostile failure rows: any field that may be None is, text of every plane (lone surrogates
# included, which Failure escapes) and text far longer than a row usually is.
HOSTILE_TEXT = (st.text(max_size=40) | st.text(min_size=1, max_size=4).map(lambda t: t * 250_000))
OPTIONAL_TEXT = HOSTILE_TEXT | st.none()
OFFSETS = st.integers(-23 * 60, 23 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
HOSTILE_FAILURES = st.builds(
    Failure, stage=st.sampled_from(STAGES), error_code=HOSTILE_TEXT, error_message=HOSTILE_TEXT,
    transcript_id=OPTIONAL_TEXT, record_id=OPTIONAL_TEXT, attempt=st.integers(-2**63, 2**63 - 1),
    job_arn=OPTIONAL_TEXT, raw=OPTIONAL_TEXT, origin=OPTIONAL_TEXT,
    created_at=st.datetimes(timezones=st.none() | st.just(dt.timezone.utc) | OFFSETS))


@settings(max_examples=60, deadline=None)
@given(HOSTILE_FAILURES)
def test_a_hostile_failure_row_round_trips_to_the_same_bytes(failure) -> None:
    coder = coders.registry.get_coder(Failure)
    encoded = coder.encode(failure)
    back = coder.decode(encoded)
    assert back == failure
    assert back.created_at.utcoffset() == failure.created_at.utcoffset()
    assert coder.encode(back) == encoded


def built_cli_pipeline(tmp_path, *flags: str) -> beam.Pipeline:
    """The CLI's run pipeline for a file input, built (not run)."""
    options, opts = parse_options(["--input", str(tmp_path / "*.jsonl"),
                                   "--output", str(tmp_path / "out"), *flags])
    config = BatchConfig(base_uri="s3://bucket/runs", run_id="typed",
                         job=JobConfig(role_arn=SERVICE_ROLE_ARN))
    p = beam.Pipeline(options=options)
    build(p, opts, config, str(tmp_path / "out"))
    return p


def translated_coders(p: beam.Pipeline) -> Callable[[beam.PCollection], coders.Coder]:
    """The coder the translated pipeline gives a PCollection of ``p``."""
    context = pipeline_context.PipelineContext()
    proto = p.to_runner_api(context=context)

    def coder(pcoll: beam.PCollection) -> coders.Coder:
        return context.coders.get_by_id(
            proto.components.pcollections[context.pcollections.get_id(pcoll)].coder_id)
    return coder


def test_every_failure_row_of_a_cli_run_is_coded_with_the_failure_coder(tmp_path) -> None:
    """Each ParDo's tagged failures output (Beam leaves tagged outputs untyped) and the rows
    into the failures sink are Failure PCollections, so the translated pipeline encodes them
    with FailureCoder rather than pickling them (the pipeline is built, not run)."""
    p = built_cli_pipeline(tmp_path)
    failures: dict[str, beam.PCollection] = {}

    class Failures(PipelineVisitor):
        def enter_composite_transform(self, node) -> None:
            if node.full_label == "WriteFailures":
                failures["into WriteFailures"] = node.inputs[0]

        def visit_transform(self, node) -> None:
            if "failures" in node.outputs:
                failures[node.full_label] = node.outputs["failures"]
    p.visit(Failures())
    coder = translated_coders(p)
    assert len(failures) > 10  # the sources', every round's and the sink's
    assert {label: coder(pcoll) for label, pcoll in failures.items()} == {
        label: FailureCoder() for label in failures}


# A tagged output of the shard and harvest stages -> the coder it must get.
RECORDS_OUT = ("retries", "on_demand", "deferred", "undersized")
TUPLES_OUT = {"totals": coders.TupleCoder([coders.StrUtf8Coder(), coders.VarIntCoder()]),
              "adopted": coders.TupleCoder([coders.StrUtf8Coder(), coders.TupleCoder(
                  [coders.StrUtf8Coder(), coders.VarIntCoder()])])}


@pytest.mark.parametrize("flags", [(), ("--window-seconds", "60")],
                         ids=["global window: WriteShardsInParallel", "time windows: ByPane"])
def test_the_records_a_round_hands_on_are_not_pickled(tmp_path, flags) -> None:
    """The records to retry, to call on demand, to defer and left undersized, and the rerun's
    (job, record) tuples, are typed tagged outputs: BatchRecordCoder and tuple coders, not the
    pickling coder Beam gives a tagged output by default. So are the records the defer policy
    keys by model. Only Beam's own file writes keep their untyped outputs."""
    p = built_cli_pipeline(tmp_path, *flags)
    tagged: dict[tuple[str, str], beam.PCollection] = {}
    keyed: list[beam.PCollection] = []

    class Outputs(PipelineVisitor):
        def visit_transform(self, node) -> None:
            if "WriteToFiles" in node.full_label:
                return
            tagged.update({(node.full_label, tag): pcoll for tag, pcoll in node.outputs.items()
                           if tag not in (None, "None", "failures")})
            if node.full_label.endswith("/CarryTails/Key"):
                keyed.append(node.outputs[None])
    p.visit(Outputs())
    coder = translated_coders(p)
    want = {**{tag: BatchRecordCoder() for tag in RECORDS_OUT}, **TUPLES_OUT}
    assert {tag for _, tag in tagged} >= {"retries", "on_demand", "deferred"}
    assert {key: coder(pcoll) for key, pcoll in tagged.items()} == {
        (label, tag): want.get(tag, "a coder this test does not know") for label, tag in tagged}
    assert keyed and {coder(pcoll) for pcoll in keyed} == {
        coders.TupleCoder([coders.StrUtf8Coder(), BatchRecordCoder()])}
