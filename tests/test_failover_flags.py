"""A bounded watch ends on Flink with checkpointing: the CLI adds the flag that lets Beam's
Flink runner stop its finished sources (pipeline.environment.bounded_watch_flags). The run
itself, on a session cluster, is tests/test_failover.py."""
from __future__ import annotations

import pytest

from pipeline.environment import bounded_watch_flags
from pipeline.options import parse_options

FLINK_STREAMING = ["--runner", "FlinkRunner", "--streaming", "--input", "in/*.jsonl"]


def _flags(*argv: str) -> list[str]:
    options, _ = parse_options(list(argv))
    return bounded_watch_flags(options)


def test_a_checkpointed_bounded_watch_on_flink_stops_its_sources_when_the_watch_ends():
    assert _flags(*FLINK_STREAMING, "--watch-seconds", "90",
                  "--checkpointing_interval", "5000") == ["--shutdown_sources_after_idle_ms=90000"]


@pytest.mark.parametrize("argv", [
    [*FLINK_STREAMING, "--watch-seconds", "90"],  # no checkpointing: sources end by themselves
    [*FLINK_STREAMING, "--checkpointing_interval", "5000"],  # an endless watch
    [*FLINK_STREAMING, "--watch-seconds", "90", "--checkpointing_interval", "5000",
     "--shutdown_sources_after_idle_ms", "1000"],  # the user's own choice
    ["--runner", "SparkRunner", "--streaming", "--input", "in/*", "--watch-seconds", "90",
     "--checkpointing_interval", "5000"],
], ids=["no-checkpointing", "endless-watch", "user-chose", "not-flink"])
def test_nothing_is_added_where_it_is_not_needed(argv):
    assert _flags(*argv) == []
