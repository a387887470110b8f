"""Open a stored file as its decompressed bytes, telling storage errors, cut streams and bad
bytes apart (pure: no Beam import).

Beam's own decompression reads a cut gzip or zstd stream as a quiet end of file; the streams
here raise ``TruncatedStream`` instead, and errors of the storage read itself become
``StorageReadError``, which is worth a retry, unlike bytes that cannot be decoded.
"""
from __future__ import annotations

import bz2
import io
import lzma
import os
import zlib
from typing import IO, Any, Callable

import zstandard

# The suffixes Beam's filesystems decompress (CompressionTypes.detect_compression_type), with the
# streaming decompressor for each; all of them report .eof and .unused_data.
_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    ".gz": lambda: zlib.decompressobj(zlib.MAX_WBITS | 16),
    ".bz2": bz2.BZ2Decompressor,
    ".deflate": zlib.decompressobj,
    ".zst": lambda: zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj(),
    ".zstd": lambda: zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj(),
    ".xz": lzma.LZMADecompressor,
    ".lzma": lzma.LZMADecompressor,
}
_COMPRESSION_SUFFIXES = tuple(_DECOMPRESSORS)
_READ_CHUNK = 64 * 1024


class StorageReadError(OSError):
    """Reading the file's bytes from storage failed (e.g. a broken S3 connection): worth a retry,
    unlike bytes that cannot be decoded."""


class TruncatedStream(EOFError):
    """A compressed stream that ends before its end-of-stream marker: the file was cut."""


class _StorageStream(io.RawIOBase):
    """The file handle from storage, with its read errors marked as StorageReadError so
    ``read_file`` can tell them from errors in the bytes."""

    def __init__(self, handle: IO[bytes], path: str) -> None:
        self._handle = handle
        self._path = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(getattr(self._handle, "seekable", lambda: False)())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(self._handle.seek, offset, whence)

    def tell(self) -> int:
        return self._call(self._handle.tell)

    def readinto(self, buffer: Any) -> int:
        data = self._call(self._handle.read, len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except Exception as err:  # noqa: BLE001 - re-raised, marked as a storage error
            raise StorageReadError(f"reading {self._path} failed: {err}") from err


class _DecompressedStream(io.RawIOBase):
    """The decompressed bytes of ``source``; concatenated streams (multi-member gzip) are read
    through, and input that ends mid-stream raises TruncatedStream instead of a quiet EOF."""

    def __init__(self, source: IO[bytes], new_decompressor: Callable[[], Any]) -> None:
        self._source = source
        self._new = new_decompressor
        self._decompressor = new_decompressor()
        self._pending = b""
        self._fed = False  # whether the current decompressor has been given any input

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = self._source.read(_READ_CHUNK)
            if not chunk:
                if self._fed and not self._decompressor.eof:
                    raise TruncatedStream("the compressed data ends before its end-of-stream "
                                          "marker")
                return 0
            self._feed(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _feed(self, chunk: bytes) -> None:
        while chunk:
            if self._decompressor.eof:
                self._decompressor, self._fed = self._new(), False
            self._fed = True
            self._pending += self._decompressor.decompress(chunk)
            chunk = self._decompressor.unused_data if self._decompressor.eof else b""


def compression_suffix(path: str) -> str | None:
    """The compression suffix ``path`` ends with (such as ``.gz``), or None.

    Args:
        path: A file path or URI.
    """
    name = path.lower()
    return next((suffix for suffix in _COMPRESSION_SUFFIXES if name.endswith(suffix)), None)


def open_decoded(handle: IO[bytes], path: str) -> IO[bytes]:
    """The raw (undecompressed) storage ``handle`` as a buffered stream of the file's content,
    decompressed by the path's suffix.

    Args:
        handle: The file's raw bytes from storage.
        path: The file's path; its suffix picks the decompressor.
    """
    stream: IO[bytes] = io.BufferedReader(_StorageStream(handle, path), _READ_CHUNK)
    suffix = compression_suffix(path)
    if suffix is not None:
        stream = io.BufferedReader(_DecompressedStream(stream, _DECOMPRESSORS[suffix]),
                                   _READ_CHUNK)
    return stream


def file_stem(path: str) -> str:
    """File name without directories, compression suffix and format extension.

    Args:
        path: A file path or URI.
    """
    name = os.path.basename(path.rstrip("/"))
    suffix = compression_suffix(name)
    return os.path.splitext(name[: -len(suffix)] if suffix else name)[0]
