"""Which local runner a run gets when --runner is not given, where `make prism` puts Prism, and
what a Flink run with checkpointing needs.

The choice follows the measurements in the README ("Local runners"): bounded input runs in
a third of the memory on the FnApiRunner, and faster in two measured runs of three; --streaming
needs Prism, the only local runner that closes a window (and submits its jobs) while the watch
goes on.
"""
from __future__ import annotations

from pathlib import Path

FNAPI, PRISM = "FnApiRunner", "PrismRunner"
# Runner names that run in this process, as Beam spells them (any case, "Runner" optional).
FNAPI_NAMES = frozenset({"directrunner", "switchingdirectrunner", "bundlebaseddirectrunner",
                         "fnapirunner", "direct", "fnapi"})
PRISM_NAMES = frozenset({"prismrunner", "prism"})
# `make prism` builds Prism here, one folder per Beam version (the repo's .cache/).
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "prism"


def prism_binary(beam_version: str, cache: Path = CACHE) -> Path | None:
    """The Prism binary `make prism` built for ``beam_version``, or None when it has not.

    Args:
        beam_version: The Python SDK's Beam version, e.g. "2.70.0".
        cache: The folder `make prism` builds into.
    """
    binary = cache / f"v{beam_version}" / "prism"
    return binary if binary.is_file() else None


def default_runner(streaming: bool, prism_fails: bool = False) -> str:
    """The local runner for a run that names none: Prism for --streaming, else the FnApiRunner.

    Args:
        streaming: Whether the run is a --streaming one.
        prism_fails: Whether Prism cannot run it (``why_not_prism``).
    """
    return PRISM if streaming and not prism_fails else FNAPI


def why_not_prism(streaming: bool, windowed: bool, watch_seconds: float | None,
                  undersized_policy: str, sink: str) -> str | None:
    """Why Prism cannot run this run, or None (measured: docs/architecture.md, "Runner facts").

    Args:
        streaming: Whether the run is a --streaming one.
        windowed: Whether its records are in time windows (--window-seconds).
        watch_seconds: --watch-seconds (None or 0: the watch never ends).
        undersized_policy: --undersized-policy.
        sink: --sink.
    """
    if sink == "bigquery" and windowed:
        return "Beam's BigQuery write fails on Prism with time windows (a coder error in its stage)"
    if streaming and watch_seconds and undersized_policy == "defer":
        return ("Prism loses the rows of the --undersized-policy defer tail still waiting when "
                "the watch ends")
    if windowed and not streaming and undersized_policy == "defer":
        return ("Prism lets a window's summaries reach the output after the window closed when "
                "--undersized-policy defer carries tails across the windows of a bounded input")
    return None


# Beam's default --job_server_timeout. Its portable runner puts that deadline on the streams
# that report a Prism run's state, so it ends every run that lasts longer (docs/architecture.md,
# "Runner facts"); the CLI raises it to a year for Prism unless it was set to something else.
BEAM_JOB_SERVER_TIMEOUT = 300
PRISM_JOB_SERVER_TIMEOUT = 365 * 24 * 3600


def prism_job_server_timeout(timeout: int | None) -> int | None:
    """The --job_server_timeout (seconds) for a Prism run: a year instead of Beam's default.

    Args:
        timeout: The run's --job_server_timeout.
    """
    return PRISM_JOB_SERVER_TIMEOUT if timeout == BEAM_JOB_SERVER_TIMEOUT else timeout


def is_prism(runner: str) -> bool:
    """Whether Beam runs ``runner`` (a --runner value) on Prism."""
    return runner.lower() in PRISM_NAMES


def is_fnapi(runner: str) -> bool:
    """Whether ``runner`` (a --runner value) is one of Beam's in-process runners, which run this
    pipeline on the FnApiRunner when Prism is not at hand (the DirectRunner tries Prism first)."""
    return runner.lower() in FNAPI_NAMES


def is_flink(runner: str | None) -> bool:
    """Whether ``runner`` (a --runner value) is Beam's Flink runner."""
    return str(runner or "").split(".")[-1].lower() == "flinkrunner"


def ended_by_the_cli(runner: str | None, streaming: bool, watch_seconds: float | None,
                     checkpointing_interval: str | None) -> bool:
    """Whether the CLI ends the run itself once the durable facts agree
    (``pipeline.running.drain``): a bounded watch or Kafka read on Flink with checkpointing,
    which Beam's Flink runner keeps running after its sources are done.

    Args:
        runner: --runner.
        streaming: --streaming.
        watch_seconds: --watch-seconds (None or 0: the watch never ends).
        checkpointing_interval: --checkpointing_interval as given, or None.
    """
    return (is_flink(runner) and streaming and bool(watch_seconds)
            and _checkpointing(checkpointing_interval))


def _checkpointing(checkpointing_interval: str | None) -> bool:
    return str(checkpointing_interval or "").isdigit() and int(checkpointing_interval) > 0


FINISH_BUNDLE_BEFORE_CHECKPOINTING = "--finish_bundle_before_checkpointing"


def checkpointing_flags(runner: str | None, checkpointing_interval: str | None,
                        argv: list[str]) -> list[str]:
    """Runner flags a Flink run with checkpointing gets beyond ``argv``:
    ``--finish_bundle_before_checkpointing``, unless ``argv`` sets it.

    Without it Beam's Flink runner finishes a bundle still open when a checkpoint starts inside
    the snapshot, and keeps that bundle's output in state until the stage next gets an element
    or a watermark (Beam's BEAM-10558). A stage fed by the Impulse alone, as every watch and
    Kafka read starts, gets neither again: when a checkpoint fell within its first bundle, its
    one output stayed there and the run never read its input (5 of 15 `make failover` runs).

    Args:
        runner: --runner.
        checkpointing_interval: --checkpointing_interval as given, or None.
        argv: The command line.
    """
    if not (is_flink(runner) and _checkpointing(checkpointing_interval)):
        return []
    if any(arg.split("=", 1)[0] == FINISH_BUNDLE_BEFORE_CHECKPOINTING for arg in argv):
        return []
    return [FINISH_BUNDLE_BEFORE_CHECKPOINTING]
