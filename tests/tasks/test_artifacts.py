"""Artifacts as the Prefect UI shows them: a key holds one kind only, every description names its run, and the
table of a stage's outputs shows names, files and row counts (never "None rows")."""

from __future__ import annotations

import pytest

from core.io import Manifest, Output
from stages.base import Artifact
from tasks.artifacts import check_key, outputs_markdown, publish_artifacts, run_label


@pytest.mark.parametrize("key, kind, ok", [
    ("evaluate-metrics", "table", True), ("distill-loss-curve", "markdown", True),
    ("teacher-llm-progress", "progress", True), ("evaluate-outputs", "outputs", True),
    ("evaluate-outputs", "table", False), ("index-progress", "markdown", False), ("index", "progress", False),
    ("Evaluate_Metrics", "table", False), ("a--b", "table", False),
])
def test_keys_cannot_collide_between_kinds(key, kind, ok):
    if ok:
        assert check_key(key, kind) == key
    else:
        with pytest.raises(ValueError):
            check_key(key, kind)


def _manifest(tmp_path) -> Manifest:
    d = tmp_path / "stages" / "evaluate-0123456789abcdef"
    return Manifest(stage="evaluate", key="0123456789abcdef", dir=str(d), outputs={
        "metrics": Output(name="metrics", path=str(d / "metrics.json"), sha256="ab" * 32),
        "runs": Output(name="runs", path=str(d / "runs"), sha256="cd" * 32, rows=7)})


def test_outputs_table_names_files_and_rows(tmp_path):
    md = outputs_markdown(_manifest(tmp_path))
    assert "| metrics | `metrics.json` | - | `abababababab` |" in md
    assert "| runs | `runs` | 7 |" in md and "None" not in md


def test_published_artifacts_have_one_kind_per_key_and_name_their_run(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from prefect import flow

    label = run_label("demo", f"disco:{tmp_path / 'data'}", str(tmp_path / "run"))
    flow(name="publish")(lambda: publish_artifacts("evaluate", _manifest(tmp_path), [
        Artifact("table", "evaluate-metrics", [{"system": "disco", "RR@10": 0.5}], "held-out turns"),
        Artifact("markdown", "evaluate-report", "# report", "metrics table and plot")], label))()
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=["evaluate-metrics", "evaluate-report", "evaluate-outputs"])))
    newest = {}
    for a in sorted(found, key=lambda a: a.created):
        newest[a.key] = a
    assert {k: a.type for k, a in newest.items()} == {"evaluate-metrics": "table", "evaluate-report": "markdown",
                                                      "evaluate-outputs": "markdown"}
    for a in newest.values():
        assert "preset demo" in a.description and str(tmp_path / "run") in a.description, a.description
    assert "metrics.json" in newest["evaluate-outputs"].data and "None" not in newest["evaluate-outputs"].data


def test_distill_artifacts_show_the_dev_curve_and_the_interpolation_kept(tmp_path):
    import polars as pl

    from core.io import Output
    from stages.distill import artifacts

    pl.DataFrame({"step": [1, 2], "epoch": [1, 1], "kl": [0.5, 0.4], "total": [0.5, 0.4], "lr": [1e-4, 1e-4]}
                 ).write_parquet(tmp_path / "loss.parquet")
    pl.DataFrame({"epoch": [0, 1], "step": [0, 2], "RR@10": [0.5, 0.6], "nDCG@3": [0.4, 0.5], "R@10": [0.9, 1.0]}
                 ).write_parquet(tmp_path / "dev.parquet")
    rows = [{"alpha": 1.0, "RR@10": 0.6}, {"alpha": 0.5, "RR@10": 0.55123}]
    m = Manifest(stage="distill", key="0" * 16, dir=str(tmp_path), stats={
        "steps": 2, "dev_turns": 3, "dev_ranked": "corpus", "best_epoch": 1, "interpolation_alpha": 1.0,
        "interpolation_dev": rows}, outputs={n: Output(name=n, path=str(tmp_path / f"{n}.parquet"), sha256="0" * 64)
                                            for n in ("loss", "dev")})
    found = {a.key: a for a in artifacts(m)}
    assert set(found) == {"distill-loss", "distill-loss-curve", "distill-dev-curve", "distill-dev-plot",
                          "distill-interpolation"}
    assert found["distill-interpolation"].content == [{"alpha": 1.0, "RR@10": 0.6}, {"alpha": 0.5, "RR@10": 0.5512}]
    assert "alpha 1.0 kept" in found["distill-interpolation"].description
    assert "distill-interpolation" not in {a.key for a in artifacts(m.model_copy(update={"stats": {
        **m.stats, "interpolation_dev": []}}))}


