"""A calm console: none of our DoFns makes Beam warn, and the CLI alone filters third-party noise."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Iterator

import apache_beam as beam
from apache_beam.transforms.core import _check_fn_use_yield_and_return

import pipeline
import transforms

OPTIONAL = {"confluent_kafka", "google"}  # extras: a module needing one is skipped when missing


def _our_modules() -> Iterator[str]:
    for package in (transforms, pipeline):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            yield module.name


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_no_dofn_of_ours_both_yields_and_returns():
    """Beam logs "Using yield and return in the process method" for each such DoFn (at pipeline
    construction); it checks the process source with the function used here."""
    for name in _our_modules():
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            assert exc.name.split(".")[0] in OPTIONAL, exc
    ours = {c for c in _subclasses(beam.DoFn) if c.__module__.split(".")[0] in ("transforms",
                                                                                "pipeline")}
    assert len(ours) > 10
    warned = sorted(c.__qualname__ for c in ours if _check_fn_use_yield_and_return(c.process))
    assert not warned
