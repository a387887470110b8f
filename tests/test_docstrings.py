"""Every package of transforms/ and pipeline/ names what belongs in it, and every public name in
every module of the transforms package has a docstring, with an Args section when it takes
arguments (a class: its constructor's arguments or dataclass fields). Public methods need a
docstring unless they override a method of a base class from outside this package (Beam's
``expand``, ``process``, ...). The modules are found by walking the package, so a new module is
checked without being listed here."""
import ast
import importlib
import inspect
import pkgutil
import sys
import textwrap
import types
from pathlib import Path

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


ROOT = Path(__file__).resolve().parent.parent
FOLDERS = sorted(init.parent for top in ("transforms", "pipeline")
                 for init in (ROOT / top).rglob("__init__.py"))


def unnamed(folder: Path) -> list[str]:
    """The modules and subfolders of ``folder`` its ``__init__.py`` docstring does not name (as
    ``name``, ``name.py`` or ``name/``), or ["no docstring"]."""
    doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text(encoding="utf-8")))
    if not doc:
        return ["no docstring"]
    parts = [p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")]
    parts += [p.name for p in folder.iterdir() if (p / "__init__.py").is_file()]
    return sorted(part for part in parts
                  if not any(f"``{part}{end}``" in doc for end in ("", ".py", "/")))


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: str(f.relative_to(ROOT)))
def test_every_folder_says_what_belongs_in_it(folder):
    """Each package of transforms/ and pipeline/ has a docstring naming each of its modules and
    folders, so a new module is placed in its folder's description."""
    assert unnamed(folder) == []


def test_unnamed_finds_a_module_the_docstring_leaves_out(tmp_path):
    (tmp_path / "__init__.py").write_text('"""Holds ``kept`` and ``also.py``."""\n')
    (tmp_path / "kept.py").write_text("")
    (tmp_path / "also.py").write_text("")
    (tmp_path / "left_out.py").write_text("")
    (tmp_path / "_private.py").write_text("")
    assert unnamed(tmp_path) == ["left_out"]
    (tmp_path / "__init__.py").write_text("")
    assert unnamed(tmp_path) == ["no docstring"]
