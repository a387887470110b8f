"""File sinks for Summary / Failure rows: Parquet, JSONL and Avro, batch and streaming.

Beam's WriteToParquet/WriteToText/WriteToAvro re-window bounded input into the global window, so
a windowed batch pipeline would lose its windows. These sinks keep the window on every file
(bounded or unbounded), name it in the file name, and return what they wrote.

Output layout under ``path``::

    part-00000-of-00002.parquet                                   global window (batch)
    part-20260101T000000Z-20260101T000500Z-00000-of-00001.parquet  per window
    part-20260101T000000Z-20260101T000500Z-p1-00000-of-00001.parquet  a late pane of it

Window bounds use the ISO 8601 basic format because Hadoop/Spark paths reject ``:``.
Empty input in the global window still writes ``part-00000-of-00001.<ext>`` for the formats
that carry a schema (a Parquet file with the schema and no rows, a header-only Avro file), so a
reader of the directory sees the schema rather than "no files". JSONL writes no file then: an
empty one says nothing, and Beam's S3 filesystem cannot upload zero bytes. Empty windows write
nothing (no pane fires).

Replay: a window's files are named by window, pane and shard, and a row's shard comes from its
content (``row_ids.shard_of``), with a fixed number of shards (1 per window unless ``shards``
is given). A runner that restores a checkpoint and writes a window again (Flink after a lost
TaskManager) therefore writes the same rows into files of the same names, which replace the
first ones: the folder holds each row once. Each file is written under a temporary name in a
hidden ``.temp-*`` folder and then renamed, so a reader never sees half a file; an attempt
killed mid-write can leave its temporary file there, never among the rows.

Only the global window without ``shards`` lets the runner choose the files (one per bundle,
through ``apache_beam.io.fileio.WriteToFiles``, no shuffle of the rows). There the write ends by
removing the files of the global window's naming that it did not write itself (an earlier
attempt's), so a runner that runs the whole bounded pipeline again (Flink restarting a batch
job) leaves the folder with this attempt's files only.
"""
from __future__ import annotations

import re
import uuid
from typing import Any, Mapping, Sequence

import apache_beam as beam
import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.options.value_provider import StaticValueProvider
from apache_beam.transforms import trigger, window

from transforms.core.errors import ConfigError
from transforms.core.metrics import counter
from transforms.core.model import Field
from transforms.insights.columns import Column, insights_column
from transforms.sinks.result import SinkResult, count_per_window, no_failures
from transforms.core.windowing import compact_utc, keep_late
from transforms.sinks.row_ids import row_id, shard_of
from transforms.sinks.schema import (AVRO_RECORD_NAMES, arrow_schema, avro_schema, fields_for,
                                     json_line, normalize_row)

# Rows buffered before a Parquet row group is written: bounds worker memory per open file.
PARQUET_ROW_GROUP_ROWS = 10_000
# Files per window and pane when ``shards`` is not given. Fixed, not the runner's choice, so a
# replayed window is written as the same files (see the module docstring).
WINDOW_SHARDS = 1


class _RowSink(fileio.FileSink):
    """Base for the row sinks: rows arrive already normalized (see ``normalize_row``). With
    ``kind``, the ``<kind>_rows_written`` counter counts a file's rows once ``flush`` has
    written them all."""

    mime_type = "application/octet-stream"

    def __init__(self, fields: Sequence[Field], insights: Column | None = None,
                 kind: str | None = None) -> None:
        self.fields = tuple(fields)
        self.insights = insights
        self.kind = kind
        self._pending = 0

    def _count(self) -> None:
        """Called by write(): one more row in this file."""
        self._pending += 1

    def _counted(self) -> None:
        """Called at the end of flush(), when the rows are in the file."""
        if self.kind is not None and self._pending:
            counter(f"{self.kind}_rows_written").inc(self._pending)
        self._pending = 0

    def create_metadata(self, destination: str, full_file_name: str) -> fileio.FileMetadata:
        # The formats compress internally (Parquet pages, Avro blocks); never wrap the handle.
        return fileio.FileMetadata(mime_type=self.mime_type, compression_type=CompressionTypes.UNCOMPRESSED)


