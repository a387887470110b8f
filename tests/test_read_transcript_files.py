"""ReadTranscriptFiles takes the files a pipeline already has (paths, FileMetadata or
ReadableFiles, like fileio.ReadMatches); the sources sub-package keeps the old import paths."""
import json

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from transforms.sources import ReadTranscriptFiles


def write_calls(folder, name, ids):
    path = folder / name
    path.write_text("".join(json.dumps({"id": i, "text": f"call {i} text"}) + "\n" for i in ids))
    return str(path)


def ids(result, label):
    return result["transcripts"] | f"Ids{label}" >> beam.Map(lambda t: t.id)


def causes(result, label):
    return result["failures"] | f"Causes{label}" >> beam.Map(lambda f: (f.stage, f.error_code, f.origin))


def test_paths_and_readable_files_are_read_and_a_missing_path_is_a_failure_row(tmp_path):
    """One pipeline: plain paths (one gone), and ReadableFiles from MatchFiles + ReadMatches."""
    first = write_calls(tmp_path, "a.jsonl", ["a1", "a2"])
    second = write_calls(tmp_path, "b.jsonl", ["b1"])
    missing = str(tmp_path / "gone.jsonl")
    write_calls(tmp_path, "c.calls", ["c1"])  # no known extension: the format is given
    write_calls(tmp_path, "d.calls", ["d1", "d2"])
    with TestPipeline() as p:
        paths = p | beam.Create([first, second, missing]) | "FromPaths" >> ReadTranscriptFiles()
        readable = (p | fileio.MatchFiles(str(tmp_path / "*.calls")) | fileio.ReadMatches()
                    | "FromReadable" >> ReadTranscriptFiles(format="jsonl"))
        assert_that(ids(paths, "P"), equal_to(["a1", "a2", "b1"]), label="PathTranscripts")
        assert_that(causes(paths, "P"), equal_to([("source", "UnreadableFile", missing)]),
                    label="PathFailures")
        assert_that(ids(readable, "R"), equal_to(["c1", "d1", "d2"]), label="ReadableTranscripts")
        assert_that(causes(readable, "R"), equal_to([]), label="ReadableFailures")
