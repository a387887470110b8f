"""Every public name in every module of the transforms package has a docstring, with an Args
section when it takes arguments (a class: its constructor's arguments or dataclass fields).
Public methods need a docstring unless they override a method of a base class from outside this
package (Beam's ``expand``, ``process``, ...). The modules are found by walking the package, so a
new module is checked without being listed here."""
import importlib
import inspect
import pkgutil
import sys
import textwrap
import types

import pytest

import transforms

CHECKED = sorted(["transforms"] + [module.name for module in pkgutil.walk_packages(
    transforms.__path__, "transforms.")])


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



def test_every_module_is_checked():
    """The walk reaches modules of sub-packages too: a walk that silently stopped finding
    modules would pass every parametrized case above."""
    assert {"transforms.core.model", "transforms.sinks.files", "transforms.insights.columns"} <= set(
        CHECKED)


def test_problems_names_what_is_undocumented(monkeypatch):
    """A throwaway module (not a fake of a project component: the checker's own input) with one
    name of each kind of problem, so the check above is known to be able to fail."""
    module = types.ModuleType("transforms_docstring_sample")
    exec(textwrap.dedent('''
        def bare(x):
            pass

        def no_args(x):
            """Documented, but its argument is not."""

        def fine(x):
            """Documented.

            Args:
                x: An argument.
            """

        class Thing:
            """A thing without arguments."""

            def method(self):
                pass
    '''), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert problems(module.__name__) == ["bare: no docstring", "no_args: no Args section (x)",
                                         "Thing.method: no docstring"]
