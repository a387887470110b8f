"""transforms/core/storage.py on local paths and on a real S3 endpoint (moto server via
LocalBackend)."""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from botocore.exceptions import ClientError

from pipeline.local.backend import LocalBackend
from transforms.core.storage import Storage, join, split_s3

_ids = itertools.count()

# Lines that stress line splitting: unicode (multi-byte, also across 1 KiB read chunks), a blank
# line in the middle, and a line separator Python's str.splitlines would split on but JSONL does not.
LINES = ['{"recordId": "R1", "text": "Zoë paid 12 € ✓"}', "", "plain \u2028 still one line",
         *[f'{{"n": {i}, "pad": "{"é" * (i * 37 % 300)}"}}' for i in range(60)]]


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    with LocalBackend(bucket=f"storage-{next(_ids)}-{time.monotonic_ns() % 10**6}") as b:
        yield b


@pytest.fixture(scope="module")
def s3(backend: LocalBackend) -> Any:
    return backend.boto3_client("s3")


@pytest.fixture
def root(backend: LocalBackend) -> str:
    """A fresh prefix per test in the module's bucket."""
    return f"s3://{backend.bucket}/t{next(_ids)}"


@pytest.fixture
def storage(s3: Any) -> Storage:
    return Storage(s3)


def write(path: Path, text: str, newline: str = "\n") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return str(path)


def put(s3: Any, uri: str, text: str) -> None:
    bucket, key = split_s3(uri)
    s3.put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))


# ---- URIs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("uri,expected", [
    ("s3://bkt/a/b.jsonl", ("bkt", "a/b.jsonl")),
    ("s3://bkt/a/b/", ("bkt", "a/b/")),
    ("s3://bkt", ("bkt", "")),
    ("s3://bkt/", ("bkt", "")),
])
def test_split_s3(uri: str, expected: tuple[str, str]) -> None:
    assert split_s3(uri) == expected


@pytest.mark.parametrize("uri", ["gs://bkt/a", "s3:///key", "/tmp/x.jsonl", "bkt/key", "s3:/bkt/key", ""])
def test_split_s3_rejects_non_s3_uris(uri: str) -> None:
    with pytest.raises(ValueError, match="is not an s3://bucket/key URI"):
        split_s3(uri)


def test_join_normalizes_slashes() -> None:
    assert join("s3://b/run/", "/input/", "job-1/", "shard.jsonl") == "s3://b/run/input/job-1/shard.jsonl"
    assert join("s3://b") == "s3://b"
    assert join("/tmp/out", "x") == "/tmp/out/x"


def test_s3_uri_without_client_is_a_clear_error(tmp_path: Path) -> None:
    storage = Storage()
    for call in (lambda: list(storage.read_lines("s3://b/k")), lambda: storage.exists("s3://b/k"),
                 lambda: storage.list("s3://b/"), lambda: storage.upload(str(tmp_path), "s3://b/k")):
        with pytest.raises(ValueError, match="an s3:// URI needs an S3 client"):
            call()


# ---- local paths --------------------------------------------------------------------------------

def test_local_upload_creates_directories_and_reads_back(tmp_path: Path) -> None:
    src = write(tmp_path / "src.jsonl", "\n".join(LINES) + "\n")
    dest = str(tmp_path / "deep" / "er" / "copy.jsonl")
    storage = Storage()
    storage.upload(src, dest)
    assert list(storage.read_lines(dest)) == LINES
    assert storage.read_text(dest) == "\n".join(LINES)
    assert storage.exists(dest) and not storage.exists(dest + ".out")


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_local_lines_without_terminators(tmp_path: Path, newline: str) -> None:
    path = write(tmp_path / "f.jsonl", "a\n\nb\nlast", newline)
    assert list(Storage().read_lines(path)) == ["a", "", "b", "last"]


