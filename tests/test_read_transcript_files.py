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


def ids(result):
    return result["transcripts"] | "Ids" >> beam.Map(lambda t: t.id)


def causes(result):
    return result["failures"] | "Causes" >> beam.Map(lambda f: (f.stage, f.error_code, f.origin))


def test_paths_are_read_and_a_missing_one_is_a_failure_row(tmp_path):
    first = write_calls(tmp_path, "a.jsonl", ["a1", "a2"])
    second = write_calls(tmp_path, "b.jsonl", ["b1"])
    missing = str(tmp_path / "gone.jsonl")
    with TestPipeline() as p:
        result = p | beam.Create([first, second, missing]) | ReadTranscriptFiles()
        assert_that(ids(result), equal_to(["a1", "a2", "b1"]), label="Transcripts")
        assert_that(causes(result), equal_to([("source", "UnreadableFile", missing)]), label="Failures")


def test_readable_files_from_match_and_read_matches(tmp_path):
    write_calls(tmp_path, "a.calls", ["a1"])  # no known extension: the format is given
    write_calls(tmp_path, "b.calls", ["b1", "b2"])
    with TestPipeline() as p:
        result = (p | fileio.MatchFiles(str(tmp_path / "*.calls")) | fileio.ReadMatches()
                  | ReadTranscriptFiles(format="jsonl"))
        assert_that(ids(result), equal_to(["a1", "b1", "b2"]), label="Transcripts")
        assert_that(causes(result), equal_to([]), label="Failures")


def test_old_import_paths_still_work():
    from transforms.kafka_source import ReadTranscriptsFromKafka as old
    from transforms.sources.kafka import ReadTranscriptsFromKafka
    assert old is ReadTranscriptsFromKafka
