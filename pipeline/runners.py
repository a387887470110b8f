"""Which local runner a run gets when --runner is not given, and where `make prism` puts Prism.

The choice follows the measurements in the README ("Which runner runs what"): bounded input runs
faster and in less memory on the FnApiRunner; --streaming needs Prism, the only local runner that
closes a window (and submits its jobs) while the watch goes on.
"""
from __future__ import annotations

from pathlib import Path

FNAPI, PRISM = "FnApiRunner", "PrismRunner"
# Runner names that run in this process, as Beam spells them (any case, "Runner" optional).
FNAPI_NAMES = frozenset({"directrunner", "switchingdirectrunner", "bundlebaseddirectrunner",
                         "fnapirunner", "direct", "fnapi"})
PRISM_NAMES = frozenset({"prismrunner", "prism"})
# `make prism` builds Prism here, one folder per Beam version (the repo's .cache/).
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "prism"


def prism_binary(beam_version: str, cache: Path = CACHE) -> Path | None:
    """The Prism binary `make prism` built for ``beam_version``, or None when it has not.

    Args:
        beam_version: The Python SDK's Beam version, e.g. "2.70.0".
        cache: The folder `make prism` builds into.
    """
    binary = cache / f"v{beam_version}" / "prism"
    return binary if binary.is_file() else None


def default_runner(streaming: bool) -> str:
    """The local runner for a run that names none: Prism for --streaming, else the FnApiRunner."""
    return PRISM if streaming else FNAPI


def is_prism(runner: str) -> bool:
    """Whether Beam runs ``runner`` (a --runner value) on Prism."""
    return runner.lower() in PRISM_NAMES


def is_fnapi(runner: str) -> bool:
    """Whether ``runner`` (a --runner value) is one of Beam's in-process runners, which run this
    pipeline on the FnApiRunner when Prism is not at hand (the DirectRunner tries Prism first)."""
    return runner.lower() in FNAPI_NAMES
