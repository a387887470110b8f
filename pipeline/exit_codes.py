"""The CLI's exit codes, documented in the README's "Guarantees" section.

A script that runs the CLI tells from the code alone whether the output is complete (0), whether
it must look at failure rows (3), fix its flags or input (2), rerun with the same --run-id (1),
stop and investigate lost records (4), or whether the command was interrupted (130).
"""
from __future__ import annotations

OK = 0
# A bug, or an outage the run could not ride out; rerun with the same --run-id to resume.
INTERNAL_ERROR = 1
# Unusable input, flags or destination, found before any job was created.
USAGE = 2
# The run finished, but failure rows exceed --max-failure-rate (or every record failed).
FAILURES_ABOVE_THRESHOLD = 3
# Records in != summaries + failures, or a job manifest disagrees with its output files.
UNACCOUNTED = 4
# Ctrl-C (SIGINT) or SIGTERM: 128 + SIGINT, the code shells report for a Ctrl-C.
INTERRUPTED = 130


class UsageError(ValueError):
    """Unusable input, flags or destination: the message names the input and the fix."""
