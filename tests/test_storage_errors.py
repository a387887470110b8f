"""A storage read error on one input file: retried with backoff, then one UnreadableFile row,
while the other files' records go on to summaries.

The error is a real kernel EIO: the input folder holds a symlink to /proc/self/mem, which Beam
matches and opens like any file and whose read at offset 0 fails with EIO in the reading process.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from pipeline.__main__ import main
from pipeline import exit_codes
from tests.pipelines import cli_with_counters, read_rows
from transforms.core.rate_control import RetryPolicy
from transforms.sources.parsing import read_stored_file
from transforms.sources.validation import FieldMapping

TEXT = "Customer: my parcel {n} never arrived. Agent: I have sent a new one today."
MAPPING = FieldMapping.of("id", "text", "turns", None)


def _kernel_eio() -> bool:
    try:
        with open("/proc/self/mem", "rb") as handle:
            handle.read(1)
    except OSError as err:
        return err.errno == 5
    return False


needs_eio = pytest.mark.skipif(not _kernel_eio(), reason="reading /proc/self/mem gives no EIO here")


def _calls(path: Path, ids: list[str]) -> None:
    path.write_text("".join(json.dumps({"id": i, "text": TEXT.format(n=i)}) + "\n" for i in ids))


@needs_eio
def test_an_eio_file_is_one_unreadable_file_row_and_the_other_files_are_summarized(
        tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    _calls(folder / "a.jsonl", ["a1", "a2", "a3"])
    _calls(folder / "b.jsonl", ["b1", "b2"])
    os.symlink("/proc/self/mem", folder / "broken.jsonl")
    out = tmp_path / "out"
    code, counters = cli_with_counters(
        ["run", "--input", str(folder / "*.jsonl"), "--output", str(out), "--sink", "jsonl",
         "--min-records-per-job", "1", "--max-failure-rate", "0.5"], monkeypatch)
    assert code == exit_codes.OK  # 1 failure of 6 rows, within --max-failure-rate
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == [
        "a1", "a2", "a3", "b1", "b2"]
    [failure] = read_rows(out / "failures")
    assert (failure["stage"], failure["error_code"], failure["origin"]) == (
        "source", "UnreadableFile", str(folder / "broken.jsonl"))
    assert "could not be read from storage (4 attempts)" in failure["error_message"]
    assert "Input/output error" in failure["error_message"]
    assert counters["records_in"] == 6 and counters["records_rejected"] == 1
    assert main(["report", str(out)]) == exit_codes.OK  # the report it wrote reads back


@needs_eio
def test_plan_counts_an_eio_file_as_invalid(tmp_path, capsys):
    _calls(tmp_path / "a.jsonl", ["a1", "a2"])
    os.symlink("/proc/self/mem", tmp_path / "broken.jsonl")
    assert main(["plan", "--input", str(tmp_path / "*.jsonl")]) == exit_codes.OK
    plan = json.loads(capsys.readouterr().out)
    assert (plan["records"], plan["invalid_records"]) == (2, 1)


@needs_eio
def test_a_watched_folder_makes_an_eio_file_one_row_and_goes_on(tmp_path):
    """The streaming watch source reads each file it finds with the same reader."""
    folder = tmp_path / "inbox"
    folder.mkdir()
    _calls(folder / "a.jsonl", ["a1", "a2"])
    os.symlink("/proc/self/mem", folder / "broken.jsonl")
    out = tmp_path / "out"
    # --watch-seconds counts from when the pipeline is built: generous for a slow start.
    code = main(["run", "--streaming", "--input", str(folder / "*.jsonl"), "--output", str(out),
                 "--sink", "jsonl", "--window-seconds", "3", "--watch-interval-seconds", "1",
                 "--watch-seconds", "20", "--min-records-per-job", "1",
                 "--max-failure-rate", "0.5"])

    assert code == exit_codes.OK
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == ["a1", "a2"]
    [failure] = read_rows(out / "failures")
    assert (failure["error_code"], failure["origin"]) == ("UnreadableFile",
                                                          str(folder / "broken.jsonl"))
    assert main(["report", str(out)]) == exit_codes.OK


class _Drops:
    """A file's bytes whose read fails once ``fail_at`` bytes in, like a dropped connection. A
    fake: a kernel EIO that heals by the next read cannot be made on demand."""

    def __init__(self, data: bytes, fail_at: int | None) -> None:
        self._data = io.BytesIO(data)
        self._fail_at = fail_at

    def read(self, size: int = -1) -> bytes:
        if self._fail_at is not None and self._data.tell() + max(size, 0) > self._fail_at:
            raise ConnectionResetError(104, "Connection reset by peer")
        return self._data.read(size)

    def close(self) -> None:
        self._data.close()

    def __enter__(self) -> "_Drops":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _jsonl(count: int) -> bytes:
    # Lines long enough that the drop, past the first 64 KiB read, comes after some records.
    return "".join(json.dumps({"id": f"c{i}", "text": TEXT.format(n=i) + " x" * 3000}) + "\n"
                   for i in range(count)).encode()


def test_a_read_that_heals_on_retry_yields_each_record_once():
    data = _jsonl(40)
    opens = [_Drops(data, None)]
    slept: list[float] = []
    items = list(read_stored_file(_Drops(data, 100_000), opens.pop, "s3://b/calls.jsonl",
                                  "jsonl", MAPPING, 10**6, sleep=slept.append))
    assert [t.id for t in items] == [f"c{i}" for i in range(40)]
    assert len(slept) == 1 and not opens


def test_a_read_that_keeps_failing_keeps_the_records_before_it_and_ends_in_one_row():
    data = _jsonl(40)
    reopen_errors = [OSError("endpoint down"), None]
    slept: list[float] = []

    def reopen() -> _Drops:
        error = reopen_errors.pop(0)
        if error is not None:
            raise error
        return _Drops(data, 100_000)

    items = list(read_stored_file(_Drops(data, 100_000), reopen, "s3://b/calls.jsonl", "jsonl",
                                  MAPPING, 10**6, retry=RetryPolicy(3, 0.01, 0.01),
                                  sleep=slept.append))
    *records, failure = items
    assert [t.id for t in records] == [f"c{i}" for i in range(len(records))] and records
    assert failure.error_code == "UnreadableFile" and failure.origin == "s3://b/calls.jsonl"
    assert failure.error_message.startswith(
        f"s3://b/calls.jsonl could not be read from storage (3 attempts): ConnectionResetError")
    assert f"({len(records)} records read before it;" in failure.error_message
    assert len(slept) == 2


def test_errors_in_the_bytes_are_not_retried():
    slept: list[float] = []
    [failure] = read_stored_file(_Drops(b"\x00not gzip", None), lambda: pytest.fail("reopened"),
                                 "calls.jsonl.gz", "jsonl", MAPPING, 10**6, sleep=slept.append)
    assert failure.error_code == "UnreadableFile" and "from storage" not in failure.error_message
    assert slept == []


def test_an_s3_object_storage_will_not_serve_is_one_row_and_the_others_are_summarized(
        local_backend_factory, tmp_path, monkeypatch):
    """A real S3 fault through Beam's S3 filesystem: the local S3 answers every GET of one object
    with 403 AccessDenied."""
    from pipeline.local.backend import DEFAULT_BUCKET, SERVICE_ROLE_ARN
    from pipeline.local.faults import Faults
    from transforms.core.quotas import Quotas

    backend = local_backend_factory(quotas=Quotas(min_records_per_job=1), faults=Faults(
        s3_denied_keys=(f"{DEFAULT_BUCKET}/in/b.jsonl",)))
    s3 = backend.boto3_client("s3")
    for name, ids in (("a.jsonl", ["a1", "a2", "a3"]), ("b.jsonl", ["b1"]), ("c.jsonl", ["c1"])):
        s3.put_object(Bucket=DEFAULT_BUCKET, Key=f"in/{name}", Body="".join(
            json.dumps({"id": i, "text": TEXT.format(n=i)}) + "\n" for i in ids).encode())
    out = tmp_path / "out"
    code, counters = cli_with_counters(
        ["run", "--backend", "aws", "--bedrock-endpoint-url", backend.bedrock_endpoint_url,
         "--bucket-uri", f"s3://{DEFAULT_BUCKET}/runs", "--role-arn", SERVICE_ROLE_ARN,
         "--aws-region", backend.region, "--poll-interval-seconds", "1",
         "--input", f"s3://{DEFAULT_BUCKET}/in/*.jsonl", "--output", str(out), "--sink", "jsonl",
         "--min-records-per-job", "1", "--max-failure-rate", "0.5"], monkeypatch)
    assert code == exit_codes.OK
    assert sorted(r["transcript_id"] for r in read_rows(out / "summaries")) == [
        "a1", "a2", "a3", "c1"]
    [failure] = read_rows(out / "failures")
    assert (failure["error_code"], failure["origin"]) == (
        "UnreadableFile", f"s3://{DEFAULT_BUCKET}/in/b.jsonl")
    assert "could not be read from storage (4 attempts)" in failure["error_message"]
    assert counters["records_in"] == 5
    assert "AccessDenied" in failure["error_message"]
    assert backend.faults_injected()["s3_denied"] >= 4
