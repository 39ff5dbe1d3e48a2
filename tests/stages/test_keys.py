"""Stage keys: derived from the declaration (config fields, upstream fingerprints, code version), and the code
version follows every module a stage runs, with no list kept by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from core.io import Manifest, Output
from stages.base import read_fields, stage_key
from stages.code import PACKAGES, closure, code_version, project_modules
from stages.config import apply_overrides, preset
from stages.graph import BY_NAME, STAGES

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A copy of the project's packages, to edit."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _edit(path: Path):
    """A change of code: a new module-level name (a comment or a docstring would not count, see below)."""
    original = path.read_text()
    path.write_text(original + "\n_EDITED = 1\n")
    return original


def _edit_words(path: Path) -> str:
    """What a person fixing prose changes: a comment, a new blank line, every docstring's wording."""
    import ast

    original = path.read_text()
    lines = original.splitlines(keepends=True)
    for node in sorted(ast.walk(ast.parse(original)), key=lambda n: -getattr(n, "lineno", 0)):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and isinstance(
                getattr(body[0].value, "value", None), str):
            end = body[0].end_lineno - 1  # the docstring's closing line gets a word before its quotes
            quote = lines[end].rstrip()[-3:]
            lines[end] = lines[end].rstrip()[:-3] + " (reworded)" + quote + "\n"
    path.write_text("# a comment fixed\n\n" + "".join(lines) + "\n# and another\n")
    return original


@pytest.mark.parametrize("stage", ["index", "distill"])
def test_editing_comments_and_docstrings_leaves_every_key(tree, stage):
    """Keys follow what runs: comments and docstrings of any module of the closure change no key; code does."""
    decl = BY_NAME[stage]
    fields = read_fields(decl, preset("demo"))
    key = stage_key(decl, fields, {}, root=tree)
    inside = closure(decl.module, tree)
    edited = 0
    for module in inside:
        path = tree.joinpath(*module.split("."))
        path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        original = _edit_words(path)
        try:
            assert path.read_text() != original
            edited += '"""' in original
            assert stage_key(decl, fields, {}, root=tree) == key, f"rewording {module} changed {stage}'s key"
        finally:
            path.write_text(original)
    assert edited >= 5  # docstrings were reworded, not only comments added
    path = tree / "core" / "io.py"
    original = path.read_text()
    path.write_text(original.replace("\n\ndef ", "\n\ndef _new_helper():\n    return 1\n\n\ndef ", 1))
    try:
        assert stage_key(decl, fields, {}, root=tree) != key  # a real change of code still changes it
    finally:
        path.write_text(original)


@pytest.mark.parametrize("stage", [s.name for s in STAGES])
def test_editing_any_module_a_stage_imports_changes_its_key(tree, stage):
    decl = BY_NAME[stage]
    before = code_version(decl.module, tree)
    assert before == decl.code_version()  # the copy hashes like the installed tree
    fields = read_fields(decl, preset("demo"))
    key = stage_key(decl, fields, {}, root=tree)
    inside = closure(decl.module, tree)
    # what the issue found missing from the hand-kept lists is now followed
    expected = {"rewrite": ["retrieval.evaluation", "models.weights", "core.schema"],
                "index": ["core.schema", "models.weights"], "teacher": ["models.weights"],
                "distill": ["models.weights", "models.examples", "models.losses"],
                "evaluate": ["models.weights", "retrieval.evaluation", "retrieval.report"]}.get(stage, [])
    assert set(expected) <= set(inside), set(expected) - set(inside)
    for module in inside:
        path = tree.joinpath(*module.split("."))
        path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        original = _edit(path)
        try:
            assert code_version(decl.module, tree) != before, f"editing {module} left {stage}'s code version"
            assert stage_key(decl, fields, {}, root=tree) != key
        finally:
            path.write_text(original)
    assert code_version(decl.module, tree) == before
    outside = [m for m in project_modules(tree) if m not in inside and m.split(".")[0] in ("flows", "tasks")]
    assert outside  # Prefect code is never part of a stage's code version
    for module in outside[:3]:
        path = tree.joinpath(*module.split("."))
        path = path.with_suffix(".py") if path.with_suffix(".py").exists() else path / "__init__.py"
        original = _edit(path)
        try:
            assert code_version(decl.module, tree) == before, f"editing {module} changed {stage}'s code version"
        finally:
            path.write_text(original)


def test_stage_code_versions_are_independent():
    """Editing the distillation loop does not invalidate the index; each stage hashes only what it runs."""
    assert "models.distill" not in closure(BY_NAME["index"].module)
    assert "stages.distill" not in closure(BY_NAME["evaluate"].module)
    assert "stages.config" not in closure(BY_NAME["ingest"].module)  # presets are not code a stage runs
    assert "stages.teacher" not in closure(BY_NAME["distill"].module)  # a TYPE_CHECKING import: never runs


def _manifest(sha: str) -> Manifest:
    return Manifest(stage="ingest", key="k", dir="/x", outputs={"turns": Output(name="turns", path="/x/t", sha256=sha)})


def test_key_follows_the_fields_read_and_the_upstream_content_only():
    decl = BY_NAME["teacher"]
    cfg = preset("demo")
    fields = read_fields(decl, cfg)
    key = stage_key(decl, fields, {"rewrite": _manifest("a"), "index": _manifest("b")})
    assert key == stage_key(decl, read_fields(decl, apply_overrides(cfg, ["distill.lr=0.5", "rewrite.batch_size=3"])),
                            {"rewrite": _manifest("a"), "index": _manifest("b")})
    assert key != stage_key(decl, read_fields(decl, apply_overrides(cfg, ["teacher.k=10"])),
                            {"rewrite": _manifest("a"), "index": _manifest("b")})
    assert key != stage_key(decl, fields, {"rewrite": _manifest("c"), "index": _manifest("b")})
    # the rewrite stage reads teacher.systems, not the whole teacher section
    rw = BY_NAME["rewrite"]
    assert read_fields(rw, cfg).keys() == {"rewrite", "systems"}
    assert stage_key(rw, read_fields(rw, cfg), {}) == stage_key(
        rw, read_fields(rw, apply_overrides(cfg, ["teacher.k=10"])), {})


def test_distill_reads_only_the_teacher_fields_it_uses():
    """teacher.searcher gives identical runs (tests/retrieval): it must not retrain the student; teacher.k does,
    and teacher.fuse (a fused teacher's representation targets are the rewrites of the teachers it averages)."""
    distill = BY_NAME["distill"]
    base = read_fields(distill, preset("demo"))
    same = read_fields(distill, apply_overrides(preset("demo"), ["teacher.searcher=lucene"]))
    deeper = read_fields(distill, apply_overrides(preset("demo"), ["teacher.k=500"]))
    fused_all = read_fields(distill, apply_overrides(preset("demo"), ["teacher.fuse=null"]))
    assert base["fuse"] == ["human", "llm"] and fused_all["fuse"] is None
    assert stage_key(distill, base, {}) == stage_key(distill, same, {})
    assert stage_key(distill, base, {}) != stage_key(distill, deeper, {})
    assert stage_key(distill, base, {}) != stage_key(distill, fused_all, {})
