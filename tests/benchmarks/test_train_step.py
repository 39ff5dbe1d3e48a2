"""The pure helpers of benchmarks/train_step.py (the benchmark itself runs on demand, not here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import train_step
from core.io import Manifest
from core.run_record import RunRecord



def _result(seconds: list[float], batch_size: int = 8) -> dict:
    return {"log": [{"s": s, "doc_s": s / 2, "loss": 1.0} for s in seconds], "batch_size": batch_size,
            "peak_rss_mib": 100.0}


def test_summarise_skips_warmup_and_divides_by_the_baseline():
    rows = train_step.summarise({"re-encode": _result([9.0, 2.0, 2.0, 4.0]),
                                 "precomputed": _result([9.0, 0.5, 0.5, 1.0])}, warmup_steps=1)
    by = {r["variant"]: r for r in rows}
    assert by["re-encode"]["s/step"] == 2.0 and by["re-encode"]["speed-up vs re-encode"] == 1.0
    assert by["precomputed"]["s/step"] == 0.5 and by["precomputed"]["examples/s"] == 16.0
    assert by["precomputed"]["speed-up vs re-encode"] == 4.0
    assert by["precomputed"]["doc side s/step"] == 0.25


def test_summarise_without_baseline_has_no_speed_up():
    rows = train_step.summarise({"precomputed": _result([1.0, 1.0])}, warmup_steps=0)
    assert rows[0]["speed-up vs re-encode"] is None


def test_loss_difference():
    d = train_step.loss_difference([1.0, 2.1, 2.9], [1.0, 2.0, 3.0])
    assert d["steps"] == 3 and d["first_step_abs"] == 0.0
    assert d["max_abs"] == pytest.approx(0.1) and d["max_rel"] == pytest.approx(0.05)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_stage_files_by_glob_and_run_json(tmp_path):
    for f in ("ingest-a/turns.parquet", "ingest-a/qrels.parquet", "ingest-a/corpus.parquet",
              "index-b/doc_vectors.parquet", "teacher-c/runs.parquet"):
        _touch(tmp_path / "stages" / f)
    files = train_step.stage_files(tmp_path)
    assert files["doc_vectors"] == tmp_path / "stages/index-b/doc_vectors.parquet"
    for f in ("turns", "qrels", "corpus"):  # a second ingest folder: ambiguous without run.json
        _touch(tmp_path / "stages" / "ingest-z" / f"{f}.parquet")
    with pytest.raises(SystemExit, match="ambiguous"):
        train_step.stage_files(tmp_path)
    RunRecord(config={}, stages={"ingest": Manifest(stage="ingest", key="z", dir=str(tmp_path / "stages/ingest-z"))}
              ).write(tmp_path)
    assert train_step.stage_files(tmp_path)["turns"] == tmp_path / "stages/ingest-z/turns.parquet"


def test_stage_files_missing_stage_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no stages/ingest-\\*/turns.parquet"):
        train_step.stage_files(tmp_path)
