"""The package's map stays true: the subpackages follow the data flow without import cycles,
README's Layout and docs/architecture.md name every module, and the public API is what the
README shows."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "detector"


def modules() -> list[str]:
    """Every module as its path below ``detector/`` (``core/config.py``), packages' own
    ``__init__.py`` and ``__main__.py`` left out."""
    return sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                  if p.name not in ("__init__.py", "__main__.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def type_checking_only(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The package modules ``path`` imports anywhere (inside functions too), those only for
    type checking left out: what can run."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if type_checking_only(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name in known)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    full = f"{child.module}.{alias.name}"
                    found.add(full if full in known else child.module)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m in known and m != dotted(path)}


def import_graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"]
    known = {dotted(p) for p in paths}
    return {dotted(p): imports_of(p, known) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    assert cycles(import_graph()) == []


def test_every_module_lives_in_a_subpackage() -> None:
    assert [m for m in modules() if "/" not in m] == []


def test_readme_layout_names_every_module_and_no_other() -> None:
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    named = {n for n in re.findall(r"`([a-z_]+/[a-z_]+\.py)`", layout)
             if not n.startswith(("benchmarks/", "tests/"))}
    assert named == set(modules())


def test_architecture_crosses_each_module_once() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    crossed = re.findall(r"\*\*`([a-z_]+/[a-z_]+\.py)`\*\*", text)
    assert sorted(crossed) == modules()  # each exactly once, none that is gone


def test_one_version_for_the_package_and_its_metadata() -> None:
    from detector import __version__
    from detector.core.version import VERSION

    pyproject = (REPO / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"$', pyproject, re.M)[1] == VERSION == __version__  # type: ignore[index]
