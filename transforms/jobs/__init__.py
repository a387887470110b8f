"""The Bedrock batch jobs of a run, in Beam: submit them within the concurrency quota and wait
(``await_jobs``), and read their output back into summaries, failures and retries (``harvest``,
with the pure parsing of job output in ``results``). The job client itself is
``transforms.core.bedrock``.

Imports ``core``, ``prepare`` (model families), ``insights`` (answers) and
``transforms.config`` only.

Until the next release, the names of the old module ``transforms.jobs`` (now
``transforms.core.bedrock``) are forwarded from here with a DeprecationWarning.
"""
from typing import Any

from transforms import _moved

_SUBMODULES = ("await_jobs", "harvest", "results")


def __getattr__(name: str) -> Any:
    return _moved.forward(__name__, name, _SUBMODULES)
