"""Rewrite quality measures (retrieval.rewrite_eval) and the `disco rewrite-eval` command on real datasets."""

from __future__ import annotations

import json

import polars as pl
import pytest
from typer.testing import CliRunner

from retrieval import rewrite_eval as rq
from disco.cli import app
from core.errors import DataError


def test_measures():
    assert rq.rouge1("Why did Zappa break up?", "why did zappa and the band break up") == pytest.approx(
        2 * (5 / 5) * (5 / 8) / (5 / 5 + 5 / 8))
    # ROUGE-L counts order: the same bag of words in another order scores lower than ROUGE-1.
    assert rq.rouge_l("up break zappa did why", "why did zappa break up") < rq.rouge1(
        "up break zappa did why", "why did zappa break up") == 1.0
    assert rq.rouge_l("", "x") == 0.0 and rq.rouge1("x", "") == 0.0
    s = rq.score("When did they disband?", "When did the Mothers of Invention disband?", "when did they disband")
    assert s["copied"] == 1.0 and s["exact"] == 0.0 and s["answer_like"] == 0.0 and 0 < s["token_f1"] < 1
    assert rq.answer_like("The band broke up in 1969.") and not rq.answer_like("Tell me about the band")
    assert not rq.answer_like("mercury orbit period?") and rq.answer_like("")


def test_evaluate_on_the_demo_with_a_rewrites_file(tmp_path):
    turns = rq.load_turns("disco", rq.known_datasets()["demo"][1])
    assert len(turns) > 100 and turns["human_rewrite"].null_count() == 0
    f = tmp_path / "mine.tsv"
    # One perfect rewrite, one answer instead of a rewrite.
    t0, t1 = turns.row(1, named=True), turns.row(2, named=True)
    f.write_text(f"{t0['turn_id']}\t{t0['human_rewrite']}\n{t1['turn_id']}\tIt is very hot there.\n")
    per_turn, summary = rq.evaluate(turns, rq.read_rewrites(f))
    by = {r["source"]: r for r in summary.iter_rows(named=True)}
    assert list(by) == ["utterance", "human", "mine"]
    assert by["human"]["token_f1"] == 1.0 and by["human"]["exact"] == 1.0
    assert by["mine"]["turns"] == 2 and by["mine"]["exact"] == 0.5 and by["mine"]["answer_like"] == 0.5
    assert 0.5 < by["utterance"]["token_f1"] < 1 and by["utterance"]["copied"] == 1.0
    worst = rq.worst(per_turn, turns, 1)
    assert list(worst) == ["mine"] and worst["mine"][0]["rewrite"] == "It is very hot there."
    md = rq.markdown("t", summary, worst)
    assert "| mine | 2 |" in md and "It is very hot there." in md


def test_bad_rewrite_files_name_file_and_line(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("a\tfine\nno tab here\n")
    with pytest.raises(DataError, match=r"bad.tsv.*line 2.*turn_id<TAB>rewrite"):
        rq.read_rewrites(f)
    j = tmp_path / "bad.jsonl"
    j.write_text('{"turn_id": "a", "rewrite": "x"}\n{"rewrite": "y"}\n')
    with pytest.raises(DataError, match=r"line 2"):
        rq.read_rewrites(j)
    with pytest.raises(DataError, match="no rewrites.parquet"):
        rq.read_rewrites(tmp_path)


def test_slices_keep_whole_conversations():
    turns = pl.DataFrame({"conversation_id": ["a", "a", "b", "b", "b", "c"], "turn_id": list("123456")})
    assert rq.slice_turns(turns, 0, 2)["conversation_id"].to_list() == ["a", "a"]
    assert rq.slice_turns(turns, 1, 10)["conversation_id"].to_list() == ["b", "b", "b", "c"]


@pytest.mark.shared_data
def test_canard_and_cast_have_human_rewrites(shared_data):
    known = rq.known_datasets()
    canard = rq.load_turns(*known["canard-dev"][:2], limit=50)
    assert 50 <= len(canard) < 80 and canard["human_rewrite"].null_count() == 0
    fmt, path, opts = known["cast2019"]
    cast = rq.load_turns(fmt, path, **opts)
    assert len(cast) == 479


def test_command_writes_report_and_artifact(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client

    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"turn_id": "a01_2", "rewrite": "Mercury orbits in 88 days."}) + "\n")
    result = CliRunner().invoke(app, ["rewrite-eval", "demo", "--rewrites", str(f), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "Worst rewrites of `r`" in result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert [r["source"] for r in summary["summary"]] == ["utterance", "human", "r"]
    assert result.output.rstrip().endswith((tmp_path / "o" / "report.md").read_text().rstrip())

    async def latest():
        async with get_client() as c:
            from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

            return await c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["rewrite-eval"])))

    import asyncio

    arts = asyncio.run(latest())
    assert arts and "Worst rewrites" in arts[-1].data


def test_command_errors_are_clear(tmp_path):
    result = CliRunner().invoke(app, ["rewrite-eval", "nowhere"])
    assert result.exit_code == 2 and "unknown dataset 'nowhere'" in result.output
    result = CliRunner().invoke(app, ["rewrite-eval", "demo", "--rewrites", str(tmp_path / "x.tsv")])
    assert result.exit_code == 2 and "file not found" in result.output
