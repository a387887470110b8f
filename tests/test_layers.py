"""The folders of transforms/ import one way: each part imports only the parts listed for it in
``MAY_IMPORT`` (the layering transforms/__init__.py and docs/architecture.md describe), and
nothing in transforms/ imports the CLI. Read from the source with ast, so a lazy import inside a
function counts as well."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "transforms"

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
    "__init__": {"core", "insights", "sources", "sinks", "prepare", "config", "jobs", "shards",
                 "summarize", "_moved"},
    "_moved": set(),
}


def part_of(module: str) -> str:
    """transforms.core.model -> core; transforms.config -> config; transforms -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[str]:
    """The dotted modules a file imports (``from transforms import x`` gives transforms.x)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "transforms":
                found += [f"transforms.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
    return found


def crossings() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        here = part_of(module)
        for target in imports(path):
            top = target.split(".")[0]
            if top == "pipeline":
                wrong.append(f"{module} imports the CLI ({target})")
            elif top == "transforms" and (there := part_of(target)) != here \
                    and there not in MAY_IMPORT[here]:
                wrong.append(f"{module} ({here}) imports {target} ({there})")
    return wrong


def test_every_module_belongs_to_a_part():
    assert {part_of(".".join(p.relative_to(ROOT).with_suffix("").parts))
            for p in PACKAGE.rglob("*.py")} <= set(MAY_IMPORT)


def test_the_parts_import_one_way():
    assert crossings() == []


def test_the_order_has_no_loop():
    """The table itself is a layering: no part may import, through others, itself."""
    def reach(part, seen):
        for other in MAY_IMPORT[part]:
            if other not in seen:
                seen.add(other)
                reach(other, seen)
        return seen
    assert [part for part in MAY_IMPORT if part in reach(part, set())] == []