class ParquetRowSink(_RowSink):
    """Parquet via pyarrow's ParquetWriter on the Beam file handle (local, S3, GCS alike).

    ``flush`` finalizes the file (writes the footer): WriteToFiles calls it exactly once, right
    before it closes the handle.
    """

    def open(self, fh: Any) -> None:
        self._schema = arrow_schema(self.fields, self.insights)
        self._writer = pq.ParquetWriter(fh, self._schema)
        self._rows: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append(record)
        self._count()
        if len(self._rows) >= PARQUET_ROW_GROUP_ROWS:
            self._write_row_group()

    def _write_row_group(self) -> None:
        self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self._rows = []

    def flush(self) -> None:
        if self._rows:
            self._write_row_group()
        self._writer.close()
        self._counted()


class JsonlRowSink(_RowSink):
    """One JSON object per line, UTF-8, timestamps as ISO 8601 strings."""

    mime_type = "application/x-ndjson"

    def open(self, fh: Any) -> None:
        self._fh = fh

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json_line(self.fields, record, self.insights).encode("utf-8") + b"\n")
        self._count()

    def flush(self) -> None:
        self._fh.flush()
        self._counted()


class AvroRowSink(_RowSink):
    """Avro object container file via fastavro (deflate blocks), schema from the fields.

    Args:
        fields: The row fields, in column order.
        record_name: The Avro record name.
    """

    mime_type = "application/avro"

    def __init__(self, fields: Sequence[Field], record_name: str,
                 insights: Column | None = None, kind: str | None = None) -> None:
        super().__init__(fields, insights, kind)
        self.record_name = record_name

    def open(self, fh: Any) -> None:
        schema = fastavro.parse_schema(avro_schema(self.record_name, self.fields,
                                                   insights=self.insights))
        self._writer = fastavro.write.Writer(fh, schema, codec="deflate")
        self._fh = fh

    def write(self, record: dict[str, Any]) -> None:
        self._writer.write(record)
        self._count()

    def flush(self) -> None:
        self._writer.flush()
        self._fh.flush()
        self._counted()


# format -> file name suffix
FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl", "avro": ".avro"}


