"""LoRA fine-tuning of the packaged SmolLM2 on a few demo rewrites (real model, real peft): the loss falls, training
is deterministic, a run killed after a checkpoint resumes to the same adapter, and the merged folder loads in
transformers with the same greedy rewrites as the adapter in memory."""

from __future__ import annotations

import pytest
import torch

from core.paths import DEMO_DATA
from models.rewrite.config import RewriteConfig
from models.rewrite.prompt import build_messages
from models.rewriter.config import CARD, Example, RewriterConfig, read_card
from models.rewriter.lora import adapter_state, merge
from models.rewriter.train import train

pytestmark = pytest.mark.slow

REWRITE = RewriteConfig(prompt="compact", max_history_chars=300, max_new_tokens=12, batch_size=4)
CFG = RewriterConfig(rank=4, alpha=8, top_layers=2, steps=6, batch_size=4, lr=2e-3, warmup_steps=1, eval_every=3,
                     threads=2)


def _examples() -> list[Example]:
    from retrieval.datasets import get_reader

    out = []
    for t in get_reader("disco", DEMO_DATA).turns():
        if t.turn > 1 and t.human_rewrite:
            out.append(Example(t.turn_id, "demo", t.question, build_messages(t.question, t.history, 300, "rewrite",
                                                                             "compact"), t.human_rewrite))
    return out


@pytest.fixture(scope="module")
def data():
    ex = _examples()
    return ex[:4], ex[4:7]


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    train_ex, dev = data
    return train(train_ex, dev, CFG, REWRITE, tmp_path_factory.mktemp("a"))


def test_loss_falls_and_dev_is_scored_at_every_checkpoint(trained):
    _, _, result = trained
    losses = [r["loss"] for r in result.losses]
    # the same 4 rewrites every step: the loss falls at each one
    assert len(losses) == CFG.steps and all(b < a for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.8 * losses[0], losses
    assert [h["step"] for h in result.history] == [0, 3, 6]
    assert result.best_step in (0, 3, 6) and 0 <= result.best_f1 <= 1


def test_training_is_deterministic_and_resumes_after_a_kill(trained, data, tmp_path):
    train_ex, dev = data
    model, _, result = trained
    work = tmp_path / "killed"
    _, _, first = train(train_ex, dev, CFG, REWRITE, work, stop_after=3)  # "killed" after the step-3 checkpoint
    assert len(first.losses) == 3 and (work / "checkpoint" / "state.pt").exists()
    resumed, _, second = train(train_ex, dev, CFG, REWRITE, work)
    assert [r["loss"] for r in second.losses] == [r["loss"] for r in result.losses]
    a, b = adapter_state(model), adapter_state(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    untimed = [[{k: v for k, v in h.items() if k != "seconds"} for h in r.history] for r in (result, second)]
    assert second.best_step == result.best_step and untimed[0] == untimed[1]


def test_lora_sits_on_the_top_layers_only(trained):
    model, _, _ = trained
    layers = {int(k.split(".layers.")[1].split(".")[0]) for k in adapter_state(model)}
    n = model.get_base_model().config.num_hidden_layers
    assert layers == {n - 2, n - 1}


def test_merged_folder_rewrites_like_the_adapter(trained, data, tmp_path):
    from models.rewrite.hf import HFRewriter

    model, tokenizer, _ = trained
    _, dev = data
    with torch.no_grad():  # a visible change: otherwise an untrained adapter would pass trivially
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.02)
    in_memory = HFRewriter.from_loaded(REWRITE, model, tokenizer).rewrite([ex.messages for ex in dev])
    folder = merge(model, tokenizer, tmp_path / "merged", {"base": CFG.base})
    assert (folder / "config.json").exists() and read_card(folder) == {"base": CFG.base} and (folder / CARD).exists()
    assert oct((folder / "model.safetensors").stat().st_mode & 0o777) == "0o644"
    loaded = HFRewriter(REWRITE.model_copy(update={"model": str(folder)}))
    assert loaded.rewrite([ex.messages for ex in dev]) == in_memory
