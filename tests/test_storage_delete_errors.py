"""Storage.delete_prefix checks DeleteObjects' per-key errors.

moto's S3 deletes every key it is asked to, so the per-key failure cannot be produced by the real
server: the S3 client here is the real moto client except that ``delete_objects`` keeps one key
and reports it in ``Errors``, the way S3 does for a key it could not delete (HTTP 200 all the same).
"""
from __future__ import annotations

import time
from typing import Any, Iterator

import pytest

from pipeline.local.backend import LocalBackend
from transforms.core.storage import Storage, StorageError, split_s3


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    with LocalBackend(bucket=f"deletes-{time.monotonic_ns() % 10**6}") as backend:
        yield backend.boto3_client("s3")


class _KeepsOneKey:
    """The real client; delete_objects leaves ``kept`` in place and reports it as S3 would."""

    def __init__(self, client: Any, kept: str):
        self._client, self._kept = client, kept

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_objects(self, Bucket: str, Delete: dict) -> dict:
        keys = [o for o in Delete["Objects"] if o["Key"] != self._kept]
        response = self._client.delete_objects(Bucket=Bucket, Delete={"Objects": keys})
        response["Errors"] = [{"Key": self._kept, "Code": "AccessDenied", "Message": "Access Denied"}]
        return response


def _put(s3: Any, uris: list[str]) -> None:
    for uri in uris:
        bucket, key = split_s3(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")


def test_delete_prefix_removes_every_object(s3: Any) -> None:
    bucket = s3.list_buckets()["Buckets"][0]["Name"]
    uris = [f"s3://{bucket}/ok/a/{i}.jsonl" for i in range(3)]
    _put(s3, uris)
    storage = Storage(s3)
    storage.delete_prefix(f"s3://{bucket}/ok/a/")
    assert storage.list(f"s3://{bucket}/ok/a/") == []


def test_delete_prefix_raises_naming_the_keys_s3_kept(s3: Any) -> None:
    bucket = s3.list_buckets()["Buckets"][0]["Name"]
    uris = [f"s3://{bucket}/kept/a/{i}.jsonl" for i in range(3)]
    _put(s3, uris)
    storage = Storage(_KeepsOneKey(s3, "kept/a/1.jsonl"))
    with pytest.raises(StorageError, match=r"could not delete 1 object\(s\) under s3://.*/kept/a/: "
                                           r"s3://.*/kept/a/1\.jsonl \(AccessDenied: Access Denied\)"):
        storage.delete_prefix(f"s3://{bucket}/kept/a/")
    assert storage.list(f"s3://{bucket}/kept/a/") == [uris[1]]
