"""The evaluate report and the loss curve as the Prefect UI shows them, in Debian's headless chromium: the stages'
own artifact functions publish to a real `prefect server start`, and a person reads them at a laptop's width
(1024 px) and a desktop's (1400 px). The report has every section report.md has (effectiveness, efficiency, RR@10
by turn depth, the paired tests), no table is cut off, and the plots render inside the page.

The artifacts come from a small synthetic evaluation and loss log, or from a finished run folder given as
DISCO_REPORT_RUN (its evaluate and distill stages); DISCO_SCREENSHOTS=docs/img refreshes ui-evaluate-report.png
and ui-loss-curve.png (take them from a real run: DISCO_REPORT_RUN=runs/demo).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from core.io import Manifest, Output
from core.run_record import RunRecord
from tasks.artifacts import publish_artifacts, run_label

pytestmark = pytest.mark.slow  # a Prefect server and a browser (about 25 s on a loaded machine)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SYSTEMS = ("last_turn", "conversation", "conversation:student-input", "rewrite:human", "rewrite:llm",
           "rewrite:fused", "disco")


def _synthetic(tmp: Path) -> tuple[Manifest, Manifest]:
    import polars as pl

    from retrieval.plots import metrics_plot

    test = {"diff": 0.074, "p": 0.13, "ci": [-0.02, 0.17], "wins": 12, "ties": 45, "losses": 8, "n": 65,
            "trials": 10_000}
    metrics = {"dataset": "disco", "split": "test", "turns": 65, "rel_threshold": 1, "doc_terms_mean": 184.9,
               "systems": {s: {"RR@10": 0.664, "nDCG@3": 0.61, "R@10": 0.91, "R@100": 0.99} for s in SYSTEMS},
               "by_depth": {s: {"1": {"RR@10": 0.9, "turns": 8}, "2-3": {"RR@10": 0.7, "turns": 20},
                                "4-6": {"RR@10": 0.6, "turns": 22}, "7+": {"RR@10": 0.5, "turns": 15}}
                            for s in SYSTEMS},
               "efficiency": {s: {"query_terms": 113.636, "flops": 14.3586, "latency_ms": 13.344} for s in SYSTEMS},
               "significance": {s: {"RR@10": test, "R@100": test} for s in SYSTEMS[:-1]}}
    ev, di = tmp / "evaluate", tmp / "distill"
    ev.mkdir()
    di.mkdir()
    (ev / "metrics.json").write_text(json.dumps(metrics))
    metrics_plot(metrics, ev / "metrics.png")
    steps = list(range(1, 201))
    kl = [0.2 + 0.6 * 0.98 ** s for s in steps]
    pl.DataFrame({"step": steps, "epoch": [1 + (s - 1) // 40 for s in steps], "lambda_q": [0.0] * 200, "kl": kl,
                  "contrastive": [1.6] * 200, "flops": [9.0] * 200, "anti_zero": [0.002] * 200,
                  "total": [0.99 * k + 0.16 + 0.002 for k in kl], "lr": [1e-4] * 200}).write_parquet(di / "loss.parquet")
    pl.DataFrame({"epoch": [0]}).write_parquet(di / "dev.parquet")
    out = lambda d, names: {n: Output(name=n, path=str(d / f), sha256="0" * 64) for n, f in names}  # noqa: E731
    return (Manifest(stage="evaluate", key="synthetic", dir=str(ev),
                     outputs=out(ev, [("metrics", "metrics.json"), ("plot", "metrics.png")])),
            Manifest(stage="distill", key="synthetic", dir=str(di), stats={
                "steps": 200, "loss_weights": {"kl": 0.99, "contrastive": 0.1, "anti_zero": 1.0, "flops": "lambda_q"}},
                outputs=out(di, [("loss", "loss.parquet"), ("dev", "dev.parquet")])))


@pytest.fixture(scope="module")
def published(ops, ops_server, tmp_path_factory):
    """The evaluate and distill artifacts on the server; yields {key: artifact id}."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from stages import distill, evaluate

    given = os.environ.get("DISCO_REPORT_RUN")
    if given:
        record = RunRecord.read(given, need=("evaluate", "distill"))
        ev, di = record.manifest("evaluate"), record.manifest("distill")
        label = run_label(record.config.get("name", "?"), record.config.get("data", {}).get("path", "?"), given)
    else:
        ev, di = _synthetic(tmp_path_factory.mktemp("report"))
        label = run_label("demo", "synthetic", "-")
    with temporary_settings({PREFECT_API_URL: ops_server["url"]}):
        publish_artifacts("evaluate", ev, evaluate.artifacts(ev), label)
        publish_artifacts("distill", di, distill.artifacts(di), label)
    with ops.client_for(ops_server) as client:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        keys = ["evaluate-report", "distill-loss-curve"]
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
    return {a.key: a.id for a in sorted(found, key=lambda a: a.created)}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: run `make browser` (apt-get install chromium, as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip: .[test])")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def _open(browser, url: str, width: int, expect: str):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.set_default_timeout(180_000)
    page.goto(url)
    page.get_by_text(expect, exact=False).first.wait_for()
    page.wait_for_load_state("networkidle")
    page.locator(".markdown-renderer img").first.wait_for()
    page.wait_for_function("[...document.querySelectorAll('.markdown-renderer img')].every(i => i.naturalWidth)")
    return page


