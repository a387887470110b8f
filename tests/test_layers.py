"""The folders of transforms/ and of pipeline/ import one way: each part imports only the parts
listed for it in ``MAY_IMPORT`` (transforms/) or ``PIPELINE_MAY_IMPORT`` (pipeline/), the
layerings their ``__init__.py`` and docs/architecture.md describe, and nothing in transforms/
imports the CLI. Read from the source with ast, so a lazy import inside a function counts as
well."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "transforms"
APPLICATION = ROOT / "pipeline"

# part -> the parts its modules may import (itself always). "_moved" is the old-path table.
MAY_IMPORT = {
    "core": set(),
    "insights": {"core"},
    "sources": {"core"},
    "sinks": {"core", "insights"},
    "prepare": {"core", "insights", "sources"},
    "config": {"core", "insights", "sources", "prepare"},
    "jobs": {"core", "insights", "prepare", "config", "_moved"},
    "shards": {"core", "insights", "prepare", "config", "jobs", "_moved"},
    "summarize": {"core", "insights", "sources", "prepare", "config", "jobs", "shards", "sinks"},
    "sighting_plan": {"core", "sources", "prepare", "shards"},
    "summarize_files": {"core", "insights", "sources", "prepare", "config", "jobs", "shards",
                        "sinks", "summarize", "sighting_plan"},
    "__init__": {"core", "insights", "sources", "sinks", "prepare", "config", "jobs", "shards",
                 "summarize", "summarize_files", "_moved"},
    "_moved": set(),
}


# pipeline/'s parts: its folders, and its own modules that the folders share (cli -> running ->
# report, local -> the shared modules). "__init__" is ``pipeline`` itself (its __version__).
SHARED = {"exit_codes": set(), "pricing": set(), "progress": set(), "runners": set(),
          "service_quotas": set(), "flags": {"exit_codes"},
          "options": {"exit_codes", "runners", "service_quotas", "flags"}}
PIPELINE_MAY_IMPORT = {
    **SHARED,
    "__init__": set(),
    "samples": set(),
    "local": {"exit_codes"},
    "report": {"exit_codes", "pricing"},
    "running": {"local", "report", "__init__", *SHARED},
    "cli": {"running", "local", "report", "__init__", *SHARED},
    "__main__": {"cli", "running", "local", "report", "__init__", *SHARED},
}


def part_of(module: str) -> str:
    """transforms.core.model -> core; transforms.config -> config; transforms -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def is_module(package: str, name: str) -> bool:
    return (ROOT / package / f"{name}.py").is_file() or (ROOT / package / name).is_dir()


def imports(path: Path) -> list[str]:
    """The dotted modules a file imports (``from transforms import x`` gives transforms.x when x
    is a module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in ("transforms", "pipeline"):
                # A module of the package, or a name its __init__ defines (__version__).
                found += [f"{node.module}.{alias.name}" if is_module(node.module, alias.name)
                          else node.module for alias in node.names]
            else:
                found.append(node.module)
    return found


def imports_of(package: Path) -> list[tuple[str, str]]:
    """(module, what it imports) for every module of ``package``, with dotted names."""
    found = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        found += [(module, target) for target in imports(path)]
    return found


def crossings() -> list[str]:
    wrong = []
    for module, target in imports_of(PACKAGE):
        here, top = part_of(module), target.split(".")[0]
        if top == "pipeline":
            wrong.append(f"{module} imports the CLI ({target})")
        elif top == "transforms" and (there := part_of(target)) != here \
                and there not in MAY_IMPORT[here]:
            wrong.append(f"{module} ({here}) imports {target} ({there})")
    return wrong


def pipeline_crossings() -> list[str]:
    wrong = []
    for module, target in imports_of(APPLICATION):
        here = part_of(module)
        if target.split(".")[0] == "pipeline" and (there := part_of(target)) != here \
                and there not in PIPELINE_MAY_IMPORT[here]:
            wrong.append(f"{module} ({here}) imports {target} ({there})")
    return wrong


def test_every_module_belongs_to_a_part():
    assert {part_of(".".join(p.relative_to(ROOT).with_suffix("").parts))
            for p in PACKAGE.rglob("*.py")} <= set(MAY_IMPORT)


def test_the_parts_import_one_way():
    assert crossings() == []


def test_every_pipeline_module_belongs_to_a_part():
    assert {part_of(".".join(p.relative_to(ROOT).with_suffix("").parts))
            for p in APPLICATION.rglob("*.py")} <= set(PIPELINE_MAY_IMPORT)


def test_the_pipeline_parts_import_one_way():
    """The CLI imports a run, never the reverse; the report and the local backend import
    neither."""
    assert pipeline_crossings() == []


def loops(table: dict[str, set[str]]) -> list[str]:
    """The parts that may import, through others, themselves."""
    def reach(part, seen):
        for other in table[part]:
            if other not in seen:
                seen.add(other)
                reach(other, seen)
        return seen
    return [part for part in table if part in reach(part, set())]


def test_the_order_has_no_loop():
    """Each table itself is a layering: no part may import, through others, itself."""
    assert loops(MAY_IMPORT) == []
    assert loops(PIPELINE_MAY_IMPORT) == []


def test_a_loop_or_an_import_back_up_is_caught():
    """The checks can fail: a table with a cycle is refused, and so is an import the table does
    not allow (running importing the CLI, as it did before the shared modules moved up)."""
    assert loops({"cli": {"running"}, "running": {"cli"}}) == ["cli", "running"]
    assert "running" not in PIPELINE_MAY_IMPORT["report"] | PIPELINE_MAY_IMPORT["local"]
    assert "cli" not in PIPELINE_MAY_IMPORT["running"]