def rows_in(folder: str, format: str) -> int:
    """The rows the files of ``format`` directly under ``folder`` hold, read from the files
    (Parquet from its footer, Avro from its blocks' headers, JSONL line by line); 0 when there
    is no such file.

    Args:
        folder: A row folder a sink wrote (local or any Beam filesystem).
        format: One of ``FORMATS``.
    """
    rows = 0
    for match in FileSystems.match([FileSystems.join(folder, "*" + FORMATS[format])]):
        for file in match.metadata_list:
            with FileSystems.open(file.path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
                if format == "parquet":
                    rows += pq.ParquetFile(fh).metadata.num_rows
                elif format == "avro":
                    rows += sum(block.num_records for block in fastavro.block_reader(fh))
                else:
                    rows += sum(1 for line in fh if line.strip())
    return rows


class _SinkFactory:
    """Picklable ``sink`` callable for WriteToFiles: a fresh FileSink per file written."""

    def __init__(self, kind: str, file_format: str, insights: Column | None = None) -> None:
        self.kind = kind
        self.file_format = file_format
        self.insights = insights

    def __call__(self, destination: Any = None) -> _RowSink:
        fields = fields_for(self.kind)
        if self.file_format == "parquet":
            return ParquetRowSink(fields, self.insights, self.kind)
        if self.file_format == "jsonl":
            return JsonlRowSink(fields, self.insights, self.kind)
        return AvroRowSink(fields, AVRO_RECORD_NAMES[self.kind], self.insights, self.kind)


class WindowedFileNaming:
    """File naming (also WriteToFiles' ``file_naming``):
    ``<prefix>[-<start>-<end>][-p<pane>]-<shard>-of-<total><suffix>``. A window's later panes
    (late records, within the allowed lateness) add ``-p<pane index>``, so they never overwrite
    its on-time files.

    Args:
        prefix: The start of every file name.
        suffix: The file name's end, e.g. ``.parquet``.
    """

    def __init__(self, prefix: str, suffix: str) -> None:
        self.prefix = prefix
        self.suffix = suffix

    def __call__(self, win: Any, pane: Any, shard_index: int | None, total_shards: int | None,
                 compression: str | None, destination: Any) -> str:
        parts = [self.prefix]
        if isinstance(win, window.IntervalWindow):
            parts += [compact_utc(win.start.to_utc_datetime(has_tz=True)),
                      compact_utc(win.end.to_utc_datetime(has_tz=True))]
        if pane is not None and pane.index > 0:
            parts.append(f"p{pane.index}")
        parts.append(f"{shard_index or 0:05d}-of-{total_shards or 1:05d}")
        return "-".join(parts) + self.suffix

    def is_global_file(self, name: str) -> bool:
        """Whether the file name ``name`` is one this naming gives a file of the global window.

        Args:
            name: A file name, without its folder.
        """
        shard = r"\d{5,}-of-\d{5,}"
        return re.fullmatch(f"{re.escape(self.prefix)}-{shard}{re.escape(self.suffix)}",
                            name) is not None


class _WriteShardFile(beam.DoFn):
    """One shard of one window's pane (the rows GroupByKey gathered under the shard number) ->
    one file: written in ``temp_dir``, then renamed into ``path``, over the file of an earlier
    attempt if there is one. The temporary name is unique per attempt, so an attempt the
    runner has given up on but that still runs cannot write into the replay's file."""

    def __init__(self, path: str, temp_dir: str, sink_factory: _SinkFactory,
                 naming: WindowedFileNaming, shards: int) -> None:
        self.path = path
        self.temp_dir = temp_dir
        self.sink_factory = sink_factory
        self.naming = naming
        self.shards = shards

    def process(self, element: tuple[int, Any], win=beam.DoFn.WindowParam,
                pane=beam.DoFn.PaneInfoParam):
        shard, rows = element
        name = self.naming(win, pane, shard, self.shards, "", None)
        temp_name = FileSystems.join(self.temp_dir, f"{name}.{uuid.uuid4().hex}")
        sink = self.sink_factory()
        meta = sink.create_metadata("", temp_name)
        fh = FileSystems.create(temp_name, mime_type=meta.mime_type,
                                compression_type=meta.compression_type)
        sink.open(fh)
        for row in rows:
            sink.write(row)
        sink.flush()
        fh.close()
        final_name = FileSystems.join(self.path, name)
        FileSystems.rename([temp_name], [final_name])
        yield final_name


class _WriteShardFiles(beam.PTransform):
    """Rows -> one file per (window, pane, shard), the shard taken from each row's content."""

    def __init__(self, path: str, temp_dir: str, sink_factory: _SinkFactory,
                 naming: WindowedFileNaming, shards: int) -> None:
        super().__init__()
        self.path = path
        self.temp_dir = temp_dir
        self.sink_factory = sink_factory
        self.naming = naming
        self.shards = shards

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        shards = self.shards
        return (rows
                | "ShardByContent" >> beam.Map(lambda row: (shard_of(row_id(row), shards), row))
                | "GroupShards" >> beam.GroupByKey()
                | "WriteShard" >> beam.ParDo(_WriteShardFile(
                    self.path, self.temp_dir, self.sink_factory, self.naming, shards)))


def _single_firing(windowing: Any) -> bool:
    """Each window fires once when it closes (late panes, named apart, may follow)."""
    trig = windowing.triggerfn
    if isinstance(trig, trigger.DefaultTrigger):
        return True
    return isinstance(trig, trigger.AfterWatermark) and trig.early is None


class _NormalizeRow(beam.DoFn):
    """Summary/Failure (anything with ``to_row()``) or a row dict -> a checked row dict."""

    def __init__(self, kind: str, insights: Column | None = None) -> None:
        self.kind = kind
        self.insights = insights

    def process(self, element: Any):
        row = element.to_row() if hasattr(element, "to_row") else element
        yield normalize_row(fields_for(self.kind), row, self.insights)


def _file_name(path: str) -> str:
    """The last part of a local path or a URL such as ``s3://bucket/dir/name``."""
    return path.rsplit("/", 1)[-1]


class _FinishBatch(beam.DoFn):
    """After a bounded write: remove the temp directory. In the global window also remove the
    files of its naming that this write did not write (an earlier attempt's, whose bundles
    made other files), and write the schema-only file when it produced no rows."""

    def __init__(self, path: str, temp_dir: str, sink_factory: _SinkFactory,
                 naming: WindowedFileNaming, global_window: bool,
                 empty_file_name: str | None) -> None:
        self.path = path
        self.temp_dir = temp_dir
        self.sink_factory = sink_factory
        self.naming = naming
        self.global_window = global_window
        self.empty_file_name = empty_file_name

    def process(self, written: list[str]):
        if FileSystems.exists(self.temp_dir):  # object stores have no directory left to remove
            FileSystems.delete([self.temp_dir])
        if self.global_window:
            self._remove_other_attempts({_file_name(path) for path in written})
        if not written and self.empty_file_name is not None:
            yield self._write_empty_file()

    def _remove_other_attempts(self, written: set[str]) -> None:
        pattern = FileSystems.join(self.path, f"{self.naming.prefix}-*{self.naming.suffix}")
        stale = [f.path for f in FileSystems.match([pattern])[0].metadata_list
                 if _file_name(f.path) not in written
                 and self.naming.is_global_file(_file_name(f.path))]
        if stale:
            FileSystems.delete(stale)

    def _write_empty_file(self) -> str:
        """The schema-only file, so a batch with no rows still leaves a readable table."""
        sink = self.sink_factory()
        full_name = FileSystems.join(self.path, self.empty_file_name)
        meta = sink.create_metadata("", full_name)
        fh = FileSystems.create(full_name, mime_type=meta.mime_type,
                                compression_type=meta.compression_type)
        sink.open(fh)
        sink.flush()
        fh.close()
        return full_name


class WriteRows(beam.PTransform):
    """Write Summary or Failure rows as files under the directory ``path``.

    Input: elements with ``to_row()`` (Summary / Failure) or row dicts of that kind.
    Output: a ``SinkResult``: ``written`` holds the full path of each file written, in the
    input's windows; ``counts`` the rows written per window; ``failures`` is empty (a file that
    cannot be written fails the bundle).

    Args:
        path: The output directory (local, s3:// or any Beam filesystem).
        kind: ``summaries`` or ``failures``: which row schema the files carry.
        format: ``parquet``, ``jsonl`` or ``avro`` (see ``FORMATS``).
        shards: Files per window and pane, each row in the file its content picks (so a replay
            writes the same files). None: 1 per window; in the global window the runner's
            bundles choose then.
        prefix: The start of every file name.
        insights_schema: With --task insights, the JSON Schema of the insights: summaries get an
            ``insights`` column typed from it (nested records and lists; a nested JSON object
            in JSONL). None writes no such column.
    """

    def __init__(self, path: str, kind: str = "summaries", format: str = "parquet",
                 shards: int | None = None, prefix: str = "part",
                 insights_schema: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        fields_for(kind)  # fail at construction on an unknown kind
        if insights_schema is not None and kind != "summaries":
            raise ConfigError(f"insights_schema: only summaries carry insights; {kind} take none",
                              "insights_schema")
        # A schema no column can hold fails here, before the pipeline runs.
        self.insights = insights_column(insights_schema) if insights_schema is not None else None
        if format not in FORMATS:
            raise ConfigError(f"format {format!r} is not a file format: use one of "
                              f"{sorted(FORMATS)}", "format")
        if not path:
            raise ConfigError(f"path is empty: {type(self).__name__} needs an output directory",
                              "path")
        self.path = path.rstrip("/")
        self.kind = kind
        self.file_format = format
        if shards is not None and (isinstance(shards, bool) or not isinstance(shards, int)
                                   or shards < 1):
            raise ConfigError(f"shards {shards!r} is not a number of files: pass a whole number "
                              f">= 1, or None", "shards")
        self.shards = shards
        self.prefix = prefix

    def expand(self, pcoll: beam.PCollection) -> SinkResult:
        windowing = pcoll.windowing
        global_window = isinstance(windowing.windowfn, window.GlobalWindows)
        name = type(self).__name__
        if not pcoll.is_bounded and global_window:
            raise ValueError(
                f"{name} got an unbounded PCollection in the global window, which never closes: "
                "apply beam.WindowInto(window.FixedWindows(seconds)) before writing files")
        if not _single_firing(windowing):
            raise ValueError(
                f"{name} names files by window, so each window must fire once when it closes "
                f"(late panes get files of their own): drop the early/repeated trigger "
                f"({windowing.triggerfn}) before writing files")

        suffix = FORMATS[self.file_format]
        sinks = _SinkFactory(self.kind, self.file_format, self.insights)
        naming = WindowedFileNaming(self.prefix, suffix)
        # Our own temp dir (same place WriteToFiles would pick) so a bounded run can remove it.
        temp_root = pcoll.pipeline.options.view_as(GoogleCloudOptions).temp_location or self.path
        temp_dir = FileSystems.join(temp_root, f".temp-{uuid.uuid4()}")
        # A row arriving after its window closed becomes a later pane's file (-p<pane>), counted
        # like the others, instead of being dropped at GroupShards.
        rows = keep_late(pcoll | "ToRow" >> beam.ParDo(_NormalizeRow(self.kind, self.insights)),
                         "KeepLateRows")
        path = self.path
        if global_window and self.shards is None:
            # A bounded run in one window: the runner's bundles choose the files (parallel, no
            # shuffle of the rows); FinishBatch removes an earlier attempt's other files.
            results = rows | "WriteToFiles" >> fileio.WriteToFiles(
                path=self.path, file_naming=naming, sink=sinks,
                temp_directory=StaticValueProvider(str, temp_dir))
            written = results | "FullPath" >> beam.Map(
                lambda r: FileSystems.join(path, r.file_name))
        else:
            written = rows | "WriteShards" >> _WriteShardFiles(
                self.path, temp_dir, sinks, naming, self.shards or WINDOW_SHARDS)
        counts = count_per_window(rows | "One" >> beam.Map(lambda _row: 1))
        if not pcoll.is_bounded:
            # Streaming never "ends": the temp dir stays (hidden; each file leaves it when renamed).
            return SinkResult(path, written, no_failures(pcoll), counts)
        carries_schema = self.file_format in ("parquet", "avro")
        empty_name = (naming(window.GlobalWindow(), None, 0, 1, "", None)
                      if global_window and carries_schema else None)
        finished = (
            written
            | "AllWindows" >> beam.WindowInto(window.GlobalWindows())
            | "ListFiles" >> beam.combiners.ToList()
            | "FinishBatch" >> beam.ParDo(_FinishBatch(self.path, temp_dir, sinks, naming,
                                                       global_window, empty_name))
        )
        if global_window:
            written = (written, finished) | "AllFiles" >> beam.Flatten()
        return SinkResult(path, written, no_failures(pcoll), counts)


class WriteSummaries(WriteRows):
    """Write Summary rows to ``path`` as Parquet (default), JSONL or Avro.

    Args:
        path: The output directory.
        format: ``parquet``, ``jsonl`` or ``avro``.
        shards: Files per window and pane (None: 1; the runner's choice in the global window).
        prefix: The start of every file name.
        insights_schema: The insights JSON Schema (``--task insights``): adds the typed
            ``insights`` column. None: the summary task's columns only.
    """

    def __init__(self, path: str, format: str = "parquet", shards: int | None = None,
                 prefix: str = "part", insights_schema: Mapping[str, Any] | None = None) -> None:
        super().__init__(path, "summaries", format, shards, prefix, insights_schema)


class WriteFailures(WriteRows):
    """Write Failure rows to ``path`` as Parquet (default), JSONL or Avro.

    Args:
        path: The output directory.
        format: ``parquet``, ``jsonl`` or ``avro``.
        shards: Files per window and pane (None: 1; the runner's choice in the global window).
        prefix: The start of every file name.
    """

    def __init__(self, path: str, format: str = "parquet", shards: int | None = None,
                 prefix: str = "part") -> None:
        super().__init__(path, "failures", format, shards, prefix)

