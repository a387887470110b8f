"""The module paths this package had before it was grouped into folders, kept importable for
one release: importing one warns (DeprecationWarning naming the new path) and gives the module
that now lives at the new path, the same object, so old imports and old pickles still resolve.

``transforms/__init__.py`` installs the finder; nothing else here runs on import. The two old
modules whose names are now folders (``transforms.jobs``, ``transforms.shards``) forward their
old names from their package faces through ``forward``.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import types
import warnings
from typing import Any, Iterable

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep

# Old module path -> new module path. Only paths whose file moved; kept for one release.
MOVED = {
    "transforms.aws": "transforms.core.aws",
    "transforms.beam_compat": "transforms.core.beam_compat",
    "transforms.coders": "transforms.core.coders",
    "transforms.errors": "transforms.core.errors",
    "transforms.layout": "transforms.core.layout",
    "transforms.metrics": "transforms.core.metrics",
    "transforms.model": "transforms.core.model",
    "transforms.quotas": "transforms.core.quotas",
    "transforms.rate_control": "transforms.core.rate_control",
    "transforms.storage": "transforms.core.storage",
    "transforms.windowing": "transforms.core.windowing",
    "transforms.decompression": "transforms.sources.decompression",
    "transforms.event_time": "transforms.sources.event_time",
    "transforms.kafka_source": "transforms.sources.kafka",
    "transforms.parsing": "transforms.sources.parsing",
    "transforms.source_ledger": "transforms.sources.source_ledger",
    "transforms.transcribe_output": "transforms.sources.transcribe_output",
    "transforms.validation": "transforms.sources.validation",
    "transforms.families": "transforms.prepare.families",
    "transforms.records": "transforms.prepare.records",
    "transforms.redaction": "transforms.prepare.redaction",
    "transforms.redaction_stage": "transforms.prepare.redact",
    "transforms.bucket_plan": "transforms.shards.bucket_plan",
    "transforms.carry": "transforms.shards.carry",
    "transforms.on_demand": "transforms.shards.invoke_on_demand",
    "transforms.planning": "transforms.shards.planning",
    "transforms.shard_writer": "transforms.shards.shard_writer",
    "transforms.await_jobs": "transforms.jobs.await_jobs",
    "transforms.harvest": "transforms.jobs.harvest",
    "transforms.results": "transforms.jobs.results",
    "transforms.schema": "transforms.sinks.schema",
    "transforms.pricing": "pipeline.pricing",
    "transforms.service_quotas": "pipeline.service_quotas",
}
# Old modules whose path is now a folder: their names are forwarded by the folder's face.
FOLDED = {"transforms.jobs": "transforms.core.bedrock",
          "transforms.shards": "transforms.shards.write_shards"}


def _warn(old: str, new: str) -> None:
    # Point the warning at the importing line, past this package's frames (warnings skips the
    # import machinery's itself), so Python's default filter shows it for imports in __main__.
    level, frame = 2, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(f"{old} is deprecated and will be removed in the next release: import {new}",
                  DeprecationWarning, stacklevel=level)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths of ``MOVED`` and loads each as the module at its new path."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        """A spec for an old path of ``MOVED``; None for every other name.

        Args:
            fullname: The dotted module name being imported.
            path: The parent package's search path (unused).
            target: The module being reloaded, if any (unused).
        """
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> None:
        """The default module object (replaced by the new one in ``exec_module``).

        Args:
            spec: The old path's spec.
        """
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        """Put the module at the new path in ``sys.modules`` under the old name, and warn.

        Args:
            module: The placeholder module the import system made for the old name.
        """
        new = MOVED[module.__name__]
        _warn(module.__name__, new)
        # The import system returns what sys.modules holds under the name after this call.
        sys.modules[module.__name__] = importlib.import_module(new)


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        # First, so that an old path never finds a stale file of that name elsewhere on the
        # path (an older install of this package).
        sys.meta_path.insert(0, _MovedFinder())


def forward(package: str, name: str, submodules: Iterable[str]) -> Any:
    """A folder's module ``__getattr__``: a name the old module of the same path defined.

    Args:
        package: The folder's dotted name (``transforms.jobs`` or ``transforms.shards``).
        name: The attribute asked for.
        submodules: The folder's own modules, which are never forwarded.
    """
    if name.startswith("__") or name in submodules:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    module = importlib.import_module(FOLDED[package])
    if not hasattr(module, name):
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    _warn(f"{package}.{name}", f"{FOLDED[package]}.{name}")
    value = getattr(module, name)
    # Kept on the folder, so the name warns once per process, as an old module path does.
    setattr(sys.modules[package], name, value)
    return value
