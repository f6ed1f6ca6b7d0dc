"""The package's layout: no import cycle among its modules, and no module too long.

Imports are read with ``ast`` from every module under ``src/sqla_repo``: at module level
and inside functions, classes and ``try`` blocks alike, since an import deferred into a
function is still a cycle, only one that fails later. Imports under
``if TYPE_CHECKING:`` do not count: they never run, so they cannot make a runtime cycle
(their ``else:`` branch does run, and counts). Importing a submodule also runs its
package's ``__init__``; that implicit edge is not counted either, or every import the
package's ``__init__`` makes would be a cycle. ``from package import name`` is an edge
to the submodule ``package.name`` when there is one, else to ``package``.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import NamedTuple

import sqla_repo

PACKAGE = Path(sqla_repo.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 500


class Edge(NamedTuple):
    target: str
    line: int


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, wherever it is, ``if TYPE_CHECKING:`` aside."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda node: node.lineno)


def _known_prefix(name: str, modules: dict[str, Path]) -> str:
    """The longest package module *name* starts with (``import a.b.c`` imports each)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def _targets(module: str, node: ast.Import | ast.ImportFrom, modules: dict[str, Path]) -> list[str]:
    """The package modules one import statement imports."""
    if isinstance(node, ast.Import):
        found = [_known_prefix(alias.name, modules) for alias in node.names]
        return [name for name in found if name]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        if modules[module].name != "__init__.py":
            parts = parts[:-1]
        parts = parts[: len(parts) - node.level + 1]
        base = ".".join([*parts, *([node.module] if node.module else [])])
    found = []
    for alias in node.names:
        if f"{base}.{alias.name}" in modules:
            found.append(f"{base}.{alias.name}")
        elif base in modules:
            found.append(base)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, list[Edge]]:
    """The runtime imports among *sources* (dotted name -> source text), by module."""
    modules = {name: Path(name.replace(".", "/") + ".py") for name in sources}
    for name in sources:
        if any(other.startswith(name + ".") for other in sources):
            modules[name] = Path(name.replace(".", "/")) / "__init__.py"
    graph: dict[str, list[Edge]] = {}
    for name, text in sources.items():
        edges = graph.setdefault(name, [])
        for node in _runtime_imports(ast.parse(text)):
            edges.extend(
                Edge(target, node.lineno)
                for target in _targets(name, node, modules)
                if target != name
            )
    return graph


def find_cycles(graph: dict[str, list[Edge]]) -> list[list[tuple[str, int]]]:
    """One cycle through each strongly connected group of modules, as (module, line) steps.

    Each step is a module and the line of its import of the next one; the last step's
    import leads back to the first module.
    """
    return [_cycle_in(graph, group) for group in _strongly_connected(graph) if len(group) > 1]


def _strongly_connected(graph: dict[str, list[Edge]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that all reach one another."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        for edge in graph.get(name, []):
            if edge.target not in index:
                visit(edge.target)
                low[name] = min(low[name], low[edge.target])
            elif edge.target in stack:
                low[name] = min(low[name], index[edge.target])
        if low[name] == index[name]:
            cut = stack.index(name)
            groups.append(set(stack[cut:]))
            del stack[cut:]

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def _cycle_in(graph: dict[str, list[Edge]], group: set[str]) -> list[tuple[str, int]]:
    """The shortest cycle through the first module of *group* (by name), inside it."""
    start = min(group)
    came_from: dict[str, tuple[str, int]] = {}
    frontier = [start]
    while frontier:
        following = []
        for name in frontier:
            for edge in graph.get(name, []):
                if edge.target == start:
                    return _path_to(came_from, start, (name, edge.line))
                if edge.target in group and edge.target not in came_from:
                    came_from[edge.target] = (name, edge.line)
                    following.append(edge.target)
        frontier = following
    msg = f"no cycle through {start}"
    raise AssertionError(msg)


def _path_to(
    came_from: dict[str, tuple[str, int]], start: str, last: tuple[str, int]
) -> list[tuple[str, int]]:
    """The steps from *start* to *last*, following *came_from* backwards."""
    steps = [last]
    while steps[-1][0] != start:
        steps.append(came_from[steps[-1][0]])
    return steps[::-1]


def _describe(cycle: list[tuple[str, int]]) -> str:
    steps = [f"{name} (line {line})" for name, line in cycle]
    return " -> ".join([*steps, cycle[0][0]])


def test_no_import_cycle() -> None:
    """No chain of runtime imports, deferred ones included, leads a module back to itself."""
    sources = {name: path.read_text(encoding="utf-8") for name, path in _modules().items()}
    cycles = find_cycles(import_graph(sources))
    assert not cycles, "import cycles:\n" + "\n".join(_describe(cycle) for cycle in cycles)


def test_module_size() -> None:
    """No module is longer than 500 lines."""
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines())
        for name, path in _modules().items()
    }
    too_long = {name: count for name, count in lengths.items() if count > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines: " + ", ".join(
        f"{name} ({count})" for name, count in sorted(too_long.items())
    )


class TestCycleFinder:
    """The checks above see every kind of import they claim to."""

    def test_deferred_import_cycle(self) -> None:
        """An import inside a function closes a cycle, and the message names the path."""
        sources = {
            "pkg": "",
            "pkg.a": "from pkg import b\n",
            "pkg.b": "import pkg.c\n",
            "pkg.c": "def f():\n    from pkg.a import x\n    return x\n",
        }
        (cycle,) = find_cycles(import_graph(sources))
        assert _describe(cycle) == ("pkg.a (line 1) -> pkg.b (line 1) -> pkg.c (line 2) -> pkg.a")

    def test_relative_and_nested_imports(self) -> None:
        """Relative imports, and imports in classes and ``try`` blocks, are edges."""
        sources = {
            "pkg": "",
            "pkg.a": "try:\n    from . import b\nexcept ImportError:\n    pass\n",
            "pkg.b": "class C:\n    from .sub import d\n",
            "pkg.sub": "",
            "pkg.sub.d": "from ..a import name\n",
        }
        (cycle,) = find_cycles(import_graph(sources))
        assert [name for name, _ in cycle] == ["pkg.a", "pkg.b", "pkg.sub.d"]

    def test_type_checking_imports_do_not_count(self) -> None:
        """Imports under ``if TYPE_CHECKING:`` make no edge; its ``else:`` branch does."""
        sources = {
            "pkg": "",
            "pkg.a": "from pkg import b\n",
            "pkg.b": (
                "import typing\n"
                "if typing.TYPE_CHECKING:\n    from pkg import a\n"
                "if TYPE_CHECKING:\n    import pkg.a\nelse:\n    import pkg.c\n"
            ),
            "pkg.c": "",
        }
        graph = import_graph(sources)
        assert find_cycles(graph) == []
        assert graph["pkg.b"] == [Edge("pkg.c", 7)]

    def test_package_attribute_import(self) -> None:
        """``from pkg import name`` of a non-module is an edge to the package itself."""
        sources = {"pkg": "from pkg.a import f\n", "pkg.a": "def f():\n    from pkg import g\n"}
        (cycle,) = find_cycles(import_graph(sources))
        assert [name for name, _ in cycle] == ["pkg", "pkg.a"]
