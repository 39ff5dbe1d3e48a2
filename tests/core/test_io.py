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


def test_replacing_a_folder_never_leaves_a_moment_without_it(tmp_path):
    import threading

    target = tmp_path / "stage"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "x").write_text("0")
    missing, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            if not (target / "x").exists():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(1, 200):
            with atomic_path(target) as tmp:
                tmp.mkdir()
                (tmp / "x").write_text(str(i))
    finally:
        stop.set()
        watcher.join()
    assert missing == [] and (target / "x").read_text() == "199"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]


def test_verify_finds_a_truncated_or_missing_output(tmp_path):
    folder = tmp_path / "index"
    folder.mkdir()
    (folder / "a").write_bytes(b"x" * 100)
    (folder / "b").write_bytes(b"y" * 10)
    o = Output.of("lucene", folder)
    assert (o.files, o.bytes) == (2, 110) and o.verify() == folder
    (folder / "a").write_bytes(b"x" * 50)  # cut short
    with pytest.raises(StageInputError, match="changed since it was written"):
        o.verify()
    (folder / "a").write_bytes(b"x" * 100)
    (folder / "b").unlink()
    with pytest.raises(StageInputError, match="1 files, 100 bytes; recorded 2 files, 110 bytes"):
        o.verify()


def test_stale_temporaries_are_found(tmp_path):
    from core.io import stale_temporaries

    (tmp_path / "stages" / ".index-1.abc.tmp").mkdir(parents=True)
    (tmp_path / "stages" / "index-1").mkdir()
    (tmp_path / ".run.json.x.tmp").mkdir()
    assert [p.name for p in stale_temporaries(tmp_path)] == [".run.json.x.tmp", ".index-1.abc.tmp"]


def test_run_temporaries_include_the_per_turn_cache(tmp_path):
    """A run killed while the teacher searched new query texts leaves `.searching.*.tmp` in the per-turn cache; the
    next run (holding the run lock) finds and removes it, as those of stages/ and work/."""
    from core.io import run_temporaries

    for folder in ("stages/.distill-1.x.tmp", "work/distill-1/checkpoints/.epoch-2.y.tmp",
                   "cache/turns/teacher-1/.searching.z.tmp", "other/deep/er/.keep.tmp"):
        (tmp_path / folder).mkdir(parents=True)
    assert [p.relative_to(tmp_path).as_posix() for p in run_temporaries(tmp_path)] == [
        "stages/.distill-1.x.tmp", "work/distill-1/checkpoints/.epoch-2.y.tmp",
        "cache/turns/teacher-1/.searching.z.tmp"]
