"""No two k8sxray modules import each other, directly or around a circle.

Every ``import`` statement counts, wherever it is written (module level, inside a function,
under ``if TYPE_CHECKING``): a function-level import only postpones a circle, it does not
remove it. ``from package import name`` depends on the submodule *name* when there is one,
else on the package's ``__init__``. Imports by string (``importlib.import_module``) are not
seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

import k8sxray

ROOT = Path(k8sxray.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    """Every module under *root* by dotted name (a package by its own name; a C module too, by
    its source, so that the graph is the same whether or not it was built)."""
    package = root.name
    found = {}
    for path in sorted(root.rglob("*")):
        if path.suffix not in {".py", ".c", ".so", ".pyd"}:
            continue
        parts = [package, *path.relative_to(root).parts]
        parts[-1] = parts[-1].partition(".")[0]  # _native.cpython-311-x86_64-linux-gnu.so: _native
        if parts[-1] == "__init__":
            parts.pop()
        found.setdefault(".".join(parts), path)
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a (possibly relative) import written in *module*."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([target] if target else [])])


def _imports(module: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The k8sxray modules that *module* imports, anywhere in its source."""
    if path.suffix != ".py":
        return
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, known)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield from _known(submodule if submodule in known else base, known)


def _known(name: str, known: Mapping[str, Path]) -> Iterator[str]:
    """*name*, or the closest enclosing module of it that is ours."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    if name:
        yield name


def graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports."""
    known = _modules(root)
    return {name: set(_imports(name, path, known)) - {name} for name, path in known.items()}


def cycles(edges: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_the_finder_sees_relative_function_level_and_package_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import c\n")
    (pkg / "sub" / "__init__.py").write_text("from ..a import thing\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from .sub import NAME\nfrom . import _c_module\nimport os\n")
    (pkg / "_c_module.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    edges = graph(pkg)
    assert edges["pkg.a"] == {"pkg.b"}
    assert edges["pkg.b"] == {"pkg.sub.c"}
    assert edges["pkg.sub"] == {"pkg.a"}
    assert edges["pkg.sub.c"] == {"pkg.a"}
    assert edges["pkg.d"] == {"pkg.sub", "pkg._c_module"}
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_the_finder_reports_each_circle_once() -> None:
    edges = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "x": {"y"}, "y": {"z"}, "z": {"x"}}
    assert cycles(edges) == [["a", "b"], ["x", "y", "z"]]


def test_k8sxray_has_no_import_cycle() -> None:
    edges = graph(ROOT)
    assert len(edges) > 50  # the walk really found the package
    assert "k8sxray._config" in edges["k8sxray._autoinstrument"]
    found = cycles(edges)
    if found:
        pytest.fail("import cycles: " + "; ".join(" <-> ".join(c) for c in found))
