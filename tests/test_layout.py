"""The code's layout, read from its imports with `ast`: `indexes/` imports neither `ingest/` nor
`ragsvc/`, `ingest/` does not import `ragsvc/`, and no module imports itself back through others
(no circle), at module level or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.data import ROOT

PACKAGES = ("indexes", "ingest", "ragsvc")
BELOW = {"indexes": set(), "ingest": {"indexes"}, "ragsvc": {"indexes", "ingest"}}
"""What each package may import besides itself."""


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """module → the project modules it imports (a `from package import name` that names a
    submodule counts as an import of that submodule)."""
    paths = {module_name(p, root): p for top in packages for p in (root / top).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets.add(base)
                targets.update(f"{base}.{alias.name}" for alias in node.names)
        graph[name] = {t for t in targets if t in paths and t != name}
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in graph.items():
        top = module.split(".")[0]
        for target in targets:
            other = target.split(".")[0]
            if other != top and other not in BELOW[top]:
                found.append(f"{module} imports {target}")
    return sorted(found)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm). A package's
    `__init__` re-exporting its own modules is not a circle: an import of a package's own
    `__init__` from inside the package is left out."""
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_no_package_imports_one_above_it() -> None:
    assert upward_imports(import_graph()) == []


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ('"""a"""\nfrom pkg.b import x\n', [["pkg.a", "pkg.b"]]),
        ('"""a"""\ndef f():\n    from pkg import b\n', [["pkg.a", "pkg.b"]]),
        ('"""a"""\nimport pkg.c\n', []),
    ],
)
def test_the_check_finds_a_circle(tmp_path: Path, source: str, expect: list[list[str]]) -> None:
    """The same reading, on a little tree where `pkg.b` imports `pkg.a`: an import back from
    `a`, at module level or inside a function, is a circle; one elsewhere is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""pkg"""\n')
    (package / "a.py").write_text(source)
    (package / "b.py").write_text('"""b"""\nfrom pkg.a import y\n')
    (package / "c.py").write_text('"""c"""\n')
    assert circles(import_graph(tmp_path, ("pkg",))) == expect


def test_the_check_finds_an_upward_import() -> None:
    graph = {"indexes.store": {"ragsvc.settings"}, "ragsvc.settings": set()}
    assert upward_imports(graph) == ["indexes.store imports ragsvc.settings"]