def test_local_download_copies_the_file(tmp_path: Path) -> None:
    source = write(tmp_path / "a" / "part", "x\ty\n")
    Storage().download(source, str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_text() == "x\ty\n"


def test_local_list_is_recursive_sorted_and_files_only(tmp_path: Path) -> None:
    for rel in ("b/2.out", "a.out", "b/1.out", "b/c/3.out"):
        write(tmp_path / "out" / rel, "x")
    (tmp_path / "out" / "empty-dir").mkdir()
    listed = Storage().list(str(tmp_path / "out"))
    assert listed == [str(tmp_path / "out" / r) for r in ("a.out", "b/1.out", "b/2.out", "b/c/3.out")]
    single = str(tmp_path / "out" / "a.out")
    assert Storage().list(single) == [single]
    assert Storage().list(str(tmp_path / "missing")) == []


# ---- S3 -----------------------------------------------------------------------------------------

def test_s3_upload_and_read_back(storage: Storage, root: str, tmp_path: Path) -> None:
    src = write(tmp_path / "shard.jsonl", "\n".join(LINES) + "\n")
    uri = join(root, "input", "job", "shard-00000.jsonl")
    storage.upload(src, uri)
    assert list(storage.read_lines(uri)) == LINES
    assert storage.read_text(uri) == "\n".join(LINES)
    assert storage.exists(uri)
    storage.download(uri, str(tmp_path / "copy"))
    assert (tmp_path / "copy").read_bytes() == Path(src).read_bytes()


@pytest.mark.parametrize("text,lines", [
    ("a\r\nb\r\n", ["a", "b"]),
    ("a\n\nb", ["a", "", "b"]),
    ("", []),
    ("only", ["only"]),
])
def test_s3_and_local_read_the_same_lines(storage: Storage, root: str, tmp_path: Path, s3: Any,
                                          text: str, lines: list[str]) -> None:
    uri = join(root, "f.jsonl")
    put(s3, uri, text)
    local = write(tmp_path / "f.jsonl", text)
    assert list(storage.read_lines(uri)) == list(storage.read_lines(local)) == lines


def test_s3_large_object_streams_every_line(storage: Storage, root: str, s3: Any) -> None:
    lines = [f'{{"recordId": "R{i:06d}", "t": "{"ü" * (i % 700)}"}}' for i in range(3000)]
    uri = join(root, "big.jsonl")
    put(s3, uri, "\n".join(lines) + "\n")
    assert list(storage.read_lines(uri)) == lines


def test_s3_missing_object_raises(storage: Storage, root: str) -> None:
    with pytest.raises(ClientError) as info:
        list(storage.read_lines(join(root, "nope.jsonl")))
    assert info.value.response["Error"]["Code"] == "NoSuchKey"


def test_s3_exists_is_exact_not_a_prefix_match(storage: Storage, root: str, s3: Any) -> None:
    put(s3, join(root, "out", "shard.jsonl.out"), "x")
    put(s3, join(root, "out", "sub", "a"), "x")
    assert storage.exists(join(root, "out", "shard.jsonl.out"))
    assert not storage.exists(join(root, "out", "shard.jsonl"))  # a prefix of an existing key
    assert not storage.exists(join(root, "out", "sub"))  # a "directory"
    assert not storage.exists(join(root, "out"))
    put(s3, join(root, "out", "shard.jsonl"), "x")
    assert storage.exists(join(root, "out", "shard.jsonl"))


def test_s3_list_is_sorted_nested_and_uses_s3_prefix_semantics(storage: Storage, root: str,
                                                               s3: Any) -> None:
    keys = ["index/job-2/shard-00000.jsonl.index.jsonl", "index/job-1/shard-00001.jsonl.index.jsonl",
            "index/job-1/shard-00000.jsonl.index.jsonl", "index/job-10/shard-00000.jsonl.index.jsonl",
            "index-old/x", "output/j/manifest.json.out"]
    for key in keys:
        put(s3, join(root, key), "x")
    job1 = storage.list(join(root, "index", "job-1") + "/")
    assert job1 == [join(root, "index/job-1/shard-00000.jsonl.index.jsonl"),
                    join(root, "index/job-1/shard-00001.jsonl.index.jsonl")]
    # Without the trailing slash the prefix is a raw key prefix, as in S3 itself.
    assert storage.list(join(root, "index", "job-1")) == sorted(
        join(root, k) for k in keys if k.startswith("index/job-1"))
    everything = storage.list(root + "/")
    assert everything == sorted(join(root, k) for k in keys)
    assert storage.list(join(root, "nothing") + "/") == []


def test_s3_list_of_a_whole_bucket(backend: LocalBackend, s3: Any) -> None:
    bucket = f"storage-whole-{next(_ids)}-{time.monotonic_ns() % 10**6}"
    s3.create_bucket(Bucket=bucket)
    for key in ("z", "a/b", "a/a"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    expected = [f"s3://{bucket}/a/a", f"s3://{bucket}/a/b", f"s3://{bucket}/z"]
    storage = Storage(s3)
    assert storage.list(f"s3://{bucket}") == storage.list(f"s3://{bucket}/") == expected
