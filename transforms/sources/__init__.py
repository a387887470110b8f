"""Beam transforms that read transcripts: from files, from any PCollection of rows, from Kafka.

Every source returns ``{"transcripts": PCollection[Transcript], "failures":
PCollection[Failure]}``. The Kafka source lives in ``transforms.sources.kafka``; it and
``kafka_messages`` need the ``kafka`` extra and are not imported here.

What every source shares (output tags, the records_in count, validation) is ``common``.
Beside the Beam sources (``files``, ``watch``, ``rows``, ``kafka``, ``dedup``) sits their pure
logic: what a watch remembers and decides at each poll (``watch_state``), decoding each format
(``parsing``, ``decompression``, ``transcribe_output``), mapping and checking records
(``validation``), event times (``event_time``), the per-file counts a file source keeps
durable (``source_ledger``) and what the Kafka source makes of a message and a partition
(``kafka_messages``). Imports ``core`` only.
"""
from transforms.sources.common import (FAILURES, RECORDS_IN, TRANSCRIPTS, check_field_options,
                                       checked)
from transforms.sources.dedup import DeduplicateTranscripts
from transforms.sources.files import ReadTranscriptFiles, ReadTranscripts
from transforms.sources.rows import TranscriptsFromRows
from transforms.sources.watch import WatchTranscripts

__all__ = ["FAILURES", "RECORDS_IN", "TRANSCRIPTS", "DeduplicateTranscripts", "ReadTranscriptFiles",
           "ReadTranscripts", "TranscriptsFromRows", "WatchTranscripts", "check_field_options",
           "checked"]
