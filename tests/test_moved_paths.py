"""Module paths from before transforms/ was grouped into folders still import for one release:
each warns, naming the new path, and gives the very module (and so the same objects) that lives
at the new path. The public names import from ``transforms`` itself, as the README shows."""
import ast
import importlib
import sys
import warnings
from pathlib import Path

import pytest

import transforms
from transforms._moved import MOVED
from tests.test_readme_example import readme_example

ROOT = Path(__file__).resolve().parent.parent

# Old modules whose path is now a folder: a name each defined -> where it lives now.
FOLDED_NAMES = {
    ("transforms.jobs", "JobConfig"): "transforms.core.bedrock",
    ("transforms.jobs", "JobsClient"): "transforms.core.bedrock",
    ("transforms.shards", "WriteShardsInParallel"): "transforms.shards.write_shards",
    ("transforms.shards", "window_bounds"): "transforms.shards.write_shards",
}


def fresh_import(old: str, monkeypatch):
    """Import ``old`` as a first import in this process would, recording the warnings."""
    parent, _, leaf = old.rpartition(".")
    monkeypatch.delitem(sys.modules, old, raising=False)
    monkeypatch.delattr(sys.modules[parent], leaf, raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    # Only ours: a first import of Beam modules also raises other libraries' warnings.
    return module, [w for w in caught if "will be removed in the next release" in str(w.message)]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_warns_and_is_the_new_module(old, monkeypatch):
    module, caught = fresh_import(old, monkeypatch)
    assert module is importlib.import_module(MOVED[old])
    assert [str(w.message) for w in caught] == [
        f"{old} is deprecated and will be removed in the next release: import {MOVED[old]}"]


def test_the_warning_points_at_the_importing_line(monkeypatch):
    """So Python's default filter, which shows DeprecationWarnings raised by __main__'s own
    lines, shows it to a script that still uses an old path."""
    monkeypatch.delitem(sys.modules, "transforms.errors", raising=False)
    monkeypatch.delattr(transforms, "errors", raising=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from transforms.errors import ConfigError  # noqa: F401 - the old path under test
    assert [Path(w.filename).name for w in caught
            if "will be removed" in str(w.message)] == [Path(__file__).name]


@pytest.mark.parametrize("folder,name", sorted(FOLDED_NAMES))
def test_an_old_name_of_a_folder_warns_and_is_the_same_object(folder, name, monkeypatch):
    package = importlib.import_module(folder)
    monkeypatch.delitem(vars(package), name, raising=False)
    new = FOLDED_NAMES[folder, name]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(package, name)
    assert value is getattr(importlib.import_module(new), name)
    assert [str(w.message) for w in caught] == [
        f"{folder}.{name} is deprecated and will be removed in the next release: "
        f"import {new}.{name}"]


def test_a_folders_own_modules_import_without_a_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*will be removed in the next release", DeprecationWarning)
        from transforms.jobs import harvest
        from transforms.shards import carry
    assert harvest.__name__ == "transforms.jobs.harvest" and carry.__name__ == "transforms.shards.carry"


def test_a_name_no_old_module_had_is_still_an_attribute_error():
    with pytest.raises(AttributeError):
        transforms.jobs.NoSuchName  # noqa: B018 - the lookup is the test


def test_the_public_names_come_from_transforms():
    """Every name of ``__all__`` is the object its module defines."""
    for name in transforms.__all__:
        value = getattr(transforms, name)
        assert getattr(importlib.import_module(value.__module__), name) is value


def test_the_readme_example_imports_only_current_paths():
    """The README's Python example (item 2) imports nothing deprecated."""
    example = readme_example()
    imports = [node for node in ast.parse(example).body
               if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert any(isinstance(node, ast.ImportFrom) and node.module == "transforms" for node in imports)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", ".*will be removed in the next release", DeprecationWarning)
        exec(compile(ast.Module(body=imports, type_ignores=[]), "README.md", "exec"), {})