def _evaluate_manifest(tmp_path) -> Manifest:
    import json

    from retrieval.plots import metrics_plot

    d = tmp_path / "evaluate"
    d.mkdir()
    test = {"diff": 0.07, "p": 0.13, "ci": [-0.02, 0.17], "wins": 12, "ties": 40, "losses": 8, "n": 60,
            "trials": 10_000}
    systems = ("last_turn", "disco")
    metrics = {"dataset": "disco", "split": "test", "turns": 60, "rel_threshold": 1, "doc_terms_mean": 185.0,
               "systems": {s: {"RR@10": 0.7, "nDCG@3": 0.6, "R@10": 0.9, "R@100": 1.0} for s in systems},
               "by_depth": {s: {"1": {"RR@10": 0.9, "turns": 8}, "2-3": {"RR@10": 0.6, "turns": 52}} for s in systems},
               "efficiency": {s: {"query_terms": 30.0, "flops": 5.0, "latency_ms": 9.0} for s in systems},
               "significance": {"last_turn": {"RR@10": test}}}
    (d / "metrics.json").write_text(json.dumps(metrics))
    metrics_plot(metrics, d / "metrics.png")
    return Manifest(stage="evaluate", key="k", dir=str(d), outputs={
        name: Output(name=name, path=str(d / file), sha256="0" * 64)
        for name, file in (("metrics", "metrics.json"), ("plot", "metrics.png"))})


def test_the_evaluate_report_artifact_is_the_whole_report(tmp_path):
    """report.md's sections, not only the metrics table and the plot: RR@10 by turn depth, the paired tests."""
    from stages.evaluate import artifacts

    report = next(a for a in artifacts(_evaluate_manifest(tmp_path)) if a.key == "evaluate-report")
    assert report.kind == "markdown"
    for section in ("| system | RR@10 | nDCG@3 | R@10 | R@100 |", "## Efficiency", "## RR@10 by turn depth",
                    "| disco | 0.900 | 0.600 |", "## disco vs each system (paired randomization test, 10,000 trials)",
                    "| last_turn | RR@10 | +0.070 | [-0.020, +0.170] | 0.1300 | 12/40/8 |",
                    "![metrics](data:image/png;base64,"):
        assert section in report.content, section


def test_the_loss_curve_artifact_draws_the_weighted_terms(tmp_path):
    import polars as pl

    from stages.distill import artifacts

    d = tmp_path / "distill"
    d.mkdir()
    pl.DataFrame({"step": [1, 2, 3], "epoch": [1, 1, 1], "lambda_q": [0.0] * 3, "kl": [0.8, 0.6, 0.5],
                  "contrastive": [2.0] * 3, "flops": [40.0] * 3, "anti_zero": [0.002] * 3,
                  "total": [0.99 * k + 0.2 + 0.002 for k in (0.8, 0.6, 0.5)], "lr": [1e-4] * 3}
                 ).write_parquet(d / "loss.parquet")
    pl.DataFrame({"epoch": [0]}).write_parquet(d / "dev.parquet")
    m = Manifest(stage="distill", key="k", dir=str(d), stats={
        "steps": 3, "loss_weights": {"kl": 0.99, "contrastive": 0.1, "anti_zero": 1.0, "flops": "lambda_q"}},
        outputs={name: Output(name=name, path=str(d / f"{name}.parquet"), sha256="0" * 64)
                 for name in ("loss", "dev")})
    curve = next(a for a in artifacts(m) if a.key == "distill-loss-curve")
    assert curve.description == "loss curve: each term times its weight, and the total optimised"
    assert curve.content.startswith("![distillation loss](data:image/png;base64,")
