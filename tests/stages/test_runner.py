"""Every stage runs as a plain function on paths, without Prefect; the plan instances stages per dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from stages.base import MANIFEST, read_fields, read_manifest, run_stage
from stages.config import apply_overrides, load, preset
from stages.graph import BY_NAME, NAMES, plan
from stages.runner import run_pipeline

ROOT = Path(__file__).resolve().parents[2]


def test_stages_import_and_plan_without_prefect():
    code = ("import sys, stages.graph, stages.runner, stages.table; "
            "from stages.config import preset; stages.graph.plan(preset('demo')); "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('prefect', 'tasks', 'flows')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_plan_of_one_dataset_in_graph_order():
    steps = plan(preset("demo"))
    assert [s.name for s in steps] == list(NAMES)
    assert steps[-1].upstream == {"ingest": "ingest", "index": "index", "teacher": "teacher", "distill": "distill"}
    assert [s.name for s in plan(preset("demo"), stop="teacher")] == ["ingest", "rewriter", "rewrite", "index",
                                                                      "teacher"]
    assert steps[2].upstream == {"ingest": "ingest", "rewriter": "rewriter"}


def test_zero_shot_plan_instances_the_evaluation_dataset(tmp_path):
    cfg = load("demo", str(tmp_path / "a"), [], str(tmp_path / "b"))
    steps = {s.name: s for s in plan(cfg)}
    assert set(steps) == {*NAMES, "eval-ingest", "eval-rewrite", "eval-index", "eval-teacher"}
    assert steps["eval-rewrite"].upstream == {"ingest": "eval-ingest", "rewriter": "rewriter"}
    assert steps["rewriter"].upstream == {"ingest": ("ingest",)}
    assert steps["distill"].upstream == {"ingest": ("ingest",), "index": ("index",), "teacher": ("teacher",),
                                         "rewrite": ("rewrite",)}
    assert steps["distill"].fields.keys() == {"encoder", "distill", "systems", "fuse", "k", "source_teachers"}
    assert steps["evaluate"].upstream == {"ingest": "eval-ingest", "index": "eval-index",
                                          "teacher": "eval-teacher", "distill": "distill"}
    assert steps["eval-ingest"].fields["data"].path == str((tmp_path / "b").resolve())
    assert steps["eval-ingest"].fields["data"].split.test_fraction == 1.0
    assert steps["ingest"].fields["data"].split.test_fraction == 0.0
    # up to the teacher: the evaluation dataset is not needed yet
    assert [s.name for s in plan(cfg, stop="teacher")] == ["ingest", "rewriter", "rewrite", "index", "teacher"]
    # a given student: the evaluation dataset's stages and evaluate only
    assert [s.name for s in plan(cfg.eval_config(), stop="evaluate", given=("distill",))] == [
        "ingest", "rewriter", "rewrite", "index", "teacher", "evaluate"]


def test_pooled_training_datasets_each_get_their_instances_and_feed_one_distill(tmp_path):
    cfg = load("demo", [str(tmp_path / "a"), str(tmp_path / "b"), str(tmp_path / "c")], [], str(tmp_path / "e"))
    steps = {s.name: s for s in plan(cfg)}
    per_dataset = ("ingest", "rewrite", "index", "teacher")
    assert set(steps) == {*NAMES, *(f"{p}{n}" for p in ("train1-", "train2-", "eval-") for n in per_dataset)}
    assert steps["distill"].upstream["teacher"] == ("teacher", "train1-teacher", "train2-teacher")
    assert steps["distill"].upstream["rewrite"] == ("rewrite", "train1-rewrite", "train2-rewrite")
    assert steps["train2-teacher"].upstream == {"rewrite": "train2-rewrite", "index": "train2-index"}
    assert steps["train1-ingest"].fields["data"].path == str((tmp_path / "b").resolve())
    assert steps["train1-ingest"].fields["data"].split.test_fraction == 0.0
    assert steps["evaluate"].upstream["teacher"] == "eval-teacher"
    # up to the index: the primary dataset only; the rewriter reads every training dataset's turns
    assert [s.name for s in plan(cfg, stop="index")] == ["ingest", "index"]
    assert [s.name for s in plan(cfg, stop="rewrite")] == ["ingest", "train1-ingest", "train2-ingest", "rewriter",
                                                           "rewrite"]
    assert steps["rewriter"].upstream == {"ingest": ("ingest", "train1-ingest", "train2-ingest")}


def _slice_config(data: Path, *extra: str):
    return apply_overrides(preset("demo"), [
        f"data.path={data}", "data.split.test_fraction=0.25", 'teacher.systems=["human"]', "distill.learn_from=human", "distill.epochs=1",
        "distill.steps=null", "distill.n_negatives=4", "distill.negative_window=[2, 100]", "evaluate.latency_queries=2", *extra])


@pytest.mark.slow
def test_whole_pipeline_as_plain_functions(demo_slice, tmp_path):
    """No Prefect at all: folders with manifests, reused on a rerun, one stage recomputed on request."""
    out = tmp_path / "run"
    cfg = _slice_config(demo_slice)
    done = run_pipeline(cfg, out)
    assert set(done) == set(NAMES)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"last_turn", "conversation", "conversation:student-input", "rewrite:human",
                                       "disco"}
    for name, m in done.items():
        assert Path(m.dir) == out.resolve() / "stages" / f"{name}-{m.key}"
        assert read_manifest(m.dir) == m
    assert done["ingest"].outputs["turns"].rows == pl.read_parquet(done["ingest"]["turns"]).height

    stamp = {k: (Path(m.dir) / MANIFEST).stat().st_mtime_ns for k, m in done.items()}
    again = run_pipeline(cfg, out)
    assert {k: (Path(m.dir) / MANIFEST).stat().st_mtime_ns for k, m in again.items()} == stamp

    # One stage alone, on paths: the teacher stage from the finished upstream folders.
    teacher = BY_NAME["teacher"]
    fields = read_fields(teacher, apply_overrides(cfg, ["teacher.k=20"]))
    m = run_stage(teacher, fields, {"rewrite": read_manifest(done["rewrite"].dir),
                                    "index": read_manifest(done["index"].dir)}, tmp_path / "alone")
    runs = pl.read_parquet(m["runs"])
    assert runs.group_by("turn_id", "system").len()["len"].max() <= 20 and set(runs["system"]) == {"human", "fused"}
    assert m.key != done["teacher"].key

    fresh = run_pipeline(cfg, out, stop="teacher", refresh=True)
    assert (Path(fresh["teacher"].dir) / MANIFEST).stat().st_mtime_ns != stamp["teacher"]
    assert (Path(fresh["index"].dir) / MANIFEST).stat().st_mtime_ns == stamp["index"]


@pytest.mark.slow
def test_a_pooled_dataset_learns_from_its_own_teacher(demo_slice, small_demo_slice, tmp_path):
    """``extra_data[i].learn_from``: the pooled dataset's teacher stage computes that teacher only, and the distill
    stage takes that dataset's examples from it (here: human rewrites for `data`, the privileged answer teacher
    for the extra), as CANARD's human rewrites pool beside MTRAG-UN's answer teacher in the mtrag-un preset."""
    cfg = _slice_config(demo_slice, f'extra_data=[{{"path": "{small_demo_slice}", "learn_from": "answer"}}]',
                        "distill.epochs=1", "distill.max_turns=12")
    assert cfg.source_teachers == ["human", "answer"]
    done = run_pipeline(cfg, tmp_path / "run", stop="distill")
    assert set(pl.read_parquet(done["teacher"]["runs"])["system"]) == {"human", "fused"}
    assert set(pl.read_parquet(done["train1-teacher"]["runs"])["system"]) == {"answer", "fused"}
    stats = done["distill"].stats
    assert stats["source_teachers"] == ["human", "answer"] and stats["learn_from"] == "human"
    assert set(stats["sampling"]) == {"0-disco", "1-disco"} and stats["sampling"]["1-disco"]["examples"] > 0
    # the same extra without its own teacher has no answer run to learn from: the distill stage learns from human
    plain = _slice_config(demo_slice, f'extra_data=[{{"path": "{small_demo_slice}"}}]')
    assert plain.source_teachers == ["human", "human"]
    assert plain.extra_config(plain.extra_data[0]).teacher.systems == ["human"]


def test_a_dataset_without_passages_stops_at_the_index_with_a_hint(tmp_path):
    """CANARD has no corpus unless its answer spans are made one: the index stage says so, naming the format."""
    from core.errors import DiscoError

    history = ["Ada Lovelace", "Early life"]
    records = [{"History": history + ["Q1", "A1"] * (n - 1), "QuAC_dialog_id": "C_1", "Question_no": n,
                "Question": f"Q{n}", "Rewrite": f"R{n}"} for n in (1, 2)]
    (tmp_path / "dev.json").write_text(json.dumps(records))
    cfg = load("demo", f"canard:{tmp_path}", ['teacher.systems=["human"]', "distill.learn_from=human",
                                                                       "data.split.dev_fraction=0"])
    with pytest.raises(DiscoError, match=r"the canard dataset has no passages.*options.answer_passages=true"):
        run_pipeline(cfg, tmp_path / "run", stop="index")
    answers = apply_overrides(cfg, ['data.options={"answer_passages": true}'])
    done = run_pipeline(answers, tmp_path / "ok", stop="ingest")
    assert done["ingest"].outputs["corpus"].rows == 1  # question 1's answer; question 2 has none
