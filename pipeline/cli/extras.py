"""Optional parts of the package: a missing one is a one-line usage error naming its extra."""
from __future__ import annotations

import importlib.util

from pipeline.exit_codes import UsageError

DISTRIBUTION = "bedrock-batch-beam"
# What each optional part needs: (a module it imports, the extra that installs it).
OPTIONAL_PARTS = {
    "kafka": ("confluent_kafka", "kafka"),
    "bigquery": ("google.cloud.bigquery", "bigquery"),
}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it.

    Args:
        module: a dotted module name; a missing parent package counts as missing.
    """
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package (e.g. google.cloud) is missing
        return False


def require(part: str, wanted_by: str) -> None:
    """Raise a UsageError naming the extra to install when optional ``part`` is missing.

    Args:
        part: a key of OPTIONAL_PARTS.
        wanted_by: the flag that asked for it, for the message (e.g. "--sink kafka").
    """
    module, extra = OPTIONAL_PARTS[part]
    if not installed(module):
        raise UsageError(f"{wanted_by} needs the {extra} extra ({module} is not installed): "
                         f"pip install '{DISTRIBUTION}[{extra}]'")


def check_optional_parts(sink: str, kafka_topic: str | None) -> None:
    """Refuse, before anything starts, a run whose sink or source needs a missing extra.

    Args:
        sink: the --sink value.
        kafka_topic: the --kafka-topic value, if any.
    """
    if sink in OPTIONAL_PARTS:
        require(sink, f"--sink {sink}")
    if kafka_topic:
        require("kafka", "--kafka-topic")
