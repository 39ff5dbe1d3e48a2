"""The golden fixture: exact ids and scores through index, teacher, one distillation step and evaluate.

tests/fixtures/golden/ holds 20 passages and 5 conversations written for the project. The pipeline runs on them
without Prefect (SPLADE-tiny, the human teacher only, one optimizer step with a fixed seed) and what comes out is
compared with tests/fixtures/golden/expected.json: doc ids, terms and ranks exactly, scores, weights, losses and
metrics within 1e-4 (relative) of the stored values. Any change of results shows here as a diff to review;
``DISCO_GOLDEN_WRITE=1`` rewrites the file after an intended one (tests/fixtures/golden/README.md).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import polars as pl
import pytest

from stages.config import PipelineConfig
from stages.runner import run_pipeline

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "golden"
EXPECTED = GOLDEN / "expected.json"
REL, ABS = 1e-4, 1e-6

CONFIG = {
    "name": "golden",
    "data": {"format": "disco", "path": str(GOLDEN), "split": {"test_fraction": 0.4, "seed": 13}},
    "rewriter": {"mode": "off"},
    "teacher": {"systems": ["human"], "k": 20},
    "distill": {"learn_from": "human", "steps": 1, "batch_size": 4, "n_negatives": 4, "lr": 1e-3, "warmup_ratio": 0.0,
                "seed": 123, "interpolate": [1.0]},
    "evaluate": {"k": 20, "latency_queries": 1},
}


def _top(df: pl.DataFrame, system: str, n: int = 3) -> dict[str, list]:
    rows = df.filter(pl.col("system") == system).sort(["turn_id", "rank"])
    return {t: [[r["doc_id"], r["rank"], r["score"]] for r in g.head(n).iter_rows(named=True)]
            for (t,), g in rows.group_by(["turn_id"], maintain_order=True)}


def _trec(path: Path, n: int = 3) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in path.read_text().splitlines():
        qid, _, doc, rank, score, _ = line.split()
        if int(rank) <= n:
            out.setdefault(qid, []).append([doc, int(rank), float(score)])
    return out


def observe(out: Path) -> dict:
    """What the golden run produced, as JSON-able values."""
    done = run_pipeline(PipelineConfig.model_validate(CONFIG), out)
    vectors = pl.read_parquet(done["index"]["doc_vectors"]).sort("doc_id")
    index = {}
    for r in vectors.filter(pl.col("doc_id").is_in(["g-bee1", "g-vol2", "g-bik4"])).iter_rows(named=True):
        top = sorted(zip(r["term_ids"], r["weights"]), key=lambda tw: (-tw[1], tw[0]))[:8]
        index[r["doc_id"]] = [[int(t), float(w)] for t, w in top]
    loss = pl.read_parquet(done["distill"]["loss"]).row(0, named=True)
    metrics = json.loads(Path(done["evaluate"]["metrics"]).read_text())
    runs = Path(done["evaluate"]["runs"])
    return {
        "ingest": {k: done["ingest"].outputs[k].rows for k in ("turns", "corpus", "qrels")},
        "index": {"passages": vectors.height, "top_terms": index},
        "teacher": _top(pl.read_parquet(done["teacher"]["runs"]), "human"),
        "distill": {k: loss[k] for k in ("step", "kl", "contrastive", "flops", "anti_zero", "total", "lr")},
        "evaluate": {"turns": metrics["turns"], "systems": metrics["systems"],
                     "runs": {p.stem: _trec(p) for p in sorted(runs.glob("*.trec"))}},
    }


def _compare(got, want, where: str = "") -> list[str]:
    """Differences: numbers (not bool) within REL / ABS, everything else (ids, ranks, terms, keys) exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        problems = [f"{where}: keys {sorted(set(got) ^ set(want))} differ"] if set(got) != set(want) else []
        return problems + [p for k in want if k in got for p in _compare(got[k], want[k], f"{where}.{k}")]
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items, expected {len(want)}"]
        return [p for i, (g, w) in enumerate(zip(got, want)) for p in _compare(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        return [] if math.isclose(got, want, rel_tol=REL, abs_tol=ABS) else [f"{where}: {got!r}, expected {want!r}"]
    return [] if got == want and type(got) is type(want) else [f"{where}: {got!r}, expected {want!r}"]


def test_golden_run_gives_the_stored_ids_ranks_and_scores(tmp_path):
    got = json.loads(json.dumps(observe(tmp_path / "run")))
    if os.environ.get("DISCO_GOLDEN_WRITE") == "1":
        EXPECTED.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"wrote {EXPECTED}: review its diff")
    want = json.loads(EXPECTED.read_text())
    problems = _compare(got, want)
    assert not problems, "golden run differs from tests/fixtures/golden/expected.json:\n" + "\n".join(problems[:30])
    # the stored run is a meaningful one: the teacher finds each turn's judged passage, one step changed the model
    assert want["teacher"]["bees_3"][0][0] == "g-bee3" and want["distill"]["lr"] > 0
    assert set(want["evaluate"]["systems"]) >= {"last_turn", "conversation", "rewrite:human", "disco"}


def test_the_comparison_catches_a_changed_id_rank_or_score():
    want = {"a": [["g-bee1", 1, 20.5]], "m": {"RR@10": 0.5}}
    assert not _compare({"a": [["g-bee1", 1, 20.5 * (1 + 1e-6)]], "m": {"RR@10": 0.5}}, want)
    assert _compare({"a": [["g-bee2", 1, 20.5]], "m": {"RR@10": 0.5}}, want)
    assert _compare({"a": [["g-bee1", 2, 20.5]], "m": {"RR@10": 0.5}}, want)
    assert _compare({"a": [["g-bee1", 1, 20.6]], "m": {"RR@10": 0.5}}, want)
    assert _compare({"a": [["g-bee1", 1, 20.5]], "m": {"RR@10": 0.5, "x": 1}}, want)
