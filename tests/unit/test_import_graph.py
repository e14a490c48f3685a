"""The package's import graph: its layers (each imports only from its own layer or lower ones),
which of them may import Prefect, no cycle, and no private name imported across modules.
Read from the source with ``ast`` (nothing is imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import prefect_runway

ROOT = Path(prefect_runway.__file__).parent
PACKAGE = "prefect_runway"

#: The layers, bottom to top: the folders (or top-level modules) of each. A module imports
#: only from its own layer or lower ones. The package's __init__ (the front door) stands
#: above them all.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "errors", "settings", "models"),  # 1 typed requests, results, every error
    ("providers",),  # 2 pure translation: request -> HTTP call, answer -> status
    ("engine",),  # 3 the one HTTP engine: transport, retries, polling, downloads, budget
    ("storage",),  # 4 keys, local, S3, delivery, previews, the ledger's records
    ("money",),  # 5 prices, costs, plans, budgets, balances, daily spend
    ("blocks", "emulator"),  # 6 credentials blocks; the providers' local stand-in
    ("tasks",),  # 7 the paid submit, the reading tasks, the ledger, locks, limits
    ("flows", "testing"),  # 8 the flows, what a run shows people; fixtures for users' flows
    ("cli",),  # 9 the prefect-runway command
)

#: The layers that import nothing from Prefect (nor prefect-aws, prefect-redis)...
PURE_OF_PREFECT = ("_version", "errors", "settings", "models", "providers", "engine", "storage",
                   "money")
#: ...except these adapters, each the one place its layer meets Prefect.
PREFECT_ADAPTERS = {
    # resolve_storage: a Prefect LocalFileSystem or prefect-aws S3Bucket block as a storage
    f"{PACKAGE}.storage",
    # S3Storage wraps a prefect-aws S3Bucket block
    f"{PACKAGE}.storage.s3",
    # where records live when a run names no storage: Prefect's local results path
    f"{PACKAGE}.storage.records",
}


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _import_nodes(name: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names imported from it)`` of every import in the file, at any depth
    (function-level included); relative imports resolved."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module ``name`` imports, at any depth in the file (function-level included)."""
    found: set[str] = set()
    for module, names in _import_nodes(name, path):
        found.add(module)
        # ``from package import submodule`` imports the submodule.
        found.update(f"{module}.{n}" for n in names if f"{module}.{n}" in known)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _top(module: str) -> str:
    """The package's top-level entry a module belongs to (``engine``, ``errors``)."""
    return module.removeprefix(PACKAGE + ".").split(".")[0]


def _layer(module: str) -> int:
    top = _top(module)
    for index, layer in enumerate(LAYERS, start=1):
        if top in layer:
            return index
    raise AssertionError(f"{module} is in no layer: add {top!r} to LAYERS")


def _is_prefect(module: str) -> bool:
    return module.split(".")[0] in ("prefect", "prefect_aws", "prefect_redis")


def test_the_graph_is_read():
    graph = _graph()
    assert "prefect_runway.engine.client" in graph
    assert "prefect_runway.engine.transport" in graph["prefect_runway.engine.client"]
    assert "prefect" in {m.split(".")[0] for m in graph["prefect_runway.flows.retries"]}


def test_every_module_is_in_a_layer():
    for name in _graph():
        if name != PACKAGE:
            _layer(name)


def test_nothing_imports_from_a_higher_layer():
    upward = sorted(
        f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})"
        for name, targets in _graph().items() if name != PACKAGE
        for target in targets
        if target.startswith(PACKAGE + ".") and _layer(target) > _layer(name)
    )
    assert upward == []


def test_the_layer_check_sees_an_upward_import():
    """The check above can fail: an engine module importing a task would be caught."""
    assert _layer("prefect_runway.tasks.generation") > _layer("prefect_runway.engine.client")
    assert _layer("prefect_runway.models.catalogue") < _layer("prefect_runway.providers.base")
    assert _layer("prefect_runway.cli.live") == len(LAYERS)


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


def test_the_pure_layers_import_nothing_from_prefect_but_their_adapters():
    graph = _graph()
    offenders = {
        name: sorted(m for m in targets if _is_prefect(m))
        for name, targets in graph.items()
        if name != PACKAGE and _top(name) in PURE_OF_PREFECT and name not in PREFECT_ADAPTERS
    }
    assert {k: v for k, v in offenders.items() if v} == {}
    for layer in ("engine", "providers", "money", "models"):
        assert any(_top(k) == layer for k in offenders), layer
    # The adapters are named because they do import Prefect: a stale name would hide nothing.
    assert all(any(_is_prefect(m) for m in graph[a]) for a in PREFECT_ADAPTERS)


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
    reached = {m for n in seen for m in graph[n] if _is_prefect(m)}
    assert reached == set(), sorted(seen)


def test_no_private_name_is_imported_across_modules():
    """An underscore name is private to its module: another module that needs it imports a
    public name from where it lives."""
    modules = _modules()
    private = sorted(
        f"{name} imports {module}.{imported}"
        for name, path in modules.items()
        for module, names in _import_nodes(name, path)
        if module.startswith(PACKAGE) and module != name
        for imported in names
        if imported.startswith("_") and not imported.startswith("__")
    )
    assert private == []
