"""The import contract: packages in one order, no cycle between modules, benchmarks on public library code.

Order (lowest first): core -> models -> retrieval -> stages -> tasks -> flows -> disco. A package imports only
packages before it (and itself); ``models/`` and ``stages/`` know nothing about Prefect; no module imports a
module that (transitively) imports it back. Imports are read from the source with ``ast`` (stages/code.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from stages.code import PACKAGES, imports_of, module_file, project_modules

ROOT = Path(__file__).resolve().parents[1]
MODULES = project_modules(ROOT)


def _rank(module: str) -> int:
    return PACKAGES.index(module.split(".")[0])


@pytest.mark.parametrize("module", MODULES)
def test_imports_only_lower_packages(module):
    upward = sorted(m for m in imports_of(module, ROOT) if _rank(m) > _rank(module))
    assert not upward, f"{module} ({module.split('.')[0]}/) imports {upward}: the order is {' -> '.join(PACKAGES)}"


def _third_party(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", ["core", "models", "retrieval", "stages"])
def test_library_packages_know_nothing_about_prefect(package):
    users = [str(p.relative_to(ROOT)) for p in sorted((ROOT / package).rglob("*.py")) if "prefect" in _third_party(p)]
    assert not users, f"{users} import prefect: Prefect belongs in tasks/, flows/ and disco/"


def test_no_cycle_between_modules():
    graph = {m: imports_of(m, ROOT) for m in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for dep in sorted(graph.get(m, ())):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[m] = 2

    for m in MODULES:
        if m not in state:
            visit(m, [m])


def test_no_cycle_between_folders():
    """Folders (packages and sub-packages) form no cycle either: a.b importing a.c while a.c imports a.b, nor a
    folder and its sub-folder importing each other (a sub-folder is a layer below its parent, never beside it)."""
    def folder(m: str) -> str:
        return m if module_file(m, ROOT).name == "__init__.py" else m.rpartition(".")[0]

    edges: dict[str, set[str]] = {}
    for m in MODULES:
        for dep in imports_of(m, ROOT):
            a, b = folder(m), folder(dep)
            if a != b:
                edges.setdefault(a, set()).add(b)

    def reaches(src: str, dst: str, seen: set[str]) -> bool:
        return any(n == dst or (n not in seen and reaches(n, dst, seen | {n})) for n in edges.get(src, ()))

    cycles = sorted(f"{a} <-> {b}" for a, deps in edges.items() for b in deps if reaches(b, a, {b}))
    assert not cycles, cycles
    # the check sees parent/child pairs: the package order's own edges include them (retrieval -> retrieval.index)
    assert any(b.startswith(a + ".") for a, deps in edges.items() for b in deps)


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks").glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_use_public_library_code(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            assert node.module.split(".")[0] != "tasks", f"{path.name} imports {node.module}: use stages/retrieval"
            private = [a.name for a in node.names if a.name.startswith("_")]
            assert not private, f"{path.name} imports private {private} from {node.module}"
        if isinstance(node, ast.Import):
            assert not any(a.name.split(".")[0] == "tasks" for a in node.names), path.name
