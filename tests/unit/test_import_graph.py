"""The package's import graph: no cycle among its modules; the engine and the providers
import nothing from Prefect. Read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import prefect_runway

ROOT = Path(prefect_runway.__file__).parent
PACKAGE = "prefect_runway"


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports, at any depth in the file (function-level included)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # ``from package import submodule`` imports the submodule.
            found.update(f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def test_the_graph_is_read():
    graph = _graph()
    assert "prefect_runway.engine.client" in graph
    assert "prefect_runway.engine.transport" in graph["prefect_runway.engine.client"]
    assert "prefect" in {m.split(".")[0] for m in graph["prefect_runway.flows.generation"]}


def test_no_cycle_among_the_package_modules():
    graph = _graph()
    # Edges inside the package only; a package's __init__ re-exporting its own submodules is
    # how a package is made, so an edge from a package to its own children is left out.
    edges = {
        name: {
            m for m in targets
            if m in graph and m != name and not m.startswith(name + ".")
        }
        for name, targets in graph.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert cycles == [], cycles


def test_engine_and_providers_import_nothing_from_prefect():
    offenders = {
        name: sorted(m for m in targets if m == "prefect" or m.startswith("prefect."))
        for name, targets in _graph().items()
        if name.startswith(("prefect_runway.engine", "prefect_runway.providers"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    assert any(k.startswith("prefect_runway.engine.") for k in offenders)
    assert any(k.startswith("prefect_runway.providers.") for k in offenders)


def test_engine_and_providers_reach_no_prefect_through_the_package():
    """What the engine and providers import from the package imports no Prefect either."""
    graph = _graph()
    start = [n for n in graph if n.startswith(("prefect_runway.engine", "prefect_runway.providers"))]
    seen: set[str] = set()
    todo = list(start)
    while todo:
        node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        # Skip the root package's __init__ (the public API, which imports the flows).
        todo.extend(m for m in graph[node] if m in graph and m != PACKAGE)
    reached = {m for n in seen for m in graph[n] if m == "prefect" or m.startswith("prefect.")}
    assert reached == set(), sorted(seen)
