"""Object storage for shard, index and output files: S3 (boto3) or a local directory.

Local paths are accepted so ``collect`` can parse a job output that was downloaded by hand.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse


def split_s3(uri: str) -> tuple[str, str]:
    """An ``s3://bucket/key`` URI as (bucket, key); a ValueError for anything else.

    Args:
        uri: The URI.
    """
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return parsed.netloc, parsed.path.lstrip("/")


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with single slashes (URIs and local paths alike).

    Args:
        base: A URI or path.
        *parts: Path parts appended to it.
    """
    return "/".join([base.rstrip("/"), *[p.strip("/") for p in parts]])


class StorageError(RuntimeError):
    """An object operation S3 reported as failed for some keys."""


class Storage:
    """Read, write and list objects by URI (``s3://...`` or a local path).

    Args:
        s3_client: A boto3 S3 client; None when only local paths are used.
    """

    def __init__(self, s3_client: Any = None):
        self._s3 = s3_client

    def _client(self) -> Any:
        if self._s3 is None:
            raise ValueError("an s3:// URI needs an S3 client; pass AwsConfig settings")
        return self._s3

    def upload(self, local_path: str, uri: str) -> None:
        """Copy a local file to ``uri`` (multipart on S3).

        Args:
            local_path: The file to copy.
            uri: Where to put it.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            self._client().upload_file(local_path, bucket, key)  # multipart for big shards
        else:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local_path, uri)

    def write_text(self, uri: str, text: str) -> None:
        """Write ``text`` as UTF-8 to ``uri``.

        Args:
            uri: Where to write.
            text: What to write.
        """
        self.write_bytes(uri, text.encode("utf-8"))

    def write_bytes(self, uri: str, data: bytes) -> None:
        """Write ``data`` to ``uri``.

        Args:
            uri: Where to write.
            data: What to write.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            self._client().put_object(Bucket=bucket, Key=key, Body=data)
        else:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Path(uri).write_bytes(data)

    def read_lines(self, uri: str) -> Iterator[str]:
        """Yield text lines without loading the whole object into memory.

        Args:
            uri: The object to read.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            body = self._client().get_object(Bucket=bucket, Key=key)["Body"]
            for raw in body.iter_lines():
                yield raw.decode("utf-8")
        else:
            with open(uri, encoding="utf-8") as handle:
                for line in handle:
                    yield line.rstrip("\n")

    def read_byte_lines(self, uri: str) -> Iterator[bytes]:
        """Yield lines as bytes (without their line ending), for a reader that decodes each
        line itself, so one line that is not UTF-8 does not stop the rest.

        Args:
            uri: The object to read.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            yield from self._client().get_object(Bucket=bucket, Key=key)["Body"].iter_lines()
        else:
            with open(uri, "rb") as handle:
                for line in handle:
                    yield line.rstrip(b"\r\n")

    def download(self, uri: str, local_path: str) -> None:
        """Copy the object at ``uri`` to a local file (multipart on S3).

        Args:
            uri: The object to copy.
            local_path: Where to put it.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            self._client().download_file(bucket, key, local_path)
        else:
            shutil.copyfile(uri, local_path)

    def read_text(self, uri: str) -> str:
        """The whole object at ``uri`` as text, its lines joined by newlines.

        Args:
            uri: The object to read.
        """
        return "\n".join(self.read_lines(uri))

    def exists(self, uri: str) -> bool:
        """Whether an object (or local file) exists at ``uri``.

        Args:
            uri: The URI or path.
        """
        if uri.startswith("s3://"):
            bucket, key = split_s3(uri)
            found = self._client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
            return any(o["Key"] == key for o in found.get("Contents", []))
        return os.path.exists(uri)

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under a prefix (a directory for local paths).

        Args:
            prefix: The URI prefix or local directory.
        """
        if prefix.startswith("s3://"):
            bucket, _ = split_s3(prefix)
            uris = self.list(prefix)
            failed: list[str] = []
            for start in range(0, len(uris), 1000):  # DeleteObjects takes 1,000 keys a call
                keys = [{"Key": split_s3(u)[1]} for u in uris[start:start + 1000]]
                response = self._client().delete_objects(Bucket=bucket, Delete={"Objects": keys})
                # DeleteObjects answers 200 even when some keys were not deleted: check each.
                failed += [f"s3://{bucket}/{e.get('Key')} ({e.get('Code')}: {e.get('Message')})"
                           for e in response.get("Errors", [])]
            if failed:
                raise StorageError(f"could not delete {len(failed)} object(s) under {prefix}: "
                                   + "; ".join(failed[:10]) + ("; ..." if len(failed) > 10 else ""))
        else:
            shutil.rmtree(prefix, ignore_errors=True)

    def list(self, prefix: str) -> list[str]:
        """URIs of all objects under a prefix (a directory for local paths), sorted.

        Args:
            prefix: The URI prefix or local directory.
        """
        if prefix.startswith("s3://"):
            bucket, key = split_s3(prefix)
            pages = self._client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
            return sorted(f"s3://{bucket}/{o['Key']}" for page in pages
                          for o in page.get("Contents", []))
        root = Path(prefix)
        if root.is_file():
            return [str(root)]
        return sorted(str(p) for p in root.rglob("*") if p.is_file())
