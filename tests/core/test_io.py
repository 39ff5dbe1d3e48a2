from __future__ import annotations

import pytest

from core.errors import StageInputError
from core.io import Output, atomic_path, sha256_path, write_text


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    target = tmp_path / "f.txt"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_atomic_directory_replace(tmp_path):
    target = tmp_path / "stage"
    for content in ("one", "two"):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "x").write_text(content)
    assert (target / "x").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_directory_hash_depends_on_names_and_contents(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x").write_text("1")
    h = sha256_path(tmp_path / "a")
    (tmp_path / "a" / "x").write_text("2")
    assert sha256_path(tmp_path / "a") != h


def test_output_check_names_missing_file(tmp_path):
    (tmp_path / "t.parquet").write_text("x")
    o = Output.of("turns", tmp_path / "t.parquet", 1)
    (tmp_path / "t.parquet").unlink()
    with pytest.raises(StageInputError, match="turns: .*t.parquet recorded by an earlier run is missing"):
        o.check()
