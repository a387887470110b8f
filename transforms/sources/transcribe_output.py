"""Amazon Transcribe job output as a Transcript with speaker turns (pure: no Beam import).

The document: {"jobName", "results": {"transcripts": [{"transcript"}], "audio_segments" |
"speaker_labels" + "items", "language_code"}}.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping, Sequence

from transforms.core.model import Failure, Transcript, Turn
from transforms.sources.decompression import file_stem
from transforms.sources.validation import render_turns, source_failure, validation_failure


def is_transcribe_output(document: Any) -> bool:
    """Whether a decoded JSON document has the shape of an Amazon Transcribe job output.

    Args:
        document: The decoded JSON document.
    """
    results = document.get("results") if isinstance(document, Mapping) else None
    return isinstance(results, Mapping) and isinstance(results.get("transcripts"), list)


def _seconds(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _merge_turns(pieces: Iterable[Turn]) -> tuple[Turn, ...]:
    """Joins consecutive pieces by one speaker: Transcribe splits a speaker's turn at pauses."""
    turns: list[Turn] = []
    for piece in pieces:
        if turns and turns[-1].speaker == piece.speaker:
            last = turns[-1]
            turns[-1] = Turn(last.speaker, f"{last.text} {piece.text}", last.start, piece.end)
        else:
            turns.append(piece)
    return tuple(turns)


def _audio_segment_turns(segments: Sequence[Mapping[str, Any]]) -> Iterator[Turn]:
    for segment in segments:
        text = str(segment.get("transcript") or "").strip()
        if text:
            yield Turn(str(segment.get("speaker_label") or "Unknown"), text,
                       _seconds(segment.get("start_time")), _seconds(segment.get("end_time")))


def _speaker_at(segments: Sequence[Mapping[str, Any]], start_time: Any) -> str | None:
    """The speaker segment a word starts in: by the segment's item list, else by time range."""
    for segment in segments:
        if any(item.get("start_time") == start_time for item in segment.get("items") or []):
            return segment.get("speaker_label")
    start = _seconds(start_time)
    for segment in segments:
        if start is not None and (_seconds(segment.get("start_time")) or 0.0) <= start \
                <= (_seconds(segment.get("end_time")) or 0.0):
            return segment.get("speaker_label")
    return None


def _speaker_label_turns(results: Mapping[str, Any]) -> Iterator[Turn]:
    """Words of results.items grouped by speaker segment; punctuation joins the word before it."""
    segments = results["speaker_labels"]["segments"]
    speaker, words, start, end = None, [], None, None
    for item in results.get("items") or []:
        content = item["alternatives"][0]["content"]
        if item.get("type") == "punctuation":
            if words:
                words[-1] += content
            continue
        label = (item.get("speaker_label") or _speaker_at(segments, item.get("start_time"))
                 or speaker or "Unknown")
        if words and label != speaker:
            yield Turn(speaker, " ".join(words), start, end)
            words = []
        if not words:
            start = _seconds(item.get("start_time"))
        speaker, end = label, _seconds(item.get("end_time"))
        words.append(content)
    if words:
        yield Turn(speaker, " ".join(words), start, end)


def transcribe_to_transcript(document: Mapping[str, Any], path: str) -> Transcript | Failure:
    """A Transcribe job output as one Transcript with speaker turns when diarization was on.

    The id is the jobName (the file name when it is missing); the text is the "Speaker: text"
    rendering of the turns, or the plain transcript when there are no speaker labels.

    Args:
        document: The decoded Transcribe job output (see ``is_transcribe_output``).
        path: The file's path, for the id, origin and messages.
    """
    results = document["results"]
    transcript_id = str(document.get("jobName") or file_stem(path))
    try:
        segments = results.get("audio_segments") or []
        if any(segment.get("speaker_label") for segment in segments):
            turns = _merge_turns(_audio_segment_turns(segments))
        elif (results.get("speaker_labels") or {}).get("segments"):
            turns = _merge_turns(_speaker_label_turns(results))
        else:
            turns = ()
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as err:
        return source_failure(
            "InvalidTranscribeOutput", f"{path} looks like Amazon Transcribe output but its "
            f"speaker segments cannot be read ({type(err).__name__}: {err})", origin=path,
            raw=document)
    transcripts = results["transcripts"]
    plain = transcripts[0].get("transcript") if transcripts and isinstance(
        transcripts[0], Mapping) else None
    if not turns and not isinstance(plain, str):
        return validation_failure(
            "MissingText", f"{path} (Transcribe job {transcript_id!r}) has no "
            f"results.transcripts[0].transcript", origin=path, raw=document,
            transcript_id=transcript_id)
    metadata = {"language_code": results["language_code"]} if results.get("language_code") else {}
    return Transcript(id=transcript_id, text=render_turns(turns) if turns else plain,
                      metadata=metadata, turns=turns, origin=path)
