"""The project's import graph, read from the source with :mod:`ast`, and the code version of a stage.

A stage's code version hashes the code of every project module its run function's module imports, transitively
(imports inside functions included, ``if TYPE_CHECKING:`` ones not since they never run, and the ``__init__`` of
every package on the way), so no list of modules is kept by hand: editing the code of any module a stage runs
changes that stage's key, and nothing else's. What is hashed is each module's syntax tree without docstrings
(``ast.dump``: no comments, blank lines or line numbers), so a fixed comment or docstring reruns nothing. The same
graph backs the package-order test (tests/test_architecture.py).
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from core.paths import ROOT

# The project's packages, lowest first: a package may import only the packages before it (and itself).
PACKAGES: tuple[str, ...] = ("core", "models", "retrieval", "stages", "tasks", "flows", "disco")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source file of a project module (``a.b`` -> ``a/b.py`` or ``a/b/__init__.py``), or None."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(module: str, root: Path) -> str:
    path = module_file(module, root)
    return module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]


def imports_of(module: str, root: Path = ROOT) -> set[str]:
    """Project modules ``module`` imports explicitly (anywhere in its file), as module names."""
    path = module_file(module, root)
    if path is None:
        raise ModuleNotFoundError(f"no project module {module!r} under {root}")
    return set(_imports(module, root, path.read_text(encoding="utf-8")))


@lru_cache(maxsize=1024)
def _imports(module: str, root: Path, text: str) -> frozenset[str]:
    """The imports of ``module`` whose source is ``text`` (cached by content: an edit is a new entry)."""
    found: set[str] = set()
    for node in _statements(ast.parse(text, filename=module).body):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module, root)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names = [f"{base}.{a.name}" if module_file(f"{base}.{a.name}", root) else base for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in PACKAGES:
                continue
            while name and module_file(name, root) is None:  # `import a.b.C`-style attribute paths
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return frozenset(found)


def _statements(body: list) -> Iterator[ast.stmt]:
    """Every statement of ``body``, nested ones included (imports are statements, so expressions, which are most
    of a tree's nodes, are not walked), except the body of ``if TYPE_CHECKING:`` blocks (those imports never run)."""
    for node in body:
        yield node
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            if name == "body" and _is_type_checking(node):
                continue
            for child in getattr(node, name, ()):
                yield from _statements([child] if isinstance(child, ast.stmt) else child.body)


def _is_type_checking(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(module: str, root: Path = ROOT) -> list[str]:
    """``module`` and every project module it imports, transitively, with the packages on the way (sorted)."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for dep in (*imports_of(m, root), *_parents(m)):
            if dep not in seen and module_file(dep, root) is not None:
                todo.append(dep)
    return sorted(seen)


def code_version(module: str, root: Path = ROOT) -> str:
    """Hash of what :func:`closure` ``(module)`` runs: each module's syntax tree without docstrings (comments,
    blank lines and line numbers are not in it), so that fixing a comment or a docstring changes no key."""
    h = hashlib.sha256()
    for m in closure(module, root):
        h.update(m.encode())
        h.update(_code_text(m, module_file(m, root).read_text(encoding="utf-8")).encode())
    return h.hexdigest()[:16]


@lru_cache(maxsize=1024)
def _code_text(module: str, text: str) -> str:
    """``ast.dump`` of ``text`` with every docstring removed (cached by content)."""
    tree = ast.parse(text, filename=module)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


def project_modules(root: Path = ROOT) -> list[str]:
    """Every module of the project's packages."""
    out = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out.append(".".join(parts))
    return out
