"""The CLI flag that sets each library setting, so a library error names what a CLI user types.

The library (``transforms``) names its settings by their Python names (``ConfigError.fields``);
only here are they turned into flags.
"""
from __future__ import annotations

import re

from transforms.core.errors import ConfigError

# Settings whose flag is not their name in --dash-form.
_RENAMED = {
    "base_uri": "--bucket-uri",
    "timeout_hours": "--job-timeout-hours",
    "format": "--input-format",
    "interval_seconds": "--watch-interval-seconds",
    "template": "--prompt-template",
    "system_prompt": "--system-prompt-file",
    "bootstrap_servers": "--kafka-bootstrap-servers",
    "topic": "--kafka-topic",
    "stop_after_seconds": "--watch-seconds",
}


def flag_for(field: str) -> str:
    """The CLI flag that sets the library setting ``field``.

    Args:
        field: A config field or transform argument name, e.g. ``base_uri``.
    """
    return _RENAMED.get(field, "--" + field.replace("_", "-"))


def cli_message(error: ValueError) -> str:
    """``error``'s message with each setting it names (a ConfigError's fields) as its flag.

    A setting no flag sets (a transform argument the CLI never passes) keeps its name, so the
    message names no flag that does not exist.

    Args:
        error: Any ValueError; one that is not a ConfigError keeps its message.
    """
    from pipeline.options import known_flags

    text = str(error)
    flags = known_flags()
    for field in error.fields if isinstance(error, ConfigError) else ():
        if flag_for(field) not in flags:
            continue
        text = re.sub(rf"(?<![\w-]){re.escape(field)}(?![\w-])", flag_for(field), text)
    return text
