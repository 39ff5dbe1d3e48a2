"""`disco gc`: a dry run by default that shows sizes, then removes unused stage folders and stale temporaries."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from disco.cli import app


def _run_folder(root: Path) -> Path:
    stages = root / "stages"
    for name in ("ingest-aaa", "ingest-old", "index-bbb", "index-cached"):
        (stages / name).mkdir(parents=True)
        (stages / name / "data.bin").write_bytes(b"x" * 2048)
    (stages / ".index-bbb.k2j3.tmp" / "index-bbb").mkdir(parents=True)  # a killed process's temporary
    (root / "cache").mkdir()
    for name in ("ingest-aaa", "index-bbb", "index-cached"):
        (root / "cache" / name).write_text("{}")
    (root / "run.json").write_text(json.dumps({"config": {}, "stages": {
        "ingest": {"dir": str(stages / "ingest-aaa")}, "index": {"dir": str(stages / "index-bbb")}}}))
    return root


def test_dry_run_then_remove(tmp_path):
    run = _run_folder(tmp_path / "run")
    runner = CliRunner()
    dry = runner.invoke(app, ["gc", str(run)])
    assert dry.exit_code == 0, dry.output
    assert "would remove" in dry.output and "stages/ingest-old" in dry.output and "2.0 KB" in dry.output
    assert "temporary folder of a killed process" in dry.output and "--yes" in dry.output
    assert (run / "stages" / "ingest-old").exists()  # nothing removed without --yes

    done = runner.invoke(app, ["gc", str(run), "--yes"])
    assert done.exit_code == 0, done.output
    left = sorted(p.name for p in (run / "stages").iterdir())
    assert left == ["index-bbb", "index-cached", "ingest-aaa"]  # the run's and the cached ones stay

    last = runner.invoke(app, ["gc", str(run), "--yes", "--only-last-run"])
    assert last.exit_code == 0, last.output
    assert sorted(p.name for p in (run / "stages").iterdir()) == ["index-bbb", "ingest-aaa"]
    assert sorted(p.name for p in (run / "cache").iterdir()) == ["index-bbb", "ingest-aaa"]


def test_not_a_run_folder(tmp_path):
    result = CliRunner().invoke(app, ["gc", str(tmp_path)])
    assert result.exit_code == 2 and "is not a run folder" in result.output
