"""The package's shape, for the whole tree: a short top, no module over 500 lines, no function
over 80 (the emulator aside), and module docstrings of one to three lines (the rest is docs/).
Read from the source with ``ast``; each failure names the module or function and its size."""

from __future__ import annotations

import ast
from pathlib import Path

import prefect_runway

ROOT = Path(prefect_runway.__file__).parent

#: Modules and folders at the package top, besides these two.
MAX_TOP, TOP_EXEMPT = 14, {"__init__.py", "_version.py"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_DOCSTRING_LINES = 3
#: Held to the docstring rule only: the providers' APIs on loopback, long by their nature.
SIZE_EXEMPT = ("emulator",)


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def _name(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _sized(path: Path, root: Path) -> bool:
    return path.relative_to(root).parts[0] not in SIZE_EXEMPT


def top_entries(root: Path) -> list[str]:
    """The modules and folders at the package top (``__init__``, ``_version`` not counted)."""
    return sorted(
        p.name for p in root.iterdir()
        if p.name not in TOP_EXEMPT and p.name != "__pycache__"
        and (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))
    )


def long_modules(root: Path) -> list[str]:
    found = []
    for path in _modules(root):
        lines = path.read_text().count("\n")
        if _sized(path, root) and lines > MAX_MODULE_LINES:
            found.append(f"{_name(path, root)}: {lines} lines (at most {MAX_MODULE_LINES})")
    return found


def _functions(node: ast.AST, prefix: str = "") -> list[tuple[str, int]]:
    """``(qualified name, lines from def to its last line)`` of every function and method."""
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = f"{prefix}{child.name}"
            if not isinstance(child, ast.ClassDef):
                found.append((name, child.end_lineno - child.lineno + 1))  # type: ignore[operator]
            found += _functions(child, f"{name}.")
        else:
            found += _functions(child, prefix)
    return found


def long_functions(root: Path) -> list[str]:
    return [
        f"{_name(path, root)}: {name} spans {lines} lines (at most {MAX_FUNCTION_LINES})"
        for path in _modules(root) if _sized(path, root)
        for name, lines in _functions(ast.parse(path.read_text(), str(path)))
        if lines > MAX_FUNCTION_LINES
    ]


def long_docstrings(root: Path) -> list[str]:
    found = []
    for path in _modules(root):
        doc = ast.get_docstring(ast.parse(path.read_text(), str(path)))
        lines = len(doc.splitlines()) if doc else 0
        if not 1 <= lines <= MAX_DOCSTRING_LINES:
            found.append(f"{_name(path, root)}: module docstring of {lines} lines "
                         f"(one to {MAX_DOCSTRING_LINES}; the reasoning belongs in docs/)")
    return found


def test_the_package_top_is_short():
    top = top_entries(ROOT)
    assert len(top) <= MAX_TOP, f"{len(top)} entries at the package top: {top}"


def test_no_module_over_500_lines():
    found = long_modules(ROOT)
    assert not found, "\n".join(found)


def test_no_function_over_80_lines():
    found = long_functions(ROOT)
    assert not found, "\n".join(found)


def test_module_docstrings_are_one_to_three_lines():
    found = long_docstrings(ROOT)
    assert not found, "\n".join(found)


def test_the_checks_find_what_they_are_for(tmp_path):
    """Each check above can fail, and names what it found: a package of offenders."""
    root = tmp_path / "pkg"
    (root / "emulator").mkdir(parents=True)
    for name in ("__init__.py", "_version.py", "emulator/__init__.py"):
        (root / name).write_text('"""One line."""\n')
    for i in range(MAX_TOP - 1):
        (root / f"m{i}.py").write_text('"""One line."""\n')
    (root / "py.typed").write_text("")
    (root / "__pycache__").mkdir()
    assert top_entries(root) == sorted(["emulator", *(f"m{i}.py" for i in range(MAX_TOP - 1))])
    (root / "extra").mkdir()
    (root / "extra" / "__init__.py").write_text('"""One line."""\n')
    assert len(top_entries(root)) == MAX_TOP + 1

    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    long_method = f'"""One line."""\n\n\nclass C:\n    def run(self):\n{body}\n'
    (root / "extra" / "big.py").write_text(long_method)
    (root / "emulator" / "big.py").write_text(long_method + "\n" * MAX_MODULE_LINES)
    (root / "m0.py").write_text('"""One line."""\n' + "\n" * MAX_MODULE_LINES)
    (root / "m1.py").write_text('"""One.\n\nThree.\nFour."""\n')
    (root / "m2.py").write_text("x = 1\n")
    (root / "emulator" / "essay.py").write_text('"""1\n2\n3\n4\n5"""\n')

    assert long_modules(root) == [f"m0.py: {MAX_MODULE_LINES + 1} lines (at most 500)"]
    assert long_functions(root) == [
        f"extra/big.py: C.run spans {MAX_FUNCTION_LINES + 1} lines (at most 80)"]
    assert [d.partition(" (")[0] for d in long_docstrings(root)] == [
        "emulator/essay.py: module docstring of 5 lines",
        "m1.py: module docstring of 4 lines",
        "m2.py: module docstring of 0 lines",
    ]
