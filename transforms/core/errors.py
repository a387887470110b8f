"""The error a library setting raises when its value cannot work (no Beam, no CLI)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A config field or transform argument holds a value that cannot work.

    The message names the settings by their Python names (``base_uri``, ``max_record_retries``)
    and says how to fix the value; ``fields`` lists those names, so a front end such as the CLI
    can say which of its own options set them.

    Args:
        message: One line naming the setting(s), the value and the fix.
        *fields: The names of the settings the message mentions.
    """

    def __init__(self, message: str, *fields: str) -> None:
        super().__init__(message)
        self.fields = fields
