"""The README's Python example (item 2 of "Three ways to use it") runs as written against the
LocalBackend it starts, with no AWS variable in the environment (conftest clears them)."""
from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.local.backend import LocalBackend

README = Path(__file__).resolve().parent.parent / "README.md"
TRANSCRIBE = Path(__file__).resolve().parent / "data" / "sources" / "transcribe" / "call-001.json"
# Enough calls for one batch job: Bedrock's minimum is 100 records per job.
CALLS = 120


def readme_example() -> str:
    """The first Python block after the heading of item 2, as the README shows it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("**2. The transforms inside your own pipeline:**"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README item 2 has no Python example"
    return match.group(1)


def _rows(s3, prefix: str) -> list[dict]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="my-bucket", Prefix=prefix)
            .get("Contents", [])]
    rows = []
    for key in keys:
        body = s3.get_object(Bucket="my-bucket", Key=key)["Body"].read()
        if key.endswith(".parquet"):
            rows += pq.read_table(io.BytesIO(body)).to_pylist()
        elif body.strip():
            raise AssertionError(f"unexpected non-empty {key}")
    return rows


def test_readme_python_example_runs_against_a_local_backend(tmp_path, monkeypatch):
    calls = tmp_path / "calls"
    calls.mkdir()
    template = json.loads(TRANSCRIBE.read_text(encoding="utf-8"))
    ids = [f"call-{i:04d}" for i in range(CALLS)]
    for call_id in ids:
        (calls / f"{call_id}.json").write_text(json.dumps(dict(template, jobName=call_id)),
                                               encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert not [k for k in os.environ if k.startswith("AWS_ENDPOINT")]

    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme_example"})

    # The example's backend has stopped; its S3 objects live on in this process (moto's state
    # is process-wide), so a second backend reads what the example wrote.
    with LocalBackend() as reader:
        s3 = reader.boto3_client("s3")
        summaries = _rows(s3, "summaries")
        assert sorted(row["transcript_id"] for row in summaries) == ids
        assert all(row["summary"] for row in summaries)
        assert _rows(s3, "failures") == []


@pytest.mark.parametrize("method", ["aws_config", "pipeline_options"])
def test_backend_settings_need_a_running_backend(method):
    """Before start() there are no endpoints to give: a clear error, not a config to nowhere."""
    with pytest.raises(RuntimeError, match="not running"):
        getattr(LocalBackend(), method)()
