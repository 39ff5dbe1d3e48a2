"""distill.soup_seeds (models/soup.py): a greedy model soup over training seeds, chosen on dev turns only."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from core import schema
from models.distill import train_student
from models.distill_config import DistillConfig
from models.examples import Source
from models.selection import DevSet, Rule, encode_fn
from models.soup import average, greedy_soup
from models.splade import SpladeEncoder
from models.student import StudentCard
from tests.models.test_distill import MAX_LENGTH, _table, _with_dev, cfg, data  # noqa: F401  (data: a fixture)

DEV = ("RR@10", "nDCG@3", "R@10", "R@100", "terms", "flops")


# --- the greedy recipe on hand-made ingredients ------------------------------------------------------------


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 4)
        self.register_buffer("ids", torch.arange(4))  # not floating point: taken from the soup's first member


def _state(weight: torch.Tensor, bias: float, ids: int) -> dict[str, torch.Tensor]:
    return {"lin.weight": weight, "lin.bias": torch.full((4,), bias), "ids": torch.full((4,), ids)}


def test_greedy_soup_keeps_what_helps_rejects_what_hurts_and_averages_exactly():
    r = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    target = r.mean().item()

    def score(m: Tiny) -> dict[str, float]:  # a dev measure best at the mean weight of r; terms: the mean bias
        return {"RR@10": -abs(m.lin.weight.mean().item() - target), "terms": m.lin.bias.mean().item()}

    a, b, c = _state(r - 1.0, 0.0, 1), _state(r + 1.5, 0.0, 2), _state(r + 50.0, 0.0, 3)
    model = Tiny()
    kept, rows = greedy_soup(model, [(7, c), (5, b), (3, a)], score, Rule("RR@10"))
    # tried best first (a, b, c); b helps (the average is nearer r), c hurts
    assert [(row["seed"], row["kept"]) for row in rows] == [(3, True), (5, True), (7, False)]
    assert kept == [3, 5]
    assert torch.equal(model.lin.weight, (a["lin.weight"] + b["lin.weight"]) / 2)  # the exact uniform average
    assert torch.equal(model.ids, a["ids"])
    assert rows[0]["RR@10"] == pytest.approx(-1.0, abs=1e-5) and rows[0]["soup_RR@10"] == rows[0]["RR@10"]
    assert rows[1]["RR@10"] == pytest.approx(-1.5, abs=1e-5)
    assert rows[1]["soup_RR@10"] == rows[2]["soup_RR@10"] == pytest.approx(-0.25, abs=1e-5)  # c left it as it was
    assert rows[2]["RR@10"] == pytest.approx(-50.0, abs=1e-4)
    # a tie keeps the ingredient; the query-term budget of the rule rejects one that helps but is too dense
    kept, _ = greedy_soup(model, [(1, a), (2, _state(r - 1.0, 0.0, 9))], score, Rule("RR@10"))
    assert kept == [1, 2]
    dense = _state(r + 1.5, 20.0, 2)
    kept, rows = greedy_soup(model, [(1, a), (2, dense)], score, Rule("RR@10", max_terms=5.0))
    assert kept == [1] and not rows[1]["kept"] and torch.equal(model.lin.weight, a["lin.weight"])
    assert average([a])["lin.weight"] is not a["lin.weight"]  # a copy: the ingredients are never changed
    with pytest.raises(ValueError, match="differ"):
        average([a, {"lin.weight": r}])


def test_config_soup_seeds_are_distinct_and_not_the_main_seed():
    assert DistillConfig().soup_seeds == [] and DistillConfig(soup_seeds=[1, 2]).soup_seeds == [1, 2]
    with pytest.raises(ValueError, match="soup_seeds"):
        DistillConfig(soup_seeds=[1, 1])
    with pytest.raises(ValueError, match="soup_seeds"):
        DistillConfig(seed=7, soup_seeds=[3, 7])


# --- a tiny distillation with a soup -------------------------------------------------------------------------

SOUP = dict(epochs=2, lr=1e-3, extra_layers=1)  # a residual branch: the initial weights built with a seed


def _with_test_turns(dev_data, root, qrels_path):
    """The dev data plus judged test turns (copies of the dev turns whose qrels point at other passages)."""
    turns = pq.read_table(dev_data["turns"]).to_pylist()
    qrels = pq.read_table(qrels_path).to_pylist()
    extra = [{**t, "turn_id": f"t_{t['turn_id']}", "split": "test"} for t in turns if t["split"] == "dev"]
    qrels += [{"turn_id": t["turn_id"], "doc_id": f"d{30 + i % 8:02d}", "relevance": 2} for i, t in enumerate(extra)]
    pq.write_table(_table(turns + extra, schema.TURNS), root / "turns.parquet")
    pq.write_table(_table(qrels, schema.QRELS), root / "qrels.parquet")
    return root / "turns.parquet", root / "qrels.parquet"


@pytest.fixture(scope="module")
def souped(data, tmp_path_factory):  # noqa: F811
    """A run with soup_seeds=[1] on data with dev and judged test turns, recording which turns are scored and the
    seed each student's initial weights are built with."""
    import models.distill as distill

    root = tmp_path_factory.mktemp("soup")
    turns, qrels = _with_test_turns(_with_dev(data, root), root, data["qrels"])
    src = Source(turns, qrels, data["run"], data["docs"])
    scored, seeds = [], []
    mp = pytest.MonkeyPatch()
    real_score, real_initial = DevSet.score, distill._initial

    def score(self, encode, scale):
        scored.append(list(self.turn_ids))
        return real_score(self, encode, scale)

    def initial(name, extra_layers, seed):
        seeds.append(seed)
        return real_initial(name, extra_layers, seed)

    mp.setattr(DevSet, "score", score)
    mp.setattr(distill, "_initial", initial)
    try:
        summary = train_student(cfg(**SOUP, soup_seeds=[1]), "splade-tiny", [src], root / "out",
                                max_length=MAX_LENGTH, dev=src)
    finally:
        mp.undo()
    return {"summary": summary, "out": root / "out", "src": src, "turns": turns, "qrels": qrels, "scored": scored,
            "seeds": seeds}


