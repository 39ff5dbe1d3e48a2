"""`disco gc`: a dry run by default that shows sizes, then removes unused stage folders and stale temporaries."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from core.io import Manifest
from core.run_record import RunRecord
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
    RunRecord(config={}, stages={
        "ingest": Manifest(stage="ingest", key="aaa", dir=str(stages / "ingest-aaa")),
        "index": Manifest(stage="index", key="bbb", dir=str(stages / "index-bbb"))}).write(root)
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


def test_a_damaged_run_record_is_named(tmp_path):
    run = _run_folder(tmp_path / "run")
    (run / "run.json").write_text('{"config": {}, "stages": {"ingest": {"dir": 3}}}')
    result = CliRunner().invoke(app, ["gc", str(run)])
    assert result.exit_code == 2 and "run.json: not a run record (stages.ingest.stage: Field required" in result.output
    assert "gc cannot tell which stages" in result.output and "Traceback" not in result.output
