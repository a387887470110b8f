"""`collect` and `report` on folders a user may point them at by mistake or after damage, run
through the CLI as a user runs them.

Hypothesis draws hostile folders: job output files of garbage bytes, cut JSON, lines of the
wrong types, bytes that are not UTF-8 mid-file, empty files, no files; manifests and report.json
files that are garbage, cut, empty or hold values of the wrong types. Whatever the folder, the
command either does its work or refuses with exit 2 and one line naming the file and the fix,
writing nothing; it never crashes with a traceback.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipeline.__main__ import main
from pipeline import exit_codes
from pipeline.local.responses import invoke
from pipeline.report.data import job_entry, report_data
from pipeline.running.outcome import Report
from tests.pipelines import read_rows
from transforms.jobs.results import Manifest
from transforms.prepare.families import family_for

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
# No shrinking: a collect example is a whole pipeline run, and a failing one is shown as drawn.
SLOW = dict(deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
garbage = st.binary(min_size=1, max_size=300).map(lambda b: b"\x95" + b)  # never UTF-8 text


def _answered(record_id: str) -> str:
    body = family_for(MODEL).build_request(f"Customer: order {record_id} is late. Agent: sent.",
                                           None, 100, 0.2)
    return json.dumps({"recordId": record_id, "modelInput": body,
                       "modelOutput": invoke(MODEL, "InvokeModel", body).body})


# ---- collect ----------------------------------------------------------------------------------

# Output file kinds: how each starts decides whether collect may read the folder at all.
REFUSED_FILES = ("garbage", "cut_first_line", "first_line_not_a_record")


@st.composite
def output_file(draw) -> tuple[str, bytes, int, int]:
    """(kind, content, rows it must give, of which summaries) for one *.jsonl.out file."""
    kind = draw(st.sampled_from(REFUSED_FILES + (
        "answered", "torn_last_line", "bad_bytes_mid_file", "wrong_types", "wrong_types",
        "wrong_types", "empty")))
    first = _answered(f"r{draw(st.integers(0, 10**6))}")
    if kind == "garbage":
        return kind, draw(garbage), 0, 0
    if kind == "cut_first_line":
        return kind, first[: draw(st.integers(1, len(first) - 1))].encode(), 0, 0
    if kind == "first_line_not_a_record":
        value = draw(json_values.filter(lambda v: not (isinstance(v, dict) and "recordId" in v)))
        return kind, (json.dumps(value) + "\n" + first + "\n").encode(), 0, 0
    if kind == "empty":
        return kind, b"", 0, 0
    lines = [first.encode()] + [_answered(f"s{i}").encode() for i in range(draw(st.integers(0, 2)))]
    summaries = len(lines)
    if kind == "torn_last_line":
        lines.append(first[: draw(st.integers(1, len(first) - 1))].encode())
    elif kind == "bad_bytes_mid_file":
        lines.insert(1, draw(garbage))
    elif kind == "wrong_types":
        for _ in range(draw(st.integers(1, 3))):
            shape = draw(st.sampled_from(("value", "output", "error")))
            value = draw(json_values)
            line = (value if shape == "value" else
                    {"recordId": draw(json_values), "modelInput": {}, "modelOutput": value}
                    if shape == "output" else {"recordId": draw(json_values), "error": value})
            lines.append(json.dumps(line).encode())
    return kind, b"\n".join(lines) + b"\n", len(lines), summaries


MANIFEST = {"totalRecordCount": 3, "processedRecordCount": 3, "successRecordCount": 3,
            "errorRecordCount": 0, "inputTokenCount": 90, "outputTokenCount": 30}


@st.composite
def manifest(draw) -> tuple[str, bytes | None]:
    # Half the folders have a usable manifest, so that their rows are checked too.
    kind = draw(st.sampled_from(("missing", "valid") * 3 + (
        "garbage", "cut", "empty", "not_an_object", "wrong_count", "wrong_count")))
    text = json.dumps(MANIFEST)
    if kind == "missing":
        return kind, None
    if kind == "valid":
        return kind, text.encode()
    if kind == "garbage":
        return kind, draw(garbage)
    if kind == "cut":
        return kind, text[: draw(st.integers(1, len(text) - 1))].encode()
    if kind == "empty":
        return kind, b""
    if kind == "not_an_object":
        return kind, json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    name = draw(st.sampled_from(sorted(MANIFEST)))
    wrong = draw(json_values.filter(lambda v: not (type(v) is int and v >= 0)))
    return kind, json.dumps({**MANIFEST, name: wrong}).encode()


@settings(max_examples=20, **SLOW)
@given(files=st.lists(output_file(), max_size=3), job_manifest=manifest())
def test_collect_reads_a_job_folder_or_refuses_it_in_one_line(files, job_manifest, tmp_path_factory,
                                                              capsys):
    job = tmp_path_factory.mktemp("job") / "abcdefghijkl"
    job.mkdir()
    for number, (_, content, _, _) in enumerate(files):
        (job / f"shard-{number:05d}.jsonl.out").write_bytes(content)
    manifest_kind, manifest_content = job_manifest
    if manifest_content is not None:
        (job / "manifest.json.out").write_bytes(manifest_content)
    out = tmp_path_factory.mktemp("out") / "collected"
    capsys.readouterr()

    code = main(["collect", "--job-output", str(job), "--output", str(out), "--sink", "jsonl"])

    captured = capsys.readouterr()
    refused = (not files or any(kind in REFUSED_FILES for kind, *_ in files)
               or manifest_kind not in ("missing", "valid"))
    if refused:
        assert code == exit_codes.USAGE, captured.err
        [line] = [line for line in captured.err.splitlines() if line.startswith("error:")]
        assert str(job) in line and ("--job-output" in line or "delete it" in line), line
        assert "Traceback" not in captured.err and not out.exists()
        return
    assert code == exit_codes.OK, captured.err
    summaries, failures = read_rows(out / "summaries"), read_rows(out / "failures")
    assert len(summaries) == sum(s for *_, s in files)
    assert len(summaries) + len(failures) == sum(rows for _, _, rows, _ in files)
    assert all(f["stage"] in ("parse", "model") and f["error_message"] for f in failures)
    assert (f"manifest   3 total" in captured.out) == (manifest_kind == "valid")


@pytest.mark.parametrize("content, words", [
    (b"\x95\x00binary", "is not a batch job's output"),
    (b"[1, 2]\n", "is not a batch job's output"),
])
def test_collect_names_the_output_file_that_is_not_a_job_output(tmp_path, capsys, content, words):
    (tmp_path / "x.jsonl.out").write_bytes(content)
    assert main(["collect", "--job-output", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'x.jsonl.out'} {words}" in err and "Traceback" not in err


def test_a_manifest_that_is_no_json_is_refused_before_any_row_is_written(tmp_path, capsys):
    (tmp_path / "x.jsonl.out").write_text(_answered("r1") + "\n")
    (tmp_path / "manifest.json.out").write_text("not json{")
    assert main(["collect", "--job-output", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"error: {tmp_path / 'manifest.json.out'} is not valid JSON" in err
    assert "delete it to collect without its counts" in err and not (tmp_path / "o").exists()


def test_an_empty_folder_is_a_usage_error(tmp_path, capsys):
    assert main(["collect", "--job-output", str(tmp_path), "--output", str(tmp_path / "o")]) == 2
    assert "holds no *.out files" in capsys.readouterr().err


# ---- report -------------------------------------------------------------------------------------

T0 = dt.datetime(2026, 11, 27, 9, 0, tzinfo=dt.timezone.utc)


def _report() -> dict[str, Any]:
    """report.json as a run writes it: two jobs (one without a manifest) and a failure cause."""
    jobs = [job_entry({"jobName": f"bb-r1-g-a1-000{n}", "status": status, "modelId": MODEL,
                       "jobArn": f"arn:aws:bedrock:us-east-1:1:model-invocation-job/j{n}",
                       "submitTime": T0, "endTime": T0 + dt.timedelta(minutes=9),
                       "lastModifiedTime": T0 + dt.timedelta(minutes=9)},
                      manifest, "r1")
            for n, (status, manifest) in enumerate([("Completed", Manifest(9, 9, 9, 0, 900, 90)),
                                                    ("Failed", None)])]
    report = Report("r1", {"records_in": 10, "summaries_written": 9, "failures_written": 1,
                           "failures.validate.TextTooLong": 1}, ("out/summaries",))
    return json.loads(json.dumps(report_data(report, MODEL, jobs, generated_at=T0)))


def _paths(value: Any, path: tuple = ()) -> list[tuple]:
    inner = (value.items() if isinstance(value, dict) else
             enumerate(value) if isinstance(value, list) else ())
    return [path] + [p for key, child in inner for p in _paths(child, path + (key,))]


def _replace(value: Any, path: tuple, new: Any, delete: bool) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    if delete and len(path) == 1:
        del copy[path[0]]
    else:
        copy[path[0]] = _replace(copy[path[0]], path[1:], new, delete)
    return copy


@st.composite
def report_file(draw) -> bytes:
    kind = draw(st.sampled_from(("garbage", "cut", "empty", "changed", "deleted", "changed")))
    text = json.dumps(_report())
    if kind == "garbage":
        return draw(garbage)
    if kind == "cut":
        return text[: draw(st.integers(1, len(text) - 1))].encode()
    if kind == "empty":
        return b""
    data = _report()
    path = draw(st.sampled_from(_paths(data)[1:] if kind == "deleted" else _paths(data)))
    return json.dumps(_replace(data, path, draw(json_values), kind == "deleted")).encode()


@settings(max_examples=80, **SLOW)
@given(content=report_file())
def test_report_rebuilds_the_page_or_refuses_in_one_line(content, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("run")
    (folder / "report.json").write_bytes(content)
    capsys.readouterr()
    code = main(["report", str(folder)])
    captured = capsys.readouterr()
    if code == exit_codes.OK:
        assert (folder / "report.html").exists()
        return
    assert code == exit_codes.USAGE, captured.err
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: {folder / 'report.json'} is not ")
    assert line.endswith("rerun the run with the same --run-id, which writes it again")
    assert not (folder / "report.html").exists()


def test_report_rebuilds_the_page_of_a_report_a_run_wrote(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(_report()))
    assert main(["report", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").stat().st_size > 1000


@pytest.mark.parametrize("change, words", [
    (lambda d: d.pop("records"), "is not a run report (the top level: 'records' is a required"),
    (lambda d: d["records"].update({"in": "ten"}), "(records.in: 'ten' is not of type 'integer')"),
    (lambda d: d["jobs"][0].update({"submitted": "2026-11-27 09:00"}),
     "(jobs.0.submitted: '2026-11-27 09:00' is no ISO 8601 time with a UTC offset)"),
])
def test_a_damaged_report_json_is_named_with_what_is_wrong(tmp_path, capsys, change, words):
    data = _report()
    change(data)
    (tmp_path / "report.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path)]) == 2
    assert words in capsys.readouterr().err


def test_a_report_json_that_is_no_json_is_named(tmp_path, capsys):
    (tmp_path / "report.json").write_bytes(b"\x89PNG\r\n")
    assert main(["report", str(tmp_path)]) == 2
    assert f"{tmp_path / 'report.json'} is not valid JSON (UnicodeDecodeError" in \
        capsys.readouterr().err
