"""distill.search (models/search.py): settings chosen on dev turns only, one axis at a time, then trained in full."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from core import schema
from models.conversation import StudentInput
from models.distill_config import DevSearch
from models.examples import Source
from models.search import search_and_train
from models.selection import Rule
from models.student import StudentCard
from tests.models.test_distill import MAX_LENGTH, _table, _with_dev, cfg, data  # noqa: F401  (data: a fixture)

pytestmark = pytest.mark.slow  # each search trains several students (about a minute on 2 idle cores)

SEARCH = DevSearch(budget=0.5, input=[StudentInput(answers=False), StudentInput()], extra_layers=[0, 1])


def _with_test_turns(dev_data, root, qrels_path):
    """The same data plus judged test turns: copies of the dev turns whose qrels point at other passages."""
    turns = pq.read_table(dev_data["turns"]).to_pylist()
    qrels = pq.read_table(qrels_path).to_pylist()
    extra = [{**t, "turn_id": f"t_{t['turn_id']}", "split": "test"} for t in turns if t["split"] == "dev"]
    qrels += [{"turn_id": t["turn_id"], "doc_id": f"d{30 + i % 8:02d}", "relevance": 2} for i, t in enumerate(extra)]
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(_table(turns + extra, schema.TURNS), root / "turns.parquet")
    pq.write_table(_table(qrels, schema.QRELS), root / "qrels.parquet")
    return root / "turns.parquet", root / "qrels.parquet"


def _search(turns, qrels, data, out, **kw):
    src = Source(turns, qrels, data["run"], data["docs"])
    config = cfg(steps=6, lr=1e-3, search=SEARCH, **kw)
    return search_and_train(config, "splade-tiny", [src], out, dev=src, max_length=MAX_LENGTH)


def test_search_reads_dev_only_and_trains_the_dev_best_in_full(data, tmp_path):  # noqa: F811
    dev_data = _with_dev(data, tmp_path)
    plain = _search(dev_data["turns"], data["qrels"], data, tmp_path / "a")
    # judged test turns added: every candidate's dev figures and every choice stay the same
    turns, qrels = _with_test_turns(dev_data, tmp_path / "with-test", data["qrels"])
    tested = _search(turns, qrels, data, tmp_path / "b")
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in plain["search"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in tested["search"]]
    assert plain["chosen"] == tested["chosen"] and plain["best_dev"] == tested["best_dev"]
    # one row per candidate, axis by axis; each axis keeps its dev-best candidate (ties to the earlier one)
    assert [(r["axis"], r["value"]) for r in plain["search"]] == [
        ("input", "user turns only"), ("input", "paper format (answers, newest first)"),
        ("extra_layers", "0"), ("extra_layers", "1")]
    for axis in ("input", "extra_layers"):
        rows = [r for r in plain["search"] if r["axis"] == axis]
        assert sum(r["chosen"] for r in rows) == 1
        assert next(r for r in rows if r["chosen"]) == Rule("RR@10").best(rows)
        assert plain["chosen"][axis] == next(r["value"] for r in rows if r["chosen"])
    # the kept student was trained with the chosen settings and the full budget
    card = StudentCard.load(tmp_path / "a" / "student")
    chosen_input = plain["chosen_settings"]["input"]
    assert card.input.model_dump() == chosen_input and plain["steps"] == 6
    assert plain["extra_layers"] == plain["chosen_settings"]["extra_layers"]
    assert ((tmp_path / "a" / "student" / "disco_branch.safetensors").exists()
            == (plain["chosen_settings"]["extra_layers"] > 0))
    # the chosen input at depth 0 is one run shared by both axes: 3 short runs, not 4
    assert len(list((tmp_path / "a" / "search").iterdir())) == 3


def test_sparsity_weights_are_chosen_within_the_query_term_budget(data, tmp_path):  # noqa: F811
    dev_data = _with_dev(data, tmp_path)
    src = Source(dev_data["turns"], data["qrels"], data["run"], data["docs"])
    search = DevSearch(budget=1.0, lambda_q=[0.0, 0.03])
    config = cfg(steps=6, lr=1e-3, reg="flops", reg_warmup_ratio=0.0, max_terms_ratio=1.0, search=search)
    got = search_and_train(config, "splade-tiny", [src], tmp_path / "s", dev=src, max_length=MAX_LENGTH)
    rows = got["search"]
    assert [r["value"] for r in rows] == ["0.0", "0.03"]
    budget = rows[0]["max_terms"]
    assert budget == pytest.approx(got["last_turn_dev_terms"]) and budget > 0
    assert rows[1]["terms"] < rows[0]["terms"]  # the weight makes the dev queries sparser
    want = Rule("RR@10", budget).best(rows)
    assert want["chosen"] and got["chosen"]["lambda_q"] == want["value"]
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["max_query_terms"] == pytest.approx(budget)


def test_no_dev_turns_no_search(data, tmp_path):  # noqa: F811
    src = Source(data["turns"], data["qrels"], data["run"], data["docs"])
    got = search_and_train(cfg(steps=3, search=SEARCH), "splade-tiny", [src], tmp_path / "n", dev=src,
                           max_length=MAX_LENGTH)
    assert got["search"] == [] and got["chosen"] == {} and not (tmp_path / "n" / "search").exists()


def test_rule_prefers_the_metric_within_the_budget_else_the_sparsest():
    rows = [{"RR@10": 0.9, "terms": 40.0}, {"RR@10": 0.8, "terms": 20.0}, {"RR@10": 0.8, "terms": 10.0}]
    assert Rule("RR@10").best(rows) is rows[0]
    assert Rule("RR@10", 25.0).best(rows) is rows[1]  # ties go to the earlier row
    assert Rule("RR@10", 5.0).best(rows) is rows[2]  # none within: the sparsest


def test_the_teacher_is_searched_with_each_teachers_own_run(data, tmp_path):  # noqa: F811
    """``search.learn_from``: each candidate teacher trains on its own run (``sources(learn_from)``), dev alone
    picks, the kept student's card names the chosen teacher; without a sources function it is refused."""
    import polars as pl

    dev_data = _with_dev(data, tmp_path)
    run = pl.read_parquet(data["run"])
    upside_down = (run.with_columns((pl.col("score").max() + pl.col("score").min() - pl.col("score")).over("turn_id")
                                    .alias("score"))
                   .with_columns(pl.col("score").rank("ordinal", descending=True).over("turn_id").cast(pl.Int32)
                                 .alias("rank")))
    upside_down.write_parquet(tmp_path / "upside_down.parquet")
    runs = {"human": data["run"], "upside_down": tmp_path / "upside_down.parquet"}
    asked = []

    def sources(learn_from: str) -> list[Source]:
        asked.append(learn_from)
        return [Source(dev_data["turns"], data["qrels"], runs[learn_from], data["docs"], learn_from=learn_from)]

    dev = sources("human")
    config = cfg(steps=6, lr=1e-3, learn_from="human", search=DevSearch(budget=0.5, learn_from=["upside_down", "human"]))
    got = search_and_train(config, "splade-tiny", sources, tmp_path / "t", dev=dev, max_length=MAX_LENGTH)
    rows = got["search"]
    assert [(r["axis"], r["value"]) for r in rows] == [("learn_from", "upside_down"), ("learn_from", "human")]
    want = Rule("RR@10").best(rows)
    assert want["chosen"] and got["chosen"]["learn_from"] == want["value"]
    assert {"upside_down", "human"} <= set(asked)
    assert StudentCard.load(tmp_path / "t" / "student").teacher == want["value"]
    with pytest.raises(ValueError, match="sources as a function"):
        search_and_train(config, "splade-tiny", dev, tmp_path / "u", dev=dev, max_length=MAX_LENGTH)
