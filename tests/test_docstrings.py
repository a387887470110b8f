"""Every public name in the listed transforms/ modules has a docstring, with an Args section when
it takes arguments (a class: its constructor's arguments or dataclass fields). Public methods
need a docstring unless they override a method of a base class from outside this package (Beam's
``expand``, ``process``, ...). Add a module to CHECKED once its names are documented."""
import importlib
import inspect

import pytest

CHECKED = [
    "transforms.aws", "transforms.await_jobs", "transforms.beam_compat", "transforms.carry",
    "transforms.config", "transforms.errors", "transforms.jobs", "transforms.kafka_source",
    "transforms.metrics", "transforms.on_demand", "transforms.pricing", "transforms.quotas",
    "transforms.rate_control", "transforms.redaction", "transforms.redaction_stage",
    "transforms.service_quotas", "transforms.storage",
    "transforms.sinks", "transforms.sinks.bigquery", "transforms.sinks.bigquery_rows",
    "transforms.sinks.commit", "transforms.sinks.files", "transforms.sinks.kafka",
    "transforms.sinks.kafka_encoding", "transforms.sinks.result",
    "transforms.sources", "transforms.sources.common", "transforms.sources.dedup",
    "transforms.sources.files", "transforms.sources.kafka", "transforms.sources.rows",
    "transforms.sources.watch",
]


def arguments(obj) -> list[str]:
    if inspect.isclass(obj):
        if hasattr(obj, "__dataclass_fields__"):
            return list(obj.__dataclass_fields__)
        if "__init__" not in vars(obj):
            return []
        obj = obj.__init__
    try:
        return [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        return []


def overrides_outside(cls, name: str) -> bool:
    return any(name in vars(base) and not base.__module__.startswith("transforms")
               for base in cls.__mro__[1:])


def problems(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    found = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if not obj.__doc__:
            found.append(f"{name}: no docstring")
        elif arguments(obj) and "Args:" not in obj.__doc__:
            found.append(f"{name}: no Args section ({', '.join(arguments(obj))})")
        if inspect.isclass(obj):
            found += [f"{name}.{method}: no docstring" for method, fn in vars(obj).items()
                      if not method.startswith("_") and inspect.isfunction(fn) and not fn.__doc__
                      and not overrides_outside(obj, method)]
    return found


@pytest.mark.parametrize("module_name", CHECKED)
def test_public_names_are_documented(module_name):
    assert problems(module_name) == []