def _shoot(page, width: int, name: str, tmp_path: Path) -> None:
    """The whole artifact (the page scrolls inside its layout: a viewport as tall as it)."""
    page.set_viewport_size({"width": width, "height": page.evaluate(
        "Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")})
    shot = tmp_path / name
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("DISCO_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["DISCO_SCREENSHOTS"]) / name)


@pytest.mark.parametrize("width", [1024, 1400])
def test_the_evaluate_report_reads_whole(ops_server, published, browser, width, tmp_path):
    base = ops_server["url"].removesuffix("/api")
    page = _open(browser, f"{base}/artifacts/artifact/{published['evaluate-report']}", width, "RR@10 by turn depth")
    try:
        text = page.inner_text("body")
        for section in ("Efficiency", "RR@10 by turn depth", "disco vs each system (paired randomization test",
                        "wins/ties/losses", "95% CI", "ms/query", "R@100"):
            assert section in text, section
        tables = page.evaluate("""() => [...document.querySelectorAll('.markdown-renderer table')].map(t => ({
            head: t.rows[0].innerText, wide: t.parentElement.scrollWidth, shown: t.parentElement.clientWidth,
            right: t.rows[0].cells[t.rows[0].cells.length - 1].getBoundingClientRect().right,
            edge: t.parentElement.getBoundingClientRect().right}))""")
        assert len(tables) == 4, tables
        for t in tables:  # every column in view: no table wider than the space it is given
            assert t["wide"] <= t["shown"] and t["right"] <= t["edge"] + 1, t
        img = page.locator(".markdown-renderer img").first
        assert img.evaluate("(i) => i.naturalWidth") > 500
        report = img.locator("xpath=ancestor::*[contains(@class, 'markdown-renderer')][1]")
        assert img.bounding_box()["width"] <= report.bounding_box()["width"] + 1
        if width == 1400:
            _shoot(page, width, "ui-evaluate-report.png", tmp_path)
    finally:
        page.close()


def test_the_loss_curve_renders(ops_server, published, browser, tmp_path):
    base = ops_server["url"].removesuffix("/api")
    page = _open(browser, f"{base}/artifacts/artifact/{published['distill-loss-curve']}", 1400,
                 "each term times its weight")
    try:
        assert page.locator(".markdown-renderer img").first.evaluate("(i) => i.naturalWidth") > 500
        _shoot(page, 1400, "ui-loss-curve.png", tmp_path)
    finally:
        page.close()