def test_soup_rows_card_and_dev_alone(souped, data):  # noqa: F811
    s, out = souped["summary"], souped["out"]
    rows = s["soup_dev"]
    assert sorted(r["seed"] for r in rows) == [1, 123] and rows[0]["kept"]
    assert {"seed", "epoch", "kept", *DEV, *(f"soup_{m}" for m in DEV)} <= set(rows[0])
    assert rows[0] == {**rows[0], **{f"soup_{m}": rows[0][m] for m in DEV}}  # the soup starts as the best one
    main = next(r for r in rows if r["seed"] == 123)
    assert main["epoch"] == s["best_epoch"] and main["RR@10"] == pytest.approx(s["best_dev"]["RR@10"])
    assert s["soup_seeds"] == [r["seed"] for r in rows if r["kept"]]
    assert StudentCard.load(out / "student").extra["soup_seeds"] == s["soup_seeds"]
    # dev alone decides: every scoring reads the dev turns only, and the kept student scores as the final soup
    dev = DevSet.load(souped["turns"], souped["qrels"], data["docs"], None, StudentCard.load(out / "student").text,
                      30522, 100)
    assert souped["scored"] and all(ids == dev.turn_ids for ids in souped["scored"])
    assert not any(t.startswith("t_") for t in dev.turn_ids)
    kept = SpladeEncoder(str(out / "student"))
    assert dev.score(encode_fn(kept, MAX_LENGTH, "right"), 100) == pytest.approx(
        {m: rows[-1][f"soup_{m}"] for m in DEV})
    # the ingredient trained in its own folder with its own sampling, from the main run's initial weights
    assert souped["seeds"] and set(souped["seeds"]) == {123}
    own = pq.read_table(out / "soup" / "seed-1" / "loss.parquet").to_pydict()["total"]
    assert own != pq.read_table(out / "loss.parquet").to_pydict()["total"]


def test_no_soup_leaves_the_training_as_it_was(souped, data, tmp_path, monkeypatch):  # noqa: F811
    """soup_seeds=[] runs no soup code, and the run with ``seed`` is the same with or without a soup: the same
    loss log, dev curve and last epoch's weights (so also the same best epoch's student)."""
    import models.distill as distill

    monkeypatch.setattr(distill, "_soup", lambda *a, **k: pytest.fail("no soup was asked for"))
    plain = train_student(cfg(**SOUP), "splade-tiny", [souped["src"]], tmp_path / "plain", max_length=MAX_LENGTH,
                          dev=souped["src"])
    assert plain["soup_dev"] == [] and plain["soup_seeds"] is None
    assert "soup_seeds" not in StudentCard.load(tmp_path / "plain" / "student").extra
    assert plain["best_epoch"] == souped["summary"]["best_epoch"] and plain["best_dev"] == souped["summary"]["best_dev"]
    for name in ("loss.parquet", "dev.parquet"):
        assert pq.read_table(tmp_path / "plain" / name).to_pydict() == pq.read_table(souped["out"] / name).to_pydict()
    for name in ("model.safetensors", "disco_branch.safetensors"):
        a = load_file(tmp_path / "plain" / "checkpoints" / "epoch-2" / "student" / name)
        b = load_file(souped["out"] / "checkpoints" / "epoch-2" / "student" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # the kept student is the best epoch's (here the untrained encoder, which the soup run's main row says too)
    assert next(r for r in souped["summary"]["soup_dev"] if r["seed"] == 123)["epoch"] == plain["best_epoch"]


def test_distill_artifacts_show_the_soup(tmp_path):
    import polars as pl

    from core.io import Manifest, Output
    from stages.distill import artifacts

    pl.DataFrame({"step": [1], "epoch": [1], "kl": [0.5], "total": [0.5], "lr": [1e-4]}).write_parquet(
        tmp_path / "loss.parquet")
    pl.DataFrame({"epoch": [0, 1], "RR@10": [0.5, 0.6], "nDCG@3": [0.4, 0.5], "R@10": [0.9, 1.0]}).write_parquet(
        tmp_path / "dev.parquet")
    rows = [{"seed": 123, "epoch": 1, "RR@10": 0.6, "kept": True, "soup_RR@10": 0.6},
            {"seed": 1, "epoch": 2, "RR@10": 0.55557, "kept": False, "soup_RR@10": 0.6}]
    outputs = {n: Output(name=n, path=str(tmp_path / f"{n}.parquet"), sha256="0" * 64) for n in ("loss", "dev")}
    m = Manifest(stage="distill", key="0" * 16, dir=str(tmp_path), outputs=outputs,
                 stats={"steps": 1, "soup_dev": rows, "soup_seeds": [123]})
    found = {a.key: a for a in artifacts(m)}
    assert found["distill-soup"].kind == "table" and found["distill-soup"].content[1]["RR@10"] == 0.5556
    assert "seeds kept: [123]" in found["distill-soup"].description
    m = m.model_copy(update={"stats": {"steps": 1, "soup_dev": [], "soup_seeds": None}})
    assert "distill-soup" not in {a.key for a in artifacts(m)}
